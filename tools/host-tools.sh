#!/usr/bin/env bash
# Sourced by qemu-run.sh and test.sh after tools/setup.sh: builds the two
# host programs both need in ONE cargo build (release), so the crates they
# share (the toolstack, pvabi, serde, toml) compile once, not once per
# profile, and hvctl is ready when `xtask` asks for it; then sets $xtask to
# the built `cargo xtask` binary. $who names the calling script.
if ! command -v cargo >/dev/null 2>&1; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
target_dir="${CARGO_TARGET_DIR:-target}"
if [[ ! -x "$target_dir/release/xtask" ]]; then
    echo "$who: first build: this takes a few minutes on a small machine (later runs rebuild only what changed)"
fi
echo "$who: building the host tools: xtask (builds images, boots QEMU, runs the checks) and hvctl (the management CLI), one release build"
cargo build --release --package xtask --package hvctl
xtask="$target_dir/release/xtask"
