//! HLT after the guest's one-shot timer already fired, with no
//! `VIRQ_TIMER` port (issue 13, `hypervisor/src/sched/halt.rs`), on both
//! backends: one run per backend (GRUB ISO, 2 CPUs, 128 MiB) of the
//! `hltlatch` guest (`guests/src/bin/hltlatch.rs`).
//!
//! | test | checks |
//! |---|---|
//! | `hltlatch_amdv_qemu`, `hltlatch_vtx_bochs` | hltlatch: a timer set in the past, then HLT: the HLT returns at once; a timer that fired while the vCPU ran, then HLT: the same; a timer that fires during the HLT wakes it, not before its deadline: `<N> checks, 0 failed`, exited 0 (before the fix the first HLT never returned and the run timed out) |

use boot_tests::artifacts::guest_module;
use boot_tests::domains::ReportOnPanic;
use boot_tests::guest_run::{GuestRun, Shared};
use boot_tests::{Backend, Outcome};

/// Checks the guest makes.
const CHECKS: u64 = 5;

fn the_run(b: Backend) -> &'static Outcome {
    static RUNS: Shared = Shared::new();
    RUNS.get(b, || {
        GuestRun {
            name: "hltlatch",
            options: "",
            modules: vec![guest_module("hltlatch", "hltlatch", "")],
            cpus: 2,
            memory_mib: 128,
            stop: None,
        }
        .boot(b)
    })
}

fn latched(b: Backend) {
    let o = the_run(b);
    let _report = ReportOnPanic(o);
    let d = o.assert_domain("hltlatch", "exited", 0);
    let n = o.assert_checks_passed(&d, "hltlatch", CHECKS);
    println!("{}: hltlatch made {n} checks, all passed", o.test);
}

#[test]
fn hltlatch_amdv_qemu() {
    latched(Backend::Svm);
}

#[test]
fn hltlatch_vtx_bochs() {
    latched(Backend::Vmx);
}
