//! The raw instructions behind per-vCPU x87/SSE/AVX/... state: XSAVE,
//! XSAVEOPT, XRSTOR, XSETBV (FXSAVE/FXRSTOR where XSAVE is absent), CR2 and
//! the kernel GS base, and the save area each vCPU owns.
//!
//! References: Intel SDM Vol. 1 chapter 13 (XSAVE-managed state: 13.2
//! enumeration, 13.3 enabling, 13.4 the area's layout, 13.7-13.9 the
//! instructions), Vol. 1 10.5 (FXSAVE layout); AMD APM Vol. 2 11.5.
//!
//! The hypervisor is built for a soft-float target: it never uses x87,
//! SSE or AVX registers itself, so guest values stay in the registers from
//! [`XArea::restore`] at a slice's start to [`XArea::save`] at its end.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::arch::asm;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

/// How state is saved: 0 FXSAVE, 1 XSAVE, 2 XSAVEOPT.
static MODE: AtomicU64 = AtomicU64::new(0);
/// XCR0 while no guest's is loaded: every component guests may enable.
static HOST_XCR0: AtomicU64 = AtomicU64::new(1);
/// Bytes of a save area (for [`HOST_XCR0`]).
static AREA_SIZE: AtomicU64 = AtomicU64::new(512);
/// AMD before XSAVEERPTR: FXSAVE/XSAVE leave FIP/FDP/FOP out unless an
/// exception is pending, so they must be overwritten before a restore.
static FXSAVE_LEAK: AtomicU64 = AtomicU64::new(0);

/// CR4.OSFXSR (9), OSXMMEXCPT (10), OSXSAVE (18) (SDM Vol. 3A 2.5).
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const CR4_OSXSAVE: u64 = 1 << 18;
/// IA32_KERNEL_GS_BASE (SDM Vol. 4 table 2-2).
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// Once, on the boot CPU: picks the save instruction and the components
/// guests may enable (`allowed`, from `virt::xstate::allowed_xcr0`).
pub fn init_global(allowed: u64) {
    let l1 = core::arch::x86_64::__cpuid(1);
    let xsave = l1.ecx & (1 << 26) != 0;
    if xsave {
        let opt = core::arch::x86_64::__cpuid_count(0xd, 1).eax & 1 != 0;
        MODE.store(if opt { 2 } else { 1 }, Ordering::Relaxed);
        HOST_XCR0.store(allowed | 1, Ordering::Relaxed);
    }
    let vendor = core::arch::x86_64::__cpuid(0);
    let amd = vendor.ebx == u32::from_le_bytes(*b"Auth");
    let ext = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    let errptr = ext >= 0x8000_0008 && core::arch::x86_64::__cpuid(0x8000_0008).ebx & (1 << 2) != 0;
    FXSAVE_LEAK.store(u64::from(amd && !errptr), Ordering::Relaxed);
}

/// On each CPU before it runs guests: enables FXSAVE/SSE and XSAVE in
/// CR4 and loads the host XCR0; then sizes the save area (CPUID
/// 0xD.0:EBX is the size for the XCR0 now loaded, SDM Vol. 1 13.5).
pub fn init_this_cpu() {
    let xsave = MODE.load(Ordering::Relaxed) != 0;
    // SAFETY: the bits are supported (OSFXSR/OSXMMEXCPT on every x86_64
    // CPU, OSXSAVE only when CPUID.1:ECX.XSAVE says so); the hypervisor
    // itself uses no SSE state, so enabling it changes nothing it runs.
    unsafe {
        let mut cr4: u64;
        asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack, preserves_flags));
        cr4 |= CR4_OSFXSR | CR4_OSXMMEXCPT;
        if xsave {
            cr4 |= CR4_OSXSAVE;
        }
        asm!("mov cr4, {}", in(reg) cr4, options(nostack, preserves_flags));
    }
    if xsave {
        xsetbv(HOST_XCR0.load(Ordering::Relaxed));
        let size = core::arch::x86_64::__cpuid_count(0xd, 0).ebx;
        AREA_SIZE.fetch_max(u64::from(size), Ordering::Relaxed);
    }
}

/// Whether XSAVE is in use (else FXSAVE).
pub fn xsave_enabled() -> bool {
    MODE.load(Ordering::Relaxed) != 0
}

/// The XCR0 loaded while the hypervisor runs for no guest.
pub fn host_xcr0() -> u64 {
    HOST_XCR0.load(Ordering::Relaxed)
}

/// Loads XCR0. Only the values `virt::xstate::validate_xcr0` accepted
/// or [`host_xcr0`] reach here.
pub fn xsetbv(value: u64) {
    // SAFETY: XSETBV with ECX = 0 at CPL 0 and CR4.OSXSAVE set
    // (`init_this_cpu`); `value` is a subset of what CPUID enumerates
    // and obeys SDM Vol. 1 13.3 (checked by the caller), so it does not
    // fault; the hypervisor holds no state in the components it disables.
    unsafe {
        asm!("xsetbv", in("ecx") 0, in("eax") value as u32, in("edx") (value >> 32) as u32,
            options(nomem, nostack, preserves_flags));
    }
}

