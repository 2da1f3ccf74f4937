//! What the hypervisor does about each guest exit, for either vendor.
//!
//! Every value here comes from a guest and is validated: hypercall numbers,
//! addresses, lengths, reasons. The handler never panics on guest input and
//! never touches memory outside the domain's own (through [`Services`]).
//! It is generic over the vCPU and memory so the host tests drive it with
//! fakes.
#![forbid(unsafe_code)]

use pvabi::zerocopy::{FromBytes, IntoBytes};
use pvabi::{
    CONSOLE_WRITE_MAX, E2BIG, EFAULT, EINVAL, ENOSYS, HC_CONSOLE_READ, HC_CONSOLE_WRITE,
    HC_MEM_INFO, HC_MEM_POPULATE, HC_MEM_RELEASE, HC_MULTICALL, HC_SCHED_BLOCK, HC_SCHED_POLL,
    HC_SET_TIMER, HC_SHUTDOWN, HC_VCPU_INFO, HC_VCPU_UP, HC_YIELD, MEM_OP_MAX_PAGES, MULTICALL_MAX,
    MemInfo, MulticallEntry, PAGE_SIZE, SHUTDOWN_CRASH, SHUTDOWN_POWEROFF, VcpuInfo,
};

use super::OutOfBounds;
use crate::virt::{GuestRegs, VmExit};

/// The vCPU operations the handler needs; each backend implements them.
pub trait VcpuOps {
    /// General-purpose registers (RAX through [`VcpuOps::rax`]).
    fn regs(&mut self) -> &mut GuestRegs;
    /// Guest RAX.
    fn rax(&self) -> u64;
    /// Sets guest RAX.
    fn set_rax(&mut self, value: u64);
    /// Guest RIP.
    fn rip(&self) -> u64;
    /// Moves RIP past the exiting instruction.
    fn skip(&mut self, len: u64);
    /// Injects #GP(0) on the next entry.
    fn inject_gp(&mut self);
}

/// Reads the domain's own memory by guest-physical address.
pub trait GuestRead {
    /// Copies `buf.len()` bytes from `gpa`; fails if any byte is outside.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfBounds>;
}

/// What the hypercalls need from the domain and the scheduler: its memory
/// and the operations that change shared state. Implemented over the real
/// domain on bare metal and over fakes in the host tests. Errors are ABI
/// status codes (negative).
pub trait Services {
    /// Copies from the domain's memory.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfBounds>;
    /// Copies into the domain's memory.
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfBounds>;
    /// Reads console input into `buf` (privileged domains only).
    fn console_read(&mut self, buf: &mut [u8]) -> Result<usize, i64>;
    /// Blocks this vCPU until an event or `deadline` (0: none). Returns the
    /// pending mask (cleared) if an event is already pending, else `None`:
    /// the vCPU is now blocked and gets the mask in RAX when it wakes.
    fn block(&mut self, deadline: u64) -> Option<u64>;
    /// This vCPU's pending-event mask, cleared.
    fn poll(&mut self) -> u64;
    /// Sets (0: cancels) this vCPU's single-shot timer.
    fn set_timer(&mut self, deadline: u64);
    /// Starts vCPU `id` at `rip` with `rsp` and `arg` in RDI.
    fn vcpu_up(&mut self, id: u64, rip: u64, rsp: u64, arg: u64) -> Result<(), i64>;
    /// State of vCPU `id`.
    fn vcpu_info(&mut self, id: u64) -> Result<VcpuInfo, i64>;
    /// The domain's memory reservation.
    fn mem_info(&mut self) -> MemInfo;
    /// Guest-physical space size in bytes (populate/release stay below it).
    fn phys_size(&self) -> u64;
    /// Releases `pages` pages at `gpa` (validated: aligned, in range).
    fn mem_release(&mut self, gpa: u64, pages: u64) -> Result<u64, i64>;
    /// Populates `pages` fresh zeroed pages at `gpa` (validated).
    fn mem_populate(&mut self, gpa: u64, pages: u64) -> Result<u64, i64>;
}

