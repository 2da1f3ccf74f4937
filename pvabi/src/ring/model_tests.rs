//! Exhaustive small-model check of the notify/sleep protocol.
//!
//! A front and a back run the real ring code over a small ring. Every step
//! of either side is at most one access to a shared index (the steps of
//! `publish_*` and `final_check_*` are taken apart for this), and the
//! search explores every interleaving of the two sides' steps, including
//! every choice of batch size, from start indices that wrap at `u32::MAX`.
//! Notifications are modelled as a doorbell per side (like an event
//! channel's pending bit): ringing it while the side is awake makes its
//! next sleep return at once.
//!
//! Checked in every reachable state: a sleeping side with work pending has
//! a notification on its way (its doorbell is set, or the peer is about to
//! evaluate a notify check that will ring it); no state is stuck before
//! every response is consumed; items arrive in order and intact. The same
//! search on two broken variants (sleeping without the re-check, checking
//! the event index before publishing) must find a lost wake-up, which shows
//! that the check can fail.
//!
//! Interleavings are sequentially consistent; the `SeqCst` fences in the
//! real code are what make the hardware behave so for the one pattern where
//! it matters (see the module docs of `ring`).
#![allow(clippy::unwrap_used)]

extern crate std;

use super::*;
use core::marker::PhantomData;
use std::collections::HashSet;
use std::vec;
use std::vec::Vec;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Pc {
    Work,
    /// Published `(old, new)`; the notify check is the next step.
    Notify(u32, u32),
    /// Broken variant: checked the event index first (result kept), the
    /// store of the producer index is the next step.
    Store(bool),
    Arm,
    Recheck,
    Sleep,
    Done,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Correct,
    NoRecheck,
    CheckBeforePublish,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct State {
    mem: Vec<u32>,
    f: (Pc, u32, u32, u32),
    sent: u32,
    recv: u32,
    f_bell: bool,
    b: (Pc, u32, u32, u32),
    got: u32,
    b_bell: bool,
}

struct Model {
    geo: RingGeometry,
    n: u32,
    base: u32,
    variant: Variant,
}

fn response_for(req: u32) -> u32 {
    req.wrapping_mul(3).wrapping_add(7)
}

impl Model {
    fn initial(&self) -> State {
        let mut mem = vec![0u32; self.geo.region_bytes() / 4];
        mem[W_REQ_PROD] = self.base;
        mem[W_RSP_PROD] = self.base;
        mem[W_REQ_EVENT] = self.base.wrapping_add(1);
        mem[W_RSP_EVENT] = self.base.wrapping_add(1);
        let b = self.base;
        State {
            mem,
            f: (Pc::Work, b, b, b),
            sent: 0,
            recv: 0,
            f_bell: false,
            b: (Pc::Work, b, b, b),
            got: 0,
            b_bell: false,
        }
    }

    /// Runs `step` on views of the real ring rebuilt from `s`, then stores
    /// the views' state back into `s`.
    fn with<R>(
        &self,
        s: &mut State,
        step: impl FnOnce(&mut FrontRing<'_, u32, u32>, &mut BackRing<'_, u32, u32>) -> R,
    ) -> R {
        let words: Vec<AtomicU32> = s.mem.iter().map(|&w| AtomicU32::new(w)).collect();
        let ring = SharedRing::new(&words, self.geo).unwrap();
        let mut front = FrontRing {
            ring,
            req_prod_pvt: s.f.1,
            req_published: s.f.2,
            rsp_cons: s.f.3,
            _types: PhantomData,
        };
        let mut back = BackRing {
            ring,
            req_cons: s.b.1,
            rsp_prod_pvt: s.b.2,
            rsp_published: s.b.3,
            _types: PhantomData,
        };
        let r = step(&mut front, &mut back);
        s.f = (
            s.f.0,
            front.req_prod_pvt,
            front.req_published,
            front.rsp_cons,
        );
        s.b = (s.b.0, back.req_cons, back.rsp_prod_pvt, back.rsp_published);
        s.mem = words.iter().map(|w| w.load(Ordering::Relaxed)).collect();
        r
    }

    fn successors(&self, s: &State) -> Vec<State> {
        let mut out = Vec::new();
        self.front_steps(s, &mut out);
        self.back_steps(s, &mut out);
        out
    }

    fn front_steps(&self, s: &State, out: &mut Vec<State>) {
        let mut t = s.clone();
        match s.f.0 {
            Pc::Done => {}
            Pc::Work if s.recv == self.n => {
                t.f.0 = Pc::Done;
                out.push(t);
            }
            Pc::Work => {
                let (free, unpublished) =
                    self.with(&mut t.clone(), |f, _| (f.free_slots(), f.unpublished()));
                if s.sent < self.n && free > 0 {
                    let mut t = s.clone();
                    self.with(&mut t, |f, _| f.push_request(&s.sent)).unwrap();
                    t.sent += 1;
                    out.push(t);
                }
                if unpublished > 0 {
                    let mut t = s.clone();
                    t.f.0 = match self.variant {
                        Variant::CheckBeforePublish => {
                            let (old, new) = (s.f.2, s.f.1);
                            Pc::Store(self.with(&mut t, |f, _| f.notify_step(old, new)))
                        }
                        _ => {
                            let (old, new) = self.with(&mut t, |f, _| f.publish_step()).unwrap();
                            Pc::Notify(old, new)
                        }
                    };
                    out.push(t);
                }
                // One load of rsp_prod: take a response, or find none and
                // (when nothing else can be done) get ready to sleep.
                let mut t = s.clone();
                match self.with(&mut t, |f, _| f.pop_response()).unwrap() {
                    Some(v) => {
                        assert_eq!(v, response_for(s.recv), "responses in order");
                        t.recv += 1;
                        out.push(t);
                    }
                    None if unpublished == 0 && (s.sent == self.n || free == 0) => {
                        t.f.0 = Pc::Arm;
                        out.push(t);
                    }
                    None => {}
                }
            }
            Pc::Notify(old, new) => {
                if self.with(&mut t, |f, _| f.notify_step(old, new)) {
                    t.b_bell = true;
                }
                t.f.0 = Pc::Work;
                out.push(t);
            }
            Pc::Store(notify) => {
                self.with(&mut t, |f, _| f.publish_step()).unwrap();
                t.b_bell |= notify;
                t.f.0 = Pc::Work;
                out.push(t);
            }
            Pc::Arm => {
                self.with(&mut t, |f, _| f.arm_step());
                t.f.0 = match self.variant {
                    Variant::NoRecheck => Pc::Sleep,
                    _ => Pc::Recheck,
                };
                out.push(t);
            }
            Pc::Recheck => {
                let more = self.with(&mut t, |f, _| f.unconsumed_responses()).unwrap();
                t.f.0 = if more > 0 { Pc::Work } else { Pc::Sleep };
                out.push(t);
            }
            Pc::Sleep if s.f_bell => {
                t.f_bell = false;
                t.f.0 = Pc::Work;
                out.push(t);
            }
            Pc::Sleep => {}
        }
    }

    fn back_steps(&self, s: &State, out: &mut Vec<State>) {
        let mut t = s.clone();
        match s.b.0 {
            Pc::Done | Pc::Store(_) => unreachable!("the back has no such step"),
            Pc::Work => {
                let unpublished = self.with(&mut t.clone(), |_, b| b.unpublished());
                if unpublished > 0 {
                    let mut t = s.clone();
                    let (old, new) = self.with(&mut t, |_, b| b.publish_step()).unwrap();
                    t.b.0 = Pc::Notify(old, new);
                    out.push(t);
                }
                match self.with(&mut t, |_, b| b.pop_request()).unwrap() {
                    Some(v) => {
                        assert_eq!(v, s.got, "requests in order");
                        t.got += 1;
                        self.with(&mut t, |_, b| b.push_response(&response_for(v)))
                            .unwrap();
                        out.push(t);
                    }
                    None if unpublished == 0 => {
                        t.b.0 = Pc::Arm;
                        out.push(t);
                    }
                    None => {}
                }
            }
            Pc::Notify(old, new) => {
                if self.with(&mut t, |_, b| b.notify_step(old, new)) {
                    t.f_bell = true;
                }
                t.b.0 = Pc::Work;
                out.push(t);
            }
            Pc::Arm => {
                self.with(&mut t, |_, b| b.arm_step());
                t.b.0 = match self.variant {
                    Variant::NoRecheck => Pc::Sleep,
                    _ => Pc::Recheck,
                };
                out.push(t);
            }
            Pc::Recheck => {
                let more = self.with(&mut t, |_, b| b.unconsumed_requests()).unwrap();
                t.b.0 = if more > 0 { Pc::Work } else { Pc::Sleep };
                out.push(t);
            }
            Pc::Sleep if s.b_bell => {
                t.b_bell = false;
                t.b.0 = Pc::Work;
                out.push(t);
            }
            Pc::Sleep => {}
        }
    }

    /// Whether a side that sleeps with work pending has a wake-up coming:
    /// its doorbell, or a notify check the peer is about to make that the
    /// event index (which a sleeper cannot change) lets through.
    fn wake_coming(bell: bool, peer_pc: Pc, event: u32) -> bool {
        match peer_pc {
            _ if bell => true,
            Pc::Notify(old, new) => new.wrapping_sub(event) < new.wrapping_sub(old),
            Pc::Store(notify) => notify,
            _ => false,
        }
    }

    /// The first violation found in `s`, if any.
    fn violation(&self, s: &State, stuck: bool) -> Option<&'static str> {
        let back_work = s.mem[W_REQ_PROD] != s.b.1;
        if s.b.0 == Pc::Sleep
            && back_work
            && !Self::wake_coming(s.b_bell, s.f.0, s.mem[W_REQ_EVENT])
        {
            return Some("back asleep with requests pending and no wake-up coming");
        }
        let front_work = s.mem[W_RSP_PROD] != s.f.3;
        if s.f.0 == Pc::Sleep
            && front_work
            && !Self::wake_coming(s.f_bell, s.b.0, s.mem[W_RSP_EVENT])
        {
            return Some("front asleep with responses pending and no wake-up coming");
        }
        if stuck && s.f.0 != Pc::Done {
            return Some("stuck before every response was consumed");
        }
        None
    }

    /// Explores every reachable state; returns (states, finished runs,
    /// violations).
    fn explore(&self) -> (usize, usize, usize) {
        let mut seen = HashSet::new();
        let mut stack = vec![self.initial()];
        let (mut done, mut bad) = (0, 0);
        while let Some(s) = stack.pop() {
            if !seen.insert(s.clone()) {
                continue;
            }
            let next = self.successors(&s);
            if self.violation(&s, next.is_empty()).is_some() {
                bad += 1;
                continue;
            }
            if s.f.0 == Pc::Done {
                assert_eq!((s.sent, s.recv, s.got), (self.n, self.n, self.n));
                done += 1;
            }
            stack.extend(next);
        }
        (seen.len(), done, bad)
    }
}

#[test]
fn no_lost_wakeups_in_any_interleaving() {
    for slots in [1, 2, 4] {
        for n in 1..=4 {
            for base in [0, u32::MAX - 1, u32::MAX] {
                let m = Model {
                    geo: RingGeometry::new(slots, 4).unwrap(),
                    n,
                    base,
                    variant: Variant::Correct,
                };
                let (states, done, bad) = m.explore();
                assert_eq!(bad, 0, "slots {slots}, {n} items, base {base:#x}");
                assert!(done > 0, "some run finishes");
                assert!(states > 20 * n as usize, "the search is not trivial");
            }
        }
    }
}

#[test]
fn the_model_catches_broken_protocols() {
    for variant in [Variant::NoRecheck, Variant::CheckBeforePublish] {
        let m = Model {
            geo: RingGeometry::new(2, 4).unwrap(),
            n: 3,
            base: u32::MAX,
            variant,
        };
        let (_, _, bad) = m.explore();
        assert!(bad > 0, "{variant:?} must lose a wake-up somewhere");
    }
}
