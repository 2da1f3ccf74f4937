//! The I/O ring: a front and a back over one shared region, driven in any
//! order, with a hostile peer's writes to any header word or slot mixed in.
//!
//! Input: byte 0 picks the slot count (1, 2, 4 or 8), then a sequence of
//! ops, each an op byte and two `u32` operands (a word index and a value
//! for the hostile write).
//!
//! Checked: no panic ever (indices and slots come from shared memory). Until
//! the first hostile write, the ring must also behave: no error but `Full`
//! at the documented limits; requests and responses arrive in order and
//! intact; `free_slots + outstanding == slots`; and event suppression never
//! loses a wake-up (a consumer whose final check found nothing is notified
//! by the producer's next publish).

use core::sync::atomic::{AtomicU32, Ordering};
use std::collections::VecDeque;

use crate::hv::{BackRing, FrontRing, RingError, RingGeometry, SharedRing};
use crate::input::Input;

/// What the model expects while both sides are honest.
#[derive(Default)]
struct Model {
    /// Next request value to push.
    next: u64,
    /// Pushed requests the back has not popped.
    reqs: VecDeque<u64>,
    /// Popped requests not yet answered.
    popped: VecDeque<u64>,
    /// Responses pushed by the back, not yet popped by the front.
    rsps: VecDeque<u64>,
    /// The back's final check found no request (it would sleep).
    back_sleeps: bool,
    /// The front's final check found no response.
    front_sleeps: bool,
}

fn answer(req: u64) -> u64 {
    req ^ 0xa5a5_a5a5_0000_0000
}

/// The target.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let slots = 1u32 << (inp.u8() % 4);
    let geo = match RingGeometry::new(slots, 8) {
        Ok(g) => g,
        Err(e) => panic!("geometry {slots}x8: {e:?}"),
    };
    let words: Vec<AtomicU32> = (0..geo.region_bytes() / 4)
        .map(|_| AtomicU32::new(0))
        .collect();
    let shared = SharedRing::new(&words, geo).expect("region sized from the geometry");
    let mut front = FrontRing::<u64, u64>::init(shared).expect("front");
    let mut back = BackRing::<u64, u64>::attach(shared).expect("back");
    let mut m = Model::default();
    let mut honest = true;
    while !inp.is_empty() {
        let op = inp.u8();
        let (a, b) = (inp.u32(), inp.u32());
        match op % 9 {
            0 => {
                let r = front.push_request(&m.next);
                if honest {
                    let full = m.reqs.len() + m.popped.len() + m.rsps.len() == slots as usize;
                    assert_eq!(r, if full { Err(RingError::Full) } else { Ok(()) });
                    if r.is_ok() {
                        m.reqs.push_back(m.next);
                        m.next += 1;
                    }
                }
            }
            1 => {
                let fresh = front.unpublished() > 0;
                let notify = front.publish_requests();
                if honest && fresh && m.back_sleeps {
                    assert!(
                        notify,
                        "lost wake-up: back sleeps, front published without notifying"
                    );
                }
                if notify {
                    m.back_sleeps = false;
                }
            }
            2 => {
                let r = back.pop_request();
                if honest {
                    // Only published requests are visible: compare against
                    // what the front published (a prefix of `reqs`).
                    match r {
                        Ok(Some(v)) => {
                            assert_eq!(m.reqs.pop_front(), Some(v), "request out of order");
                            m.popped.push_back(v);
                        }
                        Ok(None) => {}
                        Err(e) => panic!("pop_request on an honest ring: {e:?}"),
                    }
                }
            }
            3 => {
                let rsp = m.popped.front().copied().map_or(0, answer);
                let r = back.push_response(&rsp);
                if honest {
                    match m.popped.pop_front() {
                        Some(_) => {
                            assert_eq!(r, Ok(()));
                            m.rsps.push_back(rsp);
                        }
                        None => assert_eq!(r, Err(RingError::Full)),
                    }
                }
            }
            4 => {
                let fresh = back.unpublished() > 0;
                let notify = back.publish_responses();
                if honest && fresh && m.front_sleeps {
                    assert!(
                        notify,
                        "lost wake-up: front sleeps, back published without notifying"
                    );
                }
                if notify {
                    m.front_sleeps = false;
                }
            }
            5 => {
                let r = front.pop_response();
                if honest {
                    match r {
                        Ok(Some(v)) => {
                            assert_eq!(m.rsps.pop_front(), Some(v), "response out of order")
                        }
                        Ok(None) => {}
                        Err(e) => panic!("pop_response on an honest ring: {e:?}"),
                    }
                }
            }
            6 => match back.final_check_for_requests() {
                Ok(more) => m.back_sleeps = !more,
                Err(e) => assert!(!honest, "final check on an honest ring: {e:?}"),
            },
            7 => match front.final_check_for_responses() {
                Ok(more) => m.front_sleeps = !more,
                Err(e) => assert!(!honest, "final check on an honest ring: {e:?}"),
            },
            _ => {
                // The hostile peer writes any word of the region.
                if let Some(w) = words.get(a as usize % words.len()) {
                    w.store(b, Ordering::Relaxed);
                    honest = false;
                }
            }
        }
        if honest {
            assert_eq!(front.free_slots() + front.outstanding(), slots);
            assert!(front.outstanding() <= slots);
            assert!(back.unanswered() <= slots);
        }
    }
}