/// What the host needs from the machine to answer CPUID and RDMSR.
pub trait Host {
    /// Host CPUID for `leaf`/`subleaf`: EAX, EBX, ECX, EDX.
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4];
    /// The TSC (RDMSR 0x10 is allowed).
    fn tsc(&self) -> u64;
}

/// Why a domain was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// Touched guest-physical memory it does not own.
    OutsideMemory {
        gpa: u64,
        write: bool,
        fetch: bool,
        rip: u64,
    },
    /// Triple fault.
    TripleFault { rip: u64 },
    /// Ran an instruction guests may never run.
    Forbidden { what: &'static str, rip: u64 },
    /// VM entry refused the guest state.
    InvalidState { detail: u64 },
    /// An exit the hypervisor does not understand.
    Unhandled { code: u64, rip: u64 },
}

impl core::fmt::Display for KillReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::OutsideMemory {
                gpa,
                write,
                fetch,
                rip,
            } => {
                let how = if fetch {
                    "executed"
                } else if write {
                    "wrote"
                } else {
                    "read"
                };
                write!(
                    f,
                    "{how} guest-physical {gpa:#x}, outside its memory, at RIP {rip:#x}"
                )
            }
            Self::TripleFault { rip } => write!(f, "triple fault at RIP {rip:#x}"),
            Self::Forbidden { what, rip } => {
                write!(f, "executed {what}, which guests may not, at RIP {rip:#x}")
            }
            Self::InvalidState { detail } => write!(f, "VM entry failed (detail {detail:#x})"),
            Self::Unhandled { code, rip } => write!(f, "unhandled exit {code:#x} at RIP {rip:#x}"),
        }
    }
}

/// What the scheduler does next with the vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run the guest again.
    Resume,
    /// The host must take an interrupt; then resume or switch.
    Interrupt,
    /// The guest gave up the CPU (yield or HLT).
    Yield,
    /// The vCPU blocked until an event or its deadline.
    Block,
    /// The guest asked to shut down.
    Shutdown { crashed: bool, code: i64 },
    /// The guest broke a rule and dies.
    Kill(KillReason),
}

/// CPUID leaf with the hypervisor signature.
pub const CPUID_SIGNATURE_LEAF: u32 = 0x4000_0000;
/// `KestrelHyper` in EBX, ECX, EDX.
pub const CPUID_SIGNATURE: [u8; 12] = *b"KestrelHyper";

fn sig(i: usize) -> u32 {
    let b = &CPUID_SIGNATURE;
    u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]])
}

/// The CPUID a guest sees: the host's, with virtualization, MONITOR, x2APIC
/// and the APIC hidden (a PV guest has none of them), the hypervisor bit
/// set, and leaves 0x40000000-1 carrying our signature and ABI version.
pub fn filter_cpuid(leaf: u32, subleaf: u32, host: &impl Host, hypercall_insn: u32) -> [u32; 4] {
    match leaf {
        CPUID_SIGNATURE_LEAF => [CPUID_SIGNATURE_LEAF + 1, sig(0), sig(1), sig(2)],
        0x4000_0001 => [pvabi::PVABI_VERSION, hypercall_insn, 0, 0],
        0x4000_0002..=0x4fff_ffff => [0; 4],
        1 => {
            let [a, b, c, d] = host.cpuid(1, 0);
            // ECX: MONITOR 3, VMX 5, SMX 6, x2APIC 21, TSC-deadline 24,
            // XSAVE 26, OSXSAVE 27 cleared; hypervisor 31 set. EDX: APIC 9.
            let c = (c & !((1 << 3)
                | (1 << 5)
                | (1 << 6)
                | (1 << 21)
                | (1 << 24)
                | (1 << 26)
                | (1 << 27)))
                | (1 << 31);
            [a, b, c, d & !(1 << 9)]
        }
        0x8000_0001 => {
            let [a, b, c, d] = host.cpuid(leaf, subleaf);
            // ECX: SVM 2, extended APIC 3, SKINIT 12.
            [a, b, c & !((1 << 2) | (1 << 3) | (1 << 12)), d]
        }
        0x8000_000a => [0; 4],
        _ => host.cpuid(leaf, subleaf),
    }
}

