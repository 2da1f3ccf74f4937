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
//! Wake-up: a blocked target vCPU is woken at once by the sender
//! ([`kick`], under the target's state lock, which the blocking side also
//! holds while it checks its pending mask: no wake-up is lost); the
//! scheduler queues it and sends a reschedule IPI where it says so.
//!
//! Upcalls (ABI 1.3): once a domain registered a control area
//! (`HC_EVTCHN_INIT_CONTROL`), its table keeps the bits there
//! ([`DomainBits::Shared`]); a notification also sets the vCPU's selector
//! and `upcall_pending`, and [`prepare_upcall`] injects the vector before
//! each entry (or asks for an interrupt window). A target running in guest
//! mode on another CPU is kicked out with an IPI so the injection happens
//! now rather than at its next tick.

#[allow(unused_imports)]
use crate::run::*;

use crate::arch::evtarea::{AREA_PAGES, GuestArea};
use crate::evtchn::{
    Closed, DomainBits, DomainId, EventTable, Notify, Route, VIRQ_CONSOLE, VIRQ_DOM_EXC,
    VIRQ_TIMER, WaitCheck,
};
use crate::hypercall::EvtchnOp;
use pvabi::EVENT_CHANNEL;

/// A live domain's port table: bits in the hypervisor, or in the guest's
/// control area once registered.
pub(crate) type Table = EventTable<DomainBits<GuestArea>>;

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
/// Returns whether it woke `v` (it was blocked).
fn kick(v: &VcpuEntry, events: u64) -> bool {
    {
        let mut st = v.st.lock();
        v.pending.fetch_or(events, Ordering::AcqRel);
        if let Run::Blocked { .. } = st.run {
            st.deliver_events = true;
            policy::make_runnable(v, &mut st);
            return true;
        }
    }
    let this = percpu::cpu_index() as u32;
    let cpu = v.running_on.load(Ordering::Acquire);
    if cpu == u32::MAX || cpu == this || v.domain.control.get().is_none() {
        return false;
    }
    if let Some(apic) = percpu::cpu(cpu as usize).map(|c| c.apic_id.load(Ordering::Relaxed)) {
        // The shoot-down vector's handler only acknowledges: a plain kick.
        lapic::send_fixed(apic, VECTOR_SHOOTDOWN);
    }
    false
}

/// `v`'s single-shot timer fired: raises `VIRQ_TIMER` if it bound one.
/// Called with the vCPU list or `v`'s state lock possibly held (the table
/// is a leaf).
pub(crate) fn raise_timer_virq(v: &VcpuEntry) {
    if v.domain
        .events
        .lock()
        .raise_virq(v.index, VIRQ_TIMER)
        .is_some()
    {
        v.pending.fetch_or(EVENT_CHANNEL, Ordering::AcqRel);
    }
}

