//! Per-CPU timer lists (`sched/timers.rs`) against vCPUs that move: a
//! timer armed on one CPU's list for a vCPU that now blocks on another,
//! raced over every interleaving of the real code, and the entry moving
//! with its vCPU when it arms again. A timer that fires on a CPU its vCPU
//! left and does not wake it is a lost timer: the class of bug of Linux's
//! "rcu_sched kthread timer wakeup didn't happen" in a 2-vCPU domain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::vec;
use std::vec::Vec;

use pvabi::{EVENT_CHANNEL, EVENT_TIMER};

use super::{
    DEADLINE, PORT, SEEN, T0, bind, blocker, create, search, search_upto, sender, three_threads,
    turn,
};
use crate::domain::lifecycle::{DOMAINS, Run, VcpuEntry};
use crate::platform::host;
use crate::platform::{P, Platform};
use crate::sched::live::queued_on;
use crate::sched::timers;
use crate::testing::interleave::Body;
use crate::virt::fake;

/// V's guest timer set while it ran on `on` (armed on that CPU's list).
fn arm_on(v: &Arc<VcpuEntry>, on: usize) {
    let was = P::cpu_index();
    host::become_cpu(on);
    v.timer.store(DEADLINE, Ordering::Release);
    timers::arm(v, DEADLINE);
    host::become_cpu(was);
    assert_eq!(v.armed_on.load(Ordering::Acquire), on as u32);
    assert_eq!(timers::next_due_on(on), DEADLINE);
}

fn finish(v: Arc<VcpuEntry>, others: Vec<Arc<VcpuEntry>>, free: u64) {
    v.domain.finish("destroyed", -1, None);
    for o in &others {
        o.domain.finish("destroyed", -1, None);
    }
    drop(v);
    drop(others);
    assert!(DOMAINS.lock().is_empty(), "vCPUs left after the execution");
    assert_eq!(timers::next_due(), u64::MAX, "timers left");
    assert_eq!(P::free_frame_count(), free, "frames left");
}

/// V's timer was armed on CPU o's list (it ran there); V now runs on CPU
/// c and blocks (`HC_SCHED_BLOCK`, no deadline) while CPU o's own timer
/// pass fires its list. Whatever the order, V ends runnable, queued, with
/// `EVENT_TIMER` for its block to return: never blocked with its timer
/// fired.
#[test]
fn a_timer_armed_on_another_cpu_wakes_its_vcpu_blocking_here_in_any_interleaving() {
    struct One {
        v: Arc<VcpuEntry>,
        free: u64,
    }
    search(
        8,
        || {
            fake::reset();
            SEEN.store(0, Ordering::Release);
            crate::sched::clock::init_time(0, P::tsc_hz());
            crate::sched::live::init(2);
            let free = P::free_frame_count();
            host::become_cpu(0);
            let v = create("moved", || blocker(0));
            let c = queued_on(&v).unwrap_or(0);
            let o = 1 - c.min(1);
            arm_on(&v, o);
            let pass: Body = Box::new(move || {
                host::become_cpu(o);
                timers::fire_due(DEADLINE + 100);
            });
            (One { v, free }, vec![turn(c), pass])
        },
        |w: &One, picks: &[usize]| {
            let st = w.v.st.lock();
            let pending = w.v.pending.load(Ordering::Acquire);
            assert!(
                st.run == Run::Runnable,
                "lost timer: V blocked {}, pending {pending:#x}, timer {} ({picks:?})",
                matches!(st.run, Run::Blocked { .. }),
                w.v.timer.load(Ordering::Acquire)
            );
            assert!(queued_on(&w.v).is_some(), "stranded ({picks:?})");
            let seen = SEEN.load(Ordering::Acquire);
            assert!(
                (seen | pending) & EVENT_TIMER != 0,
                "runnable without its timer (pending {pending:#x}, seen {seen:#x}) ({picks:?})"
            );
            assert_eq!(w.v.armed.load(Ordering::Acquire), 0, "{picks:?}");
            assert_eq!(timers::next_due(), u64::MAX, "{picks:?}");
        },
        |w: One| finish(w.v, vec![], w.free),
    );
}

