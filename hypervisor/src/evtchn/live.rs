//! Event channels between live domains: the `HC_EVTCHN_*`
//! services over each domain's [`EventTable`], the lookup of a domain by
//! id, upcalls ([`EVENT_CHANNEL`] on the target vCPU, which the scheduler
//! wakes if it is blocked), and closing a dying domain's ports.
//!
//! Locks: a domain's `events` lock is a leaf with respect to the domain table
//! and vCPU states: nothing else is taken while it is held, except a second
//! domain's `events` for `bind_interdomain` (both then taken in ascending
//! domain id) and a domain's `end` (itself a leaf). An interdomain send
//! holds one table at a time: it takes the peer's domain out of its own
//! port's reference ([`Table`]) under its own table's lock, lets that go,
//! and then takes the peer's ([`deliver_remote`]): no order to keep, and
//! no send waits for a peer's table while it holds its own (the ping-pong
//! sends both ways, so ascending order would hold both for half of them).
//! A port without a reference takes the peer's table under the domain
//! table's lock, as every send did before. Upcalls are made after
//! every table lock is released, so a [`Notify`] may name a port that
//! changed in the meantime: the worst that does is one spurious
//! [`EVENT_CHANNEL`], which the guest answers with a poll that returns 0.
//!
//! Handing over: a send that raises the very port the notified vCPU
//! waits for in `HC_EVTCHN_SEND_WAIT` claims it in that vCPU's
//! `wait_port` (under the peer's table lock) instead of setting its
//! pending bit; the vCPU's resume ([`wake_value`]) returns it without a
//! look at its table.
//!
//! Wake-up: a blocked target vCPU is woken at once by the sender
//! ([`kick`], under the target's state lock, which the blocking side also
//! holds while it checks its pending mask: no wake-up is lost); the
//! scheduler queues it and sends a reschedule IPI where it says so.
//!
//! Upcalls: once a domain registered a control area
//! (`HC_EVTCHN_INIT_CONTROL`), its table keeps the bits there
//! ([`DomainBits::Shared`]); a notification also sets the vCPU's selector
//! and `upcall_pending`, and [`prepare_upcall`] injects the vector before
//! each entry (or asks for an interrupt window). A target running in guest
//! mode on another CPU is kicked out with an IPI so the injection happens
//! now rather than at its next tick.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::sync::Mutex;
use pvabi::Error;
use pvabi::zerocopy::IntoBytes;

use crate::domain::lifecycle::{DOMAINS, Domain, Run, VcpuEntry};
use crate::evtchn::area::{AREA_PAGES, GuestArea};
use crate::evtchn::{
    Closed, DomainId, Notify, Sent, VIRQ_CONSOLE, VIRQ_DOM_EXC, VIRQ_TIMER, WaitCheck,
};
#[cfg(doc)]
use crate::evtchn::{DomainBits, EventTable};
use crate::hypercall::Services;
use crate::hypercall::services::Svc;
use crate::platform::{P, Platform};
use crate::sched::live as policy;
use crate::virt::VcpuBackend;

use crate::hypercall::EvtchnOp;
use pvabi::EVENT_CHANNEL;

mod table;
pub(crate) use table::{Table, vcpu_list_cost};

/// After `v` got an event: a blocked vCPU is woken (the scheduler queues
/// it and kicks the CPU it chose if that CPU is idle or runs something
/// less urgent); a vCPU of an upcall domain running in guest mode on
/// another CPU is forced to exit (the IPI's interrupt exits it; its next
/// entry injects the upcall).
///
/// `events` are set in `v.pending` under its state lock, so nobody who
/// takes that lock (the idle CPUs' check for lost wake-ups) ever sees a
/// blocked vCPU with events pending that is about to be woken.
///
/// Returns whether it woke `v` (it was blocked): `Some(true)` when its
/// wake was left to the sender's switch (`handoff`: the caller, running
/// on that CPU, will block and may switch to it,
/// `sched/live/handoff.rs`), `Some(false)` when the scheduler queued it.
#[inline(always)]
fn kick(v: &VcpuEntry, events: u64, handoff: Option<u32>) -> Option<bool> {
    {
        let mut st = v.st.lock();
        v.pending.fetch_or(events, Ordering::AcqRel);
        if let Run::Blocked { deadline } = st.run {
            st.resume = Some(deadline);
            if let Some(cpu) = handoff
                && policy::defer(v, &mut st, cpu)
            {
                return Some(true);
            }
            policy::make_runnable(v, &mut st);
            return Some(false);
        }
    }
    let this = P::cpu_index() as u32;
    let cpu = v.running_on.load(Ordering::Acquire);
    if cpu == u32::MAX || cpu == this || v.domain.control.get().is_none() {
        return None;
    }
    P::send_ipi(cpu as usize);
    None
}

