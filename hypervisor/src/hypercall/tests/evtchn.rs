//! Host tests of the event-channel hypercalls: argument
//! decoding and validation in the exit handler, and the ops end to end
//! against a real port table (a loopback channel of one domain).

use super::*;
use crate::domain::ids::DomainId;
use crate::evtchn::WaitCheck;
use crate::evtchn::{Closed, EventTable, Route};
use pvabi::{
    EVENT_CHANNEL, HC_EVTCHN_ALLOC_UNBOUND, HC_EVTCHN_BIND_INTERDOMAIN, HC_EVTCHN_CLOSE,
    HC_EVTCHN_MASK, HC_EVTCHN_POLL, HC_EVTCHN_SEND, HC_EVTCHN_UNMASK,
};

/// The fake's services: domain 1 only (loopback channels); any other
/// domain does not exist. Upcalls are not modelled (the scheduler's job).
pub(super) fn fake_op(t: &mut EventTable, op: EvtchnOp) -> Result<u64, Error> {
    let me = t.domain();
    let ok = |p: u32| u64::from(p);
    match op {
        EvtchnOp::AllocUnbound { remote } => t.alloc_unbound(remote).map(ok),
        EvtchnOp::BindInterdomain { remote, port } if remote == me => {
            t.bind_interdomain(None, port).map(ok)
        }
        EvtchnOp::BindInterdomain { .. } => Err(Error::NoEntry),
        EvtchnOp::Send(port) => match t.send(port)? {
            Route::Local(p) => {
                let _ = t.raise(p);
                Ok(0)
            }
            Route::Remote { .. } => Ok(0),
        },
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
        // The fake answers with the ABI state instead of writing memory.
        EvtchnOp::Status { port, .. } => t.status(port).map(|s| u64::from(s.to_abi().state)),
        EvtchnOp::BindVcpu { port, vcpu } => t.bind_vcpu(port, vcpu).map(|()| 0),
        // Registration needs the domain's pages: the scheduler's job.
        EvtchnOp::InitControl { .. } => Ok(0),
        // Decoded apart: `fake_send_wait`.
        EvtchnOp::SendWait { .. } => Err(Error::Invalid),
    }
}

/// The fake's clock for deadlines (system ns).
pub(super) const FAKE_NOW: u64 = 1_000;

/// `HC_EVTCHN_SEND_WAIT` over the fake (the order of `Svc::send_wait_op`):
/// the wait port's checks, the send, the look at the wait port (the
/// fake's pending mask stands for the vCPU's), then the deadline.
pub(super) fn fake_send_wait(
    f: &mut FakeSvc,
    send: u32,
    wait: u32,
    deadline: u64,
) -> Result<Option<u64>, Error> {
    f.events.check_wait(wait)?;
    if send != 0 {
        fake_op(&mut f.events, EvtchnOp::Send(send))?;
    }
    f.pending &= !EVENT_CHANNEL;
    let c = f.events.take_wait(wait);
    if c.others() {
        f.pending |= EVENT_CHANNEL;
    }
    match c {
        WaitCheck::Taken { .. } => return Ok(Some(u64::from(wait))),
        WaitCheck::Other => return Ok(Some(0)),
        WaitCheck::Empty => {}
    }
    if f.pending != 0 || (deadline != 0 && deadline <= FAKE_NOW) {
        return Ok(Some(0));
    }
    Ok(None)
}

const NRS: [u64; 7] = [
    HC_EVTCHN_ALLOC_UNBOUND,
    HC_EVTCHN_BIND_INTERDOMAIN,
    HC_EVTCHN_SEND,
    HC_EVTCHN_CLOSE,
    HC_EVTCHN_UNMASK,
    HC_EVTCHN_MASK,
    HC_EVTCHN_POLL,
];

mod v13;

mod v14;