/// Migration while a wake and a timer fire, three CPUs: V (timer armed on
/// CPU 2's list, where it ran before) blocks on its CPU; S, on another,
/// sends V an event (the wake may place V on any idle CPU); CPU 2's timer
/// pass fires V's timer. V ends runnable, queued, with both events.
/// Three threads: at most 2 preemptions in plain `cargo test`, 3 under
/// `KESTREL_PREEMPTIONS=all` (22,537 runs, about 50 s; the whole
/// search is too large for the test step).
#[test]
fn a_wake_and_a_timer_from_two_cpus_against_the_block_in_any_interleaving() {
    struct Three {
        v: Arc<VcpuEntry>,
        s: Arc<VcpuEntry>,
        free: u64,
    }
    search_upto(
        three_threads(),
        20,
        || {
            fake::reset();
            SEEN.store(0, Ordering::Release);
            crate::sched::clock::init_time(0, P::tsc_hz());
            crate::sched::live::init(3);
            let free = P::free_frame_count();
            host::become_cpu(0);
            let v = create("blocker", || blocker(0));
            let s = create("sender", sender);
            PORT.store(bind(&v, &s), Ordering::Release);
            let (a, b) = (queued_on(&v).unwrap(), queued_on(&s).unwrap());
            assert!(a != b && a != 2 && b != 2, "placement {a} {b}");
            arm_on(&v, 2);
            let pass: Body = Box::new(move || {
                host::become_cpu(2);
                timers::fire_due(DEADLINE + 100);
            });
            (Three { v, s, free }, vec![turn(a), turn(b), pass])
        },
        |w: &Three, picks: &[usize]| {
            let st = w.v.st.lock();
            let pending = w.v.pending.load(Ordering::Acquire);
            let seen = SEEN.load(Ordering::Acquire);
            assert!(
                st.run == Run::Runnable,
                "lost wake-up: V blocked {}, pending {pending:#x} ({picks:?})",
                matches!(st.run, Run::Blocked { .. })
            );
            assert!(queued_on(&w.v).is_some(), "stranded ({picks:?})");
            let both = EVENT_TIMER | EVENT_CHANNEL;
            assert!(
                (seen | pending) & both == both,
                "V runnable without its events (pending {pending:#x}, seen {seen:#x}) ({picks:?})"
            );
            assert_eq!(timers::next_due(), u64::MAX, "{picks:?}");
        },
        |w: Three| finish(w.v, vec![w.s], w.free),
    );
}

/// A vCPU that moved arms again: its entry moves to the new CPU's list
/// (the earlier deadline kept), the old CPU's pass finds nothing, the new
/// CPU's fires it.
#[test]
fn a_timer_moves_with_its_vcpu_when_it_arms_again() {
    let _one = host::exclusive();
    host::install_logger();
    host::freeze_time(Some(T0));
    fake::reset();
    crate::sched::clock::init_time(0, P::tsc_hz());
    crate::sched::live::init(2);
    let free = P::free_frame_count();
    host::become_cpu(0);
    let v = create("mover", || blocker(0));
    arm_on(&v, 1);
    // Runs on CPU 0 now and sets a later timer (a later block deadline
    // would do the same).
    host::become_cpu(0);
    v.timer.store(DEADLINE + 50, Ordering::Release);
    timers::arm(&v, DEADLINE + 50);
    assert_eq!(v.armed_on.load(Ordering::Acquire), 0, "moved with it");
    assert_eq!(v.armed.load(Ordering::Acquire), DEADLINE, "earlier kept");
    assert_eq!(timers::next_due_on(1), u64::MAX, "left the old list");
    assert_eq!(timers::next_due_on(0), DEADLINE);
    // The old CPU's pass: nothing there.
    host::become_cpu(1);
    timers::fire_due(DEADLINE + 100);
    assert_eq!(v.pending.load(Ordering::Acquire), 0);
    assert_eq!(v.armed.load(Ordering::Acquire), DEADLINE);
    // The new CPU's pass at DEADLINE: the entry re-arms for the guest's
    // timer, still on CPU 0; at DEADLINE + 50 it fires.
    host::become_cpu(0);
    timers::fire_due(DEADLINE);
    assert_eq!(v.pending.load(Ordering::Acquire), 0, "not due yet");
    assert_eq!(v.armed.load(Ordering::Acquire), DEADLINE + 50);
    assert_eq!(v.armed_on.load(Ordering::Acquire), 0);
    timers::fire_due(DEADLINE + 50);
    assert_eq!(v.pending.load(Ordering::Acquire) & EVENT_TIMER, EVENT_TIMER);
    assert_eq!(v.armed_on.load(Ordering::Acquire), u32::MAX);
    finish(v, vec![], free);
    host::freeze_time(None);
    let out = host::console_take();
    assert!(!out.contains("[WARN]") && !out.contains("[ERROR]"), "{out}");
}
