//! Host tests of the exit handler: fakes for the vCPU, the domain and the
//! host, table-driven cases, and randomized properties against models.
#![allow(clippy::unwrap_used)]
use super::*;
use crate::virt::GuestRegs;
use pvabi::zerocopy::FromBytes;
use pvabi::{E2BIG, EBUSY, EEXIST, EFAULT, EINVAL, ENOENT, ENOSYS, EPERM};
use pvabi::{MULTICALL_MAX, MulticallEntry};
use std::vec::Vec;

mod bounded;
mod console;
mod domctl;
mod evtchn;
mod group;
mod mgmt;
mod privilege;
mod spec;
mod stage;

#[derive(Default)]
struct FakeVcpu {
    regs: GuestRegs,
    rip: u64,
    gp: u32,
    xcr0: u64,
    ud: u32,
    cpl: u8,
    rsp: u64,
    /// RFLAGS.IF clear (the default guest has interrupts on).
    if_clear: bool,
    /// CR0, CR3, CR4 (indices 0, 3, 4).
    cr: [u64; 5],
    /// DR0-DR7 as `debug_reg` sees them.
    dr: [u64; 8],
    /// Guest-owned MSRs, in `GuestMsr::ALL` order.
    msrs: [u64; 13],
}

/// The register half of a backend; the exit handler never runs a vCPU.
impl VcpuBackend for FakeVcpu {
    fn msr(&self, m: crate::virt::msr::GuestMsr) -> u64 {
        let i = crate::virt::msr::GuestMsr::ALL.iter().position(|&x| x == m);
        i.map_or(0, |i| self.msrs[i])
    }
    fn set_msr(&mut self, m: crate::virt::msr::GuestMsr, value: u64) {
        let i = crate::virt::msr::GuestMsr::ALL.iter().position(|&x| x == m);
        if let Some(i) = i {
            self.msrs[i] = value;
        }
    }
    fn enter(&mut self, _cpu: usize) {}
    fn flush_tlb(&mut self) {}
    fn run(&mut self) -> VmExit {
        unreachable!("the exit handler never runs the vCPU")
    }
    fn release(&mut self) {}
    fn set_upcall(&mut self, _vector: Option<u8>) {}
    fn set_slice_end(&mut self, _tsc: u64) {}
    fn put(&mut self) {}
    fn regs(&mut self) -> &mut GuestRegs {
        &mut self.regs
    }
    fn rax(&self) -> u64 {
        self.regs.rax
    }
    fn set_rax(&mut self, value: u64) {
        self.regs.rax = value;
    }
    fn rip(&self) -> u64 {
        self.rip
    }
    fn skip(&mut self, len: u64) {
        self.rip += len;
    }
    fn inject_gp(&mut self) {
        self.gp += 1;
    }
    fn set_xcr(&mut self, xcr: u32, value: u64) -> bool {
        let ok = crate::virt::xstate::validate_xcr0(xcr, value, 0b111).is_ok();
        if ok {
            self.xcr0 = value;
        }
        ok
    }
    fn inject_ud(&mut self) {
        self.ud += 1;
    }
    fn cpl(&self) -> u8 {
        self.cpl
    }
    fn rsp(&self) -> u64 {
        self.rsp
    }
    fn interrupts_enabled(&self) -> bool {
        !self.if_clear
    }
    fn control_reg(&self, n: u8) -> u64 {
        self.cr.get(usize::from(n)).copied().unwrap_or(0)
    }
    fn set_control_reg(&mut self, n: u8, value: u64) -> bool {
        match self.cr.get_mut(usize::from(n)) {
            Some(c) => {
                *c = value;
                true
            }
            None => false,
        }
    }
    fn debug_reg(&self, n: u8) -> u64 {
        self.dr.get(usize::from(n)).copied().unwrap_or(0)
    }
    fn set_debug_reg(&mut self, n: u8, value: u64) -> bool {
        match self.dr.get_mut(usize::from(n)) {
            Some(d) => {
                *d = value;
                true
            }
            None => false,
        }
    }
}

/// Guest memory plus a page-level model of the reservation.
struct FakeSvc {
    mem: Vec<u8>,
    present: Vec<bool>,
    max_pages: u64,
    pending: u64,
    timer: u64,
    vcpus_up: Vec<bool>,
    /// The CR3 the last `vcpu_up` was given (`VCPU_UP_CR3`).
    up_cr3: Option<u64>,
    privileged: bool,
    /// Domain 1's port table: ops on other domains get `ENOENT`.
    events: crate::evtchn::EventTable,
    /// Every event-channel op that reached the services, in order.
    evtchn_ops: Vec<EvtchnOp>,
    grant_ops: Vec<GrantOp>,
    /// Every domctl request that reached the services, as `Debug` text.
    domctl_reqs: Vec<std::string::String>,
    /// Bytes sent on the fake management line / host console.
    mgmt_out: Vec<u8>,
    /// A control domain exists (unprivileged domains may read input).
    control_domain: bool,
    /// This domain's console input queue.
    input: crate::console::input::InputQueue,
    /// Domain 3's console input queue (the target of console writes) and
    /// how many times its `VIRQ_CONSOLE` was raised.
    input3: crate::console::input::InputQueue,
    virq_console3: u32,
    cont: continuation::Slot,
}

