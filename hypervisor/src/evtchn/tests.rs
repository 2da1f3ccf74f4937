//! Event-channel table tests: every op valid and invalid, two domains,
//! 65,536 ports, masked sends, close, death, fairness.
#![allow(clippy::unwrap_used)]

use super::*;
use std::collections::HashMap;

const D0: DomainId = DomainId(0);
const D1: DomainId = DomainId(1);
const D2: DomainId = DomainId(2);

fn notify(domain: DomainId, vcpu: u32, port: u32) -> Option<Notify> {
    Some(Notify { domain, vcpu, port })
}

/// Sends on `port` of `from` and delivers, as the hypercall will.
fn send(
    tables: &mut HashMap<DomainId, EventTable>,
    from: DomainId,
    port: u32,
) -> Result<Option<Notify>, Error> {
    let route = tables.get(&from).unwrap().send(port)?;
    Ok(match route {
        Route::Local(p) => tables.get_mut(&from).unwrap().raise(p),
        Route::Remote {
            domain,
            port,
            from: src,
        } => tables
            .get_mut(&domain)
            .and_then(|t| t.deliver(port, from, src)),
    })
}

fn two() -> HashMap<DomainId, EventTable> {
    [(D0, EventTable::new(D0, 2)), (D1, EventTable::new(D1, 2))].into()
}

/// Connects a new port of D1 to a new unbound port of D0; returns both.
fn connect(t: &mut HashMap<DomainId, EventTable>) -> (u32, u32) {
    let [a, b] = t.get_disjoint_mut([&D0, &D1]).map(Option::unwrap);
    let p0 = a.alloc_unbound(D1).unwrap();
    let p1 = b.bind_interdomain(Some(a), p0).unwrap();
    (p0, p1)
}

#[test]
fn interdomain_ping_pong() {
    let mut t = two();
    let (p0, p1) = connect(&mut t);
    assert_eq!(p0, 1, "port 0 is never allocated");
    let s0 = t[&D0].status(p0).unwrap();
    assert_eq!(
        s0.state,
        PortState::Interdomain {
            remote: D1,
            remote_port: p1
        }
    );
    assert_eq!(
        t[&D1].status(p1).unwrap().state,
        PortState::Interdomain {
            remote: D0,
            remote_port: p0
        }
    );
    for _ in 0..10_000 {
        assert_eq!(send(&mut t, D1, p1), Ok(notify(D0, 0, p0)));
        assert_eq!(send(&mut t, D1, p1), Ok(None), "already pending");
        assert_eq!(t.get_mut(&D0).unwrap().take_next_pending(), Some(p0));
        assert_eq!(send(&mut t, D0, p0), Ok(notify(D1, 0, p1)));
        assert_eq!(t.get_mut(&D1).unwrap().clear_pending(p1), Ok(true));
    }
    // The notified vCPU follows bind_vcpu.
    t.get_mut(&D0).unwrap().bind_vcpu(p0, 1).unwrap();
    assert_eq!(send(&mut t, D1, p1), Ok(notify(D0, 1, p0)));
}

#[test]
fn bind_interdomain_errors() {
    let mut t = two();
    t.insert(D2, EventTable::new(D2, 1));
    let [a, b, c] = t.get_disjoint_mut([&D0, &D1, &D2]).map(Option::unwrap);
    let for_d2 = a.alloc_unbound(D2).unwrap();
    assert_eq!(b.bind_interdomain(Some(a), for_d2), Err(Error::Perm));
    assert_eq!(b.bind_interdomain(Some(a), 0), Err(Error::NoEntry));
    assert_eq!(b.bind_interdomain(Some(a), 999), Err(Error::NoEntry));
    let ipi = a.bind_ipi(0).unwrap();
    assert_eq!(b.bind_interdomain(Some(a), ipi), Err(Error::Busy));
    let p2 = c.bind_interdomain(Some(a), for_d2).unwrap();
    assert_eq!(
        c.bind_interdomain(Some(a), for_d2),
        Err(Error::Busy),
        "already connected"
    );
    assert_eq!(b.ports_in_use(), 0, "failed binds allocate nothing");
    assert_eq!(c.ports_in_use(), 1);
    assert_eq!(
        c.send(p2),
        Ok(Route::Remote {
            domain: D0,
            port: for_d2,
            from: p2
        })
    );
}

