//! The hypercall services over a real domain, and TLB shoot-down.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use pvabi::Error;
use pvabi::{EVENT_TIMER, MemInfo, VcpuInfo};

use crate::domain::GuestMemory;
use crate::domain::lifecycle::{DOMAINS, Domain, Run, VcpuEntry};
use crate::hypercall::{GuestRead, OutOfBounds, Services};
use crate::platform::{P, Platform};
use crate::sched::clock::now_ns;
use crate::sched::live as policy;
use crate::virt::boot::BootState;
use crate::virt::select;

/// The hypercall services for one vCPU during one exit.
pub(crate) struct Svc<'a> {
    pub(crate) me: &'a Arc<VcpuEntry>,
    /// Set by `block` when the vCPU must block: the deadline.
    pub(crate) blocked: Option<u64>,
    /// The vCPU a `HC_EVTCHN_SEND_WAIT` woke: when this one blocks, the
    /// run loop may switch to it directly (`policy::Handoff`; dropped
    /// unused, it wakes the vCPU).
    pub(crate) handoff: Option<policy::Handoff>,
}

impl Svc<'_> {
    fn d(&self) -> &Domain {
        &self.me.domain
    }

    fn sibling(&self, id: u64) -> Option<Arc<VcpuEntry>> {
        let id = u32::try_from(id).ok()?;
        DOMAINS.lock().vcpu(self.me.domain.id, id).cloned()
    }
}

