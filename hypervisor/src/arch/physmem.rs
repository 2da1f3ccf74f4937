//! Direct access to physical memory through the identity map.
//!
//! The boot trampoline maps 0..4 GiB; the hypervisor's own page tables map
//! all RAM (and the first 4 GiB) identity. `MAPPED_LIMIT` says how far the
//! current map reaches so boot-information reads never fault.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::boot::PhysRead;

static MAPPED_LIMIT: AtomicU64 = AtomicU64::new(4 << 30);
/// The boot map includes page 0 (QEMU's PVH loader keeps its memory map
/// there); the hypervisor's own tables leave it unmapped.
static MAPPED_START: AtomicU64 = AtomicU64::new(0);

/// Records how far the identity map now reaches: the hypervisor's own
/// tables are live, page 0 is gone.
pub fn set_mapped_limit(limit: u64) {
    MAPPED_LIMIT.store(limit, Ordering::Relaxed);
    MAPPED_START.store(0x1000, Ordering::Relaxed);
}

/// One past the highest identity-mapped address.
pub fn mapped_limit() -> u64 {
    MAPPED_LIMIT.load(Ordering::Relaxed)
}

/// Whether `[addr, addr + len)` lies in the identity map.
pub fn is_mapped(addr: u64, len: u64) -> bool {
    addr >= MAPPED_START.load(Ordering::Relaxed)
        && addr
            .checked_add(len)
            .is_some_and(|end| end <= MAPPED_LIMIT.load(Ordering::Relaxed))
}

/// Reads boot structures through the identity map.
pub struct IdentityMem;

impl PhysRead for IdentityMem {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        if !is_mapped(paddr, buf.len() as u64) {
            return false;
        }
        // SAFETY: the range is inside the identity map (checked above) and
        // only read; loader structures are plain bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(paddr as *const u8, buf.as_mut_ptr(), buf.len());
        }
        true
    }
}

/// A byte slice over physical memory.
///
/// # Safety
/// The range must be mapped (see [`is_mapped`]) and hold memory nobody
/// writes while the slice lives (boot modules, ACPI tables).
pub unsafe fn slice(addr: u64, len: usize) -> &'static [u8] {
    // SAFETY: the caller guarantees the range is mapped and stable.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len) }
}

/// Zeroes one 4 KiB frame through the identity map.
///
/// # Safety
/// The frame must be mapped and owned by the caller.
pub unsafe fn zero_frame(addr: u64) {
    // SAFETY: the caller owns the mapped frame.
    unsafe { core::ptr::write_bytes(addr as *mut u8, 0, 4096) };
}
