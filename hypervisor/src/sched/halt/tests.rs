//! HLT against a guest timer that is already due (issue 13): the run loop
//! on the host (`testing/rt.rs`), a scripted guest with an event-channel
//! control area, as a Linux vCPU has one.
//!
//! A real CPU's LAPIC timer that expires while interrupts are off stays
//! pending and ends the next `sti; hlt` at once. A Kestrel vCPU's guest
//! timer that fired while the vCPU was not halted (set in the past, so
//! raised inside `HC_SET_TIMER`; or fired by another CPU's timer pass
//! while it ran) must likewise end its next HLT, whether or not a
//! `VIRQ_TIMER` port carries it as an upcall. Before the fix, a vCPU with
//! a control area and no timer port halted for good in both cases: its
//! timer was spent, no upcall was pending, and only a timer firing
//! *during* the halt woke it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::boxed::Box;
use std::format;
use std::string::String;

use pvabi::{
    HC_EVTCHN_BIND_VIRQ, HC_EVTCHN_INIT_CONTROL, HC_EVTCHN_UNMASK, HC_SET_TIMER, HC_SHUTDOWN,
    HC_YIELD, SHUTDOWN_POWEROFF, VIRQ_TIMER,
};

use crate::sched::clock::now_ns;
use crate::testing::rt::Machine;
use crate::virt::VmExit;
use crate::virt::fake::Guest;

/// The control area (5 pages, clear of the image, stack and tables).
const AREA: u64 = 0x38_0000;
const VECTOR: u64 = 0x40;

/// How the guest's timer is already due when it halts.
#[derive(Clone, Copy)]
enum Due {
    /// `HC_SET_TIMER` with a deadline that has passed: raised at once.
    SetInThePast,
    /// A deadline 1 ms ahead, then yields until 5 ms have passed: another
    /// turn of the loop fires it while the vCPU is not halted.
    FiredWhileRunning,
}

/// A guest that registers a control area, binds `VIRQ_TIMER` if `bind`,
/// makes its timer due as `due` says, then halts with interrupts on; it
/// exits with code 0 when the HLT comes back (on its own or through the
/// upcall), so a test that never sees the exit found a vCPU that halted for
/// good.
fn halter(bind: bool, due: Due) -> Box<dyn FnMut(&mut Guest<'_>) -> VmExit + Send> {
    let mut step = 0;
    let mut until = 0;
    Box::new(move |g: &mut Guest<'_>| {
        step += 1;
        match step {
            1 => g.hypercall(HC_EVTCHN_INIT_CONTROL, &[AREA, VECTOR]),
            2 => {
                assert_eq!(g.status(), 0, "init control");
                if bind {
                    g.hypercall(HC_EVTCHN_BIND_VIRQ, &[u64::from(VIRQ_TIMER), 0])
                } else {
                    g.hypercall(HC_YIELD, &[])
                }
            }
            3 => {
                if bind {
                    // Ports start unmasked: nothing to do but check.
                    assert!(g.status() > 0, "bind virq: {}", g.status());
                    let port = g.rax();
                    return g.hypercall(HC_EVTCHN_UNMASK, &[port]);
                }
                g.hypercall(HC_YIELD, &[])
            }
            4 => match due {
                Due::SetInThePast => g.hypercall(HC_SET_TIMER, &[1]),
                Due::FiredWhileRunning => {
                    let now = now_ns();
                    until = now + 5_000_000;
                    g.hypercall(HC_SET_TIMER, &[now + 1_000_000])
                }
            },
            _ if now_ns() < until => {
                step = 4;
                g.hypercall(HC_YIELD, &[])
            }
            5 => VmExit::Hlt { len: 1 },
            _ => g.hypercall(HC_SHUTDOWN, &[SHUTDOWN_POWEROFF, 0]),
        }
    })
}

fn run(bind: bool, due: Due) -> String {
    let m = Machine::start(1);
    let id = m.create("halter", 1, false, move |_| halter(bind, due));
    m.wait_all_gone();
    let out = m.stop();
    assert!(
        out.contains(&format!("id={id} name=halter result=exited code=0")),
        "{out}"
    );
    out
}

#[test]
fn a_timer_set_in_the_past_ends_the_next_halt_without_a_timer_port() {
    run(false, Due::SetInThePast);
}

#[test]
fn a_timer_set_in_the_past_ends_the_next_halt_through_its_timer_port() {
    run(true, Due::SetInThePast);
}

#[test]
fn a_timer_fired_while_running_ends_the_next_halt_without_a_timer_port() {
    run(false, Due::FiredWhileRunning);
}

#[test]
fn a_timer_fired_while_running_ends_the_next_halt_through_its_timer_port() {
    run(true, Due::FiredWhileRunning);
}
