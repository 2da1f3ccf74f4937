//! Bounded exhaustive checks of the ring's index arithmetic and event
//! suppression: what Firecracker proves about its virtio queue with Kani,
//! done here by enumeration in `cargo test`, because Kani's installer
//! fetches its solver from outside the package registries (docs/testing.md).
//!
//! Three checks, each over every ring size the ABI allows up to 8 slots
//! (1, 2, 4, 8) and over start indices on both sides of the `u32`
//! wrap-around:
//!
//! 1. [`available`] (the consumer's bound on the peer's producer index)
//!    against its specification in wide integers, for every consumer
//!    position and every peer index within three rings' width of it, plus
//!    far-off values a hostile peer might write.
//! 2. The producer's notify decision against "the event index lies in
//!    `(old, new]`", for every batch size and every event index within
//!    three rings' width, plus far-off values.
//! 3. Every state two honest sides reach by any sequence of the real
//!    operations (push, publish, pop, final check; both directions) until
//!    `slots + 2` requests have gone round (so the ring wraps as well as the
//!    index): the counters agree with a model, `Full` comes exactly at the
//!    limits, data arrives in order, a consumer whose final check found
//!    nothing is always notified by the next publish (no lost wake-up), and
//!    no notification is sent without the consumer asking again since the
//!    last one (suppression works).
//!
//! The interleavings of the two sides' single steps are `model_tests`'s
//! job; here each operation is atomic and the state space is every
//! sequence of them.
#![allow(clippy::unwrap_used)]

extern crate std;

use super::*;
use core::marker::PhantomData;
use std::collections::HashSet;
use std::vec;
use std::vec::Vec;

const SIZES: [u32; 4] = [1, 2, 4, 8];

/// Start indices: 0, and just below the wrap (so the first items cross it,
/// at each point of the run).
fn bases(slots: u32) -> Vec<u32> {
    let mut b = vec![0, u32::MAX, u32::MAX - slots / 2, u32::MAX - slots];
    b.dedup();
    b
}

/// Start indices for the state search: all of [`bases`], but for 8 slots
/// (438,720 states a run, most of this test's time) only 0 and a start
/// that crosses the wrap in the middle of the run.
fn search_bases(slots: u32) -> Vec<u32> {
    if slots < 8 {
        bases(slots)
    } else {
        vec![0, u32::MAX - slots / 2]
    }
}

/// Values a hostile peer might write, relative to anything.
const FAR: [u32; 6] = [
    0x8000_0000,
    0x7fff_ffff,
    0x8000_0001,
    u32::MAX / 3,
    1 << 20,
    0x1234_5678,
];

