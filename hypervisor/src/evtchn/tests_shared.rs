//! Tests of the shared control area ([`SharedBits`] over fake guest
//! memory), virq/ipi/status and the ABI status report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use pvabi::{EVTCHN_MASK_OFFSET, EVTCHN_PENDING_OFFSET, EVTCHN_VCPU_SIZE};

/// Fake guest memory: the area's words, shared with the "guest" (the test).
#[derive(Clone)]
struct Fake(Arc<Vec<AtomicU64>>);

impl Fake {
    fn new() -> Self {
        Self(Arc::new(
            (0..AREA_WORDS).map(|_| AtomicU64::new(0)).collect(),
        ))
    }
    fn get(&self, w: usize) -> u64 {
        self.0[w].load(Ordering::SeqCst)
    }
    fn set(&self, w: usize, v: u64) {
        self.0[w].store(v, Ordering::SeqCst);
    }
    fn pending(&self, port: u32) -> bool {
        self.get(EVTCHN_PENDING_OFFSET / 8 + port as usize / 64) & (1 << (port % 64)) != 0
    }
    fn mask_word(port: u32) -> usize {
        EVTCHN_MASK_OFFSET / 8 + port as usize / 64
    }
    fn upcall_pending(&self, vcpu: usize) -> u64 {
        self.get(vcpu * EVTCHN_VCPU_SIZE / 8)
    }
    fn selector(&self, vcpu: usize) -> u64 {
        self.get(vcpu * EVTCHN_VCPU_SIZE / 8 + 16)
    }
}

impl SharedWords for Fake {
    fn load(&self, w: usize) -> u64 {
        self.0.get(w).map_or(0, |a| a.load(Ordering::Acquire))
    }
    fn store(&self, w: usize, v: u64) {
        if let Some(a) = self.0.get(w) {
            a.store(v, Ordering::Release);
        }
    }
    fn fetch_or(&self, w: usize, v: u64) -> u64 {
        self.0.get(w).map_or(0, |a| a.fetch_or(v, Ordering::SeqCst))
    }
    fn fetch_and(&self, w: usize, v: u64) -> u64 {
        self.0
            .get(w)
            .map_or(0, |a| a.fetch_and(v, Ordering::SeqCst))
    }
}

impl super::shared::TestNew for Fake {
    fn test_new() -> Self {
        Self::new()
    }
}

type Table = EventTable<DomainBits<Fake>>;
const D: DomainId = DomainId(5);

fn table() -> Table {
    EventTable::with_bits(D, 4, DomainBits::default())
}

#[test]
fn share_carries_bits_over_and_notifies() {
    let mut t = table();
    let a = t.bind_ipi(2).unwrap();
    let b = t.bind_ipi(1).unwrap();
    let c = t.bind_ipi(3).unwrap();
    assert!(t.raise(a).is_some());
    t.mask(b).unwrap();
    assert_eq!(t.raise(b), None, "masked");
    t.mask(c).unwrap();
    let f = Fake::new();
    t.share_bits(f.clone()).unwrap();
    assert!(f.pending(a) && f.pending(b) && !f.pending(c));
    assert_ne!(f.get(Fake::mask_word(b)) & (1 << b), 0, "mask carried over");
    assert_eq!(
        f.upcall_pending(2),
        1,
        "pending unmasked port a notifies vCPU 2"
    );
    assert_eq!(f.selector(2), 1, "word 0 selected");
    assert_eq!(f.upcall_pending(1), 0, "b is masked");
    assert_eq!(t.share_bits(Fake::new()), Err(Error::Exists));
    let s = t.status(a).unwrap();
    assert!(s.pending && !s.masked);
}

#[test]
fn raise_sets_pending_selector_and_upcall() {
    let mut t = table();
    let f = Fake::new();
    t.share_bits(f.clone()).unwrap();
    let mut last = 0;
    for _ in 0..130 {
        last = t.bind_ipi(1).unwrap();
    }
    assert_eq!(last, 130);
    let n = t.raise(last).unwrap();
    assert_eq!((n.vcpu, n.port), (1, 130));
    assert!(f.pending(130));
    assert_eq!(f.selector(1), 1 << 2, "port 130 is in pending word 2");
    assert_eq!(f.upcall_pending(1), 1);
    assert!(t.upcall_ready(1));
    f.set(EVTCHN_VCPU_SIZE / 8 + 1, 1); // the guest sets vCPU 1's upcall_mask
    assert!(!t.upcall_ready(1), "upcall_mask holds the injection back");
    assert!(!t.upcall_ready(0) && !t.upcall_ready(99));
    assert_eq!(t.raise(last), None, "already pending: coalesced");
    assert_eq!(t.take_next_pending(), Some(130));
    assert!(!f.pending(130), "poll clears the shared bit");
}

