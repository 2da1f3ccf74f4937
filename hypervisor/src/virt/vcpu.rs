//! One vCPU type over both backends, chosen at boot from CPUID.

use super::svm::SvmVcpu;
use super::vmx::VmxVcpu;
use super::{GuestRegs, VmExit};
use crate::domain::exits::VcpuOps;

/// A vCPU of either vendor.
// Both variants live in a `Box` in the scheduler; the size gap costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Vcpu {
    /// AMD-V.
    Svm(SvmVcpu),
    /// Intel VT-x.
    Vmx(VmxVcpu),
}

impl Vcpu {
    /// Switches the vCPU in on this CPU (before the first `run` of a slice).
    pub fn enter(&mut self) {
        match self {
            Self::Svm(v) => v.enter(),
            Self::Vmx(v) => v.enter(),
        }
    }

    /// Drops the guest's cached translations on this CPU before the next
    /// run (after its nested page tables lost a mapping).
    pub fn flush_tlb(&mut self) {
        match self {
            Self::Svm(v) => v.enter(),
            Self::Vmx(v) => v.flush_tlb(),
        }
    }

    /// Runs until the next exit.
    pub fn run(&mut self) -> VmExit {
        match self {
            Self::Svm(v) => v.run(),
            Self::Vmx(v) => v.run(),
        }
    }

    /// Frees the vCPU's control page (VMCB or VMCS); the vCPU is dead.
    pub fn release(&mut self) {
        match self {
            Self::Svm(v) => v.release(),
            Self::Vmx(v) => v.release(),
        }
    }

    /// Before an entry: `Some(vector)` injects that external interrupt if
    /// the guest can take it now (RFLAGS.IF = 1, no interrupt shadow,
    /// nothing else being injected), else requests an interrupt-window
    /// exit so the next entry tries again; `None` withdraws the request.
    pub fn set_upcall(&mut self, vector: Option<u8>) {
        match self {
            Self::Svm(v) => v.set_upcall(vector),
            Self::Vmx(v) => v.set_upcall(vector),
        }
    }

    /// The time slice ends at TSC `tsc`. VT-x bounds each entry with the
    /// VMX-preemption timer (it ends the slice even where the host's timer
    /// interrupt cannot: Bochs, guest RFLAGS.IF=0); AMD-V relies on the
    /// LAPIC timer's interrupt, which always exits the guest.
    pub fn set_slice_end(&mut self, tsc: u64) {
        match self {
            Self::Svm(_) => {}
            Self::Vmx(v) => v.set_slice_end(tsc),
        }
    }

    /// Switches the vCPU out (after the last `run` of a slice).
    pub fn put(&mut self) {
        match self {
            Self::Svm(_) => {}
            Self::Vmx(v) => v.put(),
        }
    }
}

impl VcpuOps for Vcpu {
    fn regs(&mut self) -> &mut GuestRegs {
        match self {
            Self::Svm(v) => &mut v.regs,
            Self::Vmx(v) => &mut v.regs,
        }
    }
    fn rax(&self) -> u64 {
        match self {
            Self::Svm(v) => v.rax(),
            Self::Vmx(v) => v.rax(),
        }
    }
    fn set_rax(&mut self, value: u64) {
        match self {
            Self::Svm(v) => v.set_rax(value),
            Self::Vmx(v) => v.set_rax(value),
        }
    }
    fn rip(&self) -> u64 {
        match self {
            Self::Svm(v) => v.rip(),
            Self::Vmx(v) => v.rip(),
        }
    }
    fn skip(&mut self, len: u64) {
        match self {
            Self::Svm(v) => v.skip(len),
            Self::Vmx(v) => v.skip(len),
        }
    }
    fn inject_gp(&mut self) {
        match self {
            Self::Svm(v) => v.inject_gp(),
            Self::Vmx(v) => v.inject_gp(),
        }
    }
}