impl FakeSvc {
    fn new(bytes: usize) -> Self {
        let pages = bytes / 4096;
        Self {
            mem: std::vec![0; bytes],
            present: std::vec![true; pages],
            max_pages: pages as u64,
            pending: 0,
            timer: 0,
            vcpus_up: std::vec![true, false, false],
            up_cr3: None,
            privileged: false,
            events: crate::evtchn::EventTable::new(crate::domain::ids::DomainId(1), 3),
            evtchn_ops: Vec::new(),
            grant_ops: Vec::new(),
            domctl_reqs: Vec::new(),
            mgmt_out: Vec::new(),
            control_domain: false,
            input: crate::console::input::InputQueue::new(),
            input3: crate::console::input::InputQueue::new(),
            virq_console3: 0,
            cont: continuation::Slot::new(),
        }
    }
}

impl Services for FakeSvc {
    fn vcpu_facts(&self) -> super::cpuid::VcpuFacts {
        super::cpuid::VcpuFacts {
            vcpu: 1,
            start_info: 0x7f_f000,
        }
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        crate::domain::check_range(gpa, buf.len() as u64, self.mem.len() as u64)?;
        buf.copy_from_slice(&self.mem[gpa as usize..gpa as usize + buf.len()]);
        Ok(())
    }
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfBounds> {
        crate::domain::check_range(gpa, bytes.len() as u64, self.mem.len() as u64)?;
        self.mem[gpa as usize..gpa as usize + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }
    fn privileged(&self) -> bool {
        self.privileged
    }
    fn console_readable(&self) -> bool {
        self.privileged || self.control_domain
    }
    fn console_read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if !self.privileged {
            return Ok(self.input.read(buf));
        }
        let n = buf.len().min(2);
        buf[..n].copy_from_slice(&b"ok"[..n]);
        Ok(n)
    }
    fn block(&mut self, _deadline: u64) -> Option<u64> {
        (self.pending != 0).then(|| core::mem::take(&mut self.pending))
    }
    fn halt(&mut self) -> bool {
        self.pending == 0
    }
    fn poll(&mut self) -> u64 {
        core::mem::take(&mut self.pending)
    }
    fn set_timer(&mut self, deadline: u64) {
        self.timer = deadline;
    }
    fn vcpu_up(
        &mut self,
        id: u64,
        _rip: u64,
        _rsp: u64,
        _arg: u64,
        cr3: Option<u64>,
    ) -> Result<(), Error> {
        self.up_cr3 = cr3;
        match self.vcpus_up.get_mut(id as usize) {
            Some(_) if id == 0 => Err(Error::Invalid),
            Some(true) => Err(Error::Busy),
            Some(up) => {
                *up = true;
                Ok(())
            }
            None => Err(Error::Invalid),
        }
    }
    fn vcpu_info(&mut self, id: u64) -> Result<VcpuInfo, Error> {
        let up = *self.vcpus_up.get(id as usize).ok_or(Error::Invalid)?;
        let mut i = VcpuInfo::zeroed();
        i.state = u32::from(up);
        Ok(i)
    }
    fn mem_info(&mut self) -> MemInfo {
        let mut i = MemInfo::zeroed();
        i.current_pages = self.present.iter().filter(|p| **p).count() as u64;
        i.max_pages = self.max_pages;
        i.page_size = PAGE_SIZE;
        i
    }
    fn phys_size(&self) -> u64 {
        self.mem.len() as u64
    }
    fn mem_release(&mut self, gpa: u64, pages: u64) -> Result<u64, Error> {
        let first = (gpa / 4096) as usize;
        let range = first..first + pages as usize;
        if self.present[range.clone()].iter().any(|p| !p) {
            return Err(Error::NoEntry);
        }
        self.present[range].iter_mut().for_each(|p| *p = false);
        Ok(pages)
    }
    fn mem_populate(&mut self, gpa: u64, pages: u64) -> Result<u64, Error> {
        let first = (gpa / 4096) as usize;
        let range = first..first + pages as usize;
        if self.present[range.clone()].iter().any(|p| *p) {
            return Err(Error::Exists);
        }
        self.present[range].iter_mut().for_each(|p| *p = true);
        Ok(pages)
    }
    fn evtchn(&mut self, op: EvtchnOp) -> Result<u64, Error> {
        self.evtchn_ops.push(op);
        evtchn::fake_op(&mut self.events, op)
    }
    fn send_wait(&mut self, send: u32, wait: u32, deadline: u64) -> Result<Option<u64>, Error> {
        self.evtchn_ops.push(EvtchnOp::SendWait {
            send,
            wait,
            deadline,
        });
        evtchn::fake_send_wait(self, send, wait, deadline)
    }
    fn grant(&mut self, op: GrantOp) -> Result<u64, Error> {
        self.grant_ops.push(op);
        Ok(0)
    }
    fn domctl(&mut self, req: DomctlReq<'_>) -> Result<DomctlReply, Error> {
        self.domctl_reqs.push(std::format!("{req:?}"));
        domctl::fake(req)
    }
    fn mgmt(&mut self, req: MgmtReq<'_>) -> Result<u64, Error> {
        mgmt::fake(self, req)
    }
    fn mem_check(&mut self, populate: bool, gpa: u64, pages: u64) -> Result<(), Error> {
        let first = (gpa / 4096) as usize;
        let range = &self.present[first..first + pages as usize];
        match populate {
            false if range.iter().any(|p| !p) => Err(Error::NoEntry),
            true if range.iter().any(|p| *p) => Err(Error::Exists),
            _ => Ok(()),
        }
    }
    fn continuation(&self) -> &continuation::Slot {
        &self.cont
    }
}