#[test]
fn loopback_in_one_domain() {
    let mut t = EventTable::new(D0, 1);
    let a = t.alloc_unbound(D0).unwrap();
    let b = t.bind_interdomain(None, a).unwrap();
    assert_eq!(t.send(a), Ok(Route::Local(b)));
    assert_eq!(t.send(b), Ok(Route::Local(a)));
    assert_eq!(t.raise(b), notify(D0, 0, b));
    assert_eq!(
        t.close(a),
        Ok(Closed::Peer {
            domain: D0,
            port: b,
            from: a
        })
    );
    assert_eq!(
        t.peer_closed(b, D0, a),
        None,
        "already pending: no second upcall"
    );
    assert_eq!(
        t.status(b).unwrap().state,
        PortState::Unbound { remote: D0 }
    );
}

#[test]
fn send_errors() {
    let mut t = EventTable::new(D0, 2);
    let unbound = t.alloc_unbound(D1).unwrap();
    let virq = t.bind_virq(VIRQ_TIMER, 1).unwrap();
    for port in [0, 77, u32::MAX, EVTCHN_PORTS_LIMIT] {
        assert_eq!(t.send(port), Err(Error::NoEntry));
    }
    assert_eq!(t.send(unbound), Err(Error::Busy), "no peer yet");
    assert_eq!(
        t.send(virq),
        Err(Error::Invalid),
        "only the hypervisor raises virqs"
    );
    t.close(unbound).unwrap();
    assert_eq!(t.send(unbound), Err(Error::NoEntry), "closed");
    assert_eq!(t.raise(unbound), None);
    assert_eq!(t.raise(0), None);
}

#[test]
fn virq_and_ipi() {
    let mut t = EventTable::new(D0, 2);
    assert_eq!(t.bind_virq(NR_VIRQS, 0), Err(Error::Invalid));
    assert_eq!(t.bind_virq(VIRQ_TIMER, 2), Err(Error::Invalid));
    assert_eq!(t.bind_ipi(2), Err(Error::Invalid));
    assert_eq!(t.raise_virq(0, VIRQ_TIMER), None, "not bound: dropped");
    let timer1 = t.bind_virq(VIRQ_TIMER, 1).unwrap();
    let timer0 = t.bind_virq(VIRQ_TIMER, 0).unwrap();
    assert_eq!(t.bind_virq(VIRQ_TIMER, 1), Err(Error::Exists));
    assert_eq!(t.raise_virq(1, VIRQ_TIMER), notify(D0, 1, timer1));
    assert_eq!(t.raise_virq(0, VIRQ_TIMER), notify(D0, 0, timer0));
    assert_eq!(t.raise_virq(0, 999), None);
    assert_eq!(t.raise_virq(9, 0), None);
    assert_eq!(
        t.bind_vcpu(timer1, 0),
        Err(Error::Invalid),
        "virq ports stay on their vCPU"
    );
    assert_eq!(
        t.status(timer1).unwrap().state,
        PortState::Virq { virq: VIRQ_TIMER }
    );
    t.close(timer1).unwrap();
    assert_eq!(t.raise_virq(1, VIRQ_TIMER), None);
    let again = t.bind_virq(VIRQ_TIMER, 1).unwrap();
    assert_eq!(again, timer1, "freed ports are reused");
    assert!(
        !t.status(again).unwrap().pending,
        "a reused port starts clear"
    );

    let ipi = t.bind_ipi(1).unwrap();
    assert_eq!(t.send(ipi), Ok(Route::Local(ipi)));
    assert_eq!(t.raise(ipi), notify(D0, 1, ipi));
    assert_eq!(t.bind_vcpu(ipi, 0), Err(Error::Invalid));
    assert_eq!(t.bind_vcpu(ipi, 7), Err(Error::Invalid));
    assert_eq!(t.bind_vcpu(500, 0), Err(Error::NoEntry));
}

#[test]
fn masked_send_is_delivered_on_unmask() {
    let mut t = two();
    let (p0, p1) = connect(&mut t);
    let d0 = t.get_mut(&D0).unwrap();
    assert_eq!(d0.mask(99), Err(Error::NoEntry));
    assert_eq!(d0.unmask(0), Err(Error::NoEntry));
    d0.mask(p0).unwrap();
    assert_eq!(send(&mut t, D1, p1), Ok(None), "masked: no upcall");
    assert_eq!(send(&mut t, D1, p1), Ok(None));
    let d0 = t.get_mut(&D0).unwrap();
    let st = d0.status(p0).unwrap();
    assert!(st.pending && st.masked);
    assert_eq!(d0.take_next_pending(), None, "masked ports are not taken");
    assert_eq!(d0.unmask(p0), Ok(notify(D0, 0, p0)), "seen on unmask");
    assert_eq!(d0.unmask(p0), Ok(None), "already notified");
    assert_eq!(d0.take_next_pending(), Some(p0));
    d0.mask(p0).unwrap();
    assert_eq!(d0.unmask(p0), Ok(None), "nothing pending");
}

