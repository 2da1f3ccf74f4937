//! The exit path's locks, counted on the host (issue 11: "no global lock
//! on the exit path"). A counting [`Hook`] on the CPU thread that runs
//! the guest sees every `sync::Mutex` the real run loop takes there; the
//! clock is frozen, so no timer interrupt (and no tick's scheduler or
//! timer-list work) falls between two exits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::boxed::Box;
use std::format;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pvabi::{HC_SHUTDOWN, HC_YIELD, SHUTDOWN_POWEROFF};

use crate::platform::host;
use crate::sched::clock::now_ns;
use crate::sync::{Hook, set_hook};
use crate::testing::rt::Machine;
use crate::virt::fake::Guest;

/// Counts the locks let go on the threads it is set on.
#[derive(Default)]
struct Locks(AtomicU64);

impl Hook for Locks {
    fn point(&self) {}
    fn blocked(&self) {
        std::thread::yield_now();
    }
    fn released(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A hypercall the hypervisor does not know (`ENOSYS` at once, as the
/// `hcbench` guest measures it).
const UNKNOWN: u64 = 0xdead;

/// 1,000 plain hypercalls: between the guest's return from one and its
/// next, the run loop takes no lock at all, global or not (no scheduler
/// lock, no timer list, no domain table).
#[test]
fn a_plain_hypercall_takes_no_lock_on_the_exit_path() {
    const CALLS: u64 = 1_000;
    let m = Machine::start(1);
    let locks = Arc::new(Locks::default());
    let worst = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let (l, w, c) = (locks.clone(), worst.clone(), calls.clone());
    let id = m.create("plain", 1, false, move |_| {
        let (l, w, c) = (l.clone(), w.clone(), c.clone());
        let mut last = 0;
        Box::new(move |g: &mut Guest<'_>| {
            let n = c.fetch_add(1, Ordering::Relaxed);
            if n == CALLS + 1 {
                // The hook does count: the yield took the vCPU's state
                // lock and the scheduler's.
                assert!(l.0.load(Ordering::Relaxed) > last, "a yield took no lock");
                set_hook(None);
                host::freeze_time(None);
                return g.hypercall(HC_SHUTDOWN, &[SHUTDOWN_POWEROFF, 0]);
            }
            if n == 0 {
                host::freeze_time(Some(now_ns()));
                set_hook(Some(l.clone()));
            } else {
                assert_eq!(g.status(), pvabi::Error::NoSys.code(), "ENOSYS");
                let now = l.0.load(Ordering::Relaxed);
                w.fetch_max(now - last, Ordering::Relaxed);
            }
            last = l.0.load(Ordering::Relaxed);
            if n == CALLS {
                return g.hypercall(HC_YIELD, &[]);
            }
            g.hypercall(UNKNOWN, &[])
        })
    });
    m.wait_all_gone();
    let out = m.stop();
    assert_eq!(calls.load(Ordering::Relaxed), CALLS + 2);
    assert_eq!(
        worst.load(Ordering::Relaxed),
        0,
        "locks taken between two plain hypercalls"
    );
    assert!(
        out.contains(&format!("id={id} name=plain result=exited code=0")),
        "{out}"
    );
}

/// How often each path takes the scheduler's locks, on the real code, one
/// thread playing the CPUs, the clock frozen: (every lock at once, one
/// run-queue lock). The pick, a vCPU's block (the run loop's deschedule)
/// and a wake-up sent from another CPU each take one run-queue lock (the
/// picking CPU's, the blocking CPU's, the woken vCPU's target's) and no
/// global lock (`sched/mod.rs`, "Per-CPU locks"); before the split each
/// took the one scheduler lock once.
#[test]
fn global_lock_takes_per_path() {
    use crate::domain::lifecycle::Run;
    use crate::platform::{P, Platform};
    use crate::sched::live::tests::{T0, bind, blocker, create};
    use crate::sched::live::{self as policy, global_locks, queued_on, rq_locks};
    use crate::virt::fake;
    use pvabi::HC_EVTCHN_SEND;

    /// (every lock at once, one run-queue lock) taken by `f`.
    fn takes(f: impl FnOnce()) -> (u64, u64) {
        let before = (global_locks(), rq_locks());
        f();
        (global_locks() - before.0, rq_locks() - before.1)
    }

    let _one = host::exclusive();
    host::install_logger();
    host::freeze_time(Some(T0));
    fake::reset();
    crate::sched::clock::init_time(0, P::tsc_hz());
    policy::init(2);
    host::become_cpu(0);
    let port = Arc::new(AtomicU64::new(0));
    // The send's exit, between S's two entries: what the send took.
    let send = Arc::new([const { AtomicU64::new(0) }; 4]);
    let v = create("blocker", || blocker(0));
    let (p, s_at) = (port.clone(), send.clone());
    let s = create("sender", move || {
        let (p, s_at) = (p.clone(), s_at.clone());
        let mut sent = false;
        Box::new(move |g: &mut Guest<'_>| {
            if sent {
                s_at[1].store(global_locks(), Ordering::Relaxed);
                s_at[3].store(rq_locks(), Ordering::Relaxed);
                return g.hypercall(HC_YIELD, &[]);
            }
            sent = true;
            s_at[0].store(global_locks(), Ordering::Relaxed);
            s_at[2].store(rq_locks(), Ordering::Relaxed);
            g.hypercall(HC_EVTCHN_SEND, &[p.load(Ordering::Relaxed)])
        })
    });
    assert_eq!(
        (queued_on(&v), queued_on(&s)),
        (Some(0), Some(1)),
        "placement"
    );
    port.store(bind(&v, &s), Ordering::Relaxed);

    // CPU 0 picks V; V blocks (the run loop deschedules it).
    let mut picked = None;
    let pick = takes(|| picked = Some(policy::pick(0, T0)));
    let Some(policy::Pick::Run(e, slice_ns)) = picked else {
        panic!("CPU 0 picked nothing");
    };
    assert!(Arc::ptr_eq(&e, &v), "CPU 0 picked another vCPU");
    let block = takes(|| crate::run::run_chain(0, &e, T0, slice_ns));
    assert!(matches!(v.st.lock().run, Run::Blocked { .. }), "V blocked");
    // CPU 1 runs S, whose send wakes V (its last CPU is 0).
    host::become_cpu(1);
    policy::clear_resched(1);
    let policy::Pick::Run(e, slice_ns) = policy::pick(1, T0) else {
        panic!("CPU 1 picked nothing");
    };
    crate::run::run_chain(1, &e, T0, slice_ns);
    let at = |i: usize| send[i].load(Ordering::Relaxed);
    let wake = (at(1) - at(0), at(3) - at(2));
    assert!(v.st.lock().run == Run::Runnable, "V woken");
    assert_eq!(queued_on(&v), Some(0), "V queued on its last CPU");

    let rows = [("pick", pick), ("block", block), ("remote wake", wake)];
    assert_eq!(
        rows,
        [("pick", (0, 1)), ("block", (0, 1)), ("remote wake", (0, 1))],
        "(global, run-queue) lock takes per path"
    );
    for d in [v.domain.clone(), s.domain.clone()] {
        d.finish("destroyed", -1, None);
    }
    drop((v, s, e));
    host::freeze_time(None);
    let out = host::console_take();
    assert!(!out.contains("[WARN]") && !out.contains("[ERROR]"), "{out}");
}

/// The timer interrupt's exit path (a guest timer, or any interrupt that
/// changes nothing for the scheduler) answers "go on" without the global
/// lock after the first `tick` that asked (issue 11); a wake-up that must
/// preempt the running vCPU ends that, before its kick, so the kicked
/// CPU's `tick` asks the policy and leaves the guest.
#[test]
fn a_quiet_tick_takes_no_global_lock_until_a_wake_up_must_preempt() {
    use crate::platform::{P, Platform};
    use crate::sched::live::tests::{T0, blocker, create};
    use crate::sched::live::{self as policy, global_locks, rq_locks};
    use crate::virt::fake;

    /// Any scheduler lock taken by `f` (a run-queue lock, or all).
    fn takes<R>(f: impl FnOnce() -> R) -> (R, u64) {
        let before = global_locks() + rq_locks();
        let r = f();
        (r, global_locks() + rq_locks() - before)
    }

    let _one = host::exclusive();
    host::install_logger();
    host::freeze_time(Some(T0));
    fake::reset();
    crate::sched::clock::init_time(0, P::tsc_hz());
    policy::init(1);
    host::become_cpu(0);
    let a = create("a", || blocker(0));
    let b = create("b", || blocker(0));
    policy::pause(&b.domain);
    // A runs and is descheduled once (its wake boost ends, its credit
    // goes below 0: OVER), then runs again.
    let policy::Pick::Run(e, _) = policy::pick(0, T0) else {
        panic!("CPU 0 picked nothing");
    };
    assert!(Arc::ptr_eq(&e, &a), "CPU 0 picked another vCPU");
    policy::descheduled_at(0, &a, 1_000, true, T0);
    let policy::Pick::Run(e, _) = policy::pick(0, T0) else {
        panic!("CPU 0 picked nothing");
    };
    assert!(Arc::ptr_eq(&e, &a), "CPU 0 picked another vCPU");
    policy::clear_resched(0);
    let mut quiet = policy::Quiet::default();
    // The first tick asks; the next ones, until the slice's end, do not.
    assert_eq!(
        takes(|| policy::tick(0, T0, &mut quiet)),
        (false, 1),
        "first tick"
    );
    assert_eq!(
        takes(|| policy::tick(0, T0, &mut quiet)),
        (false, 0),
        "second tick"
    );
    assert_eq!(
        takes(|| policy::tick(0, T0 + 1_000, &mut quiet)),
        (false, 0),
        "third tick"
    );
    // The slice's end is past: the tick asks (and is told to leave).
    let late = T0 + crate::sched::SLICE_NS;
    assert_eq!(
        takes(|| policy::tick(0, late, &mut quiet)),
        (true, 1),
        "tick at the slice's end"
    );
    assert_eq!(
        takes(|| policy::tick(0, T0, &mut quiet)),
        (false, 1),
        "asks again"
    );
    assert_eq!(
        takes(|| policy::tick(0, T0, &mut quiet)),
        (false, 0),
        "quiet again"
    );
    // B is woken (boosted: better than OVER A) and queued on CPU 0.
    policy::unpause(&b.domain);
    assert!(policy::take_resched(0), "the wake-up kicked CPU 0");
    assert_eq!(
        takes(|| policy::tick(0, T0, &mut quiet)),
        (true, 1),
        "the kicked tick asks, and A must leave"
    );
    policy::descheduled_at(0, &a, 0, true, T0);
    for d in [a.domain.clone(), b.domain.clone()] {
        d.finish("destroyed", -1, None);
    }
    drop((a, b, e));
    host::freeze_time(None);
    let out = host::console_take();
    assert!(!out.contains("[WARN]") && !out.contains("[ERROR]"), "{out}");
}
