//! The reference a connected port keeps to its peer's domain
//! (`live/table.rs`): a bind gives both ports one, a close, a peer's
//! close and a domain's end take them; a send that took its reference out
//! of its own table before the peer closed its port, or before the peer
//! ended, delivers nothing there; and no reference keeps an ended domain
//! from being dropped. The staged orders drive the real ops on two live
//! (paused) domains; the real races run on CPU threads, and over every
//! interleaving of the real code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::boxed::Box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::vec;

use pvabi::{
    Error, HC_EVTCHN_ALLOC_UNBOUND, HC_EVTCHN_BIND_INTERDOMAIN, HC_EVTCHN_CLOSE, HC_EVTCHN_SEND,
    HC_EVTCHN_SEND_WAIT, HC_YIELD,
};

use super::{deliver_by_id, deliver_remote};
use crate::domain::lifecycle::{ALIVE, DOMAINS, Domain, STOP_ENDING, VcpuEntry};
use crate::evtchn::PortState;
use crate::evtchn::ops::EvtchnOp;
use crate::platform::host;
use crate::platform::{P, Platform};
use crate::sched::live::queued_on;
use crate::testing::interleave::{Body, explore};
use crate::testing::rt::{Machine, domain};
use crate::virt::fake::{self, Guest};

use super::tests_pair::{connect, pending, shutdown, svc, with_pair};

fn keeps_peer(v: &VcpuEntry, port: u32) -> bool {
    v.domain.events.lock().keeps_peer(port)
}

/// What `send_wait_op` takes out of the sender's table for a send on
/// `port` to domain `to`.
fn peer_of(v: &VcpuEntry, port: u32, to: &VcpuEntry) -> Option<Arc<Domain>> {
    v.domain.events.lock().peer(port, to.domain.id)
}

#[test]
fn a_bind_gives_both_ports_a_reference_and_a_close_takes_both() {
    with_pair(|_, v, s, pv, ps| {
        let to_v = peer_of(&s, ps, &v).expect("S's port names V's domain");
        assert!(Arc::ptr_eq(&to_v, &v.domain));
        let to_s = peer_of(&v, pv, &s).expect("V's port names S's domain");
        assert!(Arc::ptr_eq(&to_s, &s.domain));
        drop((to_v, to_s));
        // A loopback pair keeps none (its sends are local).
        let (lb, la) = connect(&v, &v);
        assert!(!keeps_peer(&v, la) && !keeps_peer(&v, lb));
        // V closes: its port drops its reference, and S's, unbound by the
        // close, drops its own.
        assert_eq!(svc(&v).evtchn_op(EvtchnOp::Close(pv)), Ok(0));
        assert!(!keeps_peer(&v, pv) && !keeps_peer(&s, ps));
        assert_eq!(svc(&s).evtchn_op(EvtchnOp::Send(ps)), Err(Error::Busy));
        // Bound again (S's port is unbound for V again): both keep one.
        let again = svc(&v)
            .evtchn_op(EvtchnOp::BindInterdomain {
                remote: s.domain.id,
                port: ps,
            })
            .unwrap() as u32;
        assert!(keeps_peer(&v, again) && keeps_peer(&s, ps));
        assert_eq!(svc(&s).evtchn_op(EvtchnOp::Send(ps)), Ok(0));
        assert!(pending(&v, again));
    });
}

#[test]
fn a_send_that_took_its_reference_before_the_peer_closed_delivers_nothing() {
    with_pair(|_, v, s, pv, ps| {
        // V waits for `pv`; S's send takes its reference to V's domain out
        // of its table (and lets the table go).
        assert_eq!(svc(&v).send_wait_op(0, pv, 0), Ok(None));
        let peer = peer_of(&s, ps, &v).unwrap();
        // V's domain closes `pv` and allocates the same number again for
        // S, before the send reaches V's table.
        assert_eq!(svc(&v).evtchn_op(EvtchnOp::Close(pv)), Ok(0));
        let again = svc(&v)
            .evtchn_op(EvtchnOp::AllocUnbound {
                remote: s.domain.id,
            })
            .unwrap() as u32;
        assert_eq!(again, pv, "the freed number is reused");
        assert!(deliver_remote(&peer, s.domain.id, pv, ps).is_none());
        assert_eq!(v.wait_port.load(Ordering::Acquire), pv, "not handed");
        assert!(!pending(&v, pv), "the new port is left alone");
        // S was told of the close: its port is unbound and pending, with
        // no reference left.
        let st = s.domain.events.lock().status(ps).unwrap();
        assert_eq!(
            st.state,
            PortState::Unbound {
                remote: v.domain.id
            }
        );
        assert!(st.pending && !keeps_peer(&s, ps));
    });
}

