//! The guest state VT-x leaves out of the VMCS, kept per vCPU (issue 12):
//!
//! - **CR2** is neither saved nor loaded by VM exits and entries (SDM Vol.
//!   3C 28.3.1 lists CR0, CR3, CR4 only): the hardware register holds the
//!   last guest's page-fault address, so it is saved after each exit and
//!   put back before each entry (only when it differs, as KVM does).
//! - **IA32_KERNEL_GS_BASE** (what SWAPGS exchanges with the GS base) is
//!   not in the VMCS either (only FS/GS bases are, 25.4.1): swapped at
//!   switch-in and switch-out. AMD-V keeps both in the VMCB (VMLOAD/VMSAVE
//!   and the state save area).
//! - **CR8 (TPR)**: without "use TPR shadow" or the CR8-load/store exiting
//!   controls a guest's MOV to CR8 writes the host LAPIC's TPR (SDM Vol.
//!   3C 26.3, 29.3): a guest could mask the host's interrupts. With the TPR
//!   shadow (threshold 0) MOV to/from CR8 uses VTPR in a virtual-APIC page
//!   of the vCPU's own and never exits (29.3, 29.1.2). Without it, CR8
//!   accesses exit and kill the guest (not emulated). AMD-V's
//!   V_INTR_MASKING already keeps CR8 in the VMCB's V_TPR (APM Vol. 2
//!   15.21.1).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::{frames, physmem, xsave};

/// "Use TPR shadow" (primary processor-based control 21) is on.
pub(super) static TPR_SHADOW: AtomicU64 = AtomicU64::new(0);
/// Primary controls: CR8-load exiting 19, CR8-store exiting 20, use TPR
/// shadow 21 (SDM Vol. 3C 25.6.2).
pub(super) const PROC_CR8_EXITING: u32 = (1 << 19) | (1 << 20);
pub(super) const PROC_TPR_SHADOW: u32 = 1 << 21;
/// Virtual-APIC address and TPR threshold (SDM Vol. 3D B.2.1, B.3.1).
const VIRTUAL_APIC_ADDR: u64 = 0x2012;
const TPR_THRESHOLD: u64 = 0x401c;

/// Per vCPU.
pub(super) struct VmxCpuState {
    /// The virtual-APIC page (VTPR at 0x80), 0 without a TPR shadow.
    vapic: u64,
    cr2: u64,
    kernel_gs: u64,
    host_kernel_gs: u64,
}

impl VmxCpuState {
    /// A fresh state (CR2 0, kernel GS base 0, TPR 0); `None` when out of
    /// frames for the virtual-APIC page.
    pub(super) fn new() -> Option<Self> {
        let vapic = if TPR_SHADOW.load(Ordering::Relaxed) != 0 {
            let page = frames::alloc_frames(1)?;
            // SAFETY: a fresh identity-mapped frame we own.
            unsafe { physmem::zero_frame(page) };
            page
        } else {
            0
        };
        Some(Self {
            vapic,
            cr2: 0,
            kernel_gs: 0,
            host_kernel_gs: 0,
        })
    }

    /// The VMCS fields for the TPR shadow (VMCS current).
    pub(super) fn write_controls(&self) {
        if self.vapic != 0 {
            super::vmwrite(VIRTUAL_APIC_ADDR, self.vapic);
            super::vmwrite(TPR_THRESHOLD, 0);
        }
    }

    /// Switch-in.
    pub(super) fn enter(&mut self) {
        self.host_kernel_gs = xsave::swap_kernel_gs_base(self.kernel_gs);
    }

    /// Switch-out.
    pub(super) fn put(&mut self) {
        self.kernel_gs = xsave::swap_kernel_gs_base(self.host_kernel_gs);
    }

    /// Just before VM entry.
    pub(super) fn before_run(&self) {
        if xsave::cr2() != self.cr2 {
            xsave::set_cr2(self.cr2);
        }
    }

    /// Just after VM exit.
    pub(super) fn after_run(&mut self) {
        self.cr2 = xsave::cr2();
    }

    /// Frees the virtual-APIC page (the vCPU is dead).
    pub(super) fn release(&mut self) {
        if self.vapic != 0 {
            frames::free_frames(self.vapic, 1);
            self.vapic = 0;
        }
    }
}