#[test]
fn decoding_each_number() {
    let d = DomainId;
    let a = |x, y| [x, y, 0xdead, 0xdead, 0xdead, 0xdead];
    let want = [
        EvtchnOp::AllocUnbound { remote: d(7) },
        EvtchnOp::BindInterdomain {
            remote: d(7),
            port: 9,
        },
        EvtchnOp::Send(7),
        EvtchnOp::Close(7),
        EvtchnOp::Unmask(7),
        EvtchnOp::Mask(7),
        EvtchnOp::Poll,
    ];
    for (nr, w) in NRS.into_iter().zip(want) {
        assert_eq!(EvtchnOp::decode(nr, a(7, 9)), Some(Ok(w)), "nr {nr}");
    }
    for nr in [0, 13, 21, u64::MAX] {
        assert_eq!(EvtchnOp::decode(nr, a(7, 9)), None);
    }
}

#[test]
fn arguments_beyond_32_bits_are_einval_and_never_reach_the_tables() {
    let mut svc = FakeSvc::new(0x2000);
    let mut v = FakeVcpu::default();
    for bad in [1 << 32, u64::MAX, 0x1_0000_0001] {
        for nr in &NRS[..6] {
            assert_eq!(call(&mut v, &mut svc, *nr, bad, 1).0, Action::Resume);
            assert_eq!(v.regs.rax as i64, EINVAL, "nr {nr} arg {bad:#x}");
        }
        // The remote port of bind_interdomain too.
        call(&mut v, &mut svc, HC_EVTCHN_BIND_INTERDOMAIN, 1, bad);
        assert_eq!(v.regs.rax as i64, EINVAL);
    }
    assert!(svc.evtchn_ops.is_empty(), "{:?}", svc.evtchn_ops);
    // Poll takes no argument: whatever the registers hold, it runs.
    call(&mut v, &mut svc, HC_EVTCHN_POLL, u64::MAX, u64::MAX);
    assert_eq!(v.regs.rax, 0);
    assert_eq!(svc.evtchn_ops, [EvtchnOp::Poll]);
}

#[test]
fn loopback_channel_through_the_handler() {
    let mut svc = FakeSvc::new(0x2000);
    let mut v = FakeVcpu::default();
    let mut rax = |svc: &mut FakeSvc, nr, a, b| {
        assert_eq!(call(&mut v, svc, nr, a, b).0, Action::Resume);
        v.regs.rax as i64
    };
    // Never-allocated, zero and huge ports: ENOENT (inside 32 bits).
    for p in [0, 1, 5, 70_000, u64::from(u32::MAX)] {
        assert_eq!(rax(&mut svc, HC_EVTCHN_SEND, p, 0), ENOENT);
        assert_eq!(rax(&mut svc, HC_EVTCHN_CLOSE, p, 0), ENOENT);
        assert_eq!(rax(&mut svc, HC_EVTCHN_MASK, p, 0), ENOENT);
        assert_eq!(rax(&mut svc, HC_EVTCHN_UNMASK, p, 0), ENOENT);
    }
    // Another domain does not exist here.
    assert_eq!(rax(&mut svc, HC_EVTCHN_BIND_INTERDOMAIN, 2, 1), ENOENT);
    // Port 1 offered to domain 9: not ours to bind, unbound to send on.
    assert_eq!(rax(&mut svc, HC_EVTCHN_ALLOC_UNBOUND, 9, 0), 1);
    assert_eq!(rax(&mut svc, HC_EVTCHN_BIND_INTERDOMAIN, 1, 1), EPERM);
    assert_eq!(rax(&mut svc, HC_EVTCHN_SEND, 1, 0), EBUSY);
    // A loopback pair 2 <-> 3.
    assert_eq!(rax(&mut svc, HC_EVTCHN_ALLOC_UNBOUND, 1, 0), 2);
    assert_eq!(rax(&mut svc, HC_EVTCHN_BIND_INTERDOMAIN, 1, 2), 3);
    assert_eq!(rax(&mut svc, HC_EVTCHN_BIND_INTERDOMAIN, 1, 2), EBUSY);
    assert_eq!(rax(&mut svc, HC_EVTCHN_SEND, 3, 0), 0);
    assert_eq!(rax(&mut svc, HC_EVTCHN_POLL, 0, 0), 2);
    assert_eq!(rax(&mut svc, HC_EVTCHN_POLL, 0, 0), 0);
    // Masked: pending but not polled until unmasked.
    assert_eq!(rax(&mut svc, HC_EVTCHN_MASK, 3, 0), 0);
    assert_eq!(rax(&mut svc, HC_EVTCHN_SEND, 2, 0), 0);
    assert_eq!(rax(&mut svc, HC_EVTCHN_POLL, 0, 0), 0);
    assert_eq!(rax(&mut svc, HC_EVTCHN_UNMASK, 3, 0), 0);
    assert_eq!(rax(&mut svc, HC_EVTCHN_POLL, 0, 0), 3);
    // Close one end: the other becomes unbound (and pending); a second
    // close fails.
    assert_eq!(rax(&mut svc, HC_EVTCHN_CLOSE, 3, 0), 0);
    assert_eq!(rax(&mut svc, HC_EVTCHN_CLOSE, 3, 0), ENOENT);
    assert_eq!(rax(&mut svc, HC_EVTCHN_POLL, 0, 0), 2);
    assert_eq!(rax(&mut svc, HC_EVTCHN_SEND, 2, 0), EBUSY);
    assert_eq!(EVENT_CHANNEL, 2);
}

