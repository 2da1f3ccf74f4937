//! What the hypervisor does about each guest exit, for either vendor.
//!
//! Every value here comes from a guest and is validated: hypercall numbers,
//! addresses, lengths, reasons. The handler never panics on guest input and
//! never touches memory outside the domain's own (through [`GuestRead`]).
//! It is generic over the vCPU and memory so the host tests drive it with
//! fakes.
#![forbid(unsafe_code)]

use pvabi::{
    CONSOLE_WRITE_MAX, E2BIG, EFAULT, EINVAL, ENOSYS, HC_CONSOLE_WRITE, HC_SHUTDOWN, HC_YIELD,
    SHUTDOWN_CRASH, SHUTDOWN_POWEROFF,
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
    mem: &impl GuestRead,
    host: &impl Host,
    hypercall_insn: u32,
    console: &mut dyn FnMut(&[u8]),
) -> Action {
    let rip = vcpu.rip();
    match exit {
        VmExit::Hypercall { len } => {
            vcpu.skip(len);
            hypercall(vcpu, mem, console)
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

fn hypercall(
    vcpu: &mut impl VcpuOps,
    mem: &impl GuestRead,
    console: &mut dyn FnMut(&[u8]),
) -> Action {
    let nr = vcpu.rax();
    let (a1, a2) = {
        let r = vcpu.regs();
        (r.rdi, r.rsi)
    };
    let (ret, action) = match nr {
        HC_CONSOLE_WRITE => (console_write(mem, a1, a2, console), Action::Resume),
        HC_SHUTDOWN => match a1 {
            SHUTDOWN_POWEROFF | SHUTDOWN_CRASH => (
                0,
                Action::Shutdown {
                    crashed: a1 == SHUTDOWN_CRASH,
                    code: a2 as i64,
                },
            ),
            _ => (status(EINVAL), Action::Resume),
        },
        HC_YIELD => (0, Action::Yield),
        _ => (status(ENOSYS), Action::Resume),
    };
    vcpu.set_rax(ret);
    action
}

fn console_write(mem: &impl GuestRead, gpa: u64, len: u64, console: &mut dyn FnMut(&[u8])) -> u64 {
    if len > CONSOLE_WRITE_MAX {
        return status(E2BIG);
    }
    let mut buf = [0u8; CONSOLE_WRITE_MAX as usize];
    let Some(dst) = buf.get_mut(..len as usize) else {
        return status(E2BIG);
    };
    if mem.read(gpa, dst).is_err() {
        return status(EFAULT);
    }
    console(dst);
    len
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
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

    struct FakeMem(Vec<u8>);

    impl GuestRead for FakeMem {
        fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
            let size = self.0.len() as u64;
            super::super::check_range(gpa, buf.len() as u64, size)?;
            buf.copy_from_slice(&self.0[gpa as usize..gpa as usize + buf.len()]);
            Ok(())
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

    fn call(v: &mut FakeVcpu, mem: &FakeMem, nr: u64, a1: u64, a2: u64) -> (Action, Vec<u8>) {
        v.regs.rax = nr;
        v.regs.rdi = a1;
        v.regs.rsi = a2;
        let mut out = Vec::new();
        let a = handle(
            VmExit::Hypercall { len: 3 },
            v,
            mem,
            &FakeHost,
            1,
            &mut |b: &[u8]| out.extend_from_slice(b),
        );
        (a, out)
    }

    #[test]
    fn console_write_validates_every_argument() {
        let mut mem = FakeMem(std::vec![0; 0x2000]);
        mem.0[0x100..0x105].copy_from_slice(b"hello");
        let mut v = FakeVcpu::default();
        let (a, out) = call(&mut v, &mem, HC_CONSOLE_WRITE, 0x100, 5);
        assert_eq!(
            (a, out.as_slice(), v.regs.rax, v.rip),
            (Action::Resume, b"hello".as_slice(), 5, 3)
        );
        // Past the end, straddling the end, overflowing, too long.
        for (gpa, len, want) in [
            (0x2000, 1, EFAULT),
            (0x1fff, 2, EFAULT),
            (u64::MAX, 2, EFAULT),
            (0, CONSOLE_WRITE_MAX + 1, E2BIG),
            (0, u64::MAX, E2BIG),
        ] {
            let (a, out) = call(&mut v, &mem, HC_CONSOLE_WRITE, gpa, len);
            assert_eq!(a, Action::Resume);
            assert!(out.is_empty());
            assert_eq!(v.regs.rax as i64, want, "gpa {gpa:#x} len {len:#x}");
        }
        let (_, out) = call(&mut v, &mem, HC_CONSOLE_WRITE, 0x1000, 0);
        assert!(out.is_empty());
        assert_eq!(v.regs.rax, 0);
    }

    #[test]
    fn shutdown_yield_and_unknown_numbers() {
        let mem = FakeMem(std::vec![0; 16]);
        let mut v = FakeVcpu::default();
        assert_eq!(
            call(&mut v, &mem, HC_SHUTDOWN, SHUTDOWN_POWEROFF, 7).0,
            Action::Shutdown {
                crashed: false,
                code: 7
            }
        );
        assert_eq!(
            call(&mut v, &mem, HC_SHUTDOWN, SHUTDOWN_CRASH, u64::MAX).0,
            Action::Shutdown {
                crashed: true,
                code: -1
            }
        );
        assert_eq!(call(&mut v, &mem, HC_SHUTDOWN, 99, 0).0, Action::Resume);
        assert_eq!(v.regs.rax as i64, EINVAL);
        assert_eq!(call(&mut v, &mem, HC_YIELD, 0, 0).0, Action::Yield);
        assert_eq!(v.regs.rax, 0);
        for nr in [0, 4, 0xdead, u64::MAX] {
            assert_eq!(call(&mut v, &mem, nr, 0, 0).0, Action::Resume);
            assert_eq!(v.regs.rax as i64, ENOSYS);
        }
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

        let mem = FakeMem(Vec::new());
        let mut v = FakeVcpu::default();
        v.regs.rax = CPUID_SIGNATURE_LEAF.into();
        let a = handle(
            VmExit::Cpuid { len: 2 },
            &mut v,
            &mem,
            &host,
            0,
            &mut |_: &[u8]| {},
        );
        assert_eq!((a, v.regs.rax, v.rip), (Action::Resume, 0x4000_0001, 2));
    }

    #[test]
    fn msrs_io_and_faults() {
        let mem = FakeMem(Vec::new());
        let mut v = FakeVcpu {
            rip: 0x1000,
            ..FakeVcpu::default()
        };
        let run = |v: &mut FakeVcpu, e| handle(e, v, &mem, &FakeHost, 0, &mut |_: &[u8]| {});
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
}
