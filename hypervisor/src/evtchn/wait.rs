//! The table's side of `HC_EVTCHN_SEND_WAIT` (ABI 1.4): which ports may be
//! waited for, and the look at the wait port that ends (or not) the wait.
//! The caller (the scheduler's event code) consumes the vCPU's
//! `EVENT_CHANNEL` bit before it looks, and sets it again when
//! [`WaitCheck::others`] says other ports are ready, so that a port other
//! than the one waited for is never left pending without its notification.

use pvabi::Error;

use super::{DomainId, EventBits, EventTable, Notify, PortState, Route};

/// Where a send went, as far as the sender's table knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// A port of the sender's own domain, raised: its upcall, if any.
    Raised(Option<Notify>),
    /// `port` of another domain, from the sender's `from`: raised by
    /// [`EventTable::deliver_to`] on that domain's table once the
    /// sender's is let go (two tables only in ascending id).
    Remote {
        /// The receiving domain.
        domain: DomainId,
        /// The receiving port.
        port: u32,
        /// The sending port.
        from: u32,
    },
}

/// What a look at the wait port found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCheck {
    /// The wait port was pending: its bit is now clear. `others`: some
    /// other port is pending and unmasked too.
    Taken { others: bool },
    /// The wait port is not pending, but another port is (pending and
    /// unmasked): the wait must end with 0 so the guest polls it.
    Other,
    /// Nothing is ready: the vCPU may block.
    Empty,
}

impl WaitCheck {
    /// Whether ports other than the wait port are ready.
    pub fn others(self) -> bool {
        matches!(self, Self::Taken { others: true } | Self::Other)
    }
}

impl<B: EventBits> EventTable<B> {
    /// Whether `port` may be waited for: allocated (`NoEntry`: free, 0 or
    /// beyond the table) and not masked (`Invalid`: it could never end the
    /// wait). Bound or still unbound makes no difference.
    pub fn check_wait(&self, port: u32) -> Result<(), Error> {
        self.bound(port)?;
        if self.bits.is_masked(port) {
            return Err(Error::Invalid);
        }
        Ok(())
    }

    /// Looks at `port` for a waiter: takes it if pending (as a poll of
    /// that one port would), and says whether other ports are ready. A
    /// port that was freed since [`EventTable::check_wait`] counts as not
    /// pending (the wait then ends by another event or the deadline).
    pub fn take_wait(&mut self, port: u32) -> WaitCheck {
        let taken = self.bound(port).is_ok() && self.bits.test_and_clear_pending(port);
        let others = self.any_ready();
        match (taken, others) {
            (true, others) => WaitCheck::Taken { others },
            (false, true) => WaitCheck::Other,
            (false, false) => WaitCheck::Empty,
        }
    }

    /// A send on `port` ([`EventTable::send`]'s errors), a local route
    /// raised at once under the same borrow.
    pub fn send_raise(&mut self, port: u32) -> Result<Sent, Error> {
        Ok(match self.send(port)? {
            Route::Local(p) => Sent::Raised(self.raise(p)),
            Route::Remote { domain, port, from } => Sent::Remote { domain, port, from },
        })
    }

    /// `HC_EVTCHN_SEND_WAIT`'s part in the caller's table, under one
    /// borrow: [`EventTable::check_wait`] on `wait`, then the send on
    /// `send` (0: none; [`EventTable::send_raise`]), then `consume` (the
    /// caller clears its vCPU's `EVENT_CHANNEL` bit there: after every
    /// error, before the bits are read), then the look at `wait`
    /// ([`EventTable::take_wait`]). A local send is raised before the
    /// look, so the look sees it.
    pub fn send_and_look(
        &mut self,
        send: u32,
        wait: u32,
        consume: impl FnOnce(),
    ) -> Result<(Option<Sent>, WaitCheck), Error> {
        self.check_wait(wait)?;
        let sent = if send != 0 {
            Some(self.send_raise(send)?)
        } else {
            None
        };
        consume();
        // `wait` is still allocated: nothing above frees a port.
        let (taken, others) = if self.high_water <= 64 {
            // The usual table: the take and `any_ready`'s one word in one
            // call.
            let (taken, ready) = self.bits.take_then_ready(wait, 0);
            (taken, ready != 0)
        } else {
            let taken = self.bits.test_and_clear_pending(wait);
            (taken, self.any_ready())
        };
        Ok((
            sent,
            match (taken, others) {
                (true, others) => WaitCheck::Taken { others },
                (false, true) => WaitCheck::Other,
                (false, false) => WaitCheck::Empty,
            },
        ))
    }