#[test]
fn close_notifies_the_peer() {
    let mut t = two();
    let (p0, p1) = connect(&mut t);
    assert_eq!(t.get_mut(&D1).unwrap().close(99), Err(Error::NoEntry));
    let closed = t.get_mut(&D1).unwrap().close(p1).unwrap();
    assert_eq!(
        closed,
        Closed::Peer {
            domain: D0,
            port: p0,
            from: p1
        }
    );
    let d0 = t.get_mut(&D0).unwrap();
    assert_eq!(d0.peer_closed(p0, D1, p1), notify(D0, 0, p0));
    assert_eq!(
        d0.status(p0).unwrap().state,
        PortState::Unbound { remote: D1 }
    );
    assert_eq!(d0.peer_closed(p0, D1, p1), None, "only once");
    assert_eq!(d0.send(p0), Err(Error::Busy), "peer gone");
    assert_eq!(t[&D1].status(p1).unwrap().state, PortState::Free);
    // D1 can connect again to the port left unbound for it.
    let [a, b] = t.get_disjoint_mut([&D0, &D1]).map(Option::unwrap);
    let again = b.bind_interdomain(Some(a), p0).unwrap();
    // A stale delivery from the old connection does nothing.
    assert_eq!(a.deliver(p0, D1, again + 100), None);
    assert_eq!(
        a.deliver(p0, D1, again).map(|n| n.port),
        None,
        "already pending"
    );
}

#[test]
fn death_closes_everything() {
    let mut t = two();
    let mut pairs = std::vec::Vec::new();
    for _ in 0..5 {
        pairs.push(connect(&mut t));
    }
    let d1 = t.get_mut(&D1).unwrap();
    d1.bind_ipi(1).unwrap();
    d1.bind_virq(VIRQ_CONSOLE, 0).unwrap();
    let lo = d1.alloc_unbound(D1).unwrap();
    d1.bind_interdomain(None, lo).unwrap();
    let peers = d1.close_all();
    assert_eq!(d1.ports_in_use(), 0);
    assert_eq!(peers.len(), 5, "loopback peers are not reported");
    for (peer, &(p0, p1)) in peers.iter().zip(&pairs) {
        assert_eq!(
            *peer,
            Closed::Peer {
                domain: D0,
                port: p0,
                from: p1
            }
        );
        assert!(t.get_mut(&D0).unwrap().peer_closed(p0, D1, p1).is_some());
    }
}

#[test]
fn sixty_five_thousand_ports() {
    let mut t = EventTable::new(D0, 1);
    let n = EVTCHN_DEFAULT_MAX_PORTS - 1;
    for i in 1..=n {
        assert_eq!(t.alloc_unbound(D1), Ok(i));
    }
    assert_eq!(t.alloc_unbound(D1), Err(Error::NoMem), "limit reached");
    assert_eq!(t.ports_in_use(), n);
    assert_eq!(t.set_max_ports(10), Err(Error::Invalid));
    assert_eq!(t.set_max_ports(EVTCHN_PORTS_LIMIT + 1), Err(Error::TooBig));
    t.set_max_ports(EVTCHN_DEFAULT_MAX_PORTS * 2).unwrap();
    assert_eq!(t.alloc_unbound(D1), Ok(n + 1), "limits grow");
    let last = n + 1;
    assert_eq!(
        t.status(last).unwrap().state,
        PortState::Unbound { remote: D1 }
    );
    t.close(40_000).unwrap();
    assert_eq!(t.alloc_unbound(D2), Ok(40_000));
    // Pending ports are found across the whole table.
    let ipi = t.bind_ipi(0).unwrap();
    assert!(ipi > 65_536);
    for p in [3, 40_000, 65_535, ipi] {
        t.raise(p);
    }
    let taken: std::vec::Vec<u32> = core::iter::from_fn(|| t.take_next_pending()).collect();
    assert_eq!(taken, [3, 40_000, 65_535, ipi]);
}