#[test]
fn evtchn_ops_run_inside_a_multicall() {
    let mut svc = FakeSvc::new(0x4000);
    let batch = [
        entry(HC_EVTCHN_ALLOC_UNBOUND, [1, 0, 0, 0, 0, 0]),
        entry(HC_EVTCHN_BIND_INTERDOMAIN, [1, 1, 0, 0, 0, 0]),
        entry(HC_EVTCHN_SEND, [2, 0, 0, 0, 0, 0]),
        entry(HC_EVTCHN_POLL, [0; 6]),
        entry(HC_EVTCHN_SEND, [1 << 40, 0, 0, 0, 0, 0]),
    ];
    for (i, e) in batch.iter().enumerate() {
        svc.mem[0x2000 + i * 64..0x2000 + (i + 1) * 64].copy_from_slice(e.as_bytes());
    }
    let mut v = FakeVcpu::default();
    call(&mut v, &mut svc, HC_MULTICALL, 0x2000, batch.len() as u64);
    assert_eq!(v.regs.rax, batch.len() as u64);
    let results: Vec<i64> = (0..batch.len())
        .map(|i| {
            MulticallEntry::read_from_bytes(&svc.mem[0x2000 + i * 64..0x2000 + (i + 1) * 64])
                .unwrap()
                .result as i64
        })
        .collect();
    assert_eq!(results, [1, 2, 0, 1, EINVAL]);
}

#[test]
fn grant_hypercalls_reach_the_services_decoded() {
    let mut svc = FakeSvc::new(0x2000);
    let mut vcpu = FakeVcpu::default();
    vcpu.regs.rax = pvabi::HC_GRANT_MAP;
    vcpu.regs.rdi = 1;
    vcpu.regs.rsi = 7;
    vcpu.regs.rdx = 0x9000;
    vcpu.regs.r10 = pvabi::GRANT_READONLY;
    let a = handle(
        VmExit::Hypercall { len: 3 },
        &mut vcpu,
        &mut svc,
        &FakeHost,
        0,
        &mut |_| true,
    );
    assert_eq!(a, Action::Resume);
    assert_eq!(vcpu.regs.rax, 0);
    assert_eq!(
        svc.grant_ops,
        [GrantOp::Map {
            granter: crate::domain::ids::DomainId(1),
            gref: 7,
            at: 0x9000,
            access: crate::grant::Access::ReadOnly,
        }]
    );
    // A bad flag never reaches the services.
    vcpu.regs.rax = pvabi::HC_GRANT_ACCESS;
    vcpu.regs.rdx = 4;
    handle(
        VmExit::Hypercall { len: 3 },
        &mut vcpu,
        &mut svc,
        &FakeHost,
        0,
        &mut |_| true,
    );
    assert_eq!(vcpu.regs.rax as i64, pvabi::EINVAL);
    assert_eq!(svc.grant_ops.len(), 1);
}
