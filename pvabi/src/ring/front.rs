//! The front of a ring: produces requests, consumes responses.

use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::Ordering;

use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::{
    HEADER_WORDS, RingError, SharedRing, W_REQ_EVENT, W_REQ_PROD, W_RSP_EVENT, W_RSP_PROD,
    available, check_slot_size,
};

/// The front of a ring: produces requests, consumes responses.
pub struct FrontRing<'a, Req, Rsp> {
    pub(super) ring: SharedRing<'a>,
    /// Next request index to fill (private).
    pub(super) req_prod_pvt: u32,
    /// The `req_prod` we last published.
    pub(super) req_published: u32,
    /// Next response index to consume.
    pub(super) rsp_cons: u32,
    pub(super) _types: PhantomData<fn(Req) -> Rsp>,
}

impl<Req, Rsp> fmt::Debug for FrontRing<'_, Req, Rsp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrontRing")
            .field("req_prod_pvt", &self.req_prod_pvt)
            .field("req_published", &self.req_published)
            .field("rsp_cons", &self.rsp_cons)
            .finish()
    }
}

impl<'a, Req, Rsp> FrontRing<'a, Req, Rsp>
where
    Req: IntoBytes + Immutable,
    Rsp: FromBytes + IntoBytes,
{
    /// Initializes the header of a ring nobody uses yet (indices 0, both
    /// event indices 1: "notify on the first item") and returns its front.
    /// Done by the front before it grants the region to the back.
    pub fn init(ring: SharedRing<'a>) -> Result<Self, RingError> {
        check_slot_size::<Req, Rsp>(&ring)?;
        for w in &ring.words[..HEADER_WORDS] {
            w.store(0, Ordering::Relaxed);
        }
        ring.word(W_RSP_EVENT).store(1, Ordering::Relaxed);
        // Release: the back, once it sees the ring (through the grant
        // hypercall and config page), sees the initialized header.
        ring.word(W_REQ_EVENT).store(1, Ordering::Release);
        Ok(Self::at(ring, 0))
    }

    pub(super) fn at(ring: SharedRing<'a>, idx: u32) -> Self {
        Self {
            ring,
            req_prod_pvt: idx,
            req_published: idx,
            rsp_cons: idx,
            _types: PhantomData,
        }
    }

    /// Number of slots.
    pub fn slots(&self) -> u32 {
        self.ring.geo.slots
    }

    /// Slots free for new requests: those whose responses have been
    /// consumed.
    pub fn free_slots(&self) -> u32 {
        self.slots() - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Requests pushed but not yet published.
    pub fn unpublished(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.req_published)
    }

    /// Requests published (or pushed) whose responses have not been
    /// consumed yet.
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Writes a request into the next free slot; the back does not see it
    /// until [`FrontRing::publish_requests`]. `Full` when no slot is free.
    pub fn push_request(&mut self, req: &Req) -> Result<(), RingError> {
        if self.free_slots() == 0 {
            return Err(RingError::Full);
        }
        self.ring.write_slot(self.req_prod_pvt, req);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes every pushed request at once and returns whether the back
    /// asked to be notified (then send on the ring's event channel). Returns
    /// `false` when nothing was pushed.
    pub fn publish_requests(&mut self) -> bool {
        self.publish_step()
            .is_some_and(|(old, new)| self.notify_step(old, new))
    }

    // The two shared-memory steps of `publish_requests`, separate so the
    // model test can interleave the back between them.
    pub(super) fn publish_step(&mut self) -> Option<(u32, u32)> {
        let (old, new) = (self.req_published, self.req_prod_pvt);
        if old == new {
            return None;
        }
        self.ring.publish(W_REQ_PROD, new);
        self.req_published = new;
        Some((old, new))
    }

    pub(super) fn notify_step(&self, old: u32, new: u32) -> bool {
        self.ring.notify_wanted(W_REQ_EVENT, old, new)
    }

    /// Responses the back has published that we have not consumed.
    pub fn unconsumed_responses(&self) -> Result<u32, RingError> {
        let prod = self.ring.peer_prod(W_RSP_PROD);
        let limit = self.req_published.wrapping_sub(self.rsp_cons);
        available(prod, self.rsp_cons, self.rsp_cons, limit)
    }

    /// Takes the next response, if one is published; its slot becomes free.
    pub fn pop_response(&mut self) -> Result<Option<Rsp>, RingError> {
        if self.unconsumed_responses()? == 0 {
            return Ok(None);
        }
        let rsp = self.ring.read_slot(self.rsp_cons);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(rsp))
    }

    /// Before sleeping: asks to be notified of the next response, then
    /// checks again. `Ok(true)`: responses arrived meanwhile, consume them
    /// instead of sleeping; `Ok(false)`: safe to sleep, the next response
    /// will be notified.
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        self.arm_step();
        Ok(self.unconsumed_responses()? > 0)
    }

    pub(super) fn arm_step(&self) {
        self.ring.arm(W_RSP_EVENT, self.rsp_cons);
    }
}