#[test]
fn available_matches_its_specification() {
    let mut checked = 0u64;
    for slots in SIZES {
        let w = i64::from(slots);
        for base in bases(slots) {
            for consumed in 0..=slots {
                let cons = base.wrapping_add(consumed);
                let near = (-3 * w..=3 * w).map(|d| cons.wrapping_add(d as u32));
                let far = FAR.iter().map(|f| cons.wrapping_add(*f));
                for prod in near.chain(far) {
                    // Specification, in wide integers relative to `base`:
                    // prod (taken mod 2^32 as the nearest index at or after
                    // base) must lie in cons..=base + slots.
                    let rel = i64::from(prod.wrapping_sub(base));
                    let want = if rel >= i64::from(consumed) && rel <= w {
                        Ok((rel - i64::from(consumed)) as u32)
                    } else {
                        Err(RingError::Overrun { prod, cons })
                    };
                    assert_eq!(
                        available(prod, base, cons, slots),
                        want,
                        "slots {slots} base {base:#x} cons {cons:#x} prod {prod:#x}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 2_000, "{checked}");
}

#[test]
fn notify_decision_matches_its_specification() {
    let geo = RingGeometry::new(1, 4).unwrap();
    let words = region(geo);
    let ring = SharedRing::new(&words, geo).unwrap();
    let mut notified = [0u32; 2];
    for slots in SIZES {
        let w = i64::from(slots);
        for old in bases(slots).into_iter().chain([u32::MAX - 3 * slots]) {
            for n in 0..=slots {
                let new = old.wrapping_add(n);
                let near = (-3 * w..=3 * w).map(|d| old.wrapping_add(d as u32));
                let far = FAR.iter().map(|f| old.wrapping_add(*f));
                for event in near.chain(far) {
                    ring.word(W_REQ_EVENT).store(event, Ordering::Relaxed);
                    // (old, new]: the event index is 1..=n past old.
                    let d = event.wrapping_sub(old);
                    let want = d >= 1 && d <= n;
                    let got = ring.notify_wanted(W_REQ_EVENT, old, new);
                    assert_eq!(got, want, "old {old:#x} new {new:#x} event {event:#x}");
                    notified[usize::from(got)] += 1;
                }
            }
        }
    }
    assert!(notified[0] > 1000 && notified[1] > 100, "{notified:?}");
}

fn region(geo: RingGeometry) -> Vec<AtomicU32> {
    (0..geo.region_bytes() / 4)
        .map(|_| AtomicU32::new(0))
        .collect()
}

/// The shared words that change: the four header indices, then the slots.
const LIVE: [usize; 4] = [W_REQ_PROD, W_RSP_EVENT, W_RSP_PROD, W_REQ_EVENT];
const MAX_SLOTS: usize = 8;

/// What both sides and the model hold; the shared words are part of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct State {
    /// [`LIVE`] then one word per slot.
    words: [u32; 4 + MAX_SLOTS],
    /// Front: req_prod_pvt, req_published, rsp_cons.
    f: [u32; 3],
    /// Back: req_cons, rsp_prod_pvt, rsp_published.
    b: [u32; 3],
    /// The back's / front's last final check found nothing (it sleeps).
    back_sleeps: bool,
    front_sleeps: bool,
    /// The back / front armed its event index since the last notification
    /// it got (the header starts armed: both event indices are base + 1).
    req_armed: bool,
    rsp_armed: bool,
}

struct Search {
    /// The region the real code runs on; each step loads a state into it.
    region: Vec<AtomicU32>,
    geo: RingGeometry,
    slots: u32,
    base: u32,
    /// Requests to send in all.
    total: u32,
    /// A broken consumer for the check of the check: its final check only
    /// looks, without arming its event index first.
    no_arm: bool,
}

/// What a request and its response carry: derived from the index, so
/// order and integrity are checked by value.
fn req_value(idx: u32) -> u32 {
    idx.wrapping_mul(0x9e37_79b9) ^ 0x5a5a
}
fn rsp_value(idx: u32) -> u32 {
    !req_value(idx)
}

impl Search {
    fn load(&self, s: &State) {
        let slots = HEADER_WORDS..HEADER_WORDS + self.slots as usize;
        for (w, v) in LIVE.into_iter().chain(slots).zip(s.words) {
            self.region[w].store(v, Ordering::Relaxed);
        }
    }

    fn save(&self) -> [u32; 4 + MAX_SLOTS] {
        let mut out = [0; 4 + MAX_SLOTS];
        let slots = HEADER_WORDS..HEADER_WORDS + self.slots as usize;
        for (w, o) in LIVE.into_iter().chain(slots).zip(&mut out) {
            *o = self.region[w].load(Ordering::Relaxed);
        }
        out
    }

    fn initial(&self) -> State {
        let ring = SharedRing::new(&self.region, self.geo).unwrap();
        FrontRing::<u32, u32>::init(ring).unwrap();
        for w in [W_REQ_PROD, W_RSP_PROD] {
            self.region[w].store(self.base, Ordering::Relaxed);
        }
        for w in [W_REQ_EVENT, W_RSP_EVENT] {
            self.region[w].store(self.base.wrapping_add(1), Ordering::Relaxed);
        }
        let b = self.base;
        State {
            words: self.save(),
            f: [b; 3],
            b: [b; 3],
            back_sleeps: false,
            front_sleeps: false,
            req_armed: true,
            rsp_armed: true,
        }
    }

    /// Runs operation `op` on the real ring loaded with `s`; returns the
    /// next state, or `None` when the op is not allowed by the bound.
    fn step(&self, s: &State, op: u8) -> Option<State> {
        self.load(s);
        let ring = SharedRing::new(&self.region, self.geo).unwrap();
        let mut front = FrontRing::<u32, u32> {
            ring,
            req_prod_pvt: s.f[0],
            req_published: s.f[1],
            rsp_cons: s.f[2],
            _types: PhantomData,
        };
        let mut back = BackRing::<u32, u32> {
            ring,
            req_cons: s.b[0],
            rsp_prod_pvt: s.b[1],
            rsp_published: s.b[2],
            _types: PhantomData,
        };
        let mut t = *s;
        let sent = s.f[0].wrapping_sub(self.base);
        let ctx = |what: &str| {
            std::format!(
                "slots {} base {:#x}: {what} (front {:x?}, back {:x?})",
                self.slots,
                self.base,
                s.f,
                s.b
            )
        };
        match op {
            0 => {
                if sent == self.total {
                    return None;
                }
                let r = front.push_request(&req_value(s.f[0]));
                let full = s.f[0].wrapping_sub(s.f[2]) == self.slots;
                assert_eq!(r.is_err(), full, "{}", ctx("push_request"));
                if full {
                    assert_eq!(r, Err(RingError::Full));
                    return None;
                }
            }
            1 => {
                let fresh = front.unpublished() > 0;
                let notify = front.publish_requests();
                if fresh && s.back_sleeps {
                    assert!(notify, "{}", ctx("lost wake-up of the back"));
                }
                if notify {
                    assert!(s.req_armed, "{}", ctx("request notification not asked for"));
                    t.req_armed = false;
                    t.back_sleeps = false;
                }
                assert!(!notify || fresh, "{}", ctx("notified for nothing"));
            }
            2 => {
                let r = back.pop_request().unwrap();
                let avail = s.f[1] != s.b[0];
                match r {
                    Some(v) => {
                        assert!(avail, "{}", ctx("popped an unpublished request"));
                        assert_eq!(v, req_value(s.b[0]), "{}", ctx("request corrupted"));
                    }
                    None => assert!(!avail, "{}", ctx("published request not seen")),
                }
            }
            3 => {
                let r = back.push_response(&rsp_value(s.b[1]));
                let unanswered = s.b[0].wrapping_sub(s.b[1]);
                assert_eq!(r.is_ok(), unanswered > 0, "{}", ctx("push_response"));
                if r.is_err() {
                    return None;
                }
            }
            4 => {
                let fresh = back.unpublished() > 0;
                let notify = back.publish_responses();
                if fresh && s.front_sleeps {
                    assert!(notify, "{}", ctx("lost wake-up of the front"));
                }
                if notify {
                    assert!(
                        s.rsp_armed,
                        "{}",
                        ctx("response notification not asked for")
                    );
                    t.rsp_armed = false;
                    t.front_sleeps = false;
                }
                assert!(!notify || fresh, "{}", ctx("notified for nothing"));
            }
            5 => {
                let r = front.pop_response().unwrap();
                let avail = s.b[2] != s.f[2];
                match r {
                    Some(v) => {
                        assert!(avail, "{}", ctx("popped an unpublished response"));
                        assert_eq!(v, rsp_value(s.f[2]), "{}", ctx("response corrupted"));
                    }
                    None => assert!(!avail, "{}", ctx("published response not seen")),
                }
            }
            6 => {
                let more = if self.no_arm {
                    back.unconsumed_requests().unwrap() > 0
                } else {
                    back.final_check_for_requests().unwrap()
                };
                assert_eq!(more, s.f[1] != s.b[0], "{}", ctx("final check (back)"));
                t.back_sleeps = !more;
                t.req_armed = true;
            }
            _ => {
                let more = front.final_check_for_responses().unwrap();
                assert_eq!(more, s.b[2] != s.f[2], "{}", ctx("final check (front)"));
                t.front_sleeps = !more;
                t.rsp_armed = true;
            }
        }
        // The counters every state must satisfy.
        assert_eq!(
            front.free_slots() + front.outstanding(),
            self.slots,
            "{}",
            ctx("free + outstanding")
        );
        assert!(front.outstanding() <= self.slots, "{}", ctx("outstanding"));
        assert!(back.unanswered() <= self.slots, "{}", ctx("unanswered"));
        assert_eq!(
            back.unconsumed_requests(),
            Ok(front.req_published.wrapping_sub(back.req_cons)),
            "{}",
            ctx("unconsumed requests")
        );
        assert_eq!(
            front.unconsumed_responses(),
            Ok(back.rsp_published.wrapping_sub(front.rsp_cons)),
            "{}",
            ctx("unconsumed responses")
        );
        t.words = self.save();
        t.f = [front.req_prod_pvt, front.req_published, front.rsp_cons];
        t.b = [back.req_cons, back.rsp_prod_pvt, back.rsp_published];
        Some(t)
    }

    /// Every reachable state: (states, fill levels seen, finished runs).
    fn explore(&self) -> (usize, Vec<bool>, usize) {
        let mut seen = HashSet::new();
        let mut stack = vec![self.initial()];
        let mut fill = vec![false; self.slots as usize + 1];
        let mut finished = 0;
        while let Some(s) = stack.pop() {
            if !seen.insert(s) {
                continue;
            }
            fill[s.f[0].wrapping_sub(s.f[2]) as usize] = true;
            if s.f[2].wrapping_sub(self.base) == self.total {
                finished += 1;
            }
            for op in 0..8 {
                if let Some(t) = self.step(&s, op)
                    && !seen.contains(&t)
                {
                    stack.push(t);
                }
            }
        }
        (seen.len(), fill, finished)
    }
}

#[test]
fn every_reachable_state_of_two_honest_sides() {
    for slots in SIZES {
        for base in search_bases(slots) {
            let geo = RingGeometry::new(slots, 4).unwrap();
            let search = Search {
                region: region(geo),
                geo,
                slots,
                base,
                total: slots + 2,
                no_arm: false,
            };
            let (states, fill, finished) = search.explore();
            assert!(
                fill.iter().all(|f| *f),
                "slots {slots}: not every fill level reached"
            );
            assert!(
                finished > 0,
                "slots {slots}: no run delivered every response"
            );
            assert!(
                states > 50 * slots as usize,
                "slots {slots}: {states} states"
            );
            std::println!("slots {slots} base {base:#x}: {states} states");
        }
    }
}

/// The search finds the lost wake-up of a consumer that sleeps without
/// arming its event index: the check can fail.
#[test]
fn the_search_catches_a_consumer_that_does_not_arm() {
    let geo = RingGeometry::new(2, 4).unwrap();
    let search = Search {
        region: region(geo),
        geo,
        slots: 2,
        base: u32::MAX,
        total: 4,
        no_arm: true,
    };
    let caught = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| search.explore()));
    let msg = caught
        .err()
        .and_then(|p| p.downcast::<std::string::String>().ok());
    assert!(
        msg.as_deref()
            .is_some_and(|m| m.contains("lost wake-up of the back")),
        "{msg:?}"
    );
}