struct FakeHost;

impl Host for FakeHost {
    fn cpuid(&self, leaf: u32, _: u32) -> [u32; 4] {
        [leaf, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff]
    }
    fn tsc(&self) -> u64 {
        0x1234_5678_9abc
    }
}

/// One hypercall as a guest makes it: executed again while the
/// hypervisor continues it (RIP left on the instruction).
fn call6(v: &mut FakeVcpu, svc: &mut FakeSvc, nr: u64, a: [u64; 4]) -> (Action, Vec<u8>) {
    v.regs.rax = nr;
    v.regs.rdi = a[0];
    v.regs.rsi = a[1];
    v.regs.rdx = a[2];
    v.regs.r10 = a[3];
    let mut out = Vec::new();
    let rip = v.rip;
    loop {
        let act = handle(
            VmExit::Hypercall { len: 3 },
            v,
            svc,
            &FakeHost,
            1,
            &mut |b: &[u8]| {
                out.extend_from_slice(b);
                true
            },
        );
        if v.rip != rip || !svc.cont.pending() {
            return (act, out);
        }
    }
}

fn call(v: &mut FakeVcpu, svc: &mut FakeSvc, nr: u64, a1: u64, a2: u64) -> (Action, Vec<u8>) {
    call6(v, svc, nr, [a1, a2, 0, 0])
}

#[test]
fn console_write_validates_every_argument() {
    let mut svc = FakeSvc::new(0x2000);
    svc.mem[0x100..0x105].copy_from_slice(b"hello");
    let mut v = FakeVcpu::default();
    let (a, out) = call(&mut v, &mut svc, HC_CONSOLE_WRITE, 0x100, 5);
    assert_eq!(
        (a, out.as_slice(), v.regs.rax, v.rip),
        (Action::Resume, b"hello".as_slice(), 5, 3)
    );
    for (gpa, len, want) in [
        (0x2000, 1, EFAULT),
        (0x1fff, 2, EFAULT),
        (u64::MAX, 2, EFAULT),
        (0, CONSOLE_WRITE_MAX + 1, E2BIG),
        (0, u64::MAX, E2BIG),
    ] {
        let (a, out) = call(&mut v, &mut svc, HC_CONSOLE_WRITE, gpa, len);
        assert_eq!(a, Action::Resume);
        assert!(out.is_empty());
        assert_eq!(v.regs.rax as i64, want, "gpa {gpa:#x} len {len:#x}");
    }
    let (_, out) = call(&mut v, &mut svc, HC_CONSOLE_WRITE, 0x1000, 0);
    assert!(out.is_empty());
    assert_eq!(v.regs.rax, 0);
}

#[test]
fn console_read_without_a_control_domain_is_for_the_privileged_only() {
    let mut svc = FakeSvc::new(0x2000);
    let mut v = FakeVcpu::default();
    call(&mut v, &mut svc, HC_CONSOLE_READ, 0x100, 16);
    assert_eq!(v.regs.rax as i64, EPERM);
    svc.privileged = true;
    call(&mut v, &mut svc, HC_CONSOLE_READ, 0x100, 16);
    assert_eq!((v.regs.rax, &svc.mem[0x100..0x102]), (2, b"ok".as_slice()));
    call(&mut v, &mut svc, HC_CONSOLE_READ, 0x1fff, 16);
    assert_eq!(v.regs.rax as i64, EFAULT);
    call(&mut v, &mut svc, HC_CONSOLE_READ, 0, 5000);
    assert_eq!(v.regs.rax as i64, E2BIG);
}

