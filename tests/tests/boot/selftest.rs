//! The failure paths, proved from outside with `selftest=` (the hypervisor
//! breaks itself on purpose once boot is complete): a panic and CPU
//! exceptions must each give one clear line and the failure status. The
//! page-fault cases also show that the hypervisor's own mappings hold:
//! page 0 is unmapped, stacks have guard pages, text is not writable and
//! data is not executable.

use boot_tests::Outcome;
use boot_tests::qemu::{PVH_TIMEOUT_S, pvh_vm, run};
use xtask::qemu::STATUS_FAILURE;

fn selftest(test: &str, what: &str) -> Outcome {
    let vm = pvh_vm(2, "128M", &format!("exit=qemu selftest={what}"), None);
    run(test, vm, PVH_TIMEOUT_S)
}

/// A CPU exception: exactly one `FATAL:` line naming the exception and
/// holding every needle, no panic, status 65.
fn exception(test: &str, what: &str, needles: &[&str]) {
    let o = selftest(test, what);
    o.assert_status(STATUS_FAILURE);
    let fatal = o.fatal_lines();
    assert_eq!(
        fatal.len(),
        1,
        "{test}: expected one FATAL line, got {fatal:?}"
    );
    for n in needles {
        assert!(fatal[0].contains(n), "{test}: `{}` lacks `{n}`", fatal[0]);
    }
    for field in ["on cpu", "rip=0x", "error=0x"] {
        assert!(
            fatal[0].contains(field),
            "{test}: `{}` lacks `{field}`",
            fatal[0]
        );
    }
    assert!(
        o.panic_lines().is_empty(),
        "{test}: an exception report is not a panic"
    );
}

#[test]
fn selftest_panic() {
    let o = selftest("selftest_panic", "panic");
    o.assert_status(STATUS_FAILURE);
    let panics = o.panic_lines();
    assert_eq!(panics.len(), 1, "expected one PANIC line, got {panics:?}");
    // PANIC on cpu<N> at <file>:<line>: <message>
    let rest = &panics[0][panics[0].find("PANIC on cpu").unwrap_or(0) + "PANIC on cpu".len()..];
    let (cpu, rest) = rest.split_once(" at ").unwrap_or(("", ""));
    let (location, message) = rest.split_once(": ").unwrap_or(("", ""));
    let (file, line) = location.rsplit_once(':').unwrap_or(("", ""));
    assert!(cpu.parse::<u32>().is_ok(), "CPU number in `{}`", panics[0]);
    assert!(file.ends_with(".rs"), "file in `{}`", panics[0]);
    assert!(
        line.parse::<u32>().is_ok(),
        "line number in `{}`",
        panics[0]
    );
    assert!(message.contains("self-test"), "message in `{}`", panics[0]);
    assert!(o.fatal_lines().is_empty(), "a panic also reported FATAL");
}

#[test]
fn selftest_null_deref() {
    exception(
        "selftest_null_deref",
        "null-deref",
        &["#PF", "vector 14", "cr2=0x0"],
    );
}

#[test]
fn selftest_stack_overflow() {
    // The guard page turns the overflow into #PF, and the #PF handler runs
    // on its own IST stack... or the CPU escalates to #DF: either way, a
    // report naming the guard page.
    exception("selftest_stack_overflow", "stack-overflow", &["guard"]);
}

#[test]
fn selftest_write_text() {
    // Error code 0x3: present page, write access.
    exception("selftest_write_text", "write-text", &["#PF", "error=0x3"]);
}

#[test]
fn selftest_exec_data() {
    // Error code bit 4: instruction fetch from a no-execute page.
    exception("selftest_exec_data", "exec-data", &["#PF", "error=0x11"]);
}
