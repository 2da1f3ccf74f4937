//! Guest timers and block-with-deadline on the host: the timer list as
//! the run loop uses it, with CPUs as threads. A sleep must never end
//! before its deadline (issue 11: a `ticker` created at run time beside a
//! busy domain printed ticks far too often).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::boxed::Box;
use std::format;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pvabi::{EVENT_TIMER, HC_SCHED_BLOCK, HC_SET_TIMER, HC_SHUTDOWN, HC_YIELD, SHUTDOWN_POWEROFF};

use crate::platform::{P, Platform};
use crate::testing::rt::{Machine, domain};
use crate::virt::VmExit;
use crate::virt::fake::{Guest, Program};

/// What a ticker saw.
#[derive(Default)]
struct Seen {
    ticks: AtomicU64,
    /// Sleeps that ended before their deadline, and by how much at most.
    early: AtomicU64,
    worst_early_ns: AtomicU64,
}

/// The guest clock: the TSC through the same scale the hypervisor uses
/// (the tests set TSC0 = 0 at 1 GHz, so it is the TSC itself).
fn now() -> u64 {
    crate::sched::clock::now_ns()
}

/// `pvabi::guest::time::sleep_until` as a program: block with the
/// deadline; RAX 0 means "the deadline passed"; events before it go round
/// again. `count` sleeps of `every` ns, then exit.
fn sleeper(seen: Arc<Seen>, every: u64, count: u64) -> Program {
    let mut deadline = 0u64;
    Box::new(move |g: &mut Guest<'_>| {
        if deadline != 0 {
            let events = g.rax();
            if events != 0 && now() < deadline {
                return g.hypercall(HC_SCHED_BLOCK, &[deadline]);
            }
            let t = now();
            if t < deadline {
                seen.early.fetch_add(1, Ordering::Relaxed);
                seen.worst_early_ns
                    .fetch_max(deadline - t, Ordering::Relaxed);
            }
            if seen.ticks.fetch_add(1, Ordering::Relaxed) + 1 == count {
                return g.hypercall(HC_SHUTDOWN, &[SHUTDOWN_POWEROFF, 0]);
            }
        }
        deadline = now() + every;
        g.hypercall(HC_SCHED_BLOCK, &[deadline])
    })
}

/// A guest timer (`HC_SET_TIMER`) and a block with no deadline: the
/// vCPU wakes with `EVENT_TIMER`, never before the timer's time.
fn timer_user(seen: Arc<Seen>, every: u64, count: u64) -> Program {
    let mut at = 0u64;
    let mut armed = false;
    Box::new(move |g: &mut Guest<'_>| {
        if at != 0 && !armed {
            // After HC_SET_TIMER: block until an event.
            armed = true;
            return g.hypercall(HC_SCHED_BLOCK, &[0]);
        }
        if armed {
            let events = g.rax();
            if events & EVENT_TIMER == 0 {
                return g.hypercall(HC_SCHED_BLOCK, &[0]);
            }
            let t = now();
            if t < at {
                seen.early.fetch_add(1, Ordering::Relaxed);
                seen.worst_early_ns.fetch_max(at - t, Ordering::Relaxed);
            }
            if seen.ticks.fetch_add(1, Ordering::Relaxed) + 1 == count {
                return g.hypercall(HC_SHUTDOWN, &[SHUTDOWN_POWEROFF, 0]);
            }
        }
        armed = false;
        at = now() + every;
        g.hypercall(HC_SET_TIMER, &[at])
    })
}

/// A busy domain: computes, and yields now and then (what dom0 does while
/// it serves consoles).
fn busy() -> Program {
    let mut n = 0u64;
    Box::new(move |g: &mut Guest<'_>| {
        n += 1;
        if n.is_multiple_of(3) {
            g.hypercall(HC_YIELD, &[])
        } else {
            g.spin()
        }
    })
}

fn check(seen: &Seen, what: &str, count: u64) {
    assert_eq!(seen.ticks.load(Ordering::Relaxed), count, "{what}: ticks");
    assert_eq!(
        seen.early.load(Ordering::Relaxed),
        0,
        "{what}: sleeps ended early (worst by {} ns)",
        seen.worst_early_ns.load(Ordering::Relaxed)
    );
}

/// Tickers created (paused, then unpaused, as dom0 does) while two busy
/// domains keep both CPUs occupied: every sleep lasts its whole length.
#[test]
fn a_ticker_created_beside_busy_domains_never_wakes_early() {
    let m = Machine::start(2);
    let busy_ids = [
        m.create("busy0", 1, false, |_| busy()),
        m.create("busy1", 1, false, |_| busy()),
    ];
    // Let them occupy the CPUs first.
    m.wait("the busy domains to run", || {
        busy_ids
            .iter()
            .all(|&id| domain(id).is_some_and(|d| d.exits.load(Ordering::Relaxed) > 20))
    });
    let (every, count) = (2_000_000, 40);
    let sleeps = Arc::new(Seen::default());
    let timers = Arc::new(Seen::default());
    let (s, t) = (sleeps.clone(), timers.clone());
    let a = m.create("ticker", 1, true, move |_| sleeper(s.clone(), every, count));
    let b = m.create("timer", 1, true, move |_| {
        timer_user(t.clone(), every, count)
    });
    let t0 = now();
    for id in [a, b] {
        crate::sched::live::unpause(&domain(id).unwrap());
    }
    m.wait("the tickers to finish", || {
        domain(a).is_none() && domain(b).is_none()
    });
    let took = now() - t0;
    check(&sleeps, "block with a deadline", count);
    check(&timers, "guest timer", count);
    assert!(
        took >= every * count,
        "{count} sleeps of {every} ns took {took} ns"
    );
    for id in busy_ids {
        domain(id).unwrap().finish("destroyed", -1, None);
    }
    m.wait_all_gone();
    let out = m.stop();
    assert!(!out.contains("[WARN]") && !out.contains("[ERROR]"), "{out}");
    for (id, name) in [(a, "ticker"), (b, "timer")] {
        assert!(
            out.contains(&format!("id={id} name={name} result=exited code=0")),
            "{out}"
        );
    }
}

/// A deadline already passed returns at once with 0, and a timer set in
/// the past raises `EVENT_TIMER` at once: neither blocks.
#[test]
fn a_deadline_in_the_past_returns_at_once() {
    let m = Machine::start(1);
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let id = m.create("past", 1, false, move |_| {
        let s = s.clone();
        let mut step = 0;
        Box::new(move |g: &mut Guest<'_>| -> VmExit {
            step += 1;
            match step {
                1 => g.hypercall(HC_SCHED_BLOCK, &[1]),
                2 => {
                    assert_eq!(g.rax(), 0, "a passed deadline: 0 at once");
                    g.hypercall(HC_SET_TIMER, &[1])
                }
                3 => g.hypercall(HC_SCHED_BLOCK, &[0]),
                _ => {
                    assert_eq!(g.rax() & EVENT_TIMER, EVENT_TIMER, "the timer fired");
                    s.ticks.fetch_add(1, Ordering::Relaxed);
                    g.hypercall(HC_SHUTDOWN, &[SHUTDOWN_POWEROFF, 0])
                }
            }
        })
    });
    m.wait_all_gone();
    assert_eq!(seen.ticks.load(Ordering::Relaxed), 1);
    let out = m.stop();
    assert!(
        out.contains(&format!("id={id} name=past result=exited code=0")),
        "{out}"
    );
    let _ = P::tsc();
}