#[test]
fn a_send_that_took_its_reference_before_the_peer_ended_delivers_nothing() {
    with_pair(|_, v, s, pv, ps| {
        assert_eq!(svc(&v).send_wait_op(0, pv, 0), Ok(None));
        let peer = peer_of(&s, ps, &v).unwrap();
        // V's domain is marked dying and has not yet closed its ports (a
        // vCPU of it may already have left the domain table): nothing is
        // delivered, though the port is still connected.
        v.domain.stop.fetch_or(STOP_ENDING, Ordering::AcqRel);
        assert!(deliver_remote(&peer, s.domain.id, pv, ps).is_none());
        assert_eq!(v.wait_port.load(Ordering::Acquire), pv, "not handed");
        assert!(!pending(&v, pv));
        // Its end closes the ports: S's is unbound, its reference gone,
        // and a send that took it before finds the port closed.
        v.domain.finish("destroyed", 0, None);
        assert!(!keeps_peer(&s, ps));
        assert!(deliver_remote(&peer, s.domain.id, pv, ps).is_none());
        assert_eq!(svc(&s).evtchn_op(EvtchnOp::Send(ps)), Err(Error::Busy));
    });
}

/// A reference does not keep its domain: once V ended and its last vCPU
/// reference went, V's domain was dropped (its `Drop` ran: `ALIVE` fell)
/// with S's port still naming it; a send holding only the reference
/// finds no domain, and the domain table none either.
#[test]
fn a_reference_keeps_no_ended_domain_alive() {
    with_pair(|m, v, s, pv, ps| {
        let weak = Arc::downgrade(&peer_of(&s, ps, &v).unwrap());
        let vid = v.domain.id;
        let alive = ALIVE.load(Ordering::Acquire);
        v.domain.finish("destroyed", 0, None);
        drop(v);
        m.wait("V's domain to be dropped", || weak.upgrade().is_none());
        assert!(DOMAINS.lock().get(vid).is_none(), "V left the domain table");
        assert_eq!(ALIVE.load(Ordering::Acquire), alive - 1, "its Drop ran");
        // S's port was unbound by V's end and keeps no reference; a send
        // racing that (its reference taken before) finds nothing.
        assert!(!keeps_peer(&s, ps));
        assert!(deliver_by_id(s.domain.id, vid, pv, ps).is_none());
    });
}

/// Phases of V in the races below.
const RUNNING: u64 = 0;

