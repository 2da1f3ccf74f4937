//! Lifecycle control (pvabi 2.1, 48-50) on both backends: AMD-V
//! under QEMU TCG and VT-x under Bochs (`corei7_haswell_4770`), 2 CPUs,
//! GRUB ISO, hypervisor option `dom0`, without dom0's toolstack (the
//! `dom0_qemu_lifecycle` test drives the same calls through `hvctl`, which
//! needs QEMU's COM2 socket).
//!
//! | test | asserts |
//! |---|---|
//! | `lifectl_{qemu,bochs}` | `lifectl` (module 0, privileged) printed `<N> checks, 0 failed` with N >= [`MIN_CHECKS`] (set-sched read back and refused out of range, requests refused for a bad reason, itself, no domain; a poweroff request ended `polite` with code 0, a reboot request ended `rebooter` with `DOMAIN_FLAG_REBOOTED`) and exited 0; `polite` printed that it saw the poweroff request and ended `exited` 0; `rebooter` saw the reboot request and ended `rebooted` 0 (`SHUTDOWN_REBOOT`); the hypervisor logged the new weight and cap |

use boot_tests::Backend;
use boot_tests::artifacts::guest_module;
use boot_tests::domains::ReportOnPanic;
use boot_tests::guest_run::GuestRun;

/// lifectl makes 20 checks; fewer means some were skipped.
const MIN_CHECKS: u64 = 20;

fn lifectl(b: Backend) {
    let o = GuestRun {
        name: "lifectl",
        options: "dom0",
        modules: vec![
            guest_module("lifectl", "lifectl", ""),
            guest_module("ticker", "ticker", ""),
        ],
        cpus: 2,
        memory_mib: 128,
        stop: None,
    }
    .boot(b);
    let _report = ReportOnPanic(&o);
    let ctl = o.assert_domain("lifectl", "exited", 0);
    o.assert_checks_passed(&ctl, "lifectl", MIN_CHECKS);
    let polite = o.assert_domain("polite", "exited", 0);
    o.assert_printed(&polite, "ticker: poweroff requested after ");
    let rebooter = o.assert_domain("rebooter", "rebooted", 0);
    o.assert_printed(&rebooter, "ticker: reboot requested after ");
    o.expect_line(&format!("domain {} (polite): weight=512 cap=30", polite.id));
    // The reboot counts as a clean end (code 0), like the power-offs.
    o.expect_line("domains: all 3 ended (3 exited cleanly, 0 did not)");
}

#[test]
fn lifectl_qemu() {
    lifectl(Backend::Svm);
}

#[test]
fn lifectl_bochs() {
    lifectl(Backend::Vmx);
}
