//! VT-x's MSR bitmap (SDM Vol. 3C 25.6.9; "use MSR bitmaps" is primary
//! processor-based control 28, 25.6.2): without it every RDMSR and WRMSR
//! exits (26.1.3). One page shared by all vCPUs, filled once by
//! `msrmap::fill_vmx`: the FS, GS and kernel GS bases run without an exit
//! (`msrmap.rs` says why that is safe, and why AMD-V does not do the same
//! yet).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::frames;
use crate::virt::msrmap;

/// Primary processor-based control 28.
pub(super) const PROC_MSR_BITMAP: u32 = 1 << 28;
/// "Address of MSR bitmaps", 64-bit control field (SDM Vol. 3D B.2.1).
const MSR_BITMAP_ADDR: u64 = 0x2004;

/// The bitmap's physical address; 0 until made (or out of frames, when
/// every MSR access keeps exiting).
static PAGE: AtomicU64 = AtomicU64::new(0);

/// Once, on the boot CPU: makes the bitmap; returns the control bit to ask
/// for (0 when no frame was free).
pub(super) fn init() -> u32 {
    let Some(page) = frames::alloc_frames(1) else {
        return 0;
    };
    // SAFETY: a fresh identity-mapped 4-KiB frame we own; nothing else
    // refers to it until `PAGE` is published below.
    let map = unsafe { &mut *(page as *mut [u8; msrmap::VMX_BYTES]) };
    msrmap::fill_vmx(map);
    PAGE.store(page, Ordering::Relaxed);
    PROC_MSR_BITMAP
}

/// Writes the bitmap's address into the current VMCS when the control is
/// on (`proc`: the primary controls the CPU accepted).
pub(super) fn write_controls(proc: u64) {
    let page = PAGE.load(Ordering::Relaxed);
    if proc & u64::from(PROC_MSR_BITMAP) != 0 && page != 0 {
        super::vmwrite(MSR_BITMAP_ADDR, page);
    }
}