#[test]
fn shutdown_yield_block_and_unknown_numbers() {
    let mut svc = FakeSvc::new(0x1000);
    let mut v = FakeVcpu::default();
    assert_eq!(
        call(&mut v, &mut svc, HC_SHUTDOWN, SHUTDOWN_POWEROFF, 7).0,
        Action::Shutdown {
            crashed: false,
            code: 7,
            reboot: false
        }
    );
    assert_eq!(
        call(&mut v, &mut svc, HC_SHUTDOWN, SHUTDOWN_CRASH, u64::MAX).0,
        Action::Shutdown {
            crashed: true,
            code: -1,
            reboot: false
        }
    );
    assert_eq!(
        call(&mut v, &mut svc, HC_SHUTDOWN, pvabi::SHUTDOWN_REBOOT, 4).0,
        Action::Shutdown {
            crashed: false,
            code: 4,
            reboot: true
        }
    );
    assert_eq!(call(&mut v, &mut svc, HC_SHUTDOWN, 99, 0).0, Action::Resume);
    assert_eq!(v.regs.rax as i64, EINVAL);
    assert_eq!(call(&mut v, &mut svc, HC_YIELD, 0, 0).0, Action::Yield);
    assert_eq!(v.regs.rax, 0);
    // Nothing pending: the vCPU blocks and RAX is left for the wake-up.
    v.regs.rax = 0x55;
    assert_eq!(
        call(&mut v, &mut svc, HC_SCHED_BLOCK, 1000, 0).0,
        Action::Block
    );
    svc.pending = 1;
    assert_eq!(
        call(&mut v, &mut svc, HC_SCHED_BLOCK, 0, 0).0,
        Action::Resume
    );
    assert_eq!(v.regs.rax, 1);
    svc.pending = 1;
    call(&mut v, &mut svc, HC_SCHED_POLL, 0, 0);
    assert_eq!((v.regs.rax, svc.pending), (1, 0));
    call(&mut v, &mut svc, HC_SET_TIMER, 12345, 0);
    assert_eq!(svc.timer, 12345);
    for nr in [0, 1000, 0xffff, 0xdead, u64::MAX] {
        assert_eq!(call(&mut v, &mut svc, nr, 0, 0).0, Action::Resume);
        assert_eq!(v.regs.rax as i64, ENOSYS);
    }
}

#[test]
fn vcpu_ops() {
    let mut svc = FakeSvc::new(0x2000);
    let mut v = FakeVcpu::default();
    call6(&mut v, &mut svc, HC_VCPU_UP, [1, 0x1000, 0x1800, 7]);
    assert_eq!(v.regs.rax, 0);
    call6(&mut v, &mut svc, HC_VCPU_UP, [1, 0x1000, 0x1800, 7]);
    assert_eq!(v.regs.rax as i64, EBUSY);
    call6(&mut v, &mut svc, HC_VCPU_UP, [9, 0x1000, 0x1800, 7]);
    assert_eq!(v.regs.rax as i64, EINVAL);
    assert_eq!(svc.up_cr3, None, "no VCPU_UP_CR3: the initial tables");
    // VCPU_UP_CR3 in RDI: vCPU 2 with CR3 = R8 (issue 13).
    let mut r = FakeVcpu::default();
    r.regs.rax = HC_VCPU_UP;
    r.regs.rdi = 2 | pvabi::VCPU_UP_CR3;
    r.regs.rsi = 0xffff_ffff_8100_0000;
    r.regs.rdx = 0xffff_ffff_8200_0000;
    r.regs.r8 = 0x5000;
    handle(
        VmExit::Hypercall { len: 3 },
        &mut r,
        &mut svc,
        &FakeHost,
        0,
        &mut |_: &[u8]| true,
    );
    assert_eq!((r.regs.rax, svc.up_cr3), (0, Some(0x5000)));
    call(&mut v, &mut svc, HC_VCPU_INFO, 1, 0x100);
    assert_eq!(v.regs.rax, 0);
    let info = VcpuInfo::read_from_bytes(&svc.mem[0x100..0x100 + 24]).unwrap();
    assert_eq!(info.state, 1);
    call(&mut v, &mut svc, HC_VCPU_INFO, 1, 0x1ff0);
    assert_eq!(v.regs.rax as i64, EFAULT);
    call(&mut v, &mut svc, HC_VCPU_INFO, 7, 0x100);
    assert_eq!(v.regs.rax as i64, EINVAL);
}

