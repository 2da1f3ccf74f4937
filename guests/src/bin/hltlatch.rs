//! HLT after the one-shot timer already fired, with no `VIRQ_TIMER` port
//! (issue 13): vCPU 0 registers an event-channel control area and takes
//! upcalls (as a Linux vCPU does) but binds no timer port, then
//! 1. sets its timer in the past (`HC_SET_TIMER` raises it at once) and
//!    halts: the HLT returns at once;
//! 2. sets its timer 1 ms ahead, stays busy for 30 ms (the timer fires
//!    while it runs, at the CPU's next tick, at most 10 ms away) and
//!    halts: the HLT returns at once;
//! 3. sets its timer 20 ms ahead and halts: woken by the timer firing
//!    during the halt, not before the deadline (as before).
//!
//! Before the fix the HLT of 1 and 2 blocked for good: the timer was
//! spent, no upcall was pending, and only a timer firing *during* a halt
//! woke it (the guest never printed its last line; the boot test timed
//! out). Every check prints `hltlatch: <name> ok` or `... FAILED`; the last
//! line is `hltlatch: <N> checks, <F> failed`, exit code 0 only when F is 0.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::Checks;
use pvabi::StartInfo;
use pvabi::guest::{sched, time, upcall};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("hltlatch");

/// A halt that should end at once took less than this (a blocked one ends
/// only when something else wakes it: never, here).
const AT_ONCE_NS: u64 = 1_000_000_000;

/// Halts once; returns the ns it took.
fn timed_halt() -> u64 {
    let t0 = time::now_ns();
    upcall::halt();
    time::now_ns().saturating_sub(t0)
}

fn main(_si: &StartInfo) -> i32 {
    CHECKS.check("init_control", upcall::init(0xe0).map_or(-1, |_| 0), 0);
    CHECKS.check(
        "enable vcpu0",
        upcall::enable_this_vcpu(0).map_or(-1, |_| 0),
        0,
    );

    // 1. Set in the past: raised inside the hypercall.
    let _ = sched::set_timer(Some(1));
    let took = timed_halt();
    pvabi::println!("hltlatch: past: halt took {} us", took / 1000);
    CHECKS.check("past: halt ends at once", i64::from(took < AT_ONCE_NS), 1);

    // 2. Fired while the vCPU ran.
    let t0 = time::now_ns();
    let _ = sched::set_timer(Some(t0 + 1_000_000));
    while time::now_ns() < t0 + 30_000_000 {
        core::hint::spin_loop();
    }
    let took = timed_halt();
    pvabi::println!(
        "hltlatch: fired while running: halt took {} us",
        took / 1000
    );
    CHECKS.check(
        "fired while running: halt ends at once",
        i64::from(took < AT_ONCE_NS),
        1,
    );

    // 3. Fires during the halt: woken then, not before.
    let deadline = time::now_ns() + 20_000_000;
    let _ = sched::set_timer(Some(deadline));
    upcall::halt();
    let woke = time::now_ns();
    CHECKS.check(
        "during the halt: not before its deadline",
        i64::from(woke >= deadline),
        1,
    );
    let (n, f) = CHECKS.counts();
    pvabi::println!("hltlatch: {n} checks, {f} failed");
    i32::from(f != 0)
}
