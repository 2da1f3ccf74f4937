#!/usr/bin/env bash
# Builds Kestrel and boots the demo under QEMU with the serial console on
# this terminal: the hypervisor, dom0 and the domains of dom0/demo.toml;
# manage them with hvctl on build/kestrel-mgmt.sock (printed at start).
# Ctrl-A X quits.
#
#   ./qemu-run.sh                   the demo (GRUB ISO through SeaBIOS)
#   ./qemu-run.sh --uefi            the demo through OVMF (UEFI)
#   ./qemu-run.sh --bare            the hypervisor alone, PVH direct boot (-kernel), fastest
#   ./qemu-run.sh --bare --iso      the hypervisor alone, GRUB ISO
#   ./qemu-run.sh -smp 2 -m 512M    anything else goes to QEMU (after ours, so it wins)
#
# Also: --cmdline "..." (default "loglevel=info"), --module PATH[=ARGS],
# --kvm / --tcg (override the accelerator choice), --debug (dev build).
# KVM is used when /dev/kvm is usable and the host offers nested VT-x or
# AMD-V; otherwise QEMU TCG with an AMD-V + nested paging CPU model.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

ours=()
qemu_args=()
demo=(--dom0)
while (($#)); do
    case "$1" in
        --bare) demo=() ;;
        --iso | --uefi | --kvm | --tcg | --debug) ours+=("$1") ;;
        --cmdline | --module)
            if (($# < 2)); then
                echo "qemu-run.sh: $1 needs a value" >&2
                exit 2
            fi
            ours+=("$1" "$2")
            shift
            ;;
        -h | --help)
            sed -n '2,17s/^# \{0,1\}//p' "$0"
            exit 0
            ;;
        --) shift; qemu_args+=("$@"); break ;;
        *) qemu_args+=("$1") ;;
    esac
    shift
done

who=qemu-run.sh
echo "$who: checking the tools it needs (QEMU, GRUB, OVMF, the pinned Rust toolchain)"
tools/setup.sh
# shellcheck source=tools/host-tools.sh
. tools/host-tools.sh
exec "$xtask" qemu "${demo[@]}" "${ours[@]}" -- "${qemu_args[@]}"