/// Reads XCR0 (CR4.OSXSAVE set: `init_this_cpu`, only when XSAVE is used).
pub fn xgetbv() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV with ECX = 0 reads XCR0; no side effect.
    unsafe {
        asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    u64::from(lo) | (u64::from(hi) << 32)
}

/// Reads CR2.
pub fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effect.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Writes CR2 (a guest's page-fault address; the hypervisor reads CR2 only
/// in its own fault handler, for its log line).
pub fn set_cr2(v: u64) {
    // SAFETY: CR2 only records the last page-fault address; any value is
    // valid and nothing in the hypervisor depends on it.
    unsafe { asm!("mov cr2, {}", in(reg) v, options(nomem, nostack, preserves_flags)) };
}

/// Swaps IA32_KERNEL_GS_BASE with `v`: returns the value it had.
pub fn swap_kernel_gs_base(v: u64) -> u64 {
    // SAFETY: the MSR exists on every x86_64 CPU; the hypervisor never
    // executes SWAPGS, so the value does not matter to it while a guest's
    // is loaded; a guest can only make it canonical (WRMSR is refused,
    // SWAPGS moves a GS base, which is canonical).
    unsafe {
        let old = super::cpu::rdmsr(MSR_KERNEL_GS_BASE);
        if old != v {
            super::cpu::wrmsr(MSR_KERNEL_GS_BASE, v);
        }
        old
    }
}

/// One vCPU's x87/SSE/AVX/... state: a standard-format XSAVE area (or an
/// FXSAVE area), 64-byte aligned, from the heap.
pub struct XArea {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the area is plain memory owned by one vCPU; it is used only by
// the CPU running that vCPU (the scheduler runs a vCPU on one CPU at a time).
unsafe impl Send for XArea {}

impl XArea {
    /// A fresh area in the architectural initial state (SDM Vol. 3A 10.1
    /// table 10-1 and Vol. 1 13.6: FCW 0x37F, MXCSR 0x1F80, every register
    /// zero; XSTATE_BV = 0, so XRSTOR loads the initial configuration of
    /// every component). `None` when the heap is exhausted.
    pub fn new() -> Option<Self> {
        let size = AREA_SIZE.load(Ordering::Relaxed).max(512) as usize;
        let layout = Layout::from_size_align(size, 64).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        // SAFETY: offsets 0 (FCW, u16) and 24 (MXCSR, u32) lie inside the
        // fresh area of at least 512 bytes (SDM Vol. 1 table 10-2).
        unsafe {
            ptr.as_ptr().cast::<u16>().write(0x037f);
            ptr.as_ptr().add(24).cast::<u32>().write(0x1f80);
        }
        Some(Self { ptr, layout })
    }

    /// Loads this vCPU's state into the registers (host XCR0 loaded: every
    /// component guests may use is restored, or set to its initial state).
    pub fn restore(&self) {
        let p = self.ptr.as_ptr();
        if FXSAVE_LEAK.load(Ordering::Relaxed) != 0 {
            // AMD before XSAVEERPTR restores FIP/FDP/FOP only with an
            // exception pending: give them a value of ours first (what
            // Linux does for X86_BUG_FXSAVE_LEAK), so the previous
            // domain's last x87 instruction pointer is not what this one
            // reads.
            // SAFETY: FNCLEX/EMMS/FILD on the (about to be replaced) x87
            // state; FILD reads 4 bytes of the area we own.
            unsafe {
                asm!("fnclex", "emms", "fild dword ptr [{}]", in(reg) p, options(nostack, readonly));
            }
        }
        // SAFETY: `p` is a 64-byte-aligned area of `AREA_SIZE` bytes that
        // only `new` and `save` wrote (so its header and MXCSR are valid,
        // SDM Vol. 1 13.8 / 10.5.1); the mask EDX:EAX is all ones, XCR0
        // bounds it to the host's components.
        unsafe {
            match MODE.load(Ordering::Relaxed) {
                0 => asm!("fxrstor64 [{}]", in(reg) p, options(nostack, readonly)),
                _ => asm!("xrstor64 [{}]", in(reg) p, in("eax") u32::MAX, in("edx") u32::MAX,
                    options(nostack, readonly)),
            }
        }
    }

    /// Saves the registers into this vCPU's area (host XCR0 loaded).
    pub fn save(&mut self) {
        let p = self.ptr.as_ptr();
        // SAFETY: as in `restore`; the instructions write only the area.
        // XSAVEOPT's optimizations are safe here: the last XRSTOR from this
        // address was this vCPU's own `restore` (SDM Vol. 1 13.9).
        unsafe {
            match MODE.load(Ordering::Relaxed) {
                0 => asm!("fxsave64 [{}]", in(reg) p, options(nostack)),
                1 => asm!("xsave64 [{}]", in(reg) p, in("eax") u32::MAX, in("edx") u32::MAX,
                    options(nostack)),
                _ => asm!("xsaveopt64 [{}]", in(reg) p, in("eax") u32::MAX, in("edx") u32::MAX,
                    options(nostack)),
            }
        }
    }
}

impl Drop for XArea {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}
