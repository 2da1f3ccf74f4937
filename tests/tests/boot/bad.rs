//! Bad boot input: each must give one clear `FATAL:` line and the failure
//! status, never a hang (the run has a hard deadline) or a reboot loop
//! (`-no-reboot`).

use boot_tests::artifacts::payloads;
use boot_tests::qemu::{PVH_TIMEOUT_S, pvh_vm, run};

use crate::TEST_CMDLINE;

/// The `hello` guest cut in the middle of its first loadable segment: the
/// segment and the section headers at the end of the file are missing.
#[test]
fn bad_truncated_module() {
    let p = payloads();
    let vm = pvh_vm(1, "128M", TEST_CMDLINE, Some(&p.truncated));
    let o = run("bad_truncated_module", vm, PVH_TIMEOUT_S);
    o.assert_fatal(&["truncated"]);
    let fatal = o.fatal_lines()[0];
    assert!(
        fatal.contains(&format!("{:#x}", p.truncated_len)),
        "`{fatal}` does not name the image size {:#x}",
        p.truncated_len
    );
    assert!(
        o.line("domain-end:").is_none(),
        "a truncated image must never run"
    );
}

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