#[test]
fn memory_ops_validate_ranges() {
    let mut svc = FakeSvc::new(0x10_0000);
    let mut v = FakeVcpu::default();
    for (gpa, pages, want) in [
        (0x1001, 1, EINVAL),
        (0x1000, 0, EINVAL),
        (0x1000, MEM_OP_MAX_PAGES + 1, EINVAL),
        (0xff000, 2, EFAULT),
        (!0xfff, 1, EFAULT),
    ] {
        call(&mut v, &mut svc, HC_MEM_RELEASE, gpa, pages);
        assert_eq!(v.regs.rax as i64, want, "release {gpa:#x} {pages}");
        call(&mut v, &mut svc, HC_MEM_POPULATE, gpa, pages);
        assert_eq!(v.regs.rax as i64, want, "populate {gpa:#x} {pages}");
    }
    call(&mut v, &mut svc, HC_MEM_RELEASE, 0x10000, 4);
    assert_eq!(v.regs.rax, 4);
    call(&mut v, &mut svc, HC_MEM_RELEASE, 0x12000, 4);
    assert_eq!(v.regs.rax as i64, ENOENT);
    call(&mut v, &mut svc, HC_MEM_INFO, 0x100, 0);
    let info = MemInfo::read_from_bytes(&svc.mem[0x100..0x118]).unwrap();
    assert_eq!((info.current_pages, info.max_pages), (252, 256));
    call(&mut v, &mut svc, HC_MEM_POPULATE, 0x10000, 5);
    assert_eq!(v.regs.rax as i64, EEXIST);
    call(&mut v, &mut svc, HC_MEM_POPULATE, 0x10000, 4);
    assert_eq!(v.regs.rax, 4);
}

fn entry(op: u64, args: [u64; 6]) -> MulticallEntry {
    let mut e = MulticallEntry::new(0, [0; 6]);
    e.op = op;
    e.args = args;
    e.result = 0xeeee;
    e
}

#[test]
fn multicall_runs_a_batch_in_one_exit() {
    let mut svc = FakeSvc::new(0x4000);
    svc.mem[0x3000..0x3002].copy_from_slice(b"hi");
    let batch = [
        entry(HC_CONSOLE_WRITE, [0x3000, 2, 0, 0, 0, 0]),
        entry(0xdead, [0; 6]),
        entry(HC_MULTICALL, [0x2000, 1, 0, 0, 0, 0]),
        entry(HC_SCHED_BLOCK, [0; 6]),
        entry(HC_YIELD, [0; 6]),
        entry(HC_CONSOLE_WRITE, [0x3fff, 2, 0, 0, 0, 0]),
    ];
    for (i, e) in batch.iter().enumerate() {
        svc.mem[0x2000 + i * 64..0x2000 + (i + 1) * 64].copy_from_slice(e.as_bytes());
    }
    let mut v = FakeVcpu::default();
    let (a, out) = call(&mut v, &mut svc, HC_MULTICALL, 0x2000, batch.len() as u64);
    assert_eq!(
        (a, v.regs.rax, out.as_slice()),
        (Action::Yield, 6, b"hi".as_slice())
    );
    let results: Vec<i64> = (0..batch.len())
        .map(|i| {
            MulticallEntry::read_from_bytes(&svc.mem[0x2000 + i * 64..0x2000 + (i + 1) * 64])
                .unwrap()
                .result as i64
        })
        .collect();
    assert_eq!(results, [2, ENOSYS, EINVAL, EINVAL, 0, EFAULT]);
    // Bad batches.
    for (gpa, n, want) in [
        (0x2000, 0, EINVAL),
        (0x2000, MULTICALL_MAX + 1, E2BIG),
        (0x3fc0, 2, EFAULT),
    ] {
        call(&mut v, &mut svc, HC_MULTICALL, gpa, n);
        assert_eq!(v.regs.rax as i64, want);
    }
    // A shutdown ends the batch.
    svc.mem[0x2000..0x2040].copy_from_slice(entry(HC_SHUTDOWN, [0, 3, 0, 0, 0, 0]).as_bytes());
    assert_eq!(
        call(&mut v, &mut svc, HC_MULTICALL, 0x2000, 2).0,
        Action::Shutdown {
            crashed: false,
            code: 3,
            reboot: false
        }
    );
}

