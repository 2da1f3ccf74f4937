//! The exit handler and hypercall dispatch, driven with arbitrary registers
//! and guest memory over fake services (the host tests' fakes, rebuilt here
//! because those are private to the hypervisor's test build).
//!
//! Input: byte 0 = flags (bit 0 privileged, bit 1 a control domain exists),
//! byte 1 = number of exits (at most [`MAX_EXITS`]), then per exit one kind
//! byte and seven `u64` registers (RAX, RDI, RSI, RDX, R10, R8, R9), then
//! the rest is the start of guest memory ([`MEM_BYTES`], zero beyond).
//!
//! Checked: no panic; a hypercall always moves RIP past the instruction;
//! an unprivileged domain never reaches domctl, the management line or
//! console input; memory is released or populated only in aligned ranges
//! inside the domain; what reaches the console is bounded.

use crate::hv::{
    Action, DomainId, DomctlReply, DomctlReq, EventTable, EvtchnOp, GrantOp, GuestRegs, Host,
    MgmtReq, OutOfBounds, Services, VcpuBackend, VmExit, WaitCheck, check_range, handle,
};
use crate::input::Input;
use pvabi::zerocopy::FromZeros;
use pvabi::{MemInfo, VcpuInfo};

/// Guest memory the fake domain owns.
pub const MEM_BYTES: usize = 0x4000;
/// Most exits one input runs.
pub const MAX_EXITS: u8 = 16;
/// Bytes one exit takes in the input.
pub const EXIT_BYTES: usize = 1 + 7 * 8;

#[derive(Default)]
struct Vcpu {
    regs: GuestRegs,
    rip: u64,
    /// The guest's CPL: 3 for kinds from 0xf0 (hypercalls must fail).
    cpl: u8,
    /// CR0, CR3, CR4 at indices 0, 3, 4 (CR3 0: the page tables are the
    /// input's memory).
    cr: [u64; 5],
    /// Guest-owned MSRs, in `GuestMsr::ALL` order (the MSR model, issue 13).
    msrs: [u64; 13],
}