/// V answers S's sends `rounds` times (a ping-pong with
/// `HC_EVTCHN_SEND_WAIT` on both sides) and then ends (`close_only`:
/// closes its port first, then ends once S gave up); S sends until its
/// send fails with `EBUSY` (its port unbound by V's close or end). On
/// `cpus` CPUs, so S's sends race V's close or end.
fn ping_pong_then_peer_goes(cpus: usize, rounds: u64, close_only: bool) {
    let m = Machine::start(cpus);
    let pv = Arc::new(AtomicU64::new(0));
    let s_busy = Arc::new(AtomicU64::new(RUNNING));
    let sid_cell = Arc::new(AtomicU64::new(0));
    let (pv1, sid1, busy1) = (pv.clone(), sid_cell.clone(), s_busy.clone());
    let vid = m.create("v", 1, true, move |_| {
        let (pv, sid, busy) = (pv1.clone(), sid1.clone(), busy1.clone());
        let mut step = 0;
        let mut got = 0;
        Box::new(move |g: &mut Guest<'_>| {
            step += 1;
            match step {
                1 => g.hypercall(HC_EVTCHN_ALLOC_UNBOUND, &[sid.load(Ordering::Acquire)]),
                2 => {
                    assert!(g.status() > 0, "alloc_unbound: {}", g.status());
                    pv.store(g.rax(), Ordering::Release);
                    g.hypercall(HC_EVTCHN_SEND_WAIT, &[0, g.rax(), 0])
                }
                _ => {
                    let p = pv.load(Ordering::Acquire);
                    if got < rounds {
                        assert!(g.status() >= 0, "V's wait: {}", g.status());
                        if g.rax() == p {
                            got += 1;
                        }
                        let send = if got < rounds { p } else { 0 };
                        if send != 0 {
                            return g.hypercall(HC_EVTCHN_SEND_WAIT, &[send, p, 0]);
                        }
                        got = rounds + 1;
                        if close_only {
                            return g.hypercall(HC_EVTCHN_CLOSE, &[p]);
                        }
                        return shutdown(g);
                    }
                    assert_eq!(g.status(), 0, "V's close");
                    if busy.load(Ordering::Acquire) == RUNNING {
                        return g.hypercall(HC_YIELD, &[]);
                    }
                    shutdown(g)
                }
            }
        })
    });
    let (pv2, busy2) = (pv.clone(), s_busy.clone());
    let v = u64::from(vid);
    let sid = m.create("s", 1, true, move |_| {
        let (pv, busy) = (pv2.clone(), busy2.clone());
        let mut ps = 0;
        Box::new(move |g: &mut Guest<'_>| {
            if ps == 0 {
                let p = pv.load(Ordering::Acquire);
                if p == 0 {
                    return g.hypercall(HC_YIELD, &[]);
                }
                ps = u64::MAX;
                return g.hypercall(HC_EVTCHN_BIND_INTERDOMAIN, &[v, p]);
            }
            if ps == u64::MAX {
                assert!(g.status() > 0, "bind_interdomain: {}", g.status());
                ps = g.rax();
            } else if g.status() == Error::Busy.to_rax() as i64 {
                busy.store(1, Ordering::Release);
                return shutdown(g);
            } else {
                assert!(g.status() >= 0, "S's send_wait: {}", g.status());
            }
            // Waits for its own port: V's answer, or the close that
            // unbinds it (the close raises it).
            g.hypercall(HC_EVTCHN_SEND_WAIT, &[ps, ps, 0])
        })
    });
    sid_cell.store(u64::from(sid), Ordering::Release);
    for id in [vid, sid] {
        crate::sched::live::unpause(&domain(id).unwrap());
    }
    m.wait("S's send to find its port unbound", || {
        s_busy.load(Ordering::Acquire) != RUNNING
    });
    m.wait_all_gone();
    let out = m.stop();
    assert!(!out.contains("[WARN]") && !out.contains("[ERROR]"), "{out}");
    for (id, name) in [(vid, "v"), (sid, "s")] {
        assert!(
            out.contains(&std::format!("id={id} name={name} result=exited code=0")),
            "{out}"
        );
    }
}

#[test]
fn sends_racing_the_peers_end_on_two_cpus() {
    ping_pong_then_peer_goes(2, 500, false);
}

#[test]
fn sends_racing_the_peers_close_on_two_cpus() {
    ping_pong_then_peer_goes(2, 500, true);
}

#[test]
fn sends_racing_the_peers_end_on_one_cpu() {
    ping_pong_then_peer_goes(1, 200, false);
}

/// What S's send returned in the search below (`u64::MAX`: not yet).
static SENT: AtomicU64 = AtomicU64::new(u64::MAX);
/// The port S sends on in the search.
static PORT: AtomicU64 = AtomicU64::new(0);

/// S in the search: sends once, records the status, then yields.
fn sender() -> fake::Program {
    let mut first = true;
    Box::new(move |g: &mut Guest<'_>| {
        if first {
            first = false;
            return g.hypercall(HC_EVTCHN_SEND, &[PORT.load(Ordering::Acquire)]);
        }
        SENT.store(g.rax(), Ordering::Release);
        g.hypercall(HC_YIELD, &[])
    })
}

struct World {
    v: Arc<VcpuEntry>,
    s: Arc<VcpuEntry>,
    free: u64,
    alive: usize,
}

