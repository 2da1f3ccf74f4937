//! A send that raises the very port its peer's vCPU waits for in
//! `HC_EVTCHN_SEND_WAIT` hands it over (`deliver_remote`): the port's bit
//! is taken under the peer's table lock and the waiter's resume
//! (`wake_value`) reads no table. These tests drive the real ops on two
//! live (paused) domains, and stage by hand the orders a run would race:
//! a waiter that resumed before the send, a peer that ends between the
//! send and the wake, a port closed and reused under a send in flight.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use pvabi::{EVENT_CHANNEL, Error};

use super::{HANDED, deliver_by_id, deliver_remote, look_at_wait_port, wake_value};
use crate::domain::lifecycle::VcpuEntry;
use crate::evtchn::PortState;
use crate::evtchn::ops::EvtchnOp;

use super::tests_pair::{pending, svc};

/// Two paused domains, V and S, and a connected pair: V's port `pv`,
/// S's port `ps`. Run `body`, then end both and check nothing leaked.
fn with_pair(body: impl FnOnce(&Arc<VcpuEntry>, &Arc<VcpuEntry>, u32, u32)) {
    super::tests_pair::with_pair(|_, v, s, pv, ps| body(&v, &s, pv, ps));
}

#[test]
fn a_send_hands_the_port_to_the_vcpu_that_waits_for_it() {
    with_pair(|v, s, pv, ps| {
        // V waits for `pv` (nothing ready: it would block).
        let mut sv = svc(v);
        assert_eq!(sv.send_wait_op(0, pv, 0), Ok(None));
        assert_eq!(v.wait_port.load(Ordering::Acquire), pv);
        assert_eq!(svc(s).evtchn_op(EvtchnOp::Send(ps)), Ok(0));
        // Handed: claimed in V's wait word, the bit already taken.
        assert_eq!(v.wait_port.load(Ordering::Acquire), pv | HANDED);
        assert!(!pending(v, pv), "the hand takes the pending bit");
        assert_ne!(v.pending.load(Ordering::Acquire) & EVENT_CHANNEL, 0);
        // The resume answers the port without a look.
        assert_eq!(wake_value(v, 0, 0), Some(u64::from(pv)));
        assert_eq!(v.wait_port.load(Ordering::Acquire), 0);
        // Nothing is left to take: a second wait finds nothing.
        assert_eq!(look_at_wait_port(v, pv), None);
        // A send with V not waiting raises the port as before.
        assert_eq!(svc(s).evtchn_op(EvtchnOp::Send(ps)), Ok(0));
        assert!(pending(v, pv));
        assert_eq!(look_at_wait_port(v, pv), Some(u64::from(pv)));
    });
}

#[test]
fn a_send_to_another_port_than_the_wait_port_is_not_handed() {
    with_pair(|v, s, pv, ps| {
        let other = svc(v)
            .evtchn_op(EvtchnOp::AllocUnbound {
                remote: s.domain.id,
            })
            .unwrap() as u32;
        assert_eq!(svc(v).send_wait_op(0, other, 0), Ok(None));
        assert_eq!(svc(s).evtchn_op(EvtchnOp::Send(ps)), Ok(0));
        assert_eq!(v.wait_port.load(Ordering::Acquire), other);
        assert!(pending(v, pv));
        // The resume looks: another port is ready, so 0 and the bit kept.
        assert_eq!(wake_value(v, 0, 0), Some(0));
        assert_ne!(v.pending.load(Ordering::Acquire) & EVENT_CHANNEL, 0);
        assert!(pending(v, pv), "left for the guest's poll");
    });
}

#[test]
fn a_waiter_that_resumed_before_the_send_finds_the_port_in_its_table() {
    with_pair(|v, s, pv, ps| {
        assert_eq!(svc(v).send_wait_op(0, pv, 0), Ok(None));
        // Its resume cleared the wait word (woken by something else) and
        // has not looked yet: the send's claim fails, the bit stays.
        let wait = v.wait_port.swap(0, Ordering::AcqRel);
        assert_eq!(svc(s).evtchn_op(EvtchnOp::Send(ps)), Ok(0));
        assert!(pending(v, pv));
        assert_eq!(look_at_wait_port(v, wait), Some(u64::from(pv)));
        assert!(!pending(v, pv));
    });
}

#[test]
fn a_peer_ending_between_the_send_and_the_wake_leaves_both_events() {
    with_pair(|v, s, pv, ps| {
        assert_eq!(svc(v).send_wait_op(0, pv, 0), Ok(None));
        assert_eq!(svc(s).evtchn_op(EvtchnOp::Send(ps)), Ok(0));
        assert_eq!(v.wait_port.load(Ordering::Acquire), pv | HANDED);
        // S ends before V runs again: its ports close, V's goes unbound
        // and pending (the peer's close is an event of its own).
        s.domain.finish("destroyed", 0, None);
        let st = v.domain.events.lock().status(pv).unwrap();
        assert_eq!(
            st.state,
            PortState::Unbound {
                remote: s.domain.id
            }
        );
        assert!(st.pending);
        // The wait ends with the send it got; the close is the next event.
        assert_eq!(wake_value(v, 0, 0), Some(u64::from(pv)));
        assert_eq!(look_at_wait_port(v, pv), Some(u64::from(pv)));
        // The ended side's own port is gone, and V's is unbound.
        assert_eq!(svc(s).evtchn_op(EvtchnOp::Send(ps)), Err(Error::NoEntry));
        assert_eq!(svc(v).evtchn_op(EvtchnOp::Send(pv)), Err(Error::Busy));
    });
}

#[test]
fn a_send_in_flight_to_a_closed_and_reused_port_is_dropped() {
    with_pair(|v, s, pv, ps| {
        assert_eq!(svc(v).send_wait_op(0, pv, 0), Ok(None));
        // V's domain closes `pv` and allocates the same number again for
        // S; a send that read S's table before (its route names `pv`,
        // from `ps`) arrives now.
        assert_eq!(svc(v).evtchn_op(EvtchnOp::Close(pv)), Ok(0));
        let again = svc(v)
            .evtchn_op(EvtchnOp::AllocUnbound {
                remote: s.domain.id,
            })
            .unwrap() as u32;
        assert_eq!(again, pv, "the freed number is reused");
        // By the sending port's reference and by the domain table alike.
        assert!(deliver_remote(&v.domain, s.domain.id, pv, ps).is_none());
        assert!(deliver_by_id(s.domain.id, v.domain.id, pv, ps).is_none());
        assert_eq!(v.wait_port.load(Ordering::Acquire), pv, "not handed");
        assert!(!pending(v, pv), "the new port is left alone");
    });
}
