//! Host tests of `HC_EVTCHN_SEND_WAIT` (ABI 1.4, number 47): decoding, the
//! documented error order (nothing is sent on an error), what it returns,
//! and that it is refused inside a multicall.

use super::*;
use pvabi::{EBUSY, HC_EVTCHN_SEND_WAIT};

fn sw(v: &mut FakeVcpu, svc: &mut FakeSvc, send: u64, wait: u64, deadline: u64) -> Action {
    call6(v, svc, HC_EVTCHN_SEND_WAIT, [send, wait, deadline, 0xdead]).0
}

#[test]
fn decoding() {
    let a = |s, w, d| [s, w, d, 0xdead, 0xdead, 0xdead];
    assert_eq!(
        EvtchnOp::decode(HC_EVTCHN_SEND_WAIT, a(3, 4, 99)),
        Some(Ok(EvtchnOp::SendWait {
            send: 3,
            wait: 4,
            deadline: 99
        }))
    );
    // Send 0 means "no send"; any deadline is taken (0: none).
    assert_eq!(
        EvtchnOp::decode(HC_EVTCHN_SEND_WAIT, a(0, 4, u64::MAX)),
        Some(Ok(EvtchnOp::SendWait {
            send: 0,
            wait: 4,
            deadline: u64::MAX
        }))
    );
    for (s, w) in [(1 << 32, 4), (3, 1 << 32), (u64::MAX, u64::MAX), (3, 0)] {
        assert_eq!(
            EvtchnOp::decode(HC_EVTCHN_SEND_WAIT, a(s, w, 0)),
            Some(Err(Error::Invalid)),
            "send {s:#x} wait {w:#x}"
        );
    }
}

/// A loopback channel in the fake: `a` sends to `b` and back.
fn pair(v: &mut FakeVcpu, svc: &mut FakeSvc) -> (u64, u64) {
    call(v, svc, pvabi::HC_EVTCHN_ALLOC_UNBOUND, 1, 0);
    let b = v.regs.rax;
    call(v, svc, pvabi::HC_EVTCHN_BIND_INTERDOMAIN, 1, b);
    (v.regs.rax, b)
}

#[test]
fn errors_in_order_and_nothing_sent_on_any() {
    let mut svc = FakeSvc::new(0x2000);
    let mut v = FakeVcpu::default();
    let (a, b) = pair(&mut v, &mut svc);
    let rax = |v: &FakeVcpu| v.regs.rax as i64;
    // EINVAL (decoding) before the table is asked.
    assert_eq!(sw(&mut v, &mut svc, a, 0, 0), Action::Resume);
    assert_eq!(rax(&v), EINVAL);
    assert_eq!(sw(&mut v, &mut svc, 1 << 40, 99, 0), Action::Resume);
    assert_eq!(rax(&v), EINVAL, "EINVAL before the wait port's ENOENT");
    // The wait port: ENOENT, then masked EINVAL, before the send's errors.
    assert_eq!(sw(&mut v, &mut svc, 77, 99, 0), Action::Resume);
    assert_eq!(rax(&v), ENOENT);
    call(&mut v, &mut svc, pvabi::HC_EVTCHN_MASK, a, 0);
    assert_eq!(sw(&mut v, &mut svc, 77, a, 0), Action::Resume);
    assert_eq!(
        rax(&v),
        EINVAL,
        "masked wait port, before the send's ENOENT"
    );
    assert_eq!(sw(&mut v, &mut svc, b, a, 0), Action::Resume);
    assert_eq!(rax(&v), EINVAL, "a valid send is not made either");
    call(&mut v, &mut svc, pvabi::HC_EVTCHN_UNMASK, a, 0);
    // The send's own errors: ENOENT, EBUSY (unbound), with nothing waited.
    assert_eq!(sw(&mut v, &mut svc, 77, a, 0), Action::Resume);
    assert_eq!(rax(&v), ENOENT);
    call(&mut v, &mut svc, pvabi::HC_EVTCHN_ALLOC_UNBOUND, 2, 0);
    let unbound = v.regs.rax;
    assert_eq!(sw(&mut v, &mut svc, unbound, a, 0), Action::Resume);
    assert_eq!(rax(&v), EBUSY);
    // Nothing was sent by any of them: no port is pending.
    call(&mut v, &mut svc, pvabi::HC_EVTCHN_POLL, 0, 0);
    assert_eq!(v.regs.rax, 0);
}

#[test]
fn takes_the_wait_port_blocks_or_reports_another_event() {
    let mut svc = FakeSvc::new(0x2000);
    let mut v = FakeVcpu::default();
    let (a, b) = pair(&mut v, &mut svc);
    // Send on a (raises b), wait for b: taken at once, RAX = b.
    assert_eq!(sw(&mut v, &mut svc, a, b, 0), Action::Resume);
    assert_eq!(v.regs.rax, b);
    call(&mut v, &mut svc, pvabi::HC_EVTCHN_POLL, 0, 0);
    assert_eq!(v.regs.rax, 0, "taken: a poll no longer sees it");
    // Nothing pending, no send: it blocks (RAX is set at wake-up).
    assert_eq!(sw(&mut v, &mut svc, 0, b, 0), Action::Block);
    // A deadline already passed: no block, 0.
    assert_eq!(sw(&mut v, &mut svc, 0, b, 1), Action::Resume);
    assert_eq!(v.regs.rax, 0);
    // Another port pending (b sends to a): 0 at once, EVENT_CHANNEL kept
    // for the guest, and the port still there for a poll.
    assert_eq!(sw(&mut v, &mut svc, b, b, 0), Action::Resume);
    assert_eq!(v.regs.rax, 0);
    assert_eq!(svc.pending, pvabi::EVENT_CHANNEL);
    call(&mut v, &mut svc, pvabi::HC_EVTCHN_POLL, 0, 0);
    assert_eq!(v.regs.rax, a);
    // Another event (the timer) pending: 0, the mask left for SCHED_POLL.
    svc.pending = pvabi::EVENT_TIMER;
    assert_eq!(sw(&mut v, &mut svc, 0, b, 0), Action::Resume);
    assert_eq!(v.regs.rax, 0);
    assert_eq!(svc.pending, pvabi::EVENT_TIMER);
    // A stale EVENT_CHANNEL bit alone does not end the wait.
    svc.pending = pvabi::EVENT_CHANNEL;
    assert_eq!(sw(&mut v, &mut svc, 0, b, 0), Action::Block);
    assert_eq!(svc.pending, 0);
}

#[test]
fn refused_inside_a_multicall() {
    let mut svc = FakeSvc::new(0x4000);
    let mut v = FakeVcpu::default();
    let (a, b) = pair(&mut v, &mut svc);
    let e = entry(HC_EVTCHN_SEND_WAIT, [a, b, 0, 0, 0, 0]);
    svc.write(0x1000, e.as_bytes()).unwrap();
    assert_eq!(
        call(&mut v, &mut svc, pvabi::HC_MULTICALL, 0x1000, 1).0,
        Action::Resume
    );
    let mut back = entry(0, [0; 6]);
    svc.read(0x1000, back.as_mut_bytes()).unwrap();
    assert_eq!(back.result as i64, EINVAL);
    call(&mut v, &mut svc, pvabi::HC_EVTCHN_POLL, 0, 0);
    assert_eq!(v.regs.rax, 0, "the refused entry sent nothing");
}