impl VcpuBackend for Vcpu {
    fn msr(&self, m: hypervisor::virt::msr::GuestMsr) -> u64 {
        let all = hypervisor::virt::msr::GuestMsr::ALL;
        all.iter().position(|&x| x == m).map_or(0, |i| self.msrs[i])
    }
    fn set_msr(&mut self, m: hypervisor::virt::msr::GuestMsr, value: u64) {
        let all = hypervisor::virt::msr::GuestMsr::ALL;
        if let Some(i) = all.iter().position(|&x| x == m) {
            self.msrs[i] = value;
        }
    }
    // The handler never enters the guest: only the register file matters.
    fn enter(&mut self, _cpu: usize) {}
    fn flush_tlb(&mut self) {}
    fn run(&mut self) -> VmExit {
        VmExit::Hlt { len: 1 }
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
        self.rip = self.rip.wrapping_add(len);
    }
    fn inject_gp(&mut self) {}
    fn inject_ud(&mut self) {}
    fn cpl(&self) -> u8 {
        self.cpl
    }
    fn rsp(&self) -> u64 {
        self.regs.rbp
    }
    fn interrupts_enabled(&self) -> bool {
        // The blocking path (HLT with IF=1) is the one with state to get
        // wrong; IF=0 only yields.
        true
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
}

struct Svc {
    mem: Vec<u8>,
    privileged: bool,
    control_domain: bool,
    pending: u64,
    events: EventTable,
    /// Calls that reached privileged services.
    privileged_calls: u32,
    cont: hypervisor::hypercall::continuation::Slot,
}

impl Services for Svc {
    fn vcpu_facts(&self) -> hypervisor::hypercall::cpuid::VcpuFacts {
        hypervisor::hypercall::cpuid::VcpuFacts {
            vcpu: 0,
            start_info: MEM_BYTES as u64 - 4096,
        }
    }
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        check_range(gpa, buf.len() as u64, self.mem.len() as u64)?;
        buf.copy_from_slice(&self.mem[gpa as usize..gpa as usize + buf.len()]);
        Ok(())
    }
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfBounds> {
        check_range(gpa, bytes.len() as u64, self.mem.len() as u64)?;
        self.mem[gpa as usize..gpa as usize + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }
    fn privileged(&self) -> bool {
        self.privileged
    }
    fn console_readable(&self) -> bool {
        self.privileged || self.control_domain
    }
    fn console_read(&mut self, buf: &mut [u8]) -> Result<usize, pvabi::Error> {
        assert!(self.console_readable(), "console read without the right");
        let n = buf.len().min(3);
        buf[..n].copy_from_slice(&b"in\n"[..n]);
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
    fn set_timer(&mut self, _deadline: u64) {}
    fn vcpu_up(
        &mut self,
        id: u64,
        _rip: u64,
        _rsp: u64,
        _arg: u64,
        cr3: Option<u64>,
    ) -> Result<(), pvabi::Error> {
        if cr3.is_some_and(|c| !c.is_multiple_of(4096)) {
            return Err(pvabi::Error::Invalid);
        }
        if (1..4).contains(&id) {
            Ok(())
        } else {
            Err(pvabi::Error::Invalid)
        }
    }
    fn vcpu_info(&mut self, id: u64) -> Result<VcpuInfo, pvabi::Error> {
        if id < 4 {
            Ok(VcpuInfo::new_zeroed())
        } else {
            Err(pvabi::Error::Invalid)
        }
    }
    fn mem_info(&mut self) -> MemInfo {
        let mut i = MemInfo::new_zeroed();
        i.current_pages = (self.mem.len() / 4096) as u64;
        i.max_pages = i.current_pages;
        i.page_size = pvabi::PAGE_SIZE;
        i
    }
    fn phys_size(&self) -> u64 {
        self.mem.len() as u64
    }
    fn mem_check(&mut self, _populate: bool, gpa: u64, pages: u64) -> Result<(), pvabi::Error> {
        // "range already valid" is the handler's promise, as for the ops.
        let end = pages
            .checked_mul(4096)
            .and_then(|b| gpa.checked_add(b))
            .expect("checked range overflows");
        assert!(gpa.is_multiple_of(4096) && end <= self.phys_size());
        Ok(())
    }
    fn continuation(&self) -> &hypervisor::hypercall::continuation::Slot {
        &self.cont
    }
    fn mem_release(&mut self, gpa: u64, pages: u64) -> Result<u64, pvabi::Error> {
        // "validated: aligned, in range" is the handler's promise.
        let end = pages
            .checked_mul(4096)
            .and_then(|b| gpa.checked_add(b))
            .expect("release range overflows");
        assert!(gpa.is_multiple_of(4096) && end <= self.phys_size());
        Ok(pages)
    }
    fn mem_populate(&mut self, gpa: u64, pages: u64) -> Result<u64, pvabi::Error> {
        self.mem_release(gpa, pages)
    }
    fn evtchn(&mut self, op: EvtchnOp) -> Result<u64, pvabi::Error> {
        crate::evtchn::apply_local(&mut self.events, op)
    }
    fn send_wait(
        &mut self,
        send: u32,
        wait: u32,
        _deadline: u64,
    ) -> Result<Option<u64>, pvabi::Error> {
        // The hypervisor's order: check the wait port, send, take the wait
        // port or report another ready port, else block unless an event
        // is pending (this fake has no clock: a deadline never passes).
        self.events.check_wait(wait)?;
        if send != 0 {
            crate::evtchn::apply_local(&mut self.events, EvtchnOp::Send(send))?;
        }
        self.pending &= !pvabi::EVENT_CHANNEL;
        let c = self.events.take_wait(wait);
        if c.others() {
            self.pending |= pvabi::EVENT_CHANNEL;
        }
        match c {
            WaitCheck::Taken { .. } => Ok(Some(u64::from(wait))),
            WaitCheck::Other => Ok(Some(0)),
            WaitCheck::Empty if self.pending != 0 => Ok(Some(0)),
            WaitCheck::Empty => Ok(None),
        }
    }
    fn grant(&mut self, _op: GrantOp) -> Result<u64, pvabi::Error> {
        Ok(0)
    }
    fn domctl(&mut self, req: DomctlReq<'_>) -> Result<DomctlReply, pvabi::Error> {
        assert!(self.privileged, "domctl reached for an unprivileged domain");
        self.privileged_calls += 1;
        Ok(match req {
            DomctlReq::Info(id) => DomctlReply::Info(pvabi::DomainInfo {
                id: id.0,
                ..Default::default()
            }),
            DomctlReq::List(ids) => {
                ids.iter_mut().for_each(|i| *i = 7);
                DomctlReply::Value(ids.len() as u64)
            }
            DomctlReq::ModuleRead { buf, .. } => {
                buf.fill(0x5a);
                DomctlReply::Value(buf.len() as u64)
            }
            _ => DomctlReply::Value(0),
        })
    }
    fn mgmt(&mut self, req: MgmtReq<'_>) -> Result<u64, pvabi::Error> {
        assert!(self.privileged, "mgmt reached for an unprivileged domain");
        self.privileged_calls += 1;
        Ok(match req {
            MgmtReq::Write(b) | MgmtReq::HostWrite(b) | MgmtReq::ConsoleWrite { bytes: b, .. } => {
                b.len() as u64
            }
            MgmtReq::Read(b) | MgmtReq::ConsoleRead { buf: b, .. } => {
                b.fill(b'x');
                b.len() as u64
            }
        })
    }
}

struct FakeHost;

impl Host for FakeHost {
    fn cpuid(&self, leaf: u32, sub: u32) -> [u32; 4] {
        [leaf, sub, 0xffff_ffff, 0xffff_ffff]
    }
    fn tsc(&self) -> u64 {
        0x1234_5678_9abc
    }
}

/// The exit a kind byte stands for; registers supply its operands.
fn exit_of(kind: u8, r: &GuestRegs) -> VmExit {
    match kind % 12 {
        0..=3 => VmExit::Hypercall { len: 3 },
        4 => VmExit::Cpuid { len: 2 },
        5 => VmExit::Msr {
            write: r.rdx & 1 != 0,
            len: 2,
        },
        6 => VmExit::Io {
            port: r.rdx as u16,
            write: r.rsi & 1 != 0,
            size: [1, 2, 4][(r.rsi >> 1) as usize % 3],
            len: 1,
        },
        7 => VmExit::Hlt { len: 1 },
        8 => VmExit::NestedPageFault {
            gpa: r.rdi,
            write: r.rsi & 1 != 0,
            fetch: r.rsi & 2 != 0,
        },
        10 => VmExit::CrWrite {
            cr: if r.rdi & 1 != 0 { 4 } else { 0 },
            source: hypervisor::virt::CrSource::Decode,
            len: None,
        },
        11 => VmExit::CrWrite {
            cr: if r.rdi & 1 != 0 { 4 } else { 0 },
            source: match r.rdi >> 1 & 3 {
                0 => hypervisor::virt::CrSource::Clts,
                1 => hypervisor::virt::CrSource::Lmsw(r.rsi as u16),
                _ => hypervisor::virt::CrSource::Gpr(r.rsi as u8 & 15),
            },
            len: Some(3),
        },
        _ => VmExit::Unknown {
            code: r.rdi,
            info1: r.rsi,
            info2: r.rdx,
        },
    }
}

/// The target.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let n = inp.u8().min(MAX_EXITS);
    let mut exits = Vec::new();
    for _ in 0..n {
        let kind = inp.u8();
        let regs = GuestRegs {
            rax: inp.u64(),
            rdi: inp.u64(),
            rsi: inp.u64(),
            rdx: inp.u64(),
            r10: inp.u64(),
            r8: inp.u64(),
            r9: inp.u64(),
            ..GuestRegs::default()
        };
        exits.push((kind, regs));
    }
    let mut mem = vec![0u8; MEM_BYTES];
    let rest = inp.rest();
    let len = rest.len().min(MEM_BYTES);
    mem[..len].copy_from_slice(&rest[..len]);
    let mut svc = Svc {
        mem,
        privileged: flags & 1 != 0,
        control_domain: flags & 2 != 0,
        pending: u64::from(flags >> 2),
        events: EventTable::new(DomainId(1), 4),
        privileged_calls: 0,
        cont: hypervisor::hypercall::continuation::Slot::new(),
    };
    let mut vcpu = Vcpu::default();
    // As the builder starts a guest: PE, MP, ET, NE, WP, PG; PAE, OSFXSR.
    vcpu.cr[0] = 0x8001_0033;
    vcpu.cr[4] = 0x620;
    for (kind, regs) in exits {
        vcpu.cpl = if kind >= 0xf0 { 3 } else { 0 };
        let exit = exit_of(kind, &regs);
        // Registers the previous exit left (RAX's result) are replaced,
        // as a guest can between two exits.
        vcpu.regs = regs;
        let rip = vcpu.rip;
        let mut printed = 0usize;
        let before = vcpu.regs;
        let action = handle(exit, &mut vcpu, &mut svc, &FakeHost, 1, &mut |b| {
            printed += b.len();
            true
        });
        // Bounded exits: one exit takes at most one maximal write's worth
        // of console bytes, whatever the multicall.
        assert!(
            printed <= pvabi::CONSOLE_WRITE_MAX as usize,
            "{printed} bytes in one exit"
        );
        if let VmExit::Hypercall { len } = exit {
            if vcpu.cpl != 0 {
                assert_eq!(
                    vcpu.rip,
                    rip.wrapping_add(len),
                    "hypercall RIP not advanced"
                );
                assert_eq!(vcpu.regs.rax as i64, pvabi::EPERM, "user-mode hypercall");
                assert_eq!(printed, 0, "user-mode console write");
                assert_eq!(action, Action::Resume, "user-mode hypercall");
            } else if vcpu.rip == rip && len != 0 {
                // Continued: every register kept, and a record to go on.
                assert!(
                    svc.cont.pending(),
                    "hypercall RIP kept with no continuation"
                );
                assert_eq!(vcpu.regs, before, "a continued hypercall changed registers");
            } else {
                assert_eq!(
                    vcpu.rip,
                    rip.wrapping_add(len),
                    "hypercall RIP not advanced"
                );
            }
        }
        // What a guest may never get into CR0/CR4 (a failed VM entry).
        assert_eq!(vcpu.cr[0] >> 32, 0, "CR0 high bits");
        assert_eq!(vcpu.cr[0] & 0x8000_0001, 0x8000_0001, "CR0.PG/PE");
        assert_eq!(vcpu.cr[4] & 0x6000, 0, "CR4.VMXE/SMXE");
        assert_ne!(vcpu.cr[4] & 0x20, 0, "CR4.PAE");
        if matches!(action, Action::Shutdown { .. } | Action::Kill(_)) {
            break;
        }
    }
    if !svc.privileged {
        assert_eq!(svc.privileged_calls, 0);
    }
}