/// MSRs a guest may read: the TSC only. Everything else injects #GP,
/// as a real CPU does for an MSR it lacks.
const IA32_TSC: u32 = 0x10;

/// Decides what to do about one exit. `console` receives the bytes of a
/// valid console write.
pub fn handle(
    exit: VmExit,
    vcpu: &mut impl VcpuOps,
    svc: &mut impl Services,
    host: &impl Host,
    hypercall_insn: u32,
    console: &mut dyn FnMut(&[u8]),
) -> Action {
    let rip = vcpu.rip();
    match exit {
        VmExit::Hypercall { len } => {
            vcpu.skip(len);
            let nr = vcpu.rax();
            let args = {
                let r = vcpu.regs();
                [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9]
            };
            let (ret, action) = if nr == HC_MULTICALL {
                multicall(svc, args[0], args[1], console)
            } else {
                hypercall(svc, nr, args, console)
            };
            // A blocked vCPU gets its RAX when it wakes.
            if action != Action::Block {
                vcpu.set_rax(ret);
            }
            action
        }
        VmExit::Cpuid { len } => {
            let leaf = vcpu.rax() as u32;
            let subleaf = vcpu.regs().rcx as u32;
            let out = filter_cpuid(leaf, subleaf, host, hypercall_insn);
            vcpu.set_rax(u64::from(out[0]));
            let regs = vcpu.regs();
            regs.rbx = u64::from(out[1]);
            regs.rcx = u64::from(out[2]);
            regs.rdx = u64::from(out[3]);
            vcpu.skip(len);
            Action::Resume
        }
        VmExit::Msr { write, len } => {
            let msr = vcpu.regs().rcx as u32;
            if !write && msr == IA32_TSC {
                let tsc = host.tsc();
                vcpu.set_rax(tsc & 0xffff_ffff);
                vcpu.regs().rdx = tsc >> 32;
                vcpu.skip(len);
            } else {
                vcpu.inject_gp();
            }
            Action::Resume
        }
        // No port is granted to any guest yet: a real CPU raises #GP for an
        // I/O instruction the TSS bitmap denies, and so do we.
        VmExit::Io { .. } => {
            vcpu.inject_gp();
            Action::Resume
        }
        VmExit::Hlt { len } => {
            vcpu.skip(len);
            Action::Yield
        }
        VmExit::ExternalInterrupt => Action::Interrupt,
        VmExit::NestedPageFault { gpa, write, fetch } => Action::Kill(KillReason::OutsideMemory {
            gpa,
            write,
            fetch,
            rip,
        }),
        VmExit::Shutdown => Action::Kill(KillReason::TripleFault { rip }),
        VmExit::Forbidden { what } => Action::Kill(KillReason::Forbidden { what, rip }),
        VmExit::InvalidState { detail } => Action::Kill(KillReason::InvalidState { detail }),
        VmExit::Unknown { code, .. } => Action::Kill(KillReason::Unhandled { code, rip }),
    }
}

fn status(v: i64) -> u64 {
    v as u64
}