/// S's send (one turn of its CPU's loop) against V's domain going on
/// another CPU (`end`: it ends; otherwise it closes its port), over every
/// interleaving with at most `preemptions` preemptions: no deadlock (the
/// send holds one table at a time), the send either delivered or failed
/// with `EBUSY`, S's port ends unbound and pending with no reference, and
/// both domains are dropped afterwards.
fn search_send_against_the_peer(end: bool) {
    let _one = host::exclusive();
    host::install_logger();
    host::freeze_time(Some(crate::sched::live::tests::T0));
    let bound = match std::env::var("KESTREL_PREEMPTIONS").as_deref() {
        Ok("all") => 3,
        _ => 2,
    };
    let world: std::cell::RefCell<Option<World>> = std::cell::RefCell::new(None);
    let teardown = |w: World| {
        for d in [w.v.domain.clone(), w.s.domain.clone()] {
            d.finish("destroyed", -1, None);
        }
        drop(w.v);
        drop(w.s);
        assert!(DOMAINS.lock().is_empty(), "vCPUs left after the execution");
        assert_eq!(
            ALIVE.load(Ordering::Acquire),
            w.alive,
            "a domain not dropped"
        );
        assert_eq!(P::free_frame_count(), w.free, "frames left");
    };
    let explored = explore(
        bound,
        1_000_000,
        || {
            if let Some(w) = world.borrow_mut().take() {
                teardown(w);
            }
            crate::run::work::poll();
            fake::reset();
            SENT.store(u64::MAX, Ordering::Release);
            crate::sched::clock::init_time(0, P::tsc_hz());
            crate::sched::live::init(2);
            let free = P::free_frame_count();
            let alive = ALIVE.load(Ordering::Acquire);
            host::become_cpu(0);
            let v =
                crate::sched::live::tests::create("peer", || crate::sched::live::tests::blocker(0));
            // V blocks first, so the turn below runs S.
            let vcpu_cpu = queued_on(&v).unwrap();
            host::become_cpu(vcpu_cpu);
            crate::run::schedule(vcpu_cpu);
            let s = crate::sched::live::tests::create("sender", sender);
            PORT.store(crate::sched::live::tests::bind(&v, &s), Ordering::Release);
            let cpu = queued_on(&s).unwrap();
            let other = 1 - cpu.min(1);
            let (d, me) = (v.domain.clone(), v.clone());
            let ps = PORT.load(Ordering::Acquire) as u32;
            let pv = match s.domain.events.lock().status(ps).unwrap().state {
                PortState::Interdomain { remote_port, .. } => remote_port,
                st => panic!("S's port {st:?}"),
            };
            let goes: Body = Box::new(move || {
                host::become_cpu(other);
                if end {
                    d.finish("destroyed", -1, None);
                } else {
                    assert_eq!(svc(&me).evtchn_op(EvtchnOp::Close(pv)), Ok(0));
                }
            });
            let turn: Body = Box::new(move || {
                host::become_cpu(cpu);
                crate::run::schedule(cpu);
            });
            *world.borrow_mut() = Some(World { v, s, free, alive });
            vec![turn, goes]
        },
        |picks| {
            let w = world.borrow();
            let w = w.as_ref().unwrap();
            let sent = SENT.load(Ordering::Acquire);
            assert!(
                sent == 0 || sent == Error::Busy.to_rax(),
                "S's send: {sent:#x} ({picks:?})"
            );
            let ps = PORT.load(Ordering::Acquire) as u32;
            let st = w.s.domain.events.lock().status(ps).unwrap();
            assert_eq!(
                st.state,
                PortState::Unbound {
                    remote: w.v.domain.id
                },
                "{picks:?}"
            );
            assert!(st.pending, "S not told of the close ({picks:?})");
            assert!(!keeps_peer(&w.s, ps), "{picks:?}");
        },
    );
    if let Some(w) = world.borrow_mut().take() {
        teardown(w);
    }
    host::freeze_time(None);
    let out = host::console_take();
    assert!(!out.contains("[WARN]") && !out.contains("[ERROR]"), "{out}");
    std::eprintln!("{explored:?}");
    assert!(explored.complete, "the search was cut short: {explored:?}");
    assert!(explored.executions > 10, "{explored:?}");
    assert!(explored.longest > 6, "{explored:?}");
}

#[test]
fn a_send_against_the_peers_end_in_any_interleaving() {
    search_send_against_the_peer(true);
}

#[test]
fn a_send_against_the_peers_close_in_any_interleaving() {
    search_send_against_the_peer(false);
}