#[test]
fn cpuid_hides_virtualization_and_carries_our_signature() {
    let host = FakeHost;
    let l1 = filter_cpuid(1, 0, &host, 1);
    assert_eq!(l1[2] & (1 << 5), 0, "VMX hidden");
    assert_ne!(l1[2] & (1 << 31), 0, "hypervisor bit");
    assert_eq!(
        filter_cpuid(0x8000_0001, 0, &host, 1)[2] & (1 << 2),
        0,
        "SVM hidden"
    );
    let s = filter_cpuid(CPUID_SIGNATURE_LEAF, 0, &host, 1);
    let mut sig = Vec::new();
    for r in &s[1..] {
        sig.extend_from_slice(&r.to_le_bytes());
    }
    assert_eq!(sig, b"KestrelHyper");
    assert_eq!(
        filter_cpuid(0x4000_0001, 0, &host, 1),
        [pvabi::PVABI_VERSION, 1, 0, 0]
    );
    let mut svc = FakeSvc::new(0);
    let mut v = FakeVcpu::default();
    v.regs.rax = CPUID_SIGNATURE_LEAF.into();
    let a = handle(
        VmExit::Cpuid { len: 2 },
        &mut v,
        &mut svc,
        &host,
        0,
        &mut |_: &[u8]| true,
    );
    // The highest hypervisor leaf is now 0x4000_0002 (issue 13: Linux's
    // `hypervisor_cpuid_base(sig, 2)` needs it), which gives the start info.
    assert_eq!((a, v.regs.rax, v.rip), (Action::Resume, 0x4000_0002, 2));
    v.regs.rax = 0x4000_0002;
    handle(
        VmExit::Cpuid { len: 2 },
        &mut v,
        &mut svc,
        &host,
        0,
        &mut |_: &[u8]| true,
    );
    assert_eq!(
        (v.regs.rax, v.regs.rbx, v.regs.rcx, v.regs.rdx),
        (0x7f_f000, 0, pvabi::START_INFO_SIZE as u64, 0)
    );
    v.regs.rax = 1;
    handle(
        VmExit::Cpuid { len: 2 },
        &mut v,
        &mut svc,
        &host,
        0,
        &mut |_: &[u8]| true,
    );
    assert_eq!(v.regs.rbx >> 24, 1, "APIC id = vCPU index");
}

#[test]
fn msrs_io_and_faults() {
    let mut svc = FakeSvc::new(0);
    let mut v = FakeVcpu {
        rip: 0x1000,
        ..FakeVcpu::default()
    };
    let mut run = |v: &mut FakeVcpu, e| handle(e, v, &mut svc, &FakeHost, 0, &mut |_: &[u8]| true);
    v.regs.rcx = 0x10;
    assert_eq!(
        run(
            &mut v,
            VmExit::Msr {
                write: false,
                len: 2
            }
        ),
        Action::Resume
    );
    assert_eq!((v.regs.rax, v.regs.rdx, v.gp), (0x5678_9abc, 0x1234, 0));
    assert_eq!(
        run(
            &mut v,
            VmExit::Msr {
                write: true,
                len: 2
            }
        ),
        Action::Resume
    );
    // IA32_APIC_BASE: no APIC, no MSR (EFER was the example here before
    // the MSR model of issue 13 made it readable).
    v.regs.rcx = 0x1b;
    assert_eq!(
        run(
            &mut v,
            VmExit::Msr {
                write: false,
                len: 2
            }
        ),
        Action::Resume
    );
    assert_eq!(
        run(
            &mut v,
            VmExit::Io {
                port: 0x3f8,
                write: true,
                size: 1,
                len: 1
            }
        ),
        Action::Resume
    );
    assert_eq!(v.gp, 3);
    let rip = v.rip;
    assert_eq!(
        run(
            &mut v,
            VmExit::NestedPageFault {
                gpa: 0x100_0000,
                write: true,
                fetch: false
            }
        ),
        Action::Kill(KillReason::OutsideMemory {
            gpa: 0x100_0000,
            write: true,
            fetch: false,
            rip
        })
    );
    assert_eq!(
        run(&mut v, VmExit::Shutdown),
        Action::Kill(KillReason::TripleFault { rip })
    );
    assert!(matches!(
        run(&mut v, VmExit::Forbidden { what: "INVD" }),
        Action::Kill(KillReason::Forbidden { .. })
    ));
    assert!(matches!(
        run(
            &mut v,
            VmExit::Unknown {
                code: 0x99,
                info1: 0,
                info2: 0
            }
        ),
        Action::Kill(_)
    ));
    assert_eq!(run(&mut v, VmExit::ExternalInterrupt), Action::Interrupt);
}

/// HLT: with interrupts on and nothing pending the vCPU blocks (RIP past
/// the HLT, RAX untouched: it is no hypercall); with an event pending it
/// runs on; with interrupts off it yields (the guest's bug, never a vCPU
/// stopped for good).
#[test]
fn hlt_blocks_only_with_interrupts_on() {
    let mut svc = FakeSvc::new(0);
    let mut v = FakeVcpu {
        rip: 0x1000,
        ..FakeVcpu::default()
    };
    v.regs.rax = 0x1234;
    let hlt = |v: &mut FakeVcpu, svc: &mut FakeSvc| {
        handle(
            VmExit::Hlt { len: 1 },
            v,
            svc,
            &FakeHost,
            0,
            &mut |_: &[u8]| true,
        )
    };
    assert_eq!(hlt(&mut v, &mut svc), Action::Block);
    assert_eq!((v.rip, v.regs.rax), (0x1001, 0x1234));
    svc.pending = pvabi::EVENT_CHANNEL;
    assert_eq!(hlt(&mut v, &mut svc), Action::Resume);
    assert_eq!(svc.pending, pvabi::EVENT_CHANNEL, "HLT consumes no event");
    svc.pending = 0;
    v.if_clear = true;
    assert_eq!(hlt(&mut v, &mut svc), Action::Yield);
    assert_eq!((v.rip, v.regs.rax), (0x1003, 0x1234));
}