/// Runs one hypercall (not a multicall): the value for RAX and what next.
fn hypercall(
    svc: &mut impl Services,
    nr: u64,
    a: [u64; 6],
    console: &mut dyn FnMut(&[u8]),
) -> (u64, Action) {
    let done = |r: Result<u64, i64>| (r.unwrap_or_else(status), Action::Resume);
    match nr {
        HC_CONSOLE_WRITE => done(console_write(svc, a[0], a[1], console)),
        HC_SHUTDOWN => match a[0] {
            SHUTDOWN_POWEROFF | SHUTDOWN_CRASH => (
                0,
                Action::Shutdown {
                    crashed: a[0] == SHUTDOWN_CRASH,
                    code: a[1] as i64,
                },
            ),
            _ => (status(EINVAL), Action::Resume),
        },
        HC_YIELD => (0, Action::Yield),
        HC_CONSOLE_READ => done(console_read(svc, a[0], a[1])),
        HC_SCHED_BLOCK => match svc.block(a[0]) {
            Some(mask) => (mask, Action::Resume),
            None => (0, Action::Block),
        },
        HC_SCHED_POLL => (svc.poll(), Action::Resume),
        HC_SET_TIMER => {
            svc.set_timer(a[0]);
            (0, Action::Resume)
        }
        HC_VCPU_UP => done(svc.vcpu_up(a[0], a[1], a[2], a[3]).map(|()| 0)),
        HC_VCPU_INFO => done(
            svc.vcpu_info(a[0])
                .and_then(|info| put(svc, a[1], info.as_bytes())),
        ),
        HC_MEM_INFO => {
            let info = svc.mem_info();
            done(put(svc, a[0], info.as_bytes()))
        }
        HC_MEM_RELEASE => {
            done(mem_range(svc, a[0], a[1]).and_then(|()| svc.mem_release(a[0], a[1])))
        }
        HC_MEM_POPULATE => {
            done(mem_range(svc, a[0], a[1]).and_then(|()| svc.mem_populate(a[0], a[1])))
        }
        _ => (status(ENOSYS), Action::Resume),
    }
}

/// Writes an OUT structure to guest memory.
fn put(svc: &mut impl Services, gpa: u64, bytes: &[u8]) -> Result<u64, i64> {
    svc.write(gpa, bytes).map(|()| 0).map_err(|_| EFAULT)
}

/// Checks a memory op's range: page aligned, 1..=MEM_OP_MAX_PAGES pages,
/// inside the guest-physical space.
fn mem_range(svc: &impl Services, gpa: u64, pages: u64) -> Result<(), i64> {
    if pages == 0 || pages > MEM_OP_MAX_PAGES || !gpa.is_multiple_of(PAGE_SIZE) {
        return Err(EINVAL);
    }
    let end = pages
        .checked_mul(PAGE_SIZE)
        .and_then(|len| gpa.checked_add(len))
        .ok_or(EFAULT)?;
    if end > svc.phys_size() {
        return Err(EFAULT);
    }
    Ok(())
}

fn console_write(
    svc: &impl Services,
    gpa: u64,
    len: u64,
    console: &mut dyn FnMut(&[u8]),
) -> Result<u64, i64> {
    if len > CONSOLE_WRITE_MAX {
        return Err(E2BIG);
    }
    let mut buf = [0u8; CONSOLE_WRITE_MAX as usize];
    let dst = buf.get_mut(..len as usize).ok_or(E2BIG)?;
    svc.read(gpa, dst).map_err(|_| EFAULT)?;
    console(dst);
    Ok(len)
}

fn console_read(svc: &mut impl Services, gpa: u64, len: u64) -> Result<u64, i64> {
    if len > CONSOLE_WRITE_MAX {
        return Err(E2BIG);
    }
    // Check the destination before taking input, so no byte is lost.
    let mut probe = [0u8; 1];
    if len > 0
        && (svc.read(gpa, &mut probe).is_err() || svc.read(gpa + len - 1, &mut probe).is_err())
    {
        return Err(EFAULT);
    }
    let mut buf = [0u8; CONSOLE_WRITE_MAX as usize];
    let dst = buf.get_mut(..len as usize).ok_or(E2BIG)?;
    let n = svc.console_read(dst)?;
    let got = dst.get(..n).ok_or(EINVAL)?;
    svc.write(gpa, got).map_err(|_| EFAULT)?;
    Ok(n as u64)
}