    /// [`EventTable::deliver`] for a port whose vCPU may be waiting for
    /// it: raises `port` if it is still connected to `sender`'s `from`,
    /// and, when it becomes pending and unmasked (an upcall is due),
    /// offers it to `claim` (given the vCPU the port notifies) first. A
    /// claimed port is handed to that vCPU: its pending bit is not set
    /// (the waiter's look would have taken it at once), the rest of the
    /// notification (a shared area's selector and `upcall_pending`) is
    /// made as for any raise. Returns the upcall to make, as `raise`.
    pub fn deliver_to(
        &mut self,
        port: u32,
        sender: DomainId,
        from: u32,
        claim: impl FnOnce(u32) -> bool,
    ) -> Option<Notify> {
        let p = self.bound(port).ok()?;
        let connected = matches!(p.state, PortState::Interdomain { remote, remote_port }
            if remote == sender && remote_port == from);
        if !connected {
            return None;
        }
        let (pending, masked) = self.bits.pending_and_masked(port);
        if pending {
            return None;
        }
        // The bit before the notification (a guest that sees
        // `upcall_pending` finds the bit), as in `raise`.
        if masked {
            self.set_pending(port);
            return None;
        }
        if !claim(p.vcpu) {
            self.set_pending(port);
        }
        self.bits.notify(p.vcpu, port);
        Some(Notify {
            domain: self.domain,
            vcpu: p.vcpu,
            port,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::ids::DomainId;

    /// A loopback pair (`a` sends to `b` and back) in domain 1.
    fn pair() -> (EventTable, u32, u32) {
        let mut t = EventTable::new(DomainId(1), 1);
        let b = t.alloc_unbound(DomainId(1)).unwrap();
        let a = t.bind_interdomain(None, b).unwrap();
        (t, a, b)
    }

    #[test]
    fn only_allocated_unmasked_ports_may_be_waited_for() {
        let (mut t, a, b) = pair();
        assert_eq!(t.check_wait(0), Err(Error::NoEntry));
        assert_eq!(t.check_wait(99), Err(Error::NoEntry));
        assert_eq!(t.check_wait(a), Ok(()));
        t.mask(b).unwrap();
        assert_eq!(t.check_wait(b), Err(Error::Invalid));
        t.unmask(b).unwrap();
        assert_eq!(t.check_wait(b), Ok(()));
        // An unbound port may be waited for: a peer may bind and send.
        let u = t.alloc_unbound(DomainId(2)).unwrap();
        assert_eq!(t.check_wait(u), Ok(()));
        t.close(u).unwrap();
        assert_eq!(t.check_wait(u), Err(Error::NoEntry));
    }

    #[test]
    fn the_wait_port_is_taken_once_and_other_ports_are_reported() {
        let (mut t, a, b) = pair();
        assert_eq!(t.take_wait(b), WaitCheck::Empty);
        let _ = t.raise(b);
        assert_eq!(t.take_wait(b), WaitCheck::Taken { others: false });
        assert_eq!(t.take_wait(b), WaitCheck::Empty, "taken: not pending now");
        let _ = t.raise(a);
        assert_eq!(t.take_wait(b), WaitCheck::Other);
        let _ = t.raise(b);
        assert_eq!(t.take_wait(b), WaitCheck::Taken { others: true });
        assert!(WaitCheck::Other.others() && !WaitCheck::Empty.others());
        // `a` is still pending: a poll gets it.
        assert_eq!(t.take_next_pending(), Some(a));
        assert_eq!(t.take_wait(b), WaitCheck::Empty);
    }

    #[test]
    fn a_masked_other_port_does_not_end_the_wait() {
        let (mut t, a, b) = pair();
        t.mask(a).unwrap();
        let _ = t.raise(a);
        assert_eq!(t.take_wait(b), WaitCheck::Empty);
    }

    #[test]
    fn a_port_closed_after_the_check_is_not_taken() {
        let (mut t, _a, b) = pair();
        let _ = t.raise(b);
        t.close(b).unwrap();
        assert_ne!(t.take_wait(b), WaitCheck::Taken { others: false });
    }
}
