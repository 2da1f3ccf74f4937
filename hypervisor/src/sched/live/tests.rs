//! The block / notify / deschedule / wake protocol, checked over every
//! interleaving of its real critical sections (`testing/interleave.rs`).
//!
//! Two CPUs (threads) each run one turn of the real scheduler loop
//! (`run::schedule`): CPU a runs vCPU V, whose guest blocks
//! (`HC_SCHED_BLOCK`); CPU b runs vCPU S of another domain, whose guest
//! sends on an event channel bound to V's domain. Every lock the real code
//! takes (the vCPU's state, the scheduler, the port tables, the vCPU list,
//! the timer list) and every guest entry is a switch point. After each
//! interleaving the event must not be lost: V either saw it (its block
//! returned it, or it ran again and got it in RAX), or V is runnable, will
//! get it in RAX, and is in a run queue. A runnable vCPU the scheduler
//! holds as blocked (stranded) or a blocked vCPU with events pending is
//! exactly the lost wake-up that stalled the poll-mode ping-pong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::boxed::Box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::vec;
use std::vec::Vec;

use pvabi::{EVENT_CHANNEL, HC_EVTCHN_SEND, HC_SCHED_BLOCK, HC_YIELD};

use crate::domain::lifecycle::{self, DOMAINS, DomainSpec, Run, VcpuEntry};
use crate::evtchn::ops::EvtchnOp;
use crate::hypercall::services::Svc;
use crate::platform::host;
use crate::platform::{P, Platform};
use crate::sched::live::queued_on;
use crate::testing::interleave::{Body, explore};
use crate::virt::Backend;
use crate::virt::fake::{self, Guest};

/// What V's guest saw in RAX after its block: the events.
static SEEN: AtomicU64 = AtomicU64::new(0);
/// The port S sends on.
static PORT: AtomicU64 = AtomicU64::new(0);

pub(crate) fn create(
    name: &str,
    prog: impl Fn() -> fake::Program + Send + Sync + 'static,
) -> Arc<VcpuEntry> {
    fake::next_domain(move |_| prog());
    let image = fake::image();
    let spec = DomainSpec {
        name,
        image: &image,
        kind: crate::domain::lifecycle::ImageKind::Pvabi,
        cmdline: "",
        memory: 2 << 20,
        nr_vcpus: 1,
        weight: 256,
        cap: 0,
        privileged: false,
        paused: false,
        budget: 0,
    };
    let id = match lifecycle::create(Backend::Svm, &spec) {
        Ok(id) => id,
        Err(e) => panic!("create {name}: {e}"),
    };
    let v = DOMAINS.lock().vcpu(id, 0).cloned();
    v.unwrap()
}

/// V's domain offers S's domain a port and S binds to it (the real ops):
/// the port S sends on.
pub(crate) fn bind(v: &Arc<VcpuEntry>, s: &Arc<VcpuEntry>) -> u64 {
    let pv = Svc {
        me: v,
        blocked: None,
        handoff: None,
    }
    .evtchn_op(EvtchnOp::AllocUnbound {
        remote: s.domain.id,
    })
    .unwrap();
    Svc {
        me: s,
        blocked: None,
        handoff: None,
    }
    .evtchn_op(EvtchnOp::BindInterdomain {
        remote: v.domain.id,
        port: pv as u32,
    })
    .unwrap()
}

/// The frozen clock of the searches, and V's deadline in the timer one.
pub(crate) const T0: u64 = 1_000_000_000;
const DEADLINE: u64 = T0 + 100;

/// V: blocks (until `deadline`, 0: none); whenever it runs again, records
/// RAX and yields.
pub(crate) fn blocker(deadline: u64) -> fake::Program {
    let mut first = true;
    Box::new(move |g: &mut Guest<'_>| {
        if first {
            first = false;
            return g.hypercall(HC_SCHED_BLOCK, &[deadline]);
        }
        SEEN.fetch_or(g.rax(), Ordering::AcqRel);
        g.hypercall(HC_YIELD, &[])
    })
}

