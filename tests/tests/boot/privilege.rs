//! Issue 12, defects 3, 4 and 6 (without XSETBV), on both backends: AMD-V
//! under QEMU TCG (`-cpu max`) and VT-x under Bochs (`corei7_haswell_4770`).
//! The guests (`guests/src/bin/`) check themselves and print one line per
//! check; these tests judge their output and how their domains ended.
//!
//! Two runs per backend:
//! - 1 CPU: `userhc`, `crfault`, and three `dbgregs` (seeds 1-3, the third
//!   on two vCPUs) sharing the CPU;
//! - 2 CPUs: four `dbgregs` (seeds 4-7, each on two vCPUs) at once.
//!
//! | test | asserts |
//! |---|---|
//! | `privilege_*_user_mode_hypercalls` | `userhc` ran in ring 3 (CS.RPL 3), where a console write, a memory release and a shutdown each returned `EPERM`; its page and page count were unchanged; back in ring 0 the same calls worked; it exited 0; the ring-3 console line never appeared |
//! | `privilege_*_cr_writes_and_instructions` | `crfault`: CR4 with VMXE/SMXE/reserved bits and CR0 with a high bit, NW without CD or PG clear each raised #GP and changed nothing; valid writes (CR4.PGE, CR0.TS, CLTS) read back; INVLPGA raised #UD, RDPMC #GP; RDTSCP/RDPID gave 0 on vCPU 0 and 1 on vCPU 1 where CPUID offers them (else #UD); exited 0 (not killed by a failed VM entry) |
//! | `privilege_*_debug_registers_one_cpu`, `..._two_cpus` | every `dbgregs` read back its own DR0-DR3, DR6 bits and DR7 after every round of yields and preemptions (with other domains arming other values, at the hypervisor's addresses), took no #DB, and exited 0; the hypervisor ended cleanly |

use boot_tests::artifacts::guest_module;
use boot_tests::domains::ReportOnPanic;
use boot_tests::guest_run::{GuestRun, Shared};
use boot_tests::{Backend, Outcome};

/// Rounds of arm / give away / read back per `dbgregs` vCPU.
const ROUNDS: u64 = 40;

fn one_cpu(b: Backend) -> &'static Outcome {
    static RUNS: Shared = Shared::new();
    RUNS.get(b, || {
        GuestRun {
            name: "privilege-1cpu",
            options: "",
            modules: vec![
                guest_module("userhc", "userhc", ""),
                guest_module("crfault", "crfault", ""),
                guest_module("dbgregs", "dbgregs-1", &format!("seed=1 rounds={ROUNDS}")),
                guest_module("dbgregs", "dbgregs-2", &format!("seed=2 rounds={ROUNDS}")),
                guest_module(
                    "dbgregs",
                    "dbgregs-3",
                    &format!("seed=3 rounds={ROUNDS} two"),
                ),
            ],
            cpus: 1,
            memory_mib: 128,
            stop: None,
        }
        .boot(b)
    })
}

fn two_cpus(b: Backend) -> &'static Outcome {
    static RUNS: Shared = Shared::new();
    RUNS.get(b, || {
        GuestRun {
            name: "privilege-2cpu",
            options: "",
            modules: (4..8)
                .map(|s| {
                    guest_module(
                        "dbgregs",
                        &format!("dbgregs-{s}"),
                        &format!("seed={s} rounds={ROUNDS} two"),
                    )
                })
                .collect(),
            cpus: 2,
            memory_mib: 128,
            stop: None,
        }
        .boot(b)
    })
}

fn user_mode_hypercalls(b: Backend) {
    let o = one_cpu(b);
    let _report = ReportOnPanic(o);
    let d = o.assert_domain("userhc", "exited", 0);
    o.assert_checks_passed(&d, "userhc", 8);
    assert!(
        !o.lines.iter().any(|l| l.contains("PRINTED FROM RING 3")),
        "{}: a console write from ring 3 was printed",
        o.test
    );
}

fn cr_writes_and_instructions(b: Backend) {
    let o = one_cpu(b);
    let _report = ReportOnPanic(o);
    let d = o.assert_domain("crfault", "exited", 0);
    o.assert_checks_passed(&d, "crfault", 20);
}

fn debug_registers(o: &Outcome, seeds: std::ops::Range<u64>) {
    let _report = ReportOnPanic(o);
    for s in seeds {
        let name = format!("dbgregs-{s}");
        let d = o.assert_domain(&name, "exited", 0);
        o.assert_checks_passed(&d, "dbgregs", 2);
    }
}

#[test]
fn privilege_qemu_user_mode_hypercalls() {
    user_mode_hypercalls(Backend::Svm);
}

#[test]
fn privilege_bochs_user_mode_hypercalls() {
    user_mode_hypercalls(Backend::Vmx);
}

#[test]
fn privilege_qemu_cr_writes_and_instructions() {
    cr_writes_and_instructions(Backend::Svm);
}

#[test]
fn privilege_bochs_cr_writes_and_instructions() {
    cr_writes_and_instructions(Backend::Vmx);
}

#[test]
fn privilege_qemu_debug_registers_one_cpu() {
    debug_registers(one_cpu(Backend::Svm), 1..4);
}

#[test]
fn privilege_bochs_debug_registers_one_cpu() {
    debug_registers(one_cpu(Backend::Vmx), 1..4);
}

#[test]
fn privilege_qemu_debug_registers_two_cpus() {
    debug_registers(two_cpus(Backend::Svm), 4..8);
}

#[test]
fn privilege_bochs_debug_registers_two_cpus() {
    debug_registers(two_cpus(Backend::Vmx), 4..8);
}
