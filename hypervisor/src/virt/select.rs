//! The one place that picks the vendor: at boot from CPUID ([`init_virt`]),
//! then once per vCPU ([`new_vcpu`]) and once per domain ([`Gpt::new`],
//! [`hypercall_insn`]). Nothing outside `virt/` matches on [`Backend`].
//! In host builds every vCPU is a scripted one from `fake.rs`, over nested
//! page tables of the vendor the test names.

use alloc::boxed::Box;
#[cfg(target_os = "none")]
use core::sync::atomic::Ordering;

#[cfg(target_os = "none")]
use super::svm::SvmVcpu;
#[cfg(target_os = "none")]
use super::vmx::VmxVcpu;
use super::{Backend, VcpuBackend};

use crate::mm::gpt::{Ept, GptError, GuestPageTable, Npt, Perms, TableMemory};
use crate::virt::boot::BootState;

#[cfg(target_os = "none")]
static BACKEND: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

/// The backend this machine runs guests with, if any.
#[cfg(target_os = "none")]
pub fn backend() -> Option<Backend> {
    match BACKEND.load(Ordering::Acquire) {
        1 => Some(Backend::Svm),
        2 => Some(Backend::Vmx),
        _ => None,
    }
}

/// Picks the backend from what the CPU offers and sets up what all CPUs
/// share (boot CPU, once). Returns why not, when guests cannot run.
#[cfg(target_os = "none")]
pub fn init_virt(features: &crate::arch::cpu::VirtFeatures) -> Result<Backend, &'static str> {
    use crate::arch::cpu::VirtFeatures;
    let b = match *features {
        VirtFeatures::Svm {
            locked_off: true, ..
        }
        | VirtFeatures::Vmx {
            locked_off: true, ..
        } => {
            return Err("hardware virtualization is disabled by firmware");
        }
        VirtFeatures::Svm { npt: false, .. } => {
            return Err("AMD-V without nested paging is not supported");
        }
        VirtFeatures::Vmx { ept: false, .. } => return Err("VT-x without EPT is not supported"),
        VirtFeatures::Vmx { invept: false, .. } => {
            return Err("VT-x without INVEPT is not supported");
        }
        VirtFeatures::Svm {
            nrips,
            flush_by_asid,
            asids,
            ..
        } => {
            crate::virt::svm::init_global(nrips, flush_by_asid, asids)
                .ok_or("out of memory for the SVM permission maps")?;
            Backend::Svm
        }
        VirtFeatures::Vmx { vpid, invvpid, .. } => {
            crate::virt::vmx::init_global(vpid && invvpid);
            Backend::Vmx
        }
        VirtFeatures::None => return Err("this CPU offers neither VT-x nor AMD-V"),
    };
    crate::arch::xsave::init_global(super::xstate::allowed_xcr0(|l, s| {
        let r = core::arch::x86_64::__cpuid_count(l, s);
        [r.eax, r.ebx, r.ecx, r.edx]
    }));
    BACKEND.store(if b == Backend::Svm { 1 } else { 2 }, Ordering::Release);
    Ok(b)
}

/// Turns the backend on for this CPU (every CPU, before it runs guests).
#[cfg(target_os = "none")]
pub fn init_virt_this_cpu() -> Result<(), &'static str> {
    // Every CPU: CR4.OSFXSR/OSXSAVE and the host XCR0 (`xstate.rs`).
    crate::arch::xsave::init_this_cpu();
    match backend() {
        Some(Backend::Svm) => crate::virt::svm::init_this_cpu(crate::arch::percpu::cpu_index())
            .ok_or("out of memory for the SVM host save area"),
        Some(Backend::Vmx) => crate::virt::vmx::init_this_cpu().map_err(|e| match e {
            crate::virt::vmx::VmxError::LockedOff => "VMX is locked off by firmware",
            crate::virt::vmx::VmxError::OutOfMemory => "out of memory for the VMXON region",
            crate::virt::vmx::VmxError::VmxonFailed => "VMXON failed",
        }),
        None => Ok(()),
    }
}

/// A new vCPU of `backend` starting per `boot`, with nested page tables
/// rooted at `root`; `None` when out of memory.
#[cfg(target_os = "none")]
pub fn new_vcpu(
    backend: Backend,
    boot: &BootState,
    root: u64,
    domain_id: u32,
) -> Option<Box<dyn VcpuBackend>> {
    Some(match backend {
        Backend::Svm => Box::new(SvmVcpu::new(boot, root, domain_id)?),
        Backend::Vmx => Box::new(VmxVcpu::new(boot, root, domain_id)?),
    })
}