/// XSETBV: EDX:EAX (upper halves of RDX/RAX ignored) goes to the backend;
/// a refused value injects #GP and leaves RIP on the instruction.
#[test]
fn xsetbv_is_checked_and_refusals_get_gp() {
    let mut svc = FakeSvc::new(0);
    let mut v = FakeVcpu::default();
    let mut xsetbv = |v: &mut FakeVcpu, ecx: u64, rdx: u64, rax: u64| {
        v.regs.rcx = ecx;
        v.regs.rdx = rdx;
        v.regs.rax = rax;
        let a = handle(
            VmExit::Xsetbv { len: 3 },
            v,
            &mut svc,
            &FakeHost,
            0,
            &mut |_: &[u8]| true,
        );
        assert_eq!(a, Action::Resume);
        (v.rip, v.gp, v.xcr0)
    };
    assert_eq!(
        xsetbv(&mut v, 0, 0xffff_ffff_0000_0000, 0xdead_0000_0000_0007),
        (3, 0, 7)
    );
    assert_eq!(xsetbv(&mut v, 0, 0, 0b101), (3, 1, 7), "AVX without SSE");
    assert_eq!(xsetbv(&mut v, 0, 1, 0b111), (3, 2, 7), "bit 32");
    assert_eq!(xsetbv(&mut v, 1, 0, 1), (3, 3, 7), "XCR1");
    assert_eq!(xsetbv(&mut v, 1 << 32, 0, 1), (6, 3, 1), "ECX only");
}

