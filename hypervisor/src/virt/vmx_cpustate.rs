//! The guest state VT-x leaves out of the VMCS, kept per vCPU (issue 12):
//!
//! - **CR2** is neither saved nor loaded by VM exits and entries (SDM Vol.
//!   3C 28.3.1 lists CR0, CR3, CR4 only): the hardware register holds the
//!   last guest's page-fault address, so it is loaded at switch-in (only
//!   when it differs, as KVM does before each entry) and saved at
//!   switch-out. Within the slice the register stays the guest's: the
//!   host never writes it (a host page fault is fatal).
//! - **IA32_KERNEL_GS_BASE** (what SWAPGS exchanges with the GS base) is
//!   not in the VMCS either (only FS/GS bases are, 25.4.1): swapped at
//!   switch-in and switch-out; in between the guest reads and writes it
//!   without an exit (the MSR bitmap), and it is read back live. AMD-V keeps both in the VMCB (VMLOAD/VMSAVE
//!   and the state save area).
//! - **STAR, LSTAR, CSTAR, FMASK** (SYSCALL's MSRs, issue 13) are not in
//!   the VMCS either and SYSCALL does not exit: the vCPU's values are
//!   loaded into the hardware at switch-in. The guest changes them only by
//!   WRMSR, which exits (the MSR bitmap passes through only the FS, GS and
//!   kernel GS bases, `vmx_msrbitmap.rs`) and goes through
//!   [`VmxCpuState::set_syscall_msr`], so the copy here is always current
//!   and nothing needs saving at switch-out. The hypervisor never executes
//!   SYSCALL, so whatever a guest leaves in them does not matter to it.
//! - **CR8 (TPR)**: without "use TPR shadow" or the CR8-load/store exiting
//!   controls a guest's MOV to CR8 writes the host LAPIC's TPR (SDM Vol.
//!   3C 26.3, 29.3): a guest could mask the host's interrupts. With the TPR
//!   shadow (threshold 0) MOV to/from CR8 uses VTPR in a virtual-APIC page
//!   of the vCPU's own and never exits (29.3, 29.1.2). Without it, CR8
//!   accesses exit and kill the guest (not emulated). AMD-V's
//!   V_INTR_MASKING already keeps CR8 in the VMCB's V_TPR (APM Vol. 2
//!   15.21.1).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::{cpu, frames, physmem, xsave};

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
    /// STAR, LSTAR, CSTAR, FMASK, in [`SYSCALL_MSRS`] order.
    syscall: [u64; 4],
}

/// IA32_STAR, IA32_LSTAR, IA32_CSTAR, IA32_FMASK.
const SYSCALL_MSRS: [u32; 4] = [0xc000_0081, 0xc000_0082, 0xc000_0083, 0xc000_0084];
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

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
            syscall: [0; 4],
        })
    }

    /// The VMCS fields for the TPR shadow (VMCS current).
    pub(super) fn write_controls(&self) {
        if self.vapic != 0 {
            super::vmwrite(VIRTUAL_APIC_ADDR, self.vapic);
            super::vmwrite(TPR_THRESHOLD, 0);
        }
    }

    /// Switch-in. CR2 is not in the VMCS: the guest's is loaded here and
    /// saved at the switch-out, not around each entry. Between them the
    /// hardware register is the guest's: an exit leaves it as the guest
    /// left it, and nothing on the host writes it (a host page fault is
    /// fatal, `arch/idt.rs`), as with the kernel GS base below.
    pub(super) fn enter(&mut self) {
        if xsave::cr2() != self.cr2 {
            xsave::set_cr2(self.cr2);
        }
        self.host_kernel_gs = xsave::swap_kernel_gs_base(self.kernel_gs);
        for (&msr, &v) in SYSCALL_MSRS.iter().zip(&self.syscall) {
            // SAFETY: these MSRs exist on every x86_64 CPU; the value was
            // checked by the MSR model (LSTAR/CSTAR canonical, FMASK bits
            // 63:32 clear, STAR any) or is the initial 0.
            unsafe {
                if cpu::rdmsr(msr) != v {
                    cpu::wrmsr(msr, v);
                }
            }
        }
    }

    /// STAR, LSTAR, CSTAR or FMASK (`i` in `0..4`) as the guest set it.
    pub(super) fn syscall_msr(&self, i: usize) -> u64 {
        self.syscall.get(i).copied().unwrap_or(0)
    }

    /// The guest's WRMSR of STAR, LSTAR, CSTAR or FMASK (`i` in `0..4`;
    /// the value checked by the MSR model): kept and loaded now (the vCPU
    /// is switched in on this CPU).
    pub(super) fn set_syscall_msr(&mut self, i: usize, v: u64) {
        if let (Some(slot), Some(&msr)) = (self.syscall.get_mut(i), SYSCALL_MSRS.get(i)) {
            *slot = v;
            // SAFETY: as in `enter`.
            unsafe { cpu::wrmsr(msr, v) };
        }
    }

    /// The guest's kernel GS base, live in the hardware while it is
    /// switched in.
    pub(super) fn kernel_gs_base(&self) -> u64 {
        // SAFETY: the MSR exists on every x86_64 CPU; reading has no effect.
        unsafe { cpu::rdmsr(MSR_KERNEL_GS_BASE) }
    }

    /// The guest's WRMSR of its kernel GS base (canonical, checked by the
    /// MSR model), loaded now.
    pub(super) fn set_kernel_gs_base(&mut self, v: u64) {
        // SAFETY: as in `xsave::swap_kernel_gs_base`: the value is
        // canonical, and the hypervisor never executes SWAPGS.
        unsafe { cpu::wrmsr(MSR_KERNEL_GS_BASE, v) };
    }

    /// Switch-out.
    pub(super) fn put(&mut self) {
        self.cr2 = xsave::cr2();
        self.kernel_gs = xsave::swap_kernel_gs_base(self.host_kernel_gs);
    }

    /// Frees the virtual-APIC page (the vCPU is dead).
    pub(super) fn release(&mut self) {
        if self.vapic != 0 {
            frames::free_frames(self.vapic, 1);
            self.vapic = 0;
        }
    }
}
