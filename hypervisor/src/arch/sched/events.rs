//! Event channels between live domains (ABI 1.1): the `HC_EVTCHN_*`
//! services over each domain's [`EventTable`], the lookup of a domain by
//! id, upcalls ([`EVENT_CHANNEL`] on the target vCPU, which the scheduler
//! wakes if it is blocked), and closing a dying domain's ports.
//!
//! Locks: a domain's `events` lock is a leaf with respect to the vCPU list
//! and vCPU states: nothing else is taken while it is held, except a second
//! domain's `events` for `bind_interdomain` (both then taken in ascending
//! domain id) and a domain's `end` (itself a leaf). Upcalls are made after
//! every table lock is released, so a [`Notify`] may name a port that
//! changed in the meantime: the worst that does is one spurious
//! [`EVENT_CHANNEL`], which the guest answers with a poll that returns 0.
//!
//! Wake-up: a blocked target vCPU is made runnable by the scheduler's next
//! pass on any CPU (`take_next`), which the sender's CPU makes as soon as
//! the sender blocks or yields; an idle CPU only notices at its next timer
//! tick (no wake-up IPI yet).

#[allow(unused_imports)]
use super::*;

use crate::domain::evtchn::{Closed, DomainId, EventTable, Notify, Route};
use crate::domain::exits::EvtchnOp;
use pvabi::EVENT_CHANNEL;

/// The live (not dying) domain with id `id`.
fn domain_by_id(id: DomainId) -> Option<Arc<Domain>> {
    VCPUS
        .lock()
        .iter()
        .find(|v| v.domain.id == id.0)
        .map(|v| v.domain.clone())
        .filter(|d| !d.dying())
}

/// Makes the upcall: raises [`EVENT_CHANNEL`] on the vCPU. A blocked vCPU
/// is woken by the scheduler's next pass (`take_next` checks the mask
/// under the vCPU's state lock, as for the timer), which the sender's own
/// CPU makes as soon as the sender blocks or yields.
fn notify(me: &VcpuEntry, n: Notify) {
    if n.domain.0 == me.domain.id && n.vcpu == me.index {
        me.pending.fetch_or(EVENT_CHANNEL, Ordering::AcqRel);
        return;
    }
    notify_any(n);
}

/// Tells `peer`'s port that its other end (`closer`'s port `from`) closed.
fn tell_closed(me: Option<&VcpuEntry>, closer: DomainId, peer: DomainId, port: u32, from: u32) {
    let Some(d) = domain_by_id(peer) else {
        return;
    };
    let n = d.events.lock().peer_closed(port, closer, from);
    if let Some(n) = n {
        match me {
            Some(me) => notify(me, n),
            None => notify_any(n),
        }
    }
}

/// Makes the upcall for any domain's vCPU (found in the vCPU list).
pub(super) fn notify_any(n: Notify) {
    let target = VCPUS
        .lock()
        .iter()
        .find(|v| v.domain.id == n.domain.0 && v.index == n.vcpu)
        .cloned();
    if let Some(v) = target {
        v.pending.fetch_or(EVENT_CHANNEL, Ordering::AcqRel);
    }
}

fn code(e: pvabi::Error) -> i64 {
    e.code()
}

impl Svc<'_> {
    /// One event-channel op of this vCPU's domain.
    pub(super) fn evtchn_op(&mut self, op: EvtchnOp) -> Result<u64, i64> {
        let d = &self.me.domain;
        let me = DomainId(d.id);
        match op {
            EvtchnOp::AllocUnbound { remote } => d
                .events
                .lock()
                .alloc_unbound(remote)
                .map(u64::from)
                .map_err(code),
            EvtchnOp::BindInterdomain { remote, port } if remote == me => d
                .events
                .lock()
                .bind_interdomain(None, port)
                .map(u64::from)
                .map_err(code),
            EvtchnOp::BindInterdomain { remote, port } => {
                let peer = domain_by_id(remote).ok_or(pvabi::ENOENT)?;
                // Two tables: ascending domain id (see the module doc).
                let (mut mine, mut theirs);
                if me < remote {
                    mine = d.events.lock();
                    theirs = peer.events.lock();
                } else {
                    theirs = peer.events.lock();
                    mine = d.events.lock();
                }
                // Checked under the tables' locks: a domain marked dying
                // before this point is refused; one marked after it runs
                // `close_all` once we let go, which undoes this binding.
                if d.dying() || peer.dying() {
                    return Err(pvabi::ENOENT);
                }
                mine.bind_interdomain(Some(&mut theirs), port)
                    .map(u64::from)
                    .map_err(code)
            }
            EvtchnOp::Send(port) => {
                let route = d.events.lock().send(port).map_err(code)?;
                let n = match route {
                    Route::Local(p) => d.events.lock().raise(p),
                    Route::Remote { domain, port, from } => {
                        // A peer that is gone has closed (or is closing)
                        // its ports, which unbinds ours: nothing to do.
                        domain_by_id(domain).and_then(|p| p.events.lock().deliver(port, me, from))
                    }
                };
                if let Some(n) = n {
                    notify(self.me, n);
                }
                Ok(0)
            }
            EvtchnOp::Close(port) => {
                let closed = d.events.lock().close(port).map_err(code)?;
                if let Closed::Peer { domain, port, from } = closed {
                    if domain == me {
                        let n = d.events.lock().peer_closed(port, me, from);
                        if let Some(n) = n {
                            notify(self.me, n);
                        }
                    } else {
                        tell_closed(Some(self.me), me, domain, port, from);
                    }
                }
                Ok(0)
            }
            EvtchnOp::Mask(port) => d.events.lock().mask(port).map(|()| 0).map_err(code),
            EvtchnOp::Unmask(port) => {
                let n = d.events.lock().unmask(port).map_err(code)?;
                if let Some(n) = n {
                    notify(self.me, n);
                }
                Ok(0)
            }
            EvtchnOp::Poll => Ok(d.events.lock().take_next_pending().map_or(0, u64::from)),
        }
    }
}

/// The domain is ending: closes all its ports and tells every peer (their
/// ports become unbound and pending). Called once, by [`Domain::finish`],
/// after the domain is marked dying, so no new binding to it can start
/// (`domain_by_id` no longer finds it); one that raced ahead is already in
/// the table and is closed here.
pub(super) fn close_all(d: &Domain) {
    let peers = d.events.lock().close_all();
    for c in peers {
        if let Closed::Peer { domain, port, from } = c {
            tell_closed(None, DomainId(d.id), domain, port, from);
        }
    }
}

/// A new domain's empty port table.
pub(super) fn new_table(id: u32, nr_vcpus: u32) -> Mutex<EventTable> {
    Mutex::new(EventTable::new(DomainId(id), nr_vcpus))
}
