//! A remote wake-up against what its target CPU does meanwhile (issue 11:
//! the race per-CPU run-queue locks must keep). Three CPUs run the real
//! pick and run code (`run::run_chain`): CPU 0 runs W, whose guest
//! blocks; CPU 1 runs S, whose guest sends an event to V (blocked, last
//! run on CPU 0, so its wake targets CPU 0, or an idle CPU while CPU 0
//! is busy); CPU 2 has nothing of its own and steals whatever waits
//! elsewhere (W, S or the woken V). After each interleaving the policy's
//! invariants hold, no vCPU is runnable outside every queue or queued
//! while blocked, and V's block returns the event when V runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::vec;

use pvabi::EVENT_CHANNEL;

use super::{PORT, SEEN, bind, blocker, create, search_upto, sender, three_threads};
use crate::domain::lifecycle::{DOMAINS, Run, VcpuEntry};
use crate::platform::host;
use crate::platform::{P, Platform};
use crate::sched::clock::now_ns;
use crate::sched::live::{self as policy, queued_on};
use crate::testing::interleave::Body;
use crate::virt::fake;

struct World {
    v: Arc<VcpuEntry>,
    w: Arc<VcpuEntry>,
    s: Arc<VcpuEntry>,
    free: u64,
}

/// What one turn of `cpu`'s loop does when it finds work (its pick, a
/// steal included, and the run), without the idle CPU's halt: a halt
/// would wait for an interrupt the frozen clock never brings.
fn pick_and_run(cpu: usize) {
    host::become_cpu(cpu);
    policy::clear_resched(cpu);
    let now = now_ns();
    if let policy::Pick::Run(e, slice_ns) = policy::pick(cpu, now) {
        crate::run::run_chain(cpu, &e, now, slice_ns);
    }
}

fn on(cpu: usize) -> Body {
    Box::new(move || pick_and_run(cpu))
}

/// V blocked after running on CPU 0; W queued on CPU 0, S on CPU 1,
/// bound to V.
fn setup() -> World {
    fake::reset();
    SEEN.store(0, Ordering::Release);
    crate::sched::clock::init_time(0, P::tsc_hz());
    crate::sched::live::init(3);
    for c in 0..3 {
        policy::clear_resched(c);
    }
    let free = P::free_frame_count();
    host::become_cpu(0);
    let v = create("blocker", || blocker(0));
    assert_eq!(queued_on(&v), Some(0), "V placed on CPU 0");
    pick_and_run(0);
    assert!(matches!(v.st.lock().run, Run::Blocked { .. }), "V blocked");
    let w = create("blocks", || blocker(0));
    let s = create("sender", sender);
    assert_eq!(
        (queued_on(&w), queued_on(&s)),
        (Some(0), Some(1)),
        "placement of W and S"
    );
    PORT.store(bind(&v, &s), Ordering::Release);
    World { v, w, s, free }
}

fn teardown(w: World) {
    for d in [w.v.domain.clone(), w.w.domain.clone(), w.s.domain.clone()] {
        d.finish("destroyed", -1, None);
    }
    drop((w.v, w.w, w.s));
    assert_eq!(crate::sched::timers::next_due(), u64::MAX, "timers left");
    assert!(DOMAINS.lock().is_empty(), "vCPUs left after the execution");
    assert_eq!(P::free_frame_count(), w.free, "frames left");
}

/// Runnable exactly when in a run queue (nothing runs between turns).
fn placed_as_its_state(name: &str, v: &VcpuEntry, picks: &[usize]) {
    let run = v.st.lock().run;
    let queued = queued_on(v);
    match run {
        Run::Runnable => assert!(queued.is_some(), "stranded: {name} ({picks:?})"),
        Run::Blocked { .. } => assert_eq!(queued, None, "{name} blocked but queued ({picks:?})"),
        _ => panic!("{name} neither runnable nor blocked after the turns ({picks:?})"),
    }
}

fn check(w: &World, picks: &[usize]) {
    if let Err(e) = policy::check_idle_policy() {
        panic!("{e} ({picks:?})");
    }
    placed_as_its_state("V", &w.v, picks);
    placed_as_its_state("W", &w.w, picks);
    placed_as_its_state("S", &w.s, picks);
    {
        let st = w.v.st.lock();
        let pending = w.v.pending.load(Ordering::Acquire);
        let seen = SEEN.load(Ordering::Acquire) & EVENT_CHANNEL != 0;
        assert!(
            st.run == Run::Runnable,
            "lost wake-up: V blocked, pending {pending:#x} ({picks:?})"
        );
        assert!(
            seen || (pending & EVENT_CHANNEL != 0 && st.resume.is_some()),
            "V runnable without the event (pending {pending:#x}, resume {:?}) ({picks:?})",
            st.resume
        );
    }
    assert!(
        w.s.domain.exits.load(Ordering::Relaxed) > 0,
        "S never ran ({picks:?})"
    );
    // V not run yet: the CPU it waits on runs it (S may wait there too and
    // go first), and its block returns the event.
    for _ in 0..3 {
        if SEEN.load(Ordering::Acquire) & EVENT_CHANNEL != 0 {
            break;
        }
        pick_and_run(queued_on(&w.v).unwrap_or(0));
    }
    assert!(
        SEEN.load(Ordering::Acquire) & EVENT_CHANNEL != 0,
        "V's block did not return the event ({picks:?})"
    );
}

/// Three threads: at most 2 preemptions in plain `cargo test`, 3 under
/// `KESTREL_PREEMPTIONS=all` (the whole search is too large for the test
/// step).
#[test]
fn a_remote_wake_against_a_block_and_a_steal_in_any_interleaving() {
    search_upto(
        three_threads(),
        20,
        || (setup(), vec![on(0), on(1), on(2)]),
        check,
        teardown,
    );
}
