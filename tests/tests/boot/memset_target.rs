//! `target` in a domain's configuration (issue 15, config/target.rs): the
//! domain starts with that memory target, under QEMU (AMD-V) and Bochs
//! (VT-x).
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `memset_{qemu,bochs}_target` | GRUB ISO, 2 CPUs, 128 MiB; dom0's configuration: `balloond` (`memory = 32`, `target = "16M"`) and `ignorer` (ticker, `memory = 32`, `target = 16`); run until balloond is at its target and the ignorer ticked | the hypervisor logged both targets (4096 of 8192 pages) before either domain printed; balloond started holding 8192 pages with target 4096 and, without any `mem-set`, ballooned to `at target 4096`; ignorer (no balloon) ran on |
//!
//! The refusals (`target` over `memory`, under 4 MiB, not whole pages)
//! are host tests in `dom0/toolstack/src/config/target.rs`.

use boot_tests::artifacts::{guest_module, shared_iso};
use boot_tests::bochs::{self, Pc};
use boot_tests::domains::ReportOnPanic;
use boot_tests::mgmt::config_module;
use boot_tests::qemu::{BIOS_TIMEOUT_S, iso_vm, run_until};
use boot_tests::{Backend, Outcome};

const CONFIG: &str = "[[domain]]\nname = \"balloond\"\nimage = \"balloond\"\nmemory = 32\n\
target = \"16M\"\n\n[[domain]]\nname = \"ignorer\"\nimage = \"ticker\"\nmemory = 32\n\
target = 16\ncmdline = \"every_ms=20\"\n";
const DONE: &str = "[balloond] balloond: at target 4096";
/// The ignorer's first tick (it may come before or after `DONE`).
const TICK: &str = "[ignorer] ticker: tick";
/// The run ends once both were printed, in either order: stopping at
/// `DONE` alone raced the ticker's first tick (a fresh run under heavy
/// load stopped 4 s in, before it).
const STOP: &[&str] = &[DONE, "\n[ignorer] ticker: tick"];

fn boot(test: &str, b: Backend) -> Outcome {
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("ticker", "ticker", ""),
        guest_module("balloond", "balloond", ""),
        config_module(test, CONFIG),
    ];
    let iso = shared_iso(
        &format!("{test}.iso"),
        &format!("{} dom0 loglevel=info", b.exit()),
        &modules,
    );
    match b {
        Backend::Svm => {
            let mut vm = iso_vm(&iso, 2, "128M");
            vm.cpu = "max".into();
            run_until(test, vm, BIOS_TIMEOUT_S, Some(STOP))
        }
        Backend::Vmx => bochs::run_iso(
            test,
            &Pc::new("corei7_haswell_4770", 2, 128),
            &iso,
            Some(STOP),
            bochs::TIMEOUT_S,
        ),
    }
}

fn target(b: Backend) {
    let test = format!("memset_{}_target", b.suffix());
    let o = boot(&test, b);
    let _report = ReportOnPanic(&o);
    assert_eq!(
        o.ended,
        xtask::runner::Ended::Stopped,
        "{test}: balloond never reached its configured target"
    );
    assert!(
        o.fatal_lines().is_empty() && o.panic_lines().is_empty(),
        "{test}: died"
    );
    // Set by dom0 right after each was built, before it first ran.
    o.assert_in_order(&[
        "(balloond): memory target 4096 pages (16384 KiB) of 8192",
        "(ignorer): memory target 4096 pages (16384 KiB) of 8192",
        "[balloond] balloond: started",
    ]);
    let started = o.expect_line("[balloond] balloond: started");
    assert!(
        started.contains("holds 8192 of 8192 pages, target 4096"),
        "{test}: balloond did not start with the configured target: {started}"
    );
    // No mem-set was ever sent: the configuration alone brought it there.
    o.expect_line(DONE);
    assert!(
        o.line("mem_set").is_none(),
        "{test}: something sent mem_set"
    );
    o.expect_line(TICK);
}

#[test]
fn memset_qemu_target() {
    target(Backend::Svm);
}

#[test]
fn memset_bochs_target() {
    target(Backend::Vmx);
}