/// Domain `ended` ended: raises `VIRQ_DOM_EXC` in every live privileged
/// domain that bound it.
pub(crate) fn raise_dom_exc(ended: u32) {
    let mut doms: Vec<Arc<Domain>> = Vec::new();
    for v in VCPUS.lock().iter() {
        let d = &v.domain;
        if d.privileged && d.id != ended && !d.dying() && !doms.iter().any(|x| x.id == d.id) {
            doms.push(d.clone());
        }
    }
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

/// Before entering `me`: injects the upcall vector if its control area
/// asks for one (the backend checks RFLAGS.IF, the interrupt shadow and a
/// pending injection, and otherwise asks for an interrupt-window exit).
pub(crate) fn prepare_upcall(me: &VcpuEntry, vcpu: &mut dyn VcpuBackend) {
    if let Some((area, vector)) = me.domain.control.get() {
        let ready = crate::evtchn::upcall_ready(area, me.index);
        vcpu.set_upcall(ready.then_some(*vector));
    }
}

/// The live (not dying) domain with id `id`.
fn domain_by_id(id: DomainId) -> Option<Arc<Domain>> {
    VCPUS
        .lock()
        .iter()
        .find(|v| v.domain.id == id.0)
        .map(|v| v.domain.clone())
        .filter(|d| !d.dying())
}

/// Makes the upcall: raises [`EVENT_CHANNEL`] on the vCPU, waking it if
/// it is blocked ([`kick`]). Returns the vCPU it woke, if any.
fn notify(me: &VcpuEntry, n: Notify) -> Option<Arc<VcpuEntry>> {
    if n.domain.0 == me.domain.id && n.vcpu == me.index {
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

/// Makes the upcall for any domain's vCPU (found in the vCPU list).
/// Returns the vCPU it woke (it was blocked), if any.
pub(crate) fn notify_any(n: Notify) -> Option<Arc<VcpuEntry>> {
    let target = VCPUS
        .lock()
        .iter()
        .find(|v| v.domain.id == n.domain.0 && v.index == n.vcpu)
        .cloned()?;
    kick(&target, EVENT_CHANNEL).then_some(target)
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

/// RAX for a vCPU that blocked and now runs again: the port it waited for
/// in `HC_EVTCHN_SEND_WAIT` (taken) or 0; after `HC_SCHED_BLOCK`, its
/// pending mask (cleared).
pub(crate) fn wake_value(me: &VcpuEntry) -> u64 {
    match me.wait_port.swap(0, Ordering::AcqRel) {
        0 => me.pending.swap(0, Ordering::AcqRel),
        wait => look_at_wait_port(me, wait).unwrap_or(0),
    }
}

fn code(e: pvabi::Error) -> i64 {
    e.code()
}

impl Svc<'_> {
    /// One event-channel op of this vCPU's domain.
    pub(crate) fn evtchn_op(&mut self, op: EvtchnOp) -> Result<u64, i64> {
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
            EvtchnOp::Send(port) => self.send_on(port).map(|_| 0),
            EvtchnOp::Close(port) => {
                let closed = d.events.lock().close(port).map_err(code)?;
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
            EvtchnOp::Mask(port) => d.events.lock().mask(port).map(|()| 0).map_err(code),
            EvtchnOp::Unmask(port) => {
                let n = d.events.lock().unmask(port).map_err(code)?;
                if let Some(n) = n {
                    let _ = notify(self.me, n);
                }
                Ok(0)
            }
            EvtchnOp::Poll => Ok(d.events.lock().take_next_pending().map_or(0, u64::from)),
            EvtchnOp::BindVirq { virq, vcpu } => d
                .events
                .lock()
                .bind_virq(virq, vcpu)
                .map(u64::from)
                .map_err(code),
            EvtchnOp::BindIpi { vcpu } => {
                d.events.lock().bind_ipi(vcpu).map(u64::from).map_err(code)
            }
            EvtchnOp::Status { port, gpa } => {
                let st = d.events.lock().status(port).map_err(code)?;
                self.write(gpa, st.to_abi().as_bytes())
                    .map_err(|_| pvabi::EFAULT)?;
                Ok(0)
            }
            EvtchnOp::BindVcpu { port, vcpu } => d
                .events
                .lock()
                .bind_vcpu(port, vcpu)
                .map(|()| 0)
                .map_err(code),
            EvtchnOp::InitControl { gpa, vector } => self.init_control(gpa, vector),
            // Decoded apart (it may block): `Svc::send_wait_op`.
            EvtchnOp::SendWait { .. } => Err(pvabi::EINVAL),
        }
    }

    /// A send on `port`: raises the port it reaches; returns the vCPU that
    /// woke (it was blocked), if any.
    fn send_on(&mut self, port: u32) -> Result<Option<Arc<VcpuEntry>>, i64> {
        let d = &self.me.domain;
        let me = DomainId(d.id);
        let route = d.events.lock().send(port).map_err(code)?;
        let n = match route {
            Route::Local(p) => d.events.lock().raise(p),
            Route::Remote { domain, port, from } => {
                // A peer that is gone has closed (or is closing)
                // its ports, which unbinds ours: nothing to do.
                domain_by_id(domain).and_then(|p| p.events.lock().deliver(port, me, from))
            }
        };
        Ok(n.and_then(|n| notify(self.me, n)))
    }

    /// `HC_EVTCHN_SEND_WAIT` (ABI 1.4): the wait port is checked
    /// (`ENOENT`, `EINVAL`) before anything is sent, then the send (its
    /// errors end the call), then a look at the wait port; the vCPU blocks
    /// only if nothing is ready, no other event is pending and the
    /// deadline has not passed. The vCPU the send woke is kept in
    /// [`Svc::handoff`]: the run loop may switch to it directly.
    pub(crate) fn send_wait_op(
        &mut self,
        send: u32,
        wait: u32,
        deadline: u64,
    ) -> Result<Option<u64>, i64> {
        self.me
            .domain
            .events
            .lock()
            .check_wait(wait)
            .map_err(code)?;
        if send != 0 {
            self.handoff = self.send_on(send)?;
        }
        if let Some(v) = look_at_wait_port(self.me, wait) {
            return Ok(Some(v));
        }
        if self.me.pending.load(Ordering::Acquire) != 0 || (deadline != 0 && now_ns() >= deadline) {
            return Ok(Some(0));
        }
        self.me.wait_port.store(wait, Ordering::Release);
        self.blocked = Some(deadline);
        Ok(None)
    }

    /// `HC_EVTCHN_INIT_CONTROL`, after the decoder checked the vector and
    /// the alignment: `EFAULT`, `EBUSY`, `EEXIST` in that order. Under the
    /// grant table's lock (which `HC_MEM_RELEASE` and `HC_GRANT_ACCESS`
    /// also hold) the pages are looked up and pinned, so none can be
    /// released or granted in between.
    fn init_control(&mut self, gpa: u64, vector: u8) -> Result<u64, i64> {
        let d = &self.me.domain;
        let len = pvabi::EVTCHN_CONTROL_PAGES * pvabi::PAGE_SIZE;
        let grants = d.grants.lock();
        let mut frames = [0u64; AREA_PAGES];
        {
            let inner = d.inner.lock();
            for (i, f) in frames.iter_mut().enumerate() {
                let g = gpa
                    .checked_add(i as u64 * pvabi::PAGE_SIZE)
                    .ok_or(pvabi::EFAULT)?;
                *f = inner.mem.frame(g).ok_or(pvabi::EFAULT)?;
            }
        }
        if grants.granted_in(gpa, gpa.saturating_add(len)) {
            return Err(pvabi::EBUSY);
        }
        let area = GuestArea::new(gpa, frames);
        let mut fresh = false;
        d.control.call_once(|| {
            fresh = true;
            (area, vector)
        });
        drop(grants);
        if !fresh {
            return Err(pvabi::EEXIST);
        }
        d.events.lock().share_bits(area).map_err(code)?;
        Ok(0)
    }
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
            tell_closed(None, DomainId(d.id), domain, port, from);
        }
    }
}

/// A new domain's empty port table.
pub(crate) fn new_table(id: u32, nr_vcpus: u32) -> Mutex<Table> {
    Mutex::new(EventTable::with_bits(
        DomainId(id),
        nr_vcpus,
        DomainBits::default(),
    ))
}
