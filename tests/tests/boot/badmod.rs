//! Bad boot modules (issue 12, defect 7): an ELF image that fails the
//! checks is reported and skipped, and the other modules still start as
//! domains (as a module whose segment does not fit is); a fatal error
//! found before the command line is parsed (more than 16 modules) still
//! ends the run through `exit=` instead of halting until the deadline.

use boot_tests::artifacts::{self, guest_module, payloads};
use boot_tests::bochs::{self, Pc};
use boot_tests::guest_run::GuestRun;
use boot_tests::qemu::{BIOS_TIMEOUT_S, PVH_TIMEOUT_S, iso_vm, pvh_vm, run};
use boot_tests::{Backend, Outcome};
use xtask::iso::Module;
use xtask::runner::Ended;

use crate::TEST_CMDLINE;

/// The line that reports the truncated module (its size named, as the
/// ELF checks word it) and says it is skipped.
fn assert_skipped(o: &Outcome, index: usize, name: &str) {
    let p = payloads();
    let line = o.expect_line(&format!(
        "module {index} ({name}) is not a usable ELF image"
    ));
    assert!(
        line.contains(&format!("{:#x}", p.truncated_len)) && line.contains("skipped"),
        "`{line}` does not name the image size {:#x} and say it is skipped",
        p.truncated_len
    );
    assert!(
        o.fatal_lines().is_empty(),
        "{}: a bad module must not stop the boot",
        o.test
    );
}

/// The `hello` guest cut in the middle of its first loadable segment, as
/// the only module: reported, skipped, the boot completes and ends well.
/// (Before: `FATAL: module 0 ... is not a usable ELF image`.)
#[test]
fn badmod_truncated_alone() {
    let p = payloads();
    let vm = pvh_vm(1, "128M", TEST_CMDLINE, Some(&p.truncated));
    let o = run("badmod_truncated_alone", vm, PVH_TIMEOUT_S);
    o.assert_qemu_success("pvh");
    assert_skipped(&o, 0, "module0");
    assert!(
        o.line("domain-end:").is_none(),
        "a truncated image must never run"
    );
}

/// A truncated image between two good guests: both good ones run and
/// exit 0 on either backend.
fn truncated_between(b: Backend) {
    let p = payloads();
    let truncated = Module::new(&p.truncated, "").unwrap_or_else(|e| panic!("{e}"));
    let o = GuestRun {
        name: "badmod_between",
        options: "",
        modules: vec![
            guest_module("hello", "first", "a=1"),
            truncated,
            guest_module("hello", "third", "c=3"),
        ],
        cpus: 1,
        memory_mib: 128,
        stop: None,
    }
    .boot(b);
    assert_skipped(&o, 1, "hello-truncated.elf");
    o.assert_domain("first", "exited", 0);
    o.assert_domain("third", "exited", 0);
    o.assert_all_ended(2, 2);
}

#[test]
fn badmod_between_qemu() {
    truncated_between(Backend::Svm);
}

#[test]
fn badmod_between_bochs() {
    truncated_between(Backend::Vmx);
}

/// 17 modules: the boot information is rejected before the command line
/// is parsed, but its `exit=` is still honoured.
fn too_many(exit: &str) -> std::path::PathBuf {
    let p = payloads();
    let modules: Vec<Module> = (0..17)
        .map(|i| {
            Module::named(&p.guests, format!("m{i}.toml"), "").unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    artifacts::shared_iso(
        &format!("badmod-too-many-{exit}.iso"),
        &format!("exit={exit} shutdown loglevel=info"),
        &modules,
    )
}

/// Under QEMU the run ends with the failure status at once. (Before: the
/// hypervisor halted and the run hit its deadline.)
#[test]
fn badmod_too_many_qemu() {
    let iso = too_many("qemu");
    let o = run(
        "badmod_too_many_qemu",
        iso_vm(&iso, 1, "128M"),
        BIOS_TIMEOUT_S,
    );
    o.assert_fatal(&["boot information rejected", "more than 16 boot modules"]);
}

/// Under Bochs the hypervisor writes Bochs' shutdown port: the run ends
/// by itself, not at the deadline.
#[test]
fn badmod_too_many_bochs() {
    let iso = too_many("bochs");
    let o = bochs::run_iso(
        "badmod_too_many_bochs",
        &Pc::new("corei7_haswell_4770", 1, 128),
        &iso,
        None,
        bochs::TIMEOUT_S,
    );
    assert!(
        !matches!(o.ended, Ended::TimedOut),
        "{}: Bochs ran into the deadline: exit=bochs was not honoured",
        o.test
    );
    let fatal = o.fatal_lines();
    assert_eq!(fatal.len(), 1, "{}: {fatal:?}", o.test);
    assert!(
        fatal[0].contains("more than 16 boot modules"),
        "`{}`",
        fatal[0]
    );
}
