//! Ring tests: geometry, round trips, event suppression and batching,
//! wrap-around at `u32::MAX`, hostile peers, and randomized properties
//! (single-threaded schedules and two real threads).
#![allow(clippy::unwrap_used)]

extern crate std;

use super::*;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use std::vec::Vec;

fn region(geo: RingGeometry) -> Vec<AtomicU32> {
    (0..geo.region_bytes() / 4)
        .map(|_| AtomicU32::new(0))
        .collect()
}

use crate::testing::check;

/// A request with more than one word, to check slot copies.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
struct Req {
    id: u64,
    sector: u64,
    len: u32,
    op: u8,
    _pad: [u8; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
struct Rsp {
    id: u64,
    status: i32,
    _pad: u32,
}

fn req(i: u64) -> Req {
    Req {
        id: i,
        sector: i.wrapping_mul(8),
        len: 512,
        op: (i % 3) as u8,
        _pad: [0; 3],
    }
}

/// Puts every index of a fresh region at `base`, as if `base` items had
/// already gone through, and returns both views.
fn rings_at<'a>(
    words: &'a [AtomicU32],
    geo: RingGeometry,
    base: u32,
) -> (FrontRing<'a, Req, Rsp>, BackRing<'a, Req, Rsp>) {
    let ring = SharedRing::new(words, geo).unwrap();
    FrontRing::<Req, Rsp>::init(ring).unwrap();
    for w in [W_REQ_PROD, W_RSP_PROD] {
        words[w].store(base, Ordering::Relaxed);
    }
    for w in [W_REQ_EVENT, W_RSP_EVENT] {
        words[w].store(base.wrapping_add(1), Ordering::Relaxed);
    }
    (FrontRing::at(ring, base), BackRing::attach(ring).unwrap())
}

#[test]
fn geometry() {
    assert_eq!(RingGeometry::new(8, 32).unwrap().region_bytes(), 128 + 256);
    for (slots, bytes) in [(0, 4), (3, 4), (1 << 17, 4), (8, 0), (8, 6), (8, 8192)] {
        assert_eq!(RingGeometry::new(slots, bytes), Err(RingError::BadGeometry));
    }
    // One page of 64-byte slots: (4096 - 128) / 64 = 62, rounded down to 32.
    let g = RingGeometry::for_region(4096, 64).unwrap();
    assert_eq!((g.slots(), g.slot_bytes()), (32, 64));
    assert_eq!(RingGeometry::for_region(128 + 4, 4).unwrap().slots(), 1);
    assert_eq!(
        RingGeometry::for_region(1 << 30, 4).unwrap().slots(),
        RING_MAX_SLOTS
    );
    assert_eq!(
        RingGeometry::for_region(100, 4),
        Err(RingError::TooSmall {
            need: 132,
            have: 100
        })
    );
    assert_eq!(RingGeometry::slot_bytes_for::<Req, Rsp>(), 24);
    assert_eq!(RingGeometry::slot_bytes_for::<u8, u16>(), 4);
    assert_eq!(RingGeometry::slot_bytes_for::<(), ()>(), 4);
    let words = region(g);
    assert!(SharedRing::new(&words[..words.len() - 1], g).is_err());
    let small = RingGeometry::new(4, 16).unwrap();
    let w = region(small);
    let ring = SharedRing::new(&w, small).unwrap();
    assert_eq!(
        FrontRing::<Req, Rsp>::init(ring).unwrap_err(),
        RingError::SlotTooSmall
    );
    assert_eq!(
        BackRing::<Req, Rsp>::attach(ring).unwrap_err(),
        RingError::SlotTooSmall
    );
}

#[test]
fn round_trip_with_batching_and_suppression() {
    let geo = RingGeometry::for_region(4096, 24).unwrap();
    let words = region(geo);
    let ring = SharedRing::new(&words, geo).unwrap();
    let mut front = FrontRing::<Req, Rsp>::init(ring).unwrap();
    let mut back = BackRing::<Req, Rsp>::attach(ring).unwrap();
    assert_eq!(ring.header().req_event, 1);
    assert_eq!(front.free_slots(), geo.slots());

    // A batch of three costs one notification.
    for i in 0..3 {
        front.push_request(&req(i)).unwrap();
    }
    assert_eq!(back.unconsumed_requests(), Ok(0), "not published yet");
    assert!(front.publish_requests(), "the back asked (req_event = 1)");
    assert!(!front.publish_requests(), "nothing new: no notification");

    // The back is busy (has not re-armed): more requests, no notification.
    assert_eq!(back.pop_request().unwrap(), Some(req(0)));
    front.push_request(&req(3)).unwrap();
    assert!(!front.publish_requests());
    for i in 1..4 {
        assert_eq!(back.pop_request().unwrap(), Some(req(i)));
    }
    assert_eq!(back.pop_request().unwrap(), None);
    assert_eq!(back.final_check_for_requests(), Ok(false), "may sleep");
    assert_eq!(ring.header().req_event, 5);
    front.push_request(&req(4)).unwrap();
    assert!(front.publish_requests(), "a sleeping back is notified");

    // Responses: one publish for four, and the front had asked (event 1).
    for i in 0..4 {
        back.push_response(&Rsp {
            id: i,
            status: 0,
            _pad: 0,
        })
        .unwrap();
    }
    assert_eq!(back.unanswered(), 0);
    assert_eq!(
        back.push_response(&Rsp {
            id: 9,
            status: 0,
            _pad: 0
        }),
        Err(RingError::Full)
    );
    assert!(back.publish_responses());
    for i in 0..4 {
        assert_eq!(front.pop_response().unwrap().unwrap().id, i);
    }
    assert_eq!(front.pop_response().unwrap(), None);
    assert_eq!(front.outstanding(), 1);
    // Work that arrived between the last look and the arm is seen.
    assert_eq!(back.pop_request().unwrap(), Some(req(4)));
    back.push_response(&Rsp {
        id: 4,
        status: -5,
        _pad: 0,
    })
    .unwrap();
    assert!(!back.publish_responses(), "front did not re-arm");
    assert_eq!(front.final_check_for_responses(), Ok(true));
    assert_eq!(front.pop_response().unwrap().unwrap().status, -5);
}

#[test]
fn full_ring() {
    let geo = RingGeometry::new(4, 24).unwrap();
    let words = region(geo);
    let (mut front, mut back) = rings_at(&words, geo, 0);
    for i in 0..4 {
        front.push_request(&req(i)).unwrap();
    }
    assert_eq!(front.push_request(&req(4)), Err(RingError::Full));
    front.publish_requests();
    // Consumed but unanswered requests still hold their slots.
    while back.pop_request().unwrap().is_some() {}
    assert_eq!(front.free_slots(), 0);
    back.push_response(&Rsp {
        id: 0,
        status: 0,
        _pad: 0,
    })
    .unwrap();
    back.publish_responses();
    assert_eq!(front.free_slots(), 0, "free only once consumed");
    front.pop_response().unwrap().unwrap();
    assert_eq!(front.free_slots(), 1);
    front.push_request(&req(4)).unwrap();
}

#[test]
fn indices_wrap_at_u32_max() {
    let geo = RingGeometry::new(4, 24).unwrap();
    for base in [u32::MAX - 5, u32::MAX - 1, u32::MAX] {
        let words = region(geo);
        let (mut front, mut back) = rings_at(&words, geo, base);
        let mut next_rsp = 0;
        for i in 0..20u64 {
            front.push_request(&req(i)).unwrap();
            front.publish_requests();
            let r = back.pop_request().unwrap().unwrap();
            assert_eq!(r, req(i));
            back.push_response(&Rsp {
                id: r.id,
                status: 0,
                _pad: 0,
            })
            .unwrap();
            if i % 3 == 2 {
                back.publish_responses();
                while let Some(rsp) = front.pop_response().unwrap() {
                    assert_eq!(rsp.id, next_rsp);
                    next_rsp += 1;
                }
            }
        }
        assert_eq!(front.outstanding(), 2);
        assert_eq!(
            words[W_REQ_PROD].load(Ordering::Relaxed),
            base.wrapping_add(20)
        );
        // The notify check works across the wrap: event base + 1 lies in
        // (base, base + 20] even though the numbers wrapped.
        assert!(words[W_REQ_PROD].load(Ordering::Relaxed) < base);
    }
    // The notify check itself around the wrap.
    let words = region(geo);
    let ring = SharedRing::new(&words, geo).unwrap();
    words[W_REQ_EVENT].store(0, Ordering::Relaxed);
    assert!(ring.notify_wanted(W_REQ_EVENT, u32::MAX, 0));
    assert!(ring.notify_wanted(W_REQ_EVENT, u32::MAX - 3, 2));
    assert!(!ring.notify_wanted(W_REQ_EVENT, 0, 2), "event == old");
    words[W_REQ_EVENT].store(u32::MAX, Ordering::Relaxed);
    assert!(ring.notify_wanted(W_REQ_EVENT, u32::MAX - 1, 1));
    assert!(!ring.notify_wanted(W_REQ_EVENT, u32::MAX, 3));
}

#[test]
fn hostile_front_indices() {
    let geo = RingGeometry::new(4, 24).unwrap();
    let words = region(geo);
    let (mut front, mut back) = rings_at(&words, geo, u32::MAX - 1);
    front.push_request(&req(0)).unwrap();
    front.publish_requests();
    back.pop_request().unwrap().unwrap();
    let cons = back.req_cons;
    let prod = &words[W_REQ_PROD];
    // More than `slots` unanswered requests, or behind what was consumed.
    for bad in [
        cons.wrapping_add(4),
        cons.wrapping_add(1000),
        cons.wrapping_sub(1),
        cons.wrapping_add(u32::MAX / 2),
    ] {
        prod.store(bad, Ordering::Relaxed);
        let e = RingError::Overrun { prod: bad, cons };
        assert_eq!(back.unconsumed_requests(), Err(e));
        assert_eq!(back.pop_request(), Err(e));
        assert_eq!(back.final_check_for_requests(), Err(e));
    }
    // Up to `slots` unanswered is fine, garbage in slots is just data.
    prod.store(cons.wrapping_add(3), Ordering::Relaxed);
    for w in &words[HEADER_WORDS..] {
        w.store(0xdead_beef, Ordering::Relaxed);
    }
    assert_eq!(back.unconsumed_requests(), Ok(3));
    assert_eq!(back.pop_request().unwrap().unwrap().len, 0xdead_beef);
    // A front moving our own published index does not move ours.
    words[W_RSP_PROD].store(77, Ordering::Relaxed);
    back.push_response(&Rsp {
        id: 0,
        status: 0,
        _pad: 0,
    })
    .unwrap();
    back.publish_responses();
    assert_eq!(words[W_RSP_PROD].load(Ordering::Relaxed), u32::MAX);
}

#[test]
fn hostile_back_indices() {
    let geo = RingGeometry::new(8, 24).unwrap();
    let words = region(geo);
    let (mut front, _) = rings_at(&words, geo, 5);
    for i in 0..3 {
        front.push_request(&req(i)).unwrap();
    }
    front.publish_requests();
    front.push_request(&req(3)).unwrap(); // pushed, not published
    let rsp = &words[W_RSP_PROD];
    // Responses to unpublished requests, beyond the ring, or going back.
    for bad in [9, 12, 4, 0, u32::MAX] {
        rsp.store(bad, Ordering::Relaxed);
        let e = RingError::Overrun { prod: bad, cons: 5 };
        assert_eq!(front.pop_response(), Err(e));
        assert_eq!(front.final_check_for_responses(), Err(e));
    }
    rsp.store(8, Ordering::Relaxed);
    assert_eq!(front.unconsumed_responses(), Ok(3));
    // The back overwriting req_prod changes nothing we publish next.
    words[W_REQ_PROD].store(1234, Ordering::Relaxed);
    front.publish_requests();
    assert_eq!(words[W_REQ_PROD].load(Ordering::Relaxed), 9);
    assert_eq!(front.free_slots(), 4);
}

#[test]
fn random_header_writes_never_panic() {
    check(20, 1000 * 4, |rng| {
        let geo = RingGeometry::new(8, 24).unwrap();
        let words = region(geo);
        let (mut front, mut back) = rings_at(&words, geo, 0);
        for _ in 0..1000 {
            let w = [W_REQ_PROD, W_RSP_PROD, W_REQ_EVENT, W_RSP_EVENT][rng.below(4) as usize];
            let v = match rng.below(3) {
                0 => rng.next() as u32,
                1 => words[w]
                    .load(Ordering::Relaxed)
                    .wrapping_add(rng.below(20) as u32),
                _ => words[w]
                    .load(Ordering::Relaxed)
                    .wrapping_sub(rng.below(20) as u32),
            };
            words[w].store(v, Ordering::Relaxed);
            let _ = front.push_request(&req(rng.next()));
            let _ = front.publish_requests();
            if let Ok(n) = back.unconsumed_requests() {
                assert!(n <= geo.slots());
            }
            let _ = back.pop_request();
            let _ = back.push_response(&Rsp {
                id: 1,
                status: 0,
                _pad: 0,
            });
            let _ = back.publish_responses();
            if let Ok(n) = front.unconsumed_responses() {
                assert!(n <= geo.slots());
            }
            let _ = front.pop_response();
            let _ = front.final_check_for_responses();
            let _ = back.final_check_for_requests();
            assert!(front.outstanding() <= geo.slots());
            assert!(back.unanswered() <= geo.slots());
        }
    });
}

/// Random batch sizes and a random schedule, single-threaded; a side that
/// found no work after its final check sleeps until the peer's publish
/// says "notify". Every item arrives, in order, and no side sleeps forever.
#[test]
fn random_schedules_lose_nothing() {
    check(64, 100_000, |rng| {
        let geo = RingGeometry::new(1 << rng.below(4), 24).unwrap();
        let words = region(geo);
        let base = (rng.next() as u32) | 0xffff_ff00;
        let (mut front, mut back) = rings_at(&words, geo, base);
        let total = 500;
        let (mut sent, mut got, mut recv) = (0u64, 0u64, 0u64);
        let (mut f_sleep, mut b_sleep) = (false, false);
        let (mut publishes, mut notifies) = (0u32, 0u32);
        let mut steps = 0;
        while recv < total {
            steps += 1;
            assert!(steps < 1_000_000, "no progress");
            if f_sleep && b_sleep {
                panic!("both sides asleep, a wake-up was lost");
            }
            if rng.below(2) == 0 && !f_sleep {
                let batch = rng.below(u64::from(front.free_slots()) + 1);
                for _ in 0..batch.min(total - sent) {
                    front.push_request(&req(sent)).unwrap();
                    sent += 1;
                }
                if front.unpublished() > 0 {
                    publishes += 1;
                    if front.publish_requests() {
                        notifies += 1;
                        b_sleep = false;
                    }
                }
                for _ in 0..rng.below(4) {
                    match front.pop_response().unwrap() {
                        Some(r) => {
                            assert_eq!(r.id, recv);
                            recv += 1;
                        }
                        None => break,
                    }
                }
                let stuck = sent == total || front.free_slots() == 0;
                if stuck && !front.final_check_for_responses().unwrap() {
                    f_sleep = true;
                }
            } else if !b_sleep {
                for _ in 0..rng.below(u64::from(geo.slots()) + 1) {
                    match back.pop_request().unwrap() {
                        Some(r) => {
                            assert_eq!(r, req(got));
                            got += 1;
                            back.push_response(&Rsp {
                                id: r.id,
                                status: 0,
                                _pad: 0,
                            })
                            .unwrap();
                        }
                        None => break,
                    }
                }
                if (rng.below(2) == 0 || back.unconsumed_requests().unwrap() == 0)
                    && back.publish_responses()
                {
                    f_sleep = false;
                }
                if back.unpublished() == 0 && !back.final_check_for_requests().unwrap() {
                    b_sleep = true;
                }
            }
        }
        assert!(notifies <= publishes);
    });
}

/// Two real threads move 200,000 requests through an 8-slot ring; a side
/// with nothing to do waits for its doorbell (which the peer rings only
/// when `publish_*` says so). A lost wake-up would hang: the wait times out
/// and fails instead.
#[test]
fn two_threads_checksum() {
    // One case: the random batch sizes of the front, from proptest.
    check(1, 200_000, |rng| {
        const N: u64 = 200_000;
        let geo = RingGeometry::new(8, 24).unwrap();
        let words = region(geo);
        let ring = SharedRing::new(&words, geo).unwrap();
        let mut front = FrontRing::<Req, Rsp>::init(ring).unwrap();
        let (f_bell, b_bell) = (AtomicBool::new(false), AtomicBool::new(false));
        let wait = |bell: &AtomicBool| {
            let start = Instant::now();
            while !bell.swap(false, Ordering::AcqRel) {
                assert!(start.elapsed() < Duration::from_secs(30), "lost wake-up");
                std::thread::yield_now();
            }
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut back = BackRing::<Req, Rsp>::attach(ring).unwrap();
                let mut seen = 0u64;
                while seen < N {
                    while let Some(r) = back.pop_request().unwrap() {
                        assert_eq!(r, req(seen));
                        seen += 1;
                        let status = (r.id.wrapping_mul(31) % 1000) as i32;
                        back.push_response(&Rsp {
                            id: r.id,
                            status,
                            _pad: 0,
                        })
                        .unwrap();
                    }
                    if back.publish_responses() {
                        f_bell.store(true, Ordering::Release);
                    }
                    if seen < N && !back.final_check_for_requests().unwrap() {
                        wait(&b_bell);
                    }
                }
            });
            let (mut sent, mut recv, mut sum, mut notifies) = (0u64, 0u64, 0u64, 0u64);
            while recv < N {
                for _ in 0..rng.below(u64::from(front.free_slots()) + 1).min(N - sent) {
                    front.push_request(&req(sent)).unwrap();
                    sent += 1;
                }
                if front.publish_requests() {
                    notifies += 1;
                    b_bell.store(true, Ordering::Release);
                }
                while let Some(r) = front.pop_response().unwrap() {
                    assert_eq!(r.id, recv);
                    sum += r.status as u64;
                    recv += 1;
                }
                let stuck = sent == N || front.free_slots() == 0;
                if recv < N && stuck && !front.final_check_for_responses().unwrap() {
                    wait(&f_bell);
                }
            }
            let expect: u64 = (0..N).map(|i| i.wrapping_mul(31) % 1000).sum();
            assert_eq!(sum, expect);
            assert!(notifies < N, "batching and suppression save notifications");
        });
    });
}