impl Services for Svc<'_> {
    fn vcpu_facts(&self) -> crate::hypercall::cpuid::VcpuFacts {
        crate::hypercall::cpuid::VcpuFacts {
            vcpu: self.me.index,
            start_info: self.d().start_info,
        }
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        self.d().inner.lock().mem.read(gpa, buf)
    }

    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfBounds> {
        self.d().inner.lock().mem.write(gpa, bytes)
    }

    fn privileged(&self) -> bool {
        self.d().privileged
    }

    fn console_readable(&self) -> bool {
        crate::console::live::readable(self.d())
    }

    fn console_read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        Ok(crate::console::live::read_input(self.d(), buf))
    }

    fn block(&mut self, deadline: u64) -> Option<u64> {
        let mask = self.me.pending.swap(0, Ordering::AcqRel);
        if mask != 0 {
            return Some(mask);
        }
        if deadline != 0 && now_ns() >= deadline {
            return Some(0);
        }
        self.blocked = Some(deadline);
        None
    }

    fn halt(&mut self) -> bool {
        crate::sched::halt::halt(self.me)
    }

    fn poll(&mut self) -> u64 {
        self.me.pending.swap(0, Ordering::AcqRel)
    }

    fn set_timer(&mut self, deadline: u64) {
        if deadline != 0 && deadline <= now_ns() {
            // Due already: raised now, as Xen's set_timer_op does, and
            // kept for the next HLT if no timer port carries it.
            self.me.timer.store(0, Ordering::Release);
            self.me.pending.fetch_or(EVENT_TIMER, Ordering::AcqRel);
            let carried = crate::evtchn::live::raise_timer_virq(self.me);
            crate::sched::halt::timer_fired(self.me, carried);
        } else {
            self.me.timer.store(deadline, Ordering::Release);
            crate::sched::timers::arm(self.me, deadline);
            // The run loop of the CPU this vCPU runs on (this one) looks
            // at the new deadline after this exit.
            crate::hostwork::raise(
                self.me.running_on.load(Ordering::Relaxed) as usize,
                crate::hostwork::ATTN_TIMER,
            );
        }
    }

    fn vcpu_up(
        &mut self,
        id: u64,
        rip: u64,
        rsp: u64,
        arg: u64,
        cr3: Option<u64>,
    ) -> Result<(), Error> {
        if id == 0 || id >= u64::from(self.d().nr_vcpus) {
            return Err(Error::Invalid);
        }
        let target = self.sibling(id).ok_or(Error::Invalid)?;
        let size = self.phys_size();
        let mut st = target.st.lock();
        if st.run != Run::Down {
            return Err(Error::Busy);
        }
        let mut probe = [0u8; 8];
        let d = self.d();
        let cr3 = match cr3 {
            // The caller's own tables (pvabi::VCPU_UP_CR3): a page the
            // domain has now. RIP and RSP are virtual under them.
            Some(c) => {
                if !c.is_multiple_of(4096) {
                    return Err(Error::Invalid);
                }
                if c >= size || self.read(c, &mut probe).is_err() {
                    return Err(Error::Fault);
                }
                c
            }
            // The initial identity map: RIP and the first stack slot must
            // be in pages the domain has now.
            None => {
                if rip >= size
                    || rsp < 8
                    || rsp > size
                    || self.read(rip, &mut probe[..1]).is_err()
                    || self.read(rsp - 8, &mut probe).is_err()
                {
                    return Err(Error::Fault);
                }
                d.boot.cr3
            }
        };
        let boot = BootState {
            rip,
            rsp,
            rdi: arg,
            rsi: 0,
            cr3,
            ..d.boot
        };
        // Its backend box is charged to the domain before it is made
        // (`domain/budget.rs`): over budget, the guest gets ENOMEM.
        let cost = select::VCPU_HEAP_BYTES + crate::domain::budget::ALLOC_SLACK;
        let mut v = crate::domain::budget::charged(Some(&d.budget), cost, || {
            select::new_vcpu(d.backend, &boot, d.nested_root, d.id.0).ok_or(Error::NoMem)
        })?;
        // RDTSCP/RDPID tell the guest which vCPU it runs on (its id < 64).
        v.set_tsc_aux(id as u32);
        st.vcpu = Some(v);
        policy::make_runnable(&target, &mut st);
        Ok(())
    }

    fn vcpu_info(&mut self, id: u64) -> Result<VcpuInfo, Error> {
        let target = self.sibling(id).ok_or(Error::Invalid)?;
        let mut info = VcpuInfo::zeroed();
        info.state = match target.st.lock().run {
            Run::Down | Run::Dead => pvabi::VCPU_DOWN,
            Run::Runnable => pvabi::VCPU_RUNNABLE,
            Run::Running => pvabi::VCPU_RUNNING,
            Run::Blocked { .. } => pvabi::VCPU_BLOCKED,
        };
        info.last_cpu = target.last_cpu.load(Ordering::Relaxed);
        info.cpu_time_ns = target.cpu_time_ns.load(Ordering::Relaxed);
        info.pending_events = target.pending.load(Ordering::Relaxed);
        Ok(info)
    }

    fn mem_info(&mut self) -> MemInfo {
        let inner = self.d().inner.lock();
        let mut info = MemInfo::zeroed();
        info.current_pages = inner.mem.present_pages();
        info.max_pages = inner.mem.max_pages();
        info.page_size = pvabi::PAGE_SIZE;
        info
    }

    fn phys_size(&self) -> u64 {
        self.d().inner.lock().mem.phys_size()
    }

    fn mem_release(&mut self, gpa: u64, pages: u64) -> Result<u64, Error> {
        let d = self.d();
        // Granted pages stay: checked and released under the
        // grant table's lock, so no grant of these pages starts meanwhile.
        let grants = d.grants.lock();
        if grants.granted_in(gpa, gpa.saturating_add(pages.saturating_mul(4096))) {
            return Err(Error::Busy);
        }
        // The event-channel control area is pinned.
        if d.control_pinned(gpa, pages.saturating_mul(4096)) {
            return Err(Error::Busy);
        }
        // A device may DMA into any page (`domain/dma.rs`).
        if crate::domain::dma::has_devices(d.id) {
            return Err(Error::Busy);
        }
        let frames = {
            let mut guard = d.inner.lock();
            let inner = &mut *guard;
            let frames = inner.mem.release(gpa, pages)?;
            if let Some(g) = inner.gpt.as_mut()
                && g.unmap(gpa, pages * 4096, &mut inner.tables).is_err()
            {
                // Splitting a 2 MiB mapping needs a table frame: give
                // the pages back rather than leave them half-released.
                for (i, &f) in frames.iter().enumerate() {
                    let _ = inner.mem.restore(gpa + i as u64 * 4096, f);
                }
                return Err(Error::NoMem);
            }
            frames
        };
        drop(grants);
        if shoot_down(&self.me.domain, self.me) {
            for f in frames {
                P::free_frames(f, 1);
            }
        }
        Ok(pages)
    }

    fn mem_populate(&mut self, gpa: u64, pages: u64) -> Result<u64, Error> {
        let mut guard = self.d().inner.lock();
        let inner = &mut *guard;
        if inner
            .foreign
            .range(gpa..gpa.saturating_add(pages.saturating_mul(4096)))
            .next()
            .is_some()
        {
            return Err(Error::Exists);
        }
        let frames = inner.mem.populate(gpa, pages)?;
        if let Some(g) = inner.gpt.as_mut() {
            for (i, &f) in frames.iter().enumerate() {
                if g.map(gpa + i as u64 * 4096, f, 4096, &mut inner.tables)
                    .is_err()
                {
                    // Undo: unmap what was mapped, take the pages back.
                    let _ = g.unmap(gpa, i as u64 * 4096, &mut inner.tables);
                    if let Ok(back) = inner.mem.release(gpa, pages) {
                        for f in back {
                            P::free_frames(f, 1);
                        }
                    }
                    return Err(Error::NoMem);
                }
            }
        }
        Ok(pages)
    }

    fn evtchn(&mut self, op: crate::hypercall::EvtchnOp) -> Result<u64, Error> {
        self.evtchn_op(op)
    }

    fn send_wait(&mut self, send: u32, wait: u32, deadline: u64) -> Result<Option<u64>, Error> {
        self.send_wait_op(send, wait, deadline)
    }

    fn grant(&mut self, op: crate::hypercall::GrantOp) -> Result<u64, Error> {
        self.grant_op(op)
    }

    fn pci(&mut self, op: crate::pci::config::PciOp) -> Result<u64, Error> {
        crate::pci::live::svc_op(self, op)
    }

    fn domctl(
        &mut self,
        req: crate::hypercall::DomctlReq<'_>,
    ) -> Result<crate::hypercall::DomctlReply, Error> {
        self.domctl_req(req)
    }

    fn mem_target(&mut self) -> u64 {
        crate::domain::memtarget::target(self.d())
    }

    fn shutdown_request(&self) -> u64 {
        self.d()
            .shutdown_request
            .load(core::sync::atomic::Ordering::Acquire)
    }

    fn mgmt(&mut self, req: crate::hypercall::MgmtReq<'_>) -> Result<u64, Error> {
        self.mgmt_req(req)
    }

    fn mem_check(&mut self, populate: bool, gpa: u64, pages: u64) -> Result<(), Error> {
        let d = self.d();
        let len = pages.saturating_mul(4096);
        let end = gpa.saturating_add(len);
        // The order of `mem_release` / `mem_populate` (and their locks).
        let grants = d.grants.lock();
        if !populate && (grants.granted_in(gpa, end) || d.control_pinned(gpa, len)) {
            return Err(Error::Busy);
        }
        let inner = d.inner.lock();
        drop(grants);
        if populate && inner.foreign.range(gpa..end).next().is_some() {
            return Err(Error::Exists);
        }
        let present = (0..pages)
            .filter(|i| inner.mem.frame(gpa + i * 4096).is_some())
            .count() as u64;
        match (populate, present) {
            (false, p) if p != pages => Err(Error::NoEntry),
            (true, 0) if inner.mem.present_pages() + pages > inner.mem.max_pages() => {
                Err(Error::NoMem)
            }
            (true, p) if p != 0 => Err(Error::Exists),
            _ => Ok(()),
        }
    }

    fn continuation(&self) -> &crate::hypercall::continuation::Slot {
        &self.me.cont
    }
}

