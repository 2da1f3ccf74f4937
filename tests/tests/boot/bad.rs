//! Bad boot input: each must give one clear `FATAL:` line and the failure
//! status, never a hang (the run has a hard deadline) or a reboot loop
//! (a triple fault ends the run `Reset` after QEMU's register dump:
//! `tests/src/qemu.rs`).

use boot_tests::qemu::{PVH_TIMEOUT_S, pvh_vm, run};

use crate::TEST_CMDLINE;

#[test]
fn bad_unknown_option() {
    let vm = pvh_vm(1, "128M", "exit=qemu bogus=1", None);
    run("bad_unknown_option", vm, PVH_TIMEOUT_S).assert_fatal(&["bogus"]);
}

#[test]
fn bad_too_little_memory() {
    let vm = pvh_vm(1, "16M", TEST_CMDLINE, None);
    run("bad_too_little_memory", vm, PVH_TIMEOUT_S).assert_fatal(&["memory"]);
}
