//! HLT with interrupts on blocks until an event (issue 13), on both
//! backends: one run per backend (GRUB ISO, 2 CPUs, 128 MiB) of the
//! `hltwait` guest (2 vCPUs; `guests/src/bin/hltwait.rs`).
//!
//! | test | checks |
//! |---|---|
//! | `hlt_amdv_qemu_blocks`, `hlt_vtx_bochs_blocks` | hltwait: a halt with its timer armed wakes once, for the timer upcall, not before the deadline; a halt with no timer wakes once, for vCPU 1's ipi, not before it was sent and with no timer upcall; idle 200 ms on a 10 ms timer takes about one HLT per tick: `<N> checks, 0 failed`, exited 0; the whole domain took fewer than [`MAX_EXITS`] exits (an HLT storm costs thousands) |

use boot_tests::artifacts::guest_module;
use boot_tests::domains::ReportOnPanic;
use boot_tests::guest_run::{GuestRun, Shared};
use boot_tests::{Backend, Outcome};

/// Fewest checks the guest must make.
const MIN_CHECKS: u64 = 13;
/// Most exits the domain may take: its hypercalls and console lines are
/// about 150, its 20-odd timer wake-ups a few each. With HLT answered by a
/// yield each halt returned at once: thousands of exits in the 200 ms
/// idle span alone.
const MAX_EXITS: u64 = 1_000;

fn the_run(b: Backend) -> &'static Outcome {
    static RUNS: Shared = Shared::new();
    RUNS.get(b, || {
        GuestRun {
            name: "hlt",
            options: "",
            modules: vec![guest_module("hltwait", "hltwait", "")],
            cpus: 2,
            memory_mib: 128,
            stop: None,
        }
        .boot(b)
    })
}

fn blocks(b: Backend) {
    let o = the_run(b);
    let _report = ReportOnPanic(o);
    let d = o.assert_domain("hltwait", "exited", 0);
    let n = o.assert_checks_passed(&d, "hltwait", MIN_CHECKS);
    assert!(
        d.exits < MAX_EXITS,
        "{}: hltwait took {} exits (at most {MAX_EXITS} expected): HLT does not block",
        o.test,
        d.exits
    );
    println!(
        "{}: hltwait made {n} checks, all passed; {} exits",
        o.test, d.exits
    );
}

#[test]
fn hlt_amdv_qemu_blocks() {
    blocks(Backend::Svm);
}

#[test]
fn hlt_vtx_bochs_blocks() {
    blocks(Backend::Vmx);
}