/// S: sends once, then yields.
fn sender() -> fake::Program {
    let mut first = true;
    Box::new(move |g: &mut Guest<'_>| {
        if first {
            first = false;
            assert_eq!(g.status() as u64, 0, "nothing before the send");
            return g.hypercall(HC_EVTCHN_SEND, &[PORT.load(Ordering::Acquire)]);
        }
        assert_eq!(g.status(), 0, "send");
        g.hypercall(HC_YIELD, &[])
    })
}

struct World {
    v: Arc<VcpuEntry>,
    s: Arc<VcpuEntry>,
    free: u64,
}

fn setup() -> World {
    fake::reset();
    SEEN.store(0, Ordering::Release);
    crate::sched::clock::init_time(0, P::tsc_hz());
    crate::sched::live::init(2);
    let free = P::free_frame_count();
    host::become_cpu(0);
    let v = create("blocker", || blocker(0));
    let s = create("sender", sender);
    PORT.store(bind(&v, &s), Ordering::Release);
    World { v, s, free }
}

fn teardown(w: World) {
    for d in [w.v.domain.clone(), w.s.domain.clone()] {
        d.finish("destroyed", -1, None);
    }
    drop(w.v);
    drop(w.s);
    assert_eq!(crate::sched::timers::next_due(), u64::MAX, "timers left");
    assert!(DOMAINS.lock().is_empty(), "vCPUs left after the execution");
    assert_eq!(
        P::free_frame_count(),
        w.free,
        "frames left after the execution"
    );
}

/// After one interleaving: the event reached V or will, and V is where
/// the scheduler can find it.
fn check(w: &World, picks: &[usize]) {
    let st = w.v.st.lock();
    let pending = w.v.pending.load(Ordering::Acquire);
    let seen = SEEN.load(Ordering::Acquire) & EVENT_CHANNEL != 0;
    let queued = queued_on(&w.v).is_some();
    match st.run {
        Run::Blocked { .. } => {
            assert!(!seen, "blocked after it ran again ({picks:?})");
            panic!("lost wake-up: V blocked, events {pending:#x}, the send done ({picks:?})");
        }
        Run::Runnable => {
            assert!(
                queued,
                "stranded: V runnable but in no run queue ({picks:?})"
            );
            assert!(
                seen || (pending & EVENT_CHANNEL != 0 && st.resume.is_some()),
                "V runnable without the event (pending {pending:#x}, resume {:?}) ({picks:?})",
                st.resume
            );
        }
        Run::Running | Run::Down | Run::Dead => {
            panic!("V in an impossible state after the turn ({picks:?})")
        }
    }
    let s = w.s.st.lock();
    assert!(
        s.run == Run::Runnable && queued_on(&w.s).is_some(),
        "S after its turn"
    );
}

/// One turn of CPU `cpu`'s loop on a controlled thread.
fn turn(cpu: usize) -> Body {
    Box::new(move || {
        host::become_cpu(cpu);
        crate::run::schedule(cpu);
    })
}

/// Does, outside the controlled threads, the host work an earlier
/// execution (or test) left for the next exit (the run loop's own poll,
/// `run/work.rs`): the last drop of a domain in a teardown notes its end
/// report (`console::wake::note_end_recorded`), and the next
/// `run::schedule` would take the domain table for it: a switch point the
/// execution before did not have, so the same picks would replay
/// differently.
fn settle() {
    crate::run::work::poll();
}

/// Runs the search over the executions `setup` makes, checking each with
/// `check`, and tears each world down with `teardown`.
///
/// Plain `cargo test`: every interleaving with at most 3 preemptions.
/// `cargo xtask test` runs them all (`KESTREL_PREEMPTIONS=all`).
fn search<W>(
    min_executions: usize,
    setup: impl FnMut() -> (W, Vec<Body>),
    check: impl Fn(&W, &[usize]),
    teardown: impl Fn(W),
) {
    search_upto(usize::MAX, min_executions, setup, check, teardown);
}

/// The preemption bound of a search over three threads: 2 in plain
/// `cargo test`, 3 under `KESTREL_PREEMPTIONS=all` (a whole search of
/// three turns is too large for the test step).
fn three_threads() -> usize {
    match std::env::var("KESTREL_PREEMPTIONS").as_deref() {
        Ok("all") => 3,
        _ => 2,
    }
}

