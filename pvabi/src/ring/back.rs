//! The back of a ring: consumes requests, produces responses.

use core::fmt;
use core::marker::PhantomData;

use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::{
    RingError, SharedRing, W_REQ_EVENT, W_REQ_PROD, W_RSP_EVENT, W_RSP_PROD, available,
    check_slot_size,
};

/// The back of a ring: consumes requests, produces responses.
pub struct BackRing<'a, Req, Rsp> {
    pub(super) ring: SharedRing<'a>,
    /// Next request index to consume.
    pub(super) req_cons: u32,
    /// Next response index to fill (private); requests before it are
    /// answered.
    pub(super) rsp_prod_pvt: u32,
    /// The `rsp_prod` we last published.
    pub(super) rsp_published: u32,
    pub(super) _types: PhantomData<fn(Req) -> Rsp>,
}

impl<Req, Rsp> fmt::Debug for BackRing<'_, Req, Rsp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackRing")
            .field("req_cons", &self.req_cons)
            .field("rsp_prod_pvt", &self.rsp_prod_pvt)
            .field("rsp_published", &self.rsp_published)
            .finish()
    }
}

impl<'a, Req, Rsp> BackRing<'a, Req, Rsp>
where
    Req: FromBytes + IntoBytes,
    Rsp: IntoBytes + Immutable,
{
    /// The back of a ring the front has initialized. Starts where the
    /// published responses end (0 for a fresh ring); every index is taken
    /// once and kept privately, so the front cannot move it afterwards.
    pub fn attach(ring: SharedRing<'a>) -> Result<Self, RingError> {
        check_slot_size::<Req, Rsp>(&ring)?;
        let idx = ring.peer_prod(W_RSP_PROD);
        Ok(Self {
            ring,
            req_cons: idx,
            rsp_prod_pvt: idx,
            rsp_published: idx,
            _types: PhantomData,
        })
    }

    /// Number of slots.
    pub fn slots(&self) -> u32 {
        self.ring.geo.slots
    }

    /// Requests the front has published that we have not consumed.
    pub fn unconsumed_requests(&self) -> Result<u32, RingError> {
        let prod = self.ring.peer_prod(W_REQ_PROD);
        available(prod, self.rsp_prod_pvt, self.req_cons, self.slots())
    }

    /// Takes the next request, if one is published. Its slot stays the
    /// request's until the response is pushed.
    pub fn pop_request(&mut self) -> Result<Option<Req>, RingError> {
        if self.unconsumed_requests()? == 0 {
            return Ok(None);
        }
        let req = self.ring.read_slot(self.req_cons);
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(req))
    }

    /// Consumed requests not answered yet.
    pub fn unanswered(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    /// Responses pushed but not yet published.
    pub fn unpublished(&self) -> u32 {
        self.rsp_prod_pvt.wrapping_sub(self.rsp_published)
    }

    /// Writes the response to the oldest unanswered request into its slot;
    /// the front does not see it until [`BackRing::publish_responses`].
    /// `Full` when every consumed request is answered.
    pub fn push_response(&mut self, rsp: &Rsp) -> Result<(), RingError> {
        if self.unanswered() == 0 {
            return Err(RingError::Full);
        }
        self.ring.write_slot(self.rsp_prod_pvt, rsp);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes every pushed response and returns whether the front asked
    /// to be notified. Returns `false` when nothing was pushed.
    pub fn publish_responses(&mut self) -> bool {
        self.publish_step()
            .is_some_and(|(old, new)| self.notify_step(old, new))
    }

    pub(super) fn publish_step(&mut self) -> Option<(u32, u32)> {
        let (old, new) = (self.rsp_published, self.rsp_prod_pvt);
        if old == new {
            return None;
        }
        self.ring.publish(W_RSP_PROD, new);
        self.rsp_published = new;
        Some((old, new))
    }

    pub(super) fn notify_step(&self, old: u32, new: u32) -> bool {
        self.ring.notify_wanted(W_RSP_EVENT, old, new)
    }

    /// Before sleeping: asks to be notified of the next request, then checks
    /// again. `Ok(true)`: requests arrived meanwhile; `Ok(false)`: safe to
    /// sleep. Publish pushed responses first: the front may be waiting for
    /// them.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        self.arm_step();
        Ok(self.unconsumed_requests()? > 0)
    }

    pub(super) fn arm_step(&self) {
        self.ring.arm(W_REQ_EVENT, self.req_cons);
    }
}