/// `v`'s single-shot timer fired: raises `VIRQ_TIMER` if it bound one.
/// Returns whether it did bind one (pending or masked ports included: the
/// port carries the event, `sched/halt.rs` need not). Called with the
/// domain table or `v`'s state lock possibly held (the table is a leaf).
pub(crate) fn raise_timer_virq(v: &VcpuEntry) -> bool {
    let mut t = v.domain.events.lock();
    let bound = t.virq_bound(v.index, VIRQ_TIMER);
    let raised = t.raise_virq(v.index, VIRQ_TIMER).is_some();
    drop(t);
    if raised {
        v.pending.fetch_or(EVENT_CHANNEL, Ordering::AcqRel);
    }
    bound
}

/// Domain `ended` ended: raises `VIRQ_DOM_EXC` in every live privileged
/// domain that bound it.
pub(crate) fn raise_dom_exc(ended: DomainId) {
    let doms: Vec<Arc<Domain>> = DOMAINS
        .lock()
        .domains()
        .filter(|&(id, d)| d.privileged && id != ended && !d.dying())
        .map(|(_, d)| d.clone())
        .collect();
    for d in doms {
        let ns = d.events.lock().raise_virq_all(VIRQ_DOM_EXC);
        for n in ns {
            let _ = notify_any(n);
        }
    }
}

/// Console input was queued for `d`: raises `VIRQ_CONSOLE` on every vCPU
/// of it that bound it (waking a blocked one). Called after the bytes are
/// in the queue and with no lock held, so a guest that read the queue
/// empty and then blocks is woken.
pub(crate) fn raise_console_virq(d: &Domain) {
    let ns = d.events.lock().raise_virq_all(VIRQ_CONSOLE);
    for n in ns {
        let _ = notify_any(n);
    }
}

/// Raises `virq` on every vCPU of `d` that bound it (waking a blocked
/// one); no lock held by the caller (`VIRQ_SHUTDOWN`, `domain/ctl_life.rs`).
pub(crate) fn raise_virq_everywhere(d: &Domain, virq: u32) {
    let ns = d.events.lock().raise_virq_all(virq);
    for n in ns {
        let _ = notify_any(n);
    }
}

/// Before entering `me`: injects the upcall vector if its control area
/// asks for one (the backend checks RFLAGS.IF, the interrupt shadow and a
/// pending injection, and otherwise asks for an interrupt-window exit).
/// `d` is `me`'s domain (the run loop holds it, one load less per entry).
pub(crate) fn prepare_upcall(me: &VcpuEntry, d: &Domain, vcpu: &mut (impl VcpuBackend + ?Sized)) {
    if let Some((area, vector)) = d.control.get() {
        let ready = crate::evtchn::upcall_ready(area, me.index);
        vcpu.set_upcall(ready.then_some(*vector));
    }
}

/// The live (not dying) domain with id `id`.
fn domain_by_id(id: DomainId) -> Option<Arc<Domain>> {
    DOMAINS.lock().get(id).filter(|d| !d.dying()).cloned()
}

/// Whether `n` notifies `me` itself (its own next entry injects the
/// upcall: no wake-up, no look-up).
#[inline(always)]
fn is_own(me: &VcpuEntry, n: Notify) -> bool {
    n.domain == me.domain.id && n.vcpu == me.index
}

/// Makes the upcall: raises [`EVENT_CHANNEL`] on the vCPU, waking it if
/// it is blocked ([`kick`]). Returns the vCPU it woke, if any.
fn notify(me: &VcpuEntry, n: Notify) -> Option<Arc<VcpuEntry>> {
    if is_own(me, n) {
        // Our own vCPU: the next entry injects the upcall.
        me.pending.fetch_or(EVENT_CHANNEL, Ordering::AcqRel);
        return None;
    }
    notify_any(n)
}

/// Tells `peer`'s port that its other end (`closer`'s port `from`) closed.
fn tell_closed(me: Option<&VcpuEntry>, closer: DomainId, peer: DomainId, port: u32, from: u32) {
    let Some(d) = domain_by_id(peer) else {
        return;
    };
    let n = d.events.lock().peer_closed(port, closer, from);
    if let Some(n) = n {
        let _ = match me {
            Some(me) => notify(me, n),
            None => notify_any(n),
        };
    }
}