/// Heap bytes one vCPU's backend takes ([`new_vcpu`]'s box and its XSAVE
/// area), charged to its domain's budget before it is made
/// (`domain/budget.rs`). The area is at most 2,696 bytes for the
/// components Kestrel enables (x87 to PKRU, SDM Vol. 1 13.4); 4 KiB bounds
/// it with its alignment.
#[cfg(target_os = "none")]
pub const VCPU_HEAP_BYTES: u64 = {
    let (s, v) = (size_of::<SvmVcpu>(), size_of::<VmxVcpu>());
    (if s > v { s } else { v }) as u64 + 4096
};
/// Heap bytes one scripted vCPU takes (host tests).
#[cfg(not(target_os = "none"))]
pub const VCPU_HEAP_BYTES: u64 = size_of::<super::fake::FakeVcpu>() as u64;

/// A new scripted vCPU (host tests): the program `fake.rs` holds for
/// domain `domain_id`, over its nested page tables at `root`.
#[cfg(not(target_os = "none"))]
pub fn new_vcpu(
    backend: Backend,
    boot: &BootState,
    root: u64,
    domain_id: u32,
) -> Option<Box<dyn VcpuBackend>> {
    Some(Box::new(super::fake::FakeVcpu::new(
        backend, boot, root, domain_id,
    )?))
}

/// The hypercall instruction guests of `backend` use (their start info
/// says which: a guest never guesses).
pub fn hypercall_insn(backend: Backend) -> u32 {
    match backend {
        Backend::Svm => pvabi::HYPERCALL_VMMCALL,
        Backend::Vmx => pvabi::HYPERCALL_VMCALL,
    }
}

/// A domain's nested page tables, in its vendor's format.
pub enum Gpt {
    Ept(GuestPageTable<Ept>),
    Npt(GuestPageTable<Npt>),
}

impl Gpt {
    /// Empty tables in the format `backend` walks.
    pub fn new(backend: Backend, t: &mut impl TableMemory) -> Result<Self, GptError> {
        Ok(match backend {
            Backend::Svm => Self::Npt(GuestPageTable::<Npt>::new(t)?),
            Backend::Vmx => Self::Ept(GuestPageTable::<Ept>::new(t)?),
        })
    }
    pub fn map(
        &mut self,
        gpa: u64,
        hpa: u64,
        len: u64,
        t: &mut impl TableMemory,
    ) -> Result<(), GptError> {
        match self {
            Self::Ept(g) => g.map(gpa, hpa, len, Perms::ALL, t),
            Self::Npt(g) => g.map(gpa, hpa, len, Perms::ALL, t),
        }
    }
    /// Maps with chosen rights (a granted page: never executable).
    pub fn map_perms(
        &mut self,
        gpa: u64,
        hpa: u64,
        perms: Perms,
        t: &mut impl TableMemory,
    ) -> Result<(), GptError> {
        match self {
            Self::Ept(g) => g.map(gpa, hpa, 4096, perms, t),
            Self::Npt(g) => g.map(gpa, hpa, 4096, perms, t),
        }
    }
    /// Maps `len` bytes with chosen rights (a device's BAR: uncached).
    pub fn map_range_perms(
        &mut self,
        gpa: u64,
        hpa: u64,
        len: u64,
        perms: Perms,
        t: &mut impl TableMemory,
    ) -> Result<(), GptError> {
        match self {
            Self::Ept(g) => g.map(gpa, hpa, len, perms, t),
            Self::Npt(g) => g.map(gpa, hpa, len, perms, t),
        }
    }
    /// Points the mapped 4 KiB page at `gpa` at `hpa` in one entry write
    /// (never unmapped in between); the frame it mapped before.
    pub fn replace(
        &mut self,
        gpa: u64,
        hpa: u64,
        perms: Perms,
        t: &mut impl TableMemory,
    ) -> Result<u64, GptError> {
        match self {
            Self::Ept(g) => g.replace(gpa, hpa, perms, t),
            Self::Npt(g) => g.replace(gpa, hpa, perms, t),
        }
    }
    pub fn unmap(&mut self, gpa: u64, len: u64, t: &mut impl TableMemory) -> Result<u64, GptError> {
        match self {
            Self::Ept(g) => g.unmap(gpa, len, t),
            Self::Npt(g) => g.unmap(gpa, len, t),
        }
    }
    pub fn root(&self) -> u64 {
        match self {
            Self::Ept(g) => g.root(),
            Self::Npt(g) => g.root(),
        }
    }
    pub fn destroy(self, t: &mut impl TableMemory) -> usize {
        match self {
            Self::Ept(g) => g.destroy(t),
            Self::Npt(g) => g.destroy(t),
        }
    }
}