/// After an unmap: every other vCPU of `d` that may be in guest mode on
/// another CPU is forced out (the IPI's interrupt exits it) and flushes
/// before it enters again. Returns only when no CPU can still hold a stale
/// translation, so the released frames can be reused; `false` if a vCPU did
/// not respond within 5 s (the caller then keeps the frames out of use).
///
/// Ordering (both sides sequentially consistent): a vCPU sets `in_guest`
/// and then reads `tlb_gen`; we bump `tlb_gen` and then read `in_guest`.
/// Either it sees the new generation and flushes, or we see it in the guest
/// and wait for its acknowledgement.
fn shoot_down(d: &Arc<Domain>, me: &VcpuEntry) -> bool {
    shoot_down_domain(d, Some(me.index))
}

/// [`shoot_down`] for every vCPU of `d` but `skip` (the caller's own, if
/// it is one of `d`'s): `d` may be another domain (a grantee).
pub(crate) fn shoot_down_domain(d: &Domain, skip: Option<u32>) -> bool {
    let generation = d.tlb_gen.fetch_add(1, Ordering::SeqCst) + 1;
    // On the stack: a guest-driven path allocates nothing here.
    let others: arrayvec::ArrayVec<Arc<VcpuEntry>, { pvabi::DOMCTL_MAX_VCPUS as usize }> = DOMAINS
        .lock()
        .vcpus(d.id)
        .filter(|v| Some(v.index) != skip)
        .take(pvabi::DOMCTL_MAX_VCPUS as usize)
        .cloned()
        .collect();
    let mut ok = true;
    for v in &others {
        let done = || {
            !v.in_guest.load(Ordering::SeqCst) || v.seen_gen.load(Ordering::SeqCst) >= generation
        };
        if done() {
            continue;
        }
        let cpu = v.running_on.load(Ordering::SeqCst);
        if cpu != u32::MAX {
            P::send_ipi(cpu as usize);
        }
        let mut waited = 0;
        while !done() {
            if waited > 5_000_000 {
                log::error!(
                    "domain {}: vCPU {} did not acknowledge a TLB shoot-down",
                    d.id,
                    v.index
                );
                ok = false;
                break;
            }
            P::delay_us(1);
            waited += 1;
        }
    }
    ok
}