#[test]
fn small_table_round_robin_wraps_below_the_cursor() {
    // At most 64 ports: one word, looked at whole.
    let mut t = EventTable::new(D0, 1);
    let ports: std::vec::Vec<u32> = (0..20).map(|_| t.bind_ipi(0).unwrap()).collect();
    for &p in &ports[..4] {
        t.raise(p);
    }
    assert_eq!(t.take_next_pending(), Some(ports[0]));
    assert_eq!(t.take_next_pending(), Some(ports[1]));
    // Below the cursor now: found by wrapping, after what is above it.
    t.raise(ports[0]);
    t.raise(ports[15]);
    t.mask(ports[2]).unwrap();
    assert_eq!(t.take_next_pending(), Some(ports[3]));
    assert_eq!(t.take_next_pending(), Some(ports[15]));
    assert_eq!(t.take_next_pending(), Some(ports[0]));
    assert_eq!(t.take_next_pending(), None, "the masked port stays");
    assert_eq!(t.unmask(ports[2]), Ok(notify(D0, 0, ports[2])));
    assert_eq!(t.take_next_pending(), Some(ports[2]));
    assert_eq!(t.take_next_pending(), None);
}

#[test]
fn round_robin_does_not_starve() {
    let mut t = EventTable::new(D0, 1);
    let ports: std::vec::Vec<u32> = (0..1000).map(|_| t.bind_ipi(0).unwrap()).collect();
    let hot = ports[10];
    for &p in &ports {
        t.raise(p);
    }
    // Every port stays pending forever (re-raised as soon as taken) and one
    // is raised again after every single take: each port is still taken
    // once per sweep.
    let mut last_taken = HashMap::new();
    for step in 0..20_000u32 {
        let p = t.take_next_pending().unwrap();
        if let Some(prev) = last_taken.insert(p, step) {
            assert!(step - prev <= 1000, "port {p} waited {} takes", step - prev);
        }
        t.raise(p);
        t.raise(hot);
    }
    assert_eq!(last_taken.len(), ports.len());
    // Masked ports are skipped and come back on unmask.
    for &p in &ports {
        t.mask(p).unwrap();
    }
    assert_eq!(t.take_next_pending(), None);
    // Unmasking a pending port always asks for an upcall: an extra one is
    // harmless, a missing one is a lost wake-up.
    assert_eq!(t.unmask(ports[500]), Ok(notify(D0, 0, ports[500])));
    assert_eq!(t.take_next_pending(), Some(ports[500]));
    assert_eq!(t.take_next_pending(), None);
}

#[test]
fn status_reports() {
    let mut t = EventTable::new(D0, 1);
    assert_eq!(t.status(0), Err(Error::NoEntry));
    assert_eq!(t.status(1), Err(Error::NoEntry), "beyond the table");
    let p = t.alloc_unbound(D1).unwrap();
    let st = t.status(p).unwrap();
    assert_eq!(
        (st.state, st.vcpu, st.pending, st.masked),
        (PortState::Unbound { remote: D1 }, 0, false, false)
    );
    t.close(p).unwrap();
    assert_eq!(t.status(p).unwrap().state, PortState::Free);
    assert_eq!(t.clear_pending(p), Err(Error::NoEntry));
    assert_eq!(t.domain(), D0);
    assert_eq!(t.max_ports(), EVTCHN_DEFAULT_MAX_PORTS);
}

#[test]
fn ports_notify_only_vcpus_with_a_control_record() {
    // A domain may have up to DOMCTL_MAX_VCPUS vCPUs, but only
    // the first EVTCHN_CONTROL_VCPUS have upcall words in the shared area.
    let n = pvabi::DOMCTL_MAX_VCPUS;
    let last = pvabi::EVTCHN_CONTROL_VCPUS as u32 - 1;
    let mut t = EventTable::new(D0, n);
    assert!(t.bind_virq(pvabi::VIRQ_TIMER, last).is_ok());
    assert!(t.bind_ipi(last).is_ok());
    for v in [last + 1, n - 1] {
        assert_eq!(t.bind_virq(pvabi::VIRQ_TIMER, v), Err(Error::Invalid));
        assert_eq!(t.bind_ipi(v), Err(Error::Invalid));
    }
    let p = t.alloc_unbound(D0).unwrap();
    assert_eq!(t.bind_vcpu(p, last + 1), Err(Error::Invalid));
    assert_eq!(t.bind_vcpu(p, last), Ok(()));
    // Beyond the domain's own vCPUs, as before.
    assert_eq!(t.bind_virq(pvabi::VIRQ_TIMER, n), Err(Error::Invalid));
}
