#!/usr/bin/env bash
# Installs what building and testing Kestrel needs on Debian/Ubuntu x86_64:
# the emulators, firmware and GRUB tools (apt), and the pinned Rust toolchain
# with its bare-metal target and components (rustup). Does nothing when all
# of it is already there, so it is cheap to run before every build.
# Non-interactive: fine for CI (root, no TTY).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf 'setup: %s\n' "$*"; }

# KESTREL_SETUP=skip: the caller vouches for the tools (xtask's own tests
# of qemu-run.sh and test.sh, which must not install anything).
if [[ ${KESTREL_SETUP:-} == skip ]]; then
    say "skipped (KESTREL_SETUP=skip)"
    exit 0
fi

# --- apt packages ----------------------------------------------------------
# qemu-system-x86  QEMU (TCG: AMD-V+NPT; KVM)     ovmf        UEFI firmware
# grub-pc-bin      GRUB for BIOS                  grub-efi-amd64-bin  GRUB for UEFI
# grub-common      grub-mkrescue                  xorriso, mtools     ISO + EFI image
# bochs, bochsbios, vgabios, bochs-term  Bochs (Intel VT-x+EPT), its BIOSes, a display
# gcc, libc6-dev   the linker for host crates (xtask, tests)
# g++              builds libFuzzer (C++) for the fuzz targets (crate libfuzzer-sys);
#                  nothing else is needed for them: no cargo-fuzz, no nightly
# linux-source-6.1 the Linux guest's source (`cargo xtask linux`, guest-kernel-patches/)
# busybox-static   the Linux guest's initramfs userland
# make flex bison bc libelf-dev patch xz-utils  what building that kernel needs
# qemu-utils       qemu-img and qemu-io: the image store's qcow2 tests (dom0/store)
packages=(qemu-system-x86 ovmf grub-pc-bin grub-efi-amd64-bin grub-common xorriso mtools
          bochs bochsbios vgabios bochs-term gcc g++ libc6-dev
          linux-source-6.1 busybox-static make flex bison bc libelf-dev patch xz-utils qemu-utils)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

if ! command -v dpkg-query >/dev/null 2>&1; then
    say "not a Debian/Ubuntu system (no dpkg-query): install the equivalents of"
    say "  ${packages[*]}"
    say "yourself, then run this again to set up Rust (skipping the apt part)."
    missing=()
else
    missing=()
    for p in "${packages[@]}"; do
        installed "$p" || missing+=("$p")
    done
fi

if ((${#missing[@]})); then
    say "missing packages: ${missing[*]}"
    apt_install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}")
    if [[ $(id -u) -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo=(sudo)
    else
        say "cannot install them: not root and sudo needs a password. Run:"
        say "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
        exit 1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" "${apt_install[@]}"
    # apt may remove a package that was there to install one we asked for:
    # a machine image with a newer qemu-utils (a backport) loses it to
    # bookworm's qemu-system-x86, and the qcow2 tests lose qemu-img. A
    # second pass installs what the first took away (the versions now match).
    again=()
    for p in "${packages[@]}"; do
        installed "$p" || again+=("$p")
    done
    if ((${#again[@]})); then
        say "installing again what that removed: ${again[*]}"
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${again[@]}"
    fi
    say "installed: ${missing[*]} ${again[*]}"
fi

# --- Rust ------------------------------------------------------------------
if ! command -v rustup >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/rustup" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
if ! command -v rustup >/dev/null 2>&1; then
    say "rustup is not installed: see https://rustup.rs (then run this again)"
    exit 1
fi

# The pinned toolchain. Cargo would not install it by itself where
# RUSTUP_AUTO_INSTALL=0, so install it explicitly.
toolchain_file="$root/rust-toolchain.toml"
channel="$(sed -n 's/^[[:space:]]*channel[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$toolchain_file")"
if [[ -z $channel ]]; then
    say "no channel in $toolchain_file"
    exit 1
fi
target=x86_64-unknown-none
components=(rust-src clippy rustfmt llvm-tools)

if ! rustup run "$channel" rustc --version >/dev/null 2>&1; then
    say "installing Rust $channel"
    rustup toolchain install "$channel" --profile minimal \
        --target "$target" --component "$(IFS=,; echo "${components[*]}")"
fi
if ! rustup target list --toolchain "$channel" --installed | grep -qx "$target"; then
    say "adding target $target to $channel"
    rustup target add --toolchain "$channel" "$target"
fi
have_components="$(rustup component list --toolchain "$channel" --installed)"
need=()
for c in "${components[@]}"; do
    # Installed components are listed with the host triple (clippy-x86_64-...),
    # except rust-src, which is target-independent.
    grep -Eq "^${c}(-preview)?(-[a-z0-9_]+-[a-z0-9_]+-[a-z0-9_]+(-[a-z0-9_]+)?)?$" <<<"$have_components" || need+=("$c")
done
if ((${#need[@]})); then
    say "adding components ${need[*]} to $channel"
    rustup component add --toolchain "$channel" "${need[@]}"
fi

say "ready: $(rustup run "$channel" rustc --version), target $target, ${#packages[@]} packages present"