/// [`search`] with at most `cap` preemptions whatever
/// `KESTREL_PREEMPTIONS` says (for a search too large to run whole).
fn search_upto<W>(
    cap: usize,
    min_executions: usize,
    mut setup: impl FnMut() -> (W, Vec<Body>),
    check: impl Fn(&W, &[usize]),
    teardown: impl Fn(W),
) {
    let _one = host::exclusive();
    host::install_logger();
    host::freeze_time(Some(T0));
    let bound = match std::env::var("KESTREL_PREEMPTIONS").as_deref() {
        Ok("all") => usize::MAX,
        Ok(n) => n.parse().unwrap_or(3),
        Err(_) => 3,
    }
    .min(cap);
    let world: std::cell::RefCell<Option<W>> = std::cell::RefCell::new(None);
    let t0 = std::time::Instant::now();
    let explored = explore(
        bound,
        1_000_000,
        || {
            if let Some(w) = world.borrow_mut().take() {
                teardown(w);
            }
            settle();
            let (w, bodies) = setup();
            *world.borrow_mut() = Some(w);
            bodies
        },
        |picks| {
            if let Some(w) = world.borrow().as_ref() {
                check(w, picks);
            }
        },
    );
    if let Some(w) = world.borrow_mut().take() {
        teardown(w);
    }
    host::freeze_time(None);
    let out = host::console_take();
    assert!(!out.contains("[WARN]") && !out.contains("[ERROR]"), "{out}");
    std::eprintln!("{explored:?} in {:?}", t0.elapsed());
    assert!(explored.complete, "the search was cut short: {explored:?}");
    assert!(explored.executions >= min_executions, "{explored:?}");
    // The threads passed their locks as switch points (not one big step).
    assert!(explored.longest > 6, "{explored:?}");
}

/// Exhaustive: 8,702 interleavings (about 15 s here); at most 3
/// preemptions: 370 (no domain-table lock per send, the peer found by the
/// port's reference: fewer switch points than the 12,816 / 433 of one,
/// and the 18,411 / 501 of two).
#[test]
fn block_against_send_loses_no_wake_up_in_any_interleaving() {
    search(
        365,
        || {
            let w = setup();
            let (a, b) = (queued_on(&w.v), queued_on(&w.s));
            assert!(
                a.is_some() && b.is_some() && a != b,
                "placement {a:?} {b:?}"
            );
            let bodies: Vec<Body> = vec![turn(a.unwrap_or(0)), turn(b.unwrap_or(1))];
            (w, bodies)
        },
        check,
        teardown,
    );
}

/// V arms its guest timer and halts (HLT with interrupts on,
/// `sched/halt.rs`) on one CPU while another CPU's timer pass fires it:
/// V is either still blocked with its timer armed in the list (the pass
/// came first: a later one wakes it), or woken (runnable, queued, to
/// resume after its HLT). Blocked with its timer already fired is the lost
/// wake-up of an idle Linux CPU that never wakes for its tick.
#[test]
fn halt_against_the_timer_pass_in_any_interleaving() {
    halt_against_the_timer_pass(false);
}

/// The same with an event-channel control area and no `VIRQ_TIMER` port
/// (so no upcall can end the HLT, as for a Linux vCPU before it binds its
/// timer): a timer pass that fires V's timer before its HLT must not let
/// it halt for good (issue 13's latch, `sched/halt.rs`).
#[test]
fn halt_with_a_control_area_against_the_timer_pass_in_any_interleaving() {
    halt_against_the_timer_pass(true);
}

