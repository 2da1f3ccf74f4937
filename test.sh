#!/usr/bin/env bash
# The test command: installs what is missing (tools/setup.sh), then runs
# every check with `cargo xtask test`: rustfmt, clippy (host and bare
# metal), host unit tests, the release kernel, and the boot tests under
# QEMU (PVH, GRUB ISO on BIOS and UEFI) and Bochs (VT-x/EPT).
# Arguments go to `cargo xtask test` (e.g. --no-lint, or `-- pvh` to run
# only the boot tests whose name contains "pvh").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
start=$SECONDS

tools/setup.sh
if ! command -v cargo >/dev/null 2>&1; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
status=0
cargo xtask test "$@" || status=$?
if ((status == 0)); then
    echo "test.sh: all passed in $((SECONDS - start)) s"
else
    echo "test.sh: FAILED after $((SECONDS - start)) s" >&2
fi
exit "$status"