/// Makes the upcall for any domain's vCPU (found in the domain table).
/// Returns the vCPU it woke (it was blocked), if any.
pub(crate) fn notify_any(n: Notify) -> Option<Arc<VcpuEntry>> {
    let target = DOMAINS.lock().vcpu(n.domain, n.vcpu).cloned()?;
    kick(&target, EVENT_CHANNEL, None).map(|_| target)
}

/// Marks a [`VcpuEntry::wait_port`] whose port a sender handed over
/// ([`EventTable::hand_over`]): the wait ends with that port, and the
/// waiter's resume reads no table ([`wake_value`]). Ports stay below
/// [`crate::evtchn::EVTCHN_PORTS_LIMIT`], far below this bit.
const HANDED: u32 = 1 << 31;

/// Wakes `target` for an event ([`kick`]): with `handoff` (the sender,
/// running on that CPU, will block and may switch to it) as a
/// [`policy::Handoff`] the run loop may switch to, otherwise woken the
/// usual way (`None`).
#[inline(always)]
fn wake_target(target: Arc<VcpuEntry>, handoff: Option<u32>) -> Option<policy::Handoff> {
    match kick(&target, EVENT_CHANNEL, handoff)? {
        true => Some(policy::Handoff::deferred(target)),
        false if handoff.is_some() => Some(policy::Handoff::queued(target)),
        false => None,
    }
}

/// Looks at `wait` for a vCPU waiting in `HC_EVTCHN_SEND_WAIT` (or woken
/// from that wait): `Some(wait)` when it was pending (now taken),
/// `Some(0)` when another port is ready, `None` when nothing is.
///
/// The vCPU's [`EVENT_CHANNEL`] bit is consumed first and the table read
/// after; a sender raises the port in the table first and sets the bit
/// after (`kick`, under the vCPU's state lock). So a port raised after
/// this look has its bit set, which `run_picked` checks under the state
/// lock before it lets the vCPU block: no wake-up is lost. Other ready
/// ports get the bit back, so none is left unnotified.
pub(crate) fn look_at_wait_port(me: &VcpuEntry, wait: u32) -> Option<u64> {
    me.pending.fetch_and(!EVENT_CHANNEL, Ordering::AcqRel);
    let c = me.domain.events.lock().take_wait(wait);
    if c.others() {
        me.pending.fetch_or(EVENT_CHANNEL, Ordering::AcqRel);
    }
    match c {
        WaitCheck::Taken { .. } => Some(u64::from(wait)),
        WaitCheck::Other => Some(0),
        WaitCheck::Empty => None,
    }
}

/// RAX for a vCPU that blocked with `deadline` (0: none) and now runs
/// again at `now`: after `HC_EVTCHN_SEND_WAIT`, the port it waited for
/// (taken) or 0 (another event, or the deadline passed); after
/// `HC_SCHED_BLOCK`, its pending mask (cleared) or 0 at the deadline
/// ([`crate::sched::resume_value`]). `None`: woken with nothing before its
/// deadline; it blocks again (still waiting for the same port). It must
/// answer `Some` whenever its pending mask is not empty: `run_picked`
/// makes a vCPU with pending events runnable rather than blocked.
///
/// The handed case (the round trip's) is inlined into the run loop; the
/// others are a call.
#[inline(always)]
pub(crate) fn wake_value(me: &VcpuEntry, deadline: u64, now: u64) -> Option<u64> {
    match me.wait_port.swap(0, Ordering::AcqRel) {
        // The sender took the port for it under its table's lock: no look.
        // Its `EVENT_CHANNEL` bit stays (set by that sender, or by another
        // raise this look would have found): at worst one spurious
        // notification, never a lost one.
        wait if wait & HANDED != 0 => Some(u64::from(wait & !HANDED)),
        wait => wake_unhanded(me, wait, deadline, now),
    }
}

/// [`wake_value`] for a wait word `wait` without a hand-over (0: a plain
/// block).
#[inline(never)]
fn wake_unhanded(me: &VcpuEntry, wait: u32, deadline: u64, now: u64) -> Option<u64> {
    match wait {
        0 => crate::sched::resume_value(me.pending.swap(0, Ordering::AcqRel), deadline, now),
        wait => match look_at_wait_port(me, wait) {
            Some(rax) => Some(rax),
            // Another event (a timer) woke it, or the deadline passed (one
            // already passed at the call is answered here too): 0.
            None if me.pending.load(Ordering::Acquire) != 0
                || (deadline != 0 && now >= deadline) =>
            {
                Some(0)
            }
            None => {
                me.wait_port.store(wait, Ordering::Release);
                None
            }
        },
    }
}