fn halt_against_the_timer_pass(area: bool) {
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
            let v = create("halter", move || {
                let mut step = 0;
                let mut area_done = !area;
                Box::new(move |g: &mut Guest<'_>| {
                    step += 1;
                    match step {
                        1 if !area_done => {
                            step = 0;
                            area_done = true;
                            g.hypercall(pvabi::HC_EVTCHN_INIT_CONTROL, &[0x18_0000, 0x40])
                        }
                        1 => {
                            assert_eq!(g.status(), 0, "init control");
                            g.hypercall(pvabi::HC_SET_TIMER, &[DEADLINE])
                        }
                        2 => crate::virt::VmExit::Hlt { len: 1 },
                        _ => {
                            SEEN.fetch_or(1, Ordering::AcqRel);
                            g.hypercall(HC_YIELD, &[])
                        }
                    }
                })
            });
            let cpu = queued_on(&v).unwrap_or(0);
            let timer_pass: Body = Box::new(move || {
                host::become_cpu(1 - cpu.min(1));
                crate::sched::timers::fire_due(DEADLINE + 100);
            });
            (One { v, free }, vec![turn(cpu), timer_pass])
        },
        |w: &One, picks: &[usize]| {
            let st = w.v.st.lock();
            match st.run {
                Run::Blocked { deadline } => {
                    assert_eq!(deadline, 0, "an HLT has no deadline ({picks:?})");
                    assert_eq!(
                        w.v.timer.load(Ordering::Acquire),
                        DEADLINE,
                        "halted with its timer fired and not woken ({picks:?})"
                    );
                    assert_eq!(w.v.armed.load(Ordering::Acquire), DEADLINE, "{picks:?}");
                }
                // Woken from its HLT, or (the timer fired before the HLT)
                // the HLT did not block and V ran on and yielded.
                Run::Runnable => {
                    assert!(queued_on(&w.v).is_some(), "stranded ({picks:?})");
                    let ran_on = SEEN.load(Ordering::Acquire) != 0;
                    assert!(
                        st.resume.is_some() != ran_on,
                        "runnable, resume {:?}, ran on {ran_on} ({picks:?})",
                        st.resume
                    );
                }
                _ => panic!("V in an impossible state ({picks:?})"),
            }
        },
        |w: One| {
            w.v.domain.finish("destroyed", -1, None);
            drop(w.v);
            assert!(DOMAINS.lock().is_empty(), "vCPUs left after the execution");
            assert_eq!(crate::sched::timers::next_due(), u64::MAX, "timers left");
            assert_eq!(P::free_frame_count(), w.free, "frames left");
        },
    );
}

/// V blocks with a deadline on one CPU while another CPU's timer pass
/// (`timers::fire_due`, at a time past the deadline) runs: V is either
/// woken (runnable, queued, RAX 0 to come) or still blocked with its
/// deadline in the timer list, so a later pass wakes it. A blocked vCPU
/// with a deadline that no timer entry covers would sleep for ever; one
/// woken before its deadline would return early (issue 11's ticker).
#[test]
fn block_with_deadline_against_the_timer_pass_in_any_interleaving() {
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
            let v = create("sleeper", || blocker(DEADLINE));
            let cpu = queued_on(&v).unwrap_or(0);
            let timer_pass: Body = Box::new(move || {
                host::become_cpu(1 - cpu.min(1));
                crate::sched::timers::fire_due(DEADLINE + 100);
            });
            (One { v, free }, vec![turn(cpu), timer_pass])
        },
        |w: &One, picks: &[usize]| {
            let st = w.v.st.lock();
            match st.run {
                Run::Blocked { deadline } => {
                    assert_eq!(deadline, DEADLINE, "{picks:?}");
                    assert_eq!(
                        w.v.armed.load(Ordering::Acquire),
                        DEADLINE,
                        "blocked with a deadline no timer covers ({picks:?})"
                    );
                    assert!(crate::sched::timers::next_due() <= DEADLINE, "{picks:?}");
                }
                Run::Runnable => {
                    assert!(queued_on(&w.v).is_some(), "stranded ({picks:?})");
                    assert_eq!(
                        st.resume,
                        Some(DEADLINE),
                        "woken without its RAX ({picks:?})"
                    );
                    assert_eq!(w.v.pending.load(Ordering::Acquire), 0, "{picks:?}");
                }
                _ => panic!("V in an impossible state ({picks:?})"),
            }
            assert_eq!(SEEN.load(Ordering::Acquire), 0, "V ran again ({picks:?})");
        },
        |w: One| {
            w.v.domain.finish("destroyed", -1, None);
            drop(w.v);
            assert!(DOMAINS.lock().is_empty(), "vCPUs left after the execution");
            assert_eq!(crate::sched::timers::next_due(), u64::MAX, "timers left");
            assert_eq!(P::free_frame_count(), w.free, "frames left");
        },
    );
}

mod handoff;
mod remote;
mod timers;
