//! Event-channel op sequences over two domains' port tables, routed as the
//! hypervisor routes them (a send or close on an interdomain port reaches
//! the peer's table).
//!
//! Input: a sequence of ops, each an op byte, a domain byte and two `u32`
//! operands. Small operands are folded into the useful range half the time
//! so the fuzzer reaches bound ports quickly; the other half pass as given.
//!
//! Checked after every op: no panic; every interdomain binding is mutual
//! (port `p` of A bound to `q` of B means `q` of B is bound to `p` of A);
//! no table uses more ports than its limit.

use crate::hv::{Closed, DomainId, EventTable, EvtchnOp, PortState, Route};
use crate::input::Input;

/// The two domains.
pub const DOMS: [DomainId; 2] = [DomainId(1), DomainId(2)];
/// vCPUs per domain.
pub const VCPUS: u32 = 2;
/// Ports looked at by the invariant check (past the limit tests set).
const SCAN: u32 = 80;

/// One domain's op on its own table, the others' tables unknown (the
/// hypercall target's fake: interdomain ops name only itself).
pub fn apply_local(t: &mut EventTable, op: EvtchnOp) -> Result<u64, pvabi::Error> {
    let me = t.domain();
    let ok = |p: u32| u64::from(p);
    match op {
        EvtchnOp::AllocUnbound { remote } => t.alloc_unbound(remote).map(ok),
        EvtchnOp::BindInterdomain { remote, port } if remote == me => {
            t.bind_interdomain(None, port).map(ok)
        }
        EvtchnOp::BindInterdomain { .. } => Err(pvabi::Error::NoEntry),
        EvtchnOp::Send(port) => {
            if let Route::Local(p) = t.send(port)? {
                let _ = t.raise(p);
            }
            Ok(0)
        }
        EvtchnOp::Close(port) => {
            if let Closed::Peer { domain, port, from } = t.close(port)?
                && domain == me
            {
                let _ = t.peer_closed(port, me, from);
            }
            Ok(0)
        }
        EvtchnOp::Mask(port) => t.mask(port).map(|()| 0),
        EvtchnOp::Unmask(port) => t.unmask(port).map(|_| 0),
        EvtchnOp::Poll => Ok(t.take_next_pending().map_or(0, ok)),
        EvtchnOp::BindVirq { virq, vcpu } => t.bind_virq(virq, vcpu).map(ok),
        EvtchnOp::BindIpi { vcpu } => t.bind_ipi(vcpu).map(ok),
        EvtchnOp::Status { port, .. } => t.status(port).map(|s| u64::from(s.to_abi().state)),
        EvtchnOp::BindVcpu { port, vcpu } => t.bind_vcpu(port, vcpu).map(|()| 0),
        EvtchnOp::InitControl { .. } => Ok(0),
        // The handler routes it to `Services::send_wait` (see hypercall.rs).
        EvtchnOp::SendWait { .. } => Err(pvabi::Error::Invalid),
    }
}

fn fold(v: u32, range: u32) -> u32 {
    if v & 0x8000_0000 == 0 { v % range } else { v }
}

fn index(d: DomainId) -> Option<usize> {
    DOMS.iter().position(|x| *x == d)
}

/// Runs one op of domain `me` with routing to the other table.
fn step(tables: &mut [EventTable; 2], me: usize, op: u8, a: u32, b: u32) {
    let port = fold(a, SCAN);
    let t = &mut tables[me];
    match op % 14 {
        0 => {
            let _ = t.alloc_unbound(DOMS[fold(b, 3) as usize % 2]);
        }
        1 => {
            // Bind to port `port` of the other domain (or our own).
            if b & 1 == 0 {
                let [t0, t1] = tables;
                let (mine, theirs) = if me == 0 { (t0, t1) } else { (t1, t0) };
                let _ = mine.bind_interdomain(Some(theirs), port);
            } else {
                let _ = tables[me].bind_interdomain(None, port);
            }
        }
        2 => match t.send(port) {
            Ok(Route::Local(p)) => {
                let _ = t.raise(p);
            }
            Ok(Route::Remote { domain, port, from }) => {
                let d = index(domain).expect("route to an unknown domain");
                let _ = tables[d].deliver(port, DOMS[me], from);
            }
            Err(_) => {}
        },
        3 => {
            if let Ok(Closed::Peer { domain, port, from }) = t.close(port) {
                let d = index(domain).expect("close to an unknown domain");
                let _ = tables[d].peer_closed(port, DOMS[me], from);
            }
        }
        4 => {
            let _ = t.mask(port);
        }
        5 => {
            let _ = t.unmask(port);
        }
        6 => {
            let _ = t.take_next_pending();
        }
        7 => {
            let _ = t.bind_virq(fold(a, 8), fold(b, VCPUS + 1));
        }
        8 => {
            let _ = t.bind_ipi(fold(b, VCPUS + 1));
        }
        9 => {
            let _ = t.bind_vcpu(port, fold(b, VCPUS + 1));
        }
        10 => {
            let _ = t.set_max_ports(fold(b, SCAN));
        }
        11 => {
            let _ = t.clear_pending(port);
        }
        12 => {
            let _ = t.raise_virq(fold(b, VCPUS + 1), fold(a, 8));
        }
        _ => {
            // The domain dies: every port closes, peers learn of it.
            for c in t.close_all() {
                if let Closed::Peer { domain, port, from } = c {
                    let d = index(domain).expect("close to an unknown domain");
                    let _ = tables[d].peer_closed(port, DOMS[me], from);
                }
            }
        }
    }
}

fn check(tables: &[EventTable; 2]) {
    for (i, t) in tables.iter().enumerate() {
        assert!(
            t.ports_in_use() <= t.max_ports(),
            "more ports than the limit"
        );
        for p in 0..SCAN {
            let Ok(st) = t.status(p) else { continue };
            if let PortState::Interdomain {
                remote,
                remote_port,
            } = st.state
            {
                let j = index(remote).expect("bound to an unknown domain");
                let back = tables[j].status(remote_port).map(|s| s.state);
                assert_eq!(
                    back,
                    Ok(PortState::Interdomain {
                        remote: DOMS[i],
                        remote_port: p
                    }),
                    "dom{} port {p} is bound to dom{} port {remote_port}, which is not bound back",
                    DOMS[i].0,
                    remote.0
                );
            }
        }
    }
}

/// The target.
pub fn run(data: &[u8]) {
    let mut tables = DOMS.map(|d| EventTable::new(d, VCPUS));
    let mut inp = Input::new(data);
    while !inp.is_empty() {
        let op = inp.u8();
        let me = usize::from(inp.u8() & 1);
        let (a, b) = (inp.u32(), inp.u32());
        step(&mut tables, me, op, a, b);
        check(&tables);
    }
}