impl Svc<'_> {
    /// One event-channel op of this vCPU's domain.
    pub(crate) fn evtchn_op(&mut self, op: EvtchnOp) -> Result<u64, Error> {
        let d = &self.me.domain;
        let me = d.id;
        match op {
            EvtchnOp::AllocUnbound { remote } => {
                d.events.lock().alloc_unbound(remote).map(u64::from)
            }
            EvtchnOp::BindInterdomain { remote, port } if remote == me => {
                d.events.lock().bind_interdomain(None, port).map(u64::from)
            }
            EvtchnOp::BindInterdomain { remote, port } => {
                let peer = domain_by_id(remote).ok_or(Error::NoEntry)?;
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
                    return Err(Error::NoEntry);
                }
                mine.bind_to(&mut theirs, d, &peer, port).map(u64::from)
            }
            EvtchnOp::Send(port) => self.send_on(port).map(|()| 0),
            EvtchnOp::Close(port) => {
                let closed = d.events.lock().close(port)?;
                if let Closed::Peer { domain, port, from } = closed {
                    if domain == me {
                        let n = d.events.lock().peer_closed(port, me, from);
                        if let Some(n) = n {
                            let _ = notify(self.me, n);
                        }
                    } else {
                        tell_closed(Some(self.me), me, domain, port, from);
                    }
                }
                Ok(0)
            }
            EvtchnOp::Mask(port) => d.events.lock().mask(port).map(|()| 0),
            EvtchnOp::Unmask(port) => {
                let n = d.events.lock().unmask(port)?;
                if let Some(n) = n {
                    let _ = notify(self.me, n);
                }
                Ok(0)
            }
            EvtchnOp::Poll => Ok(d.events.lock().take_next_pending().map_or(0, u64::from)),
            EvtchnOp::BindVirq { virq, vcpu } => {
                crate::console::wake::may_bind(d, virq)?;
                d.events.lock().bind_virq(virq, vcpu).map(u64::from)
            }
            EvtchnOp::BindIpi { vcpu } => d.events.lock().bind_ipi(vcpu).map(u64::from),
            EvtchnOp::Status { port, gpa } => {
                let st = d.events.lock().status(port)?;
                self.write(gpa, st.to_abi().as_bytes())
                    .map_err(|_| Error::Fault)?;
                Ok(0)
            }
            EvtchnOp::BindVcpu { port, vcpu } => d.events.lock().bind_vcpu(port, vcpu).map(|()| 0),
            EvtchnOp::InitControl { gpa, vector } => self.init_control(gpa, vector),
            // Decoded apart (it may block): `Svc::send_wait_op`.
            EvtchnOp::SendWait { .. } => Err(Error::Invalid),
        }
    }

    /// A send on `port` (`HC_EVTCHN_SEND`): raises the port it reaches and
    /// wakes the vCPU that port notifies.
    fn send_on(&mut self, port: u32) -> Result<(), Error> {
        let (sent, peer) = {
            let mut t = self.me.domain.events.lock();
            let sent = t.send_raise(port)?;
            (sent, remote_peer(&t, sent))
        };
        let _ = self.route(sent, peer, false);
        Ok(())
    }

    /// The rest of a send after the sender's table let go: a remote port
    /// raised (and handed to its vCPU if that one waits for it in
    /// `HC_EVTCHN_SEND_WAIT`), then the notified vCPU kicked. `handoff`:
    /// the sender will block, so a woken vCPU comes back as a
    /// [`policy::Handoff`]. A notification of the sender itself sets its
    /// own bit. `peer`: a remote send's peer domain, from the sending
    /// port's reference ([`remote_peer`]). Inlined into its two callers
    /// (the send and the round trip's `send_wait_op`: a call and the
    /// route's copy less).
    #[inline(always)]
    fn route(
        &mut self,
        sent: Sent,
        peer: Option<Arc<Domain>>,
        handoff: bool,
    ) -> Option<policy::Handoff> {
        let target = match sent {
            Sent::Raised(None) => return None,
            Sent::Raised(Some(n)) if is_own(self.me, n) => {
                self.me.pending.fetch_or(EVENT_CHANNEL, Ordering::AcqRel);
                return None;
            }
            Sent::Raised(Some(n)) => DOMAINS.lock().vcpu(n.domain, n.vcpu).cloned()?,
            Sent::Remote { domain, port, from } => match peer {
                Some(peer) => deliver_remote(&peer, self.me.domain.id, port, from)?,
                None => deliver_by_id(self.me.domain.id, domain, port, from)?,
            },
        };
        // The sender runs here: its last CPU is this one.
        wake_target(
            target,
            handoff.then(|| self.me.last_cpu.load(Ordering::Relaxed)),
        )
    }

    /// `HC_EVTCHN_SEND_WAIT` (ABI 1.4): the wait port is checked
    /// (`ENOENT`, `EINVAL`) before anything is sent, then the send (its
    /// errors end the call), then a look at the wait port; the vCPU blocks
    /// only if nothing is ready and no other event is pending; with its
    /// deadline passed it is resumed at once with 0 (see below). The vCPU
    /// the send woke is kept in
    /// [`Svc::handoff`]: the run loop may switch to it directly.
    ///
    /// The caller's table is locked once for the check, the send and the
    /// look (as [`look_at_wait_port`] does it: the `EVENT_CHANNEL` bit is
    /// consumed before the table is read, and set again when other ports
    /// are ready). A local send is raised before the look in that same
    /// hold, so the look sees it and the sender's own notification needs
    /// no bit; a remote one is delivered after the look, which it cannot
    /// change (it raises another domain's port).
    pub(crate) fn send_wait_op(
        &mut self,
        send: u32,
        wait: u32,
        deadline: u64,
    ) -> Result<Option<u64>, Error> {
        let me = self.me;
        let (sent, look, peer) = {
            let mut t = me.domain.events.lock();
            let (sent, look) = t.send_and_look(send, wait, || {
                me.pending.fetch_and(!EVENT_CHANNEL, Ordering::AcqRel);
            })?;
            let peer = match sent {
                Some(sent) => remote_peer(&t, sent),
                None => None,
            };
            (sent, look, peer)
        };
        // Other ready ports get the bit back (`WaitCheck::others`), in
        // the one match that makes the answer.
        let done = match look {
            WaitCheck::Taken { others } => {
                if others {
                    me.pending.fetch_or(EVENT_CHANNEL, Ordering::AcqRel);
                }
                Some(u64::from(wait))
            }
            WaitCheck::Other => {
                me.pending.fetch_or(EVENT_CHANNEL, Ordering::AcqRel);
                Some(0)
            }
            WaitCheck::Empty => None,
        };
        match sent {
            // Counted by the look just made (see above).
            Some(Sent::Raised(Some(n))) if is_own(me, n) => {}
            Some(sent) => self.handoff = self.route(sent, peer, done.is_none()),
            None => {}
        }
        if done.is_some() {
            return Ok(done);
        }
        if me.pending.load(Ordering::Acquire) != 0 {
            // Not blocking: the handoff is dropped, which wakes a
            // deferred one at once.
            self.handoff = None;
            return Ok(Some(0));
        }
        // A deadline already passed is not tested here (a clock read on
        // every round trip): the run loop, which reads the clock after the
        // exit anyway, makes a block whose deadline has passed runnable at
        // once under the vCPU's state lock (dropping the handoff, which
        // wakes a deferred peer), and its resume answers 0 from
        // [`wake_value`], or the port if a send handed it over meanwhile.
        me.wait_port.store(wait, Ordering::Release);
        self.blocked = Some(deadline);
        Ok(None)
    }

    /// `HC_EVTCHN_INIT_CONTROL`, after the decoder checked the vector and
    /// the alignment: `EFAULT`, `EBUSY`, `EEXIST` in that order. Under the
    /// grant table's lock (which `HC_MEM_RELEASE` and `HC_GRANT_ACCESS`
    /// also hold) the pages are looked up and pinned, so none can be
    /// released or granted in between.
    fn init_control(&mut self, gpa: u64, vector: u8) -> Result<u64, Error> {
        let d = &self.me.domain;
        let len = pvabi::EVTCHN_CONTROL_PAGES * pvabi::PAGE_SIZE;
        let grants = d.grants.lock();
        let mut frames = [0u64; AREA_PAGES];
        {
            let inner = d.inner.lock();
            for (i, f) in frames.iter_mut().enumerate() {
                let g = gpa
                    .checked_add(i as u64 * pvabi::PAGE_SIZE)
                    .ok_or(Error::Fault)?;
                *f = inner.mem.frame(g).ok_or(Error::Fault)?;
            }
        }
        if grants.granted_in(gpa, gpa.saturating_add(len)) {
            return Err(Error::Busy);
        }
        let area = GuestArea::new(gpa, frames);
        let mut fresh = false;
        d.control.call_once(|| {
            fresh = true;
            (area, vector)
        });
        drop(grants);
        if !fresh {
            return Err(Error::Exists);
        }
        d.events.lock().share_bits(area)?;
        Ok(0)
    }
}