/// The decoder must never panic, whatever the registers and memory hold.
#[test]
fn arbitrary_registers_never_panic() {
    crate::testing::check(40, 4096 + 2500, |rng| {
        let mut svc = FakeSvc::new(0x8000);
        for chunk in svc.mem.chunks_mut(8) {
            let bytes = rng.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        for _ in 0..500 {
            let mut v = FakeVcpu::default();
            let mut pick = || {
                let x = rng.next();
                match x % 4 {
                    0 => x,
                    1 => x % 0x9000,
                    2 => x % 64,
                    _ => u64::MAX - x % 16,
                }
            };
            let args = [pick(), pick(), pick(), pick()];
            let nr = rng.below(16);
            let _ = call6(&mut v, &mut svc, nr, args);
            svc.present.iter_mut().for_each(|p| *p = true);
        }
    });
}

use crate::testing::Choices;
use proptest::prelude::*;

/// Values that hit the edges: small, near the memory size, near the top
/// of the address space, page-aligned or not.
fn edgy_of(x: u64, size: u64) -> u64 {
    match x % 6 {
        0 => x % 16,
        1 => size.wrapping_sub(x % 8192),
        2 => u64::MAX - x % 8192,
        3 => (x % (size / 4096 + 4)) * 4096,
        4 => x % (size + 8192),
        _ => x,
    }
}

/// [`edgy_of`] as a proptest strategy.
fn edgy(size: u64) -> impl Strategy<Value = u64> {
    any::<u64>().prop_map(move |x| edgy_of(x, size))
}

/// Edge-seeking values for the op-sequence properties.
trait Edgy {
    fn edgy(&mut self, size: u64) -> u64;
}

impl Edgy for Choices<'_> {
    fn edgy(&mut self, size: u64) -> u64 {
        let x = self.next();
        edgy_of(x, size)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn property_console_write_succeeds_exactly_inside_memory(
        gpa in edgy(0x8000),
        len in edgy(0x8000).prop_map(|l| l % 9000),
    ) {
        let size = 0x8000u64;
        let mut svc = FakeSvc::new(size as usize);
        let mut v = FakeVcpu::default();
        call(&mut v, &mut svc, HC_CONSOLE_WRITE, gpa, len);
        let inside = gpa.checked_add(len).is_some_and(|end| end <= size);
        let want = if len > CONSOLE_WRITE_MAX {
            E2BIG as u64
        } else if inside || len == 0 {
            len
        } else {
            EFAULT as u64
        };
        prop_assert_eq!(v.regs.rax, want, "gpa {:#x} len {:#x}", gpa, len);
    }
}

#[test]
fn property_memory_ops_match_a_page_model() {
    crate::testing::check(20, 3000, memory_ops_case);
}

fn memory_ops_case(rng: &mut Choices<'_>) {
    let size = 0x40_0000u64;
    let mut svc = FakeSvc::new(size as usize);
    let mut model = std::vec![true; (size / 4096) as usize];
    for _ in 0..1000 {
        let release = rng.next().is_multiple_of(2);
        let gpa = rng.edgy(size);
        let pages = rng.edgy(size) % 600;
        let mut v = FakeVcpu::default();
        call(
            &mut v,
            &mut svc,
            if release {
                HC_MEM_RELEASE
            } else {
                HC_MEM_POPULATE
            },
            gpa,
            pages,
        );
        let got = v.regs.rax as i64;
        let want = if pages == 0 || pages > MEM_OP_MAX_PAGES || !gpa.is_multiple_of(4096) {
            EINVAL
        } else if gpa.checked_add(pages * 4096).is_none_or(|end| end > size) {
            EFAULT
        } else {
            let r = (gpa / 4096) as usize..(gpa / 4096 + pages) as usize;
            if release && model[r.clone()].iter().any(|p| !p) {
                ENOENT
            } else if !release && model[r.clone()].iter().any(|p| *p) {
                EEXIST
            } else {
                model[r].iter_mut().for_each(|p| *p = !release);
                pages as i64
            }
        };
        assert_eq!(
            got,
            want,
            "{} {gpa:#x} {pages}",
            if release { "release" } else { "populate" }
        );
    }
    assert_eq!(svc.present, model);
}

/// The MSR model (`msr.rs`, issue 13): guest-owned MSRs read back what was
/// written, bad values and unknown MSRs raise #GP and change nothing.
/// Before it, every one of these accesses raised #GP (Linux's first
/// instruction, WRMSR GS_BASE, would have faulted with no IDT).
#[test]
fn msr_model() {
    use crate::virt::msr::GuestMsr;
    let mut svc = FakeSvc::new(0);
    let mut v = FakeVcpu {
        rip: 0x1000,
        ..FakeVcpu::default()
    };
    let efer = (1 << 8) | (1 << 10) | (1 << 11);
    v.set_msr(GuestMsr::Efer, efer);
    let mut wr = |v: &mut FakeVcpu, msr: u32, val: u64| {
        v.regs.rcx = msr.into();
        v.regs.rax = val & 0xffff_ffff;
        v.regs.rdx = val >> 32;
        let gp = v.gp;
        handle(
            VmExit::Msr {
                write: true,
                len: 2,
            },
            v,
            &mut svc,
            &FakeHost,
            0,
            &mut |_: &[u8]| true,
        );
        v.gp == gp
    };
    assert!(wr(&mut v, 0xc000_0101, 0xffff_8880_0000_1000), "GS_BASE");
    assert!(wr(&mut v, 0xc000_0082, 0xffff_ffff_8160_0000), "LSTAR");
    assert!(wr(&mut v, 0xc000_0081, 0x0023_0010_0000_0000), "STAR");
    assert!(wr(&mut v, 0xc000_0084, 0x4_7700), "FMASK");
    assert!(wr(&mut v, 0x277, 0x0007_0106_0007_0406), "PAT");
    assert!(wr(&mut v, 0xc000_0080, efer | 1), "EFER.SCE");
    let rip = v.rip;
    assert!(
        !wr(&mut v, 0xc000_0100, 0x8000_0000_0000_0000),
        "non-canonical FS_BASE"
    );
    assert!(!wr(&mut v, 0xc000_0080, 1), "EFER.LME/LMA cleared");
    assert!(!wr(&mut v, 0x277, 0x02), "PAT type 2");
    assert!(!wr(&mut v, 0x1b, 0xfee0_0900), "APIC_BASE");
    assert!(!wr(&mut v, 0x10, 0), "TSC write");
    assert_eq!(v.rip, rip, "a #GP leaves RIP at the instruction");
    assert_eq!(v.msr(GuestMsr::FsBase), 0, "refused write changed nothing");
    let mut rd = |v: &mut FakeVcpu, msr: u32| {
        v.regs.rcx = msr.into();
        handle(
            VmExit::Msr {
                write: false,
                len: 2,
            },
            v,
            &mut svc,
            &FakeHost,
            0,
            &mut |_: &[u8]| true,
        );
        (v.regs.rdx << 32) | v.regs.rax
    };
    assert_eq!(rd(&mut v, 0xc000_0101), 0xffff_8880_0000_1000);
    assert_eq!(rd(&mut v, 0xc000_0082), 0xffff_ffff_8160_0000);
    assert_eq!(rd(&mut v, 0xc000_0080), efer | 1);
    assert_eq!(rd(&mut v, 0x277), 0x0007_0106_0007_0406);
}
