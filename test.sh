#!/usr/bin/env bash
# ./test.sh: every check CI runs. Installs what is missing (tools/setup.sh),
# builds the host tools (xtask, hvctl) once, then runs `cargo xtask test`:
# rustfmt, clippy (host and bare metal), the pvabi docs, host unit tests,
# the interleaving search, a 5 s pass of each fuzz target, the release
# kernel, and the boot tests under QEMU (PVH, GRUB ISO on BIOS and UEFI;
# AMD-V) and Bochs (VT-x/EPT). Ends with a summary whose last line names
# what failed (and how to fix it, where known) and what was skipped.
#
#   ./test.sh                        everything (about 20 minutes on 2 cores, cold)
#   ./test.sh --no-lint              leave out rustfmt, clippy and the docs
#   ./test.sh --no-fuzz              leave out the fuzz pass
#   ./test.sh --no-boot              leave out the kernel and the boot tests
#   ./test.sh --no-lint --no-fuzz -- iso dom0
#                                    only the boot tests whose name contains
#                                    "iso" or "dom0"
#   ./test.sh --help                 this text
#
# KESTREL_TEST_TIMEOUT_SCALE=N multiplies every boot test's deadline by N
# (busy machines). Exit status 0 when every check that ran passed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
start=$SECONDS

for a in "$@"; do
    case "$a" in
        -h | --help)
            sed -n '2,20s/^# \{0,1\}//p' "$0"
            exit 0
            ;;
        --) break ;;
    esac
done

who=test.sh
# CI builds a fresh clone once: incremental compilation would only write
# caches no later build reads (and split the debug builds into more, smaller
# codegen units), so it is off there unless asked for.
if [[ -n "${CI:-}" && -z "${CARGO_INCREMENTAL:-}" ]]; then
    export CARGO_INCREMENTAL=0
fi
echo "$who: checking the tools it needs (QEMU, Bochs, GRUB, the pinned Rust toolchain)"
tools/setup.sh
# shellcheck source=tools/host-tools.sh
. tools/host-tools.sh
# A cold run writes about 7 GB under target/ (builds, boot-test images and
# disks); a full disk fails every boot test after it at once, so say what
# was free before and, on failure, after.
free_space() { df -Ph . | awk 'NR == 2 { print $4 }'; }
echo "$who: $(free_space) free on the disk that holds target/ (a cold run writes about 7 GB)"
echo "$who: running the checks; each prints its cargo command first, a summary comes last"
status=0
"$xtask" test "$@" || status=$?
if ((status == 0)); then
    echo "test.sh: all passed in $((SECONDS - start)) s"
else
    echo "test.sh: FAILED after $((SECONDS - start)) s (the summary's last line says what;" \
        "$(free_space) left on the disk)" >&2
fi
exit "$status"