/// Runs a batch of hypercalls for one exit. Blocking and nested multicalls
/// are refused per entry (EINVAL); a shutdown ends the batch; a yield takes
/// effect after the batch.
fn multicall(
    svc: &mut impl Services,
    gpa: u64,
    count: u64,
    console: &mut dyn FnMut(&[u8]),
) -> (u64, Action) {
    const ENTRY: u64 = core::mem::size_of::<MulticallEntry>() as u64;
    if count == 0 {
        return (status(EINVAL), Action::Resume);
    }
    if count > MULTICALL_MAX {
        return (status(E2BIG), Action::Resume);
    }
    // The whole array must be inside guest memory before anything runs.
    let Some(last) = gpa.checked_add(count * ENTRY - 1) else {
        return (status(EFAULT), Action::Resume);
    };
    let mut probe = [0u8; 1];
    if svc.read(gpa, &mut probe).is_err() || svc.read(last, &mut probe).is_err() {
        return (status(EFAULT), Action::Resume);
    }
    let mut after = Action::Resume;
    for i in 0..count {
        let at = gpa + i * ENTRY;
        let mut raw = [0u8; ENTRY as usize];
        if svc.read(at, &mut raw).is_err() {
            return (status(EFAULT), after);
        }
        let Ok(mut e) = MulticallEntry::read_from_bytes(&raw) else {
            return (status(EFAULT), after);
        };
        let (ret, action) = match e.op {
            HC_MULTICALL | HC_SCHED_BLOCK => (status(EINVAL), Action::Resume),
            op => hypercall(svc, op, e.args, console),
        };
        e.result = ret;
        if svc.write(at, e.as_bytes()).is_err() {
            return (status(EFAULT), after);
        }
        match action {
            Action::Shutdown { .. } | Action::Kill(_) => return (i + 1, action),
            Action::Yield => after = Action::Yield,
            _ => {}
        }
    }
    (count, after)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use pvabi::{EBUSY, EEXIST, ENOENT, EPERM};
    use std::vec::Vec;

    #[derive(Default)]
    struct FakeVcpu {
        regs: GuestRegs,
        rip: u64,
        gp: u32,
    }

    impl VcpuOps for FakeVcpu {
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
    }

    /// Guest memory plus a page-level model of the reservation.
    struct FakeSvc {
        mem: Vec<u8>,
        present: Vec<bool>,
        max_pages: u64,
        pending: u64,
        timer: u64,
        vcpus_up: Vec<bool>,
        privileged: bool,
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
                privileged: false,
            }
        }
    }

    impl Services for FakeSvc {
        fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
            super::super::check_range(gpa, buf.len() as u64, self.mem.len() as u64)?;
            buf.copy_from_slice(&self.mem[gpa as usize..gpa as usize + buf.len()]);
            Ok(())
        }
        fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfBounds> {
            super::super::check_range(gpa, bytes.len() as u64, self.mem.len() as u64)?;
            self.mem[gpa as usize..gpa as usize + bytes.len()].copy_from_slice(bytes);
            Ok(())
        }
        fn console_read(&mut self, buf: &mut [u8]) -> Result<usize, i64> {
            if !self.privileged {
                return Err(EPERM);
            }
            let n = buf.len().min(2);
            buf[..n].copy_from_slice(&b"ok"[..n]);
            Ok(n)
        }
        fn block(&mut self, _deadline: u64) -> Option<u64> {
            (self.pending != 0).then(|| core::mem::take(&mut self.pending))
        }
        fn poll(&mut self) -> u64 {
            core::mem::take(&mut self.pending)
        }
        fn set_timer(&mut self, deadline: u64) {
            self.timer = deadline;
        }
        fn vcpu_up(&mut self, id: u64, _rip: u64, _rsp: u64, _arg: u64) -> Result<(), i64> {
            match self.vcpus_up.get_mut(id as usize) {
                Some(_) if id == 0 => Err(EINVAL),
                Some(true) => Err(EBUSY),
                Some(up) => {
                    *up = true;
                    Ok(())
                }
                None => Err(EINVAL),
            }
        }
        fn vcpu_info(&mut self, id: u64) -> Result<VcpuInfo, i64> {
            let up = *self.vcpus_up.get(id as usize).ok_or(EINVAL)?;
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
        fn mem_release(&mut self, gpa: u64, pages: u64) -> Result<u64, i64> {
            let first = (gpa / 4096) as usize;
            let range = first..first + pages as usize;
            if self.present[range.clone()].iter().any(|p| !p) {
                return Err(ENOENT);
            }
            self.present[range].iter_mut().for_each(|p| *p = false);
            Ok(pages)
        }
        fn mem_populate(&mut self, gpa: u64, pages: u64) -> Result<u64, i64> {
            let first = (gpa / 4096) as usize;
            let range = first..first + pages as usize;
            if self.present[range.clone()].iter().any(|p| *p) {
                return Err(EEXIST);
            }
            self.present[range].iter_mut().for_each(|p| *p = true);
            Ok(pages)
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

    fn call6(v: &mut FakeVcpu, svc: &mut FakeSvc, nr: u64, a: [u64; 4]) -> (Action, Vec<u8>) {
        v.regs.rax = nr;
        v.regs.rdi = a[0];
        v.regs.rsi = a[1];
        v.regs.rdx = a[2];
        v.regs.r10 = a[3];
        let mut out = Vec::new();
        let act = handle(
            VmExit::Hypercall { len: 3 },
            v,
            svc,
            &FakeHost,
            1,
            &mut |b: &[u8]| out.extend_from_slice(b),
        );
        (act, out)
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
    fn console_read_is_for_the_privileged_only() {
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
                code: 7
            }
        );
        assert_eq!(
            call(&mut v, &mut svc, HC_SHUTDOWN, SHUTDOWN_CRASH, u64::MAX).0,
            Action::Shutdown {
                crashed: true,
                code: -1
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
        for nr in [0, 14, 0xdead, u64::MAX] {
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
                code: 3
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
            &mut |_: &[u8]| {},
        );
        assert_eq!((a, v.regs.rax, v.rip), (Action::Resume, 0x4000_0001, 2));
    }

    #[test]
    fn msrs_io_and_faults() {
        let mut svc = FakeSvc::new(0);
        let mut v = FakeVcpu {
            rip: 0x1000,
            ..FakeVcpu::default()
        };
        let mut run =
            |v: &mut FakeVcpu, e| handle(e, v, &mut svc, &FakeHost, 0, &mut |_: &[u8]| {});
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
        v.regs.rcx = 0xc000_0080;
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
        assert_eq!(run(&mut v, VmExit::Hlt { len: 1 }), Action::Yield);
        assert_eq!(run(&mut v, VmExit::ExternalInterrupt), Action::Interrupt);
    }

    /// The decoder must never panic, whatever the registers and memory hold.
    #[test]
    fn arbitrary_registers_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut svc = FakeSvc::new(0x8000);
        for b in svc.mem.iter_mut() {
            *b = next() as u8;
        }
        for _ in 0..20_000 {
            let mut v = FakeVcpu::default();
            let pick = |x: u64| match x % 4 {
                0 => x,
                1 => x % 0x9000,
                2 => x % 64,
                _ => u64::MAX - x % 16,
            };
            let nr = next() % 16;
            let args = [pick(next()), pick(next()), pick(next()), pick(next())];
            let _ = call6(&mut v, &mut svc, nr, args);
            svc.present.iter_mut().for_each(|p| *p = true);
        }
    }
}