#[test]
fn guest_mask_and_unmask_lose_no_wakeup() {
    let mut t = table();
    let f = Fake::new();
    t.share_bits(f.clone()).unwrap();
    let p = t.bind_ipi(0).unwrap();
    f.set(Fake::mask_word(p), 1 << p); // guest masks without a hypercall
    assert_eq!(t.raise(p), None, "masked in the shared area");
    assert!(f.pending(p));
    assert_eq!(f.upcall_pending(0), 0);
    f.set(Fake::mask_word(p), 0); // guest unmasks, sees pending, calls UNMASK
    let n = t.unmask(p).unwrap().unwrap();
    assert_eq!((n.vcpu, n.port), (0, p));
    assert_eq!(f.upcall_pending(0), 1);
    assert_eq!(f.selector(0), 1);
}

#[test]
fn scribbled_area_confuses_only_the_guest() {
    let mut t = table();
    let f = Fake::new();
    t.share_bits(f.clone()).unwrap();
    let p = t.bind_ipi(3).unwrap();
    for w in 0..AREA_WORDS {
        f.set(
            w,
            0xdead_beef_dead_beef ^ (w as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
    }
    // Nothing panics; every op still answers within the table's rules.
    let _ = t.raise(p);
    let _ = t.unmask(p);
    let _ = t.take_next_pending();
    let _ = t.status(p).unwrap();
    assert_eq!(t.status(9999), Err(Error::NoEntry));
    assert_eq!(t.send(9999), Err(Error::NoEntry));
    for v in 0..20 {
        let _ = t.upcall_ready(v);
    }
    for w in 0..AREA_WORDS {
        f.set(w, u64::MAX);
    }
    assert!(t.take_next_pending().is_none(), "everything masked");
    t.close(p).unwrap();
    assert_eq!(t.ports_in_use(), 0);
}

#[test]
fn shared_area_caps_the_port_limit() {
    let mut s = SharedBits::<Fake>::default_for_test();
    assert!(s.grow(65536).is_ok());
    assert_eq!(s.grow(65537), Err(Error::NoMem));
    assert!(!s.test_and_set_pending(70000), "outside the area: ignored");
    assert!(!s.is_pending(70000));
}

#[test]
fn virq_ipi_and_status() {
    let mut t = EventTable::new(D, 2);
    let v = t.bind_virq(VIRQ_TIMER, 1).unwrap();
    assert_eq!(t.bind_virq(VIRQ_TIMER, 1), Err(Error::Exists));
    assert_eq!(t.bind_virq(NR_VIRQS, 0), Err(Error::Invalid));
    assert_eq!(t.bind_virq(u32::MAX, 0), Err(Error::Invalid));
    assert_eq!(t.bind_virq(VIRQ_TIMER, 2), Err(Error::Invalid));
    assert_eq!(t.bind_ipi(2), Err(Error::Invalid));
    let i = t.bind_ipi(1).unwrap();
    let u = t.alloc_unbound(DomainId(9)).unwrap();
    assert_eq!(
        t.send(v),
        Err(Error::Invalid),
        "only the hypervisor raises virqs"
    );
    assert_eq!(t.send(i), Ok(Route::Local(i)));
    assert_eq!(t.bind_vcpu(v, 0), Err(Error::Invalid));
    assert_eq!(t.bind_vcpu(u, 5), Err(Error::Invalid));
    t.bind_vcpu(u, 1).unwrap();
    let n = t.raise_virq(1, VIRQ_TIMER).unwrap();
    assert_eq!((n.vcpu, n.port), (1, v));
    let s = t.status(v).unwrap().to_abi();
    assert_eq!(
        (s.state, s.vcpu, s.virq, s.pending, s.masked),
        (pvabi::EVTCHN_STATE_VIRQ, 1, VIRQ_TIMER, 1, 0)
    );
    t.mask(i).unwrap();
    let s = t.status(i).unwrap().to_abi();
    assert_eq!((s.state, s.vcpu, s.masked), (pvabi::EVTCHN_STATE_IPI, 1, 1));
    let s = t.status(u).unwrap().to_abi();
    assert_eq!(
        (s.state, s.vcpu, s.remote_domain),
        (pvabi::EVTCHN_STATE_UNBOUND, 1, 9)
    );
    t.close(u).unwrap();
    assert_eq!(
        t.status(u).unwrap().to_abi().state,
        pvabi::EVTCHN_STATE_FREE
    );
    t.close(v).unwrap();
    assert_eq!(t.raise_virq(1, VIRQ_TIMER), None, "unbound by close");
    assert!(t.bind_virq(VIRQ_TIMER, 1).is_ok(), "may be bound again");
}

#[test]
fn dom_exc_raised_on_every_binding_vcpu() {
    let mut t = EventTable::new(D, 3);
    assert!(t.raise_virq_all(VIRQ_DOM_EXC).is_empty(), "nobody bound it");
    let a = t.bind_virq(VIRQ_DOM_EXC, 0).unwrap();
    let b = t.bind_virq(VIRQ_DOM_EXC, 2).unwrap();
    let n = t.raise_virq_all(VIRQ_DOM_EXC);
    assert_eq!(
        n.iter().map(|n| (n.vcpu, n.port)).collect::<Vec<_>>(),
        vec![(0, a), (2, b)]
    );
    assert!(
        t.raise_virq_all(VIRQ_DOM_EXC).is_empty(),
        "coalesced while pending"
    );
}

/// A waiter's look and a delivery read both bits from the guest's words
/// (each in one call of the bits: `take_then_ready`,
/// `pending_and_masked`), in small tables and past 64 ports.
#[test]
fn a_wait_and_a_delivery_read_the_guests_words() {
    for extra in [0, 100] {
        let mut t = table();
        let f = Fake::new();
        t.share_bits(f.clone()).unwrap();
        for _ in 0..extra {
            t.bind_ipi(0).unwrap();
        }
        let b = t.alloc_unbound(D).unwrap();
        let a = t.bind_interdomain(None, b).unwrap();
        // The send raises `b` before the look, which takes it.
        let (_, look) = t.send_and_look(a, b, || {}).unwrap();
        assert_eq!(look, WaitCheck::Taken { others: false }, "{extra}");
        assert!(!f.pending(b));
        // Another port raised: reported.
        let c = t.bind_ipi(1).unwrap();
        assert!(t.raise(c).is_some());
        assert_eq!(t.send_and_look(0, b, || {}).unwrap().1, WaitCheck::Other);
        // Masked by the guest: not ready.
        f.set(Fake::mask_word(c), 1 << (c % 64));
        assert_eq!(t.send_and_look(0, b, || {}).unwrap().1, WaitCheck::Empty);
    }
    // A delivery to another domain's shared table: a port the guest
    // masked is set pending without an upcall; a pending one is left.
    let mut peer: Table = EventTable::with_bits(DomainId(6), 4, DomainBits::default());
    let g = Fake::new();
    peer.share_bits(g.clone()).unwrap();
    let p = peer.alloc_unbound(D).unwrap();
    let mut t = table();
    let from = t.bind_interdomain(Some(&mut peer), p).unwrap();
    g.set(Fake::mask_word(p), 1 << (p % 64));
    assert_eq!(
        peer.deliver_to(p, D, from, |_| panic!("masked: no claim")),
        None
    );
    assert!(g.pending(p) && g.upcall_pending(0) == 0);
    assert_eq!(
        peer.deliver_to(p, D, from, |_| panic!("pending: no claim")),
        None
    );
    // Unmasked and taken by the guest: claimed, so not set pending, and
    // the upcall is recorded.
    g.set(Fake::mask_word(p), 0);
    let pw = EVTCHN_PENDING_OFFSET / 8 + p as usize / 64;
    g.set(pw, 0);
    assert!(peer.deliver_to(p, D, from, |v| v == 0).is_some());
    assert!(!g.pending(p) && g.upcall_pending(0) == 1);
}