/// The domain a remote send (`sent`, from a port of `t`) goes to, from
/// the sending port's reference, taken out under `t`'s lock (the caller's):
/// the send then takes the peer's table after letting `t` go. `None`: not
/// a remote send, or no reference (the send looks the domain up by id:
/// [`deliver_by_id`]).
#[inline(always)]
fn remote_peer(t: &Table, sent: Sent) -> Option<Arc<Domain>> {
    match sent {
        Sent::Remote { domain, from, .. } => t.peer(from, domain),
        Sent::Raised(_) => None,
    }
}

/// Delivers a send from `sender`'s port `from` to `port` of domain
/// `peer`: raises it, hands it to the vCPU it notifies if that one
/// waits for exactly it in `HC_EVTCHN_SEND_WAIT` (the waiter's resume then
/// reads no table: [`wake_value`]), and returns that vCPU to kick. `None`:
/// the peer is dying (it has closed, or is closing, its ports, which
/// unbinds ours), the port was closed or reused, it was pending or
/// masked already, or its vCPU is gone.
///
/// Only the peer's table is held (the caller let its own go), and the
/// vCPU comes from it: no domain-table lock. "Dying" is read under that
/// lock: `close_all` runs under it after the mark, and a vCPU leaves the
/// domain table only after the mark (`sched::live::reap`, or its run loop
/// that saw it), so a vCPU that left is never handed a port or woken here,
/// as before, when the domain table answered for it.
fn deliver_remote(peer: &Domain, sender: DomainId, port: u32, from: u32) -> Option<Arc<VcpuEntry>> {
    let mut target = None;
    let mut t = peer.events.lock();
    if peer.dying() {
        return None;
    }
    let Table { ports, vcpus, .. } = &mut *t;
    // Claimed in its wait word while this table is held: its resume either
    // finds the claim (and takes nothing here) or cleared the word first
    // and then looks at this table, after we let go, finding the bit.
    ports.deliver_to(port, sender, from, |vcpu| {
        let Some(v) = vcpus
            .get(vcpu as usize)
            .and_then(alloc::sync::Weak::upgrade)
        else {
            return false;
        };
        let claimed = v
            .wait_port
            .compare_exchange(port, port | HANDED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        target = Some(v);
        claimed
    })?;
    drop(t);
    target
}

/// [`deliver_remote`] for a sending port that keeps no reference to its
/// peer: domain `domain` is looked up in the domain table (its lock let go
/// before the peer's table is taken), and the rest is as for a reference.
/// `None` also when the domain is gone.
fn deliver_by_id(
    sender: DomainId,
    domain: DomainId,
    port: u32,
    from: u32,
) -> Option<Arc<VcpuEntry>> {
    let peer = DOMAINS.lock().get(domain).cloned()?;
    deliver_remote(&peer, sender, port, from)
}

/// The domain is ending: closes all its ports and tells every peer (their
/// ports become unbound and pending). Called once, by [`Domain::finish`],
/// after the domain is marked dying, so no new binding to it can start
/// (`domain_by_id` no longer finds it); one that raced ahead is already in
/// the table and is closed here.
pub(crate) fn close_all(d: &Domain) {
    let peers = d.events.lock().close_all();
    for c in peers {
        if let Closed::Peer { domain, port, from } = c {
            tell_closed(None, d.id, domain, port, from);
        }
    }
}

/// A new domain's empty port table (its vCPUs recorded once made:
/// [`Table::set_vcpus`]).
pub(crate) fn new_table(
    id: DomainId,
    nr_vcpus: u32,
    budget: Arc<crate::domain::budget::Budget>,
) -> Mutex<Table> {
    Mutex::new(Table::new(id, nr_vcpus, budget))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_deadline;
#[cfg(test)]
mod tests_hand;
#[cfg(test)]
mod tests_pair;
#[cfg(test)]
mod tests_peer;
