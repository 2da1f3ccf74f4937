//! Register access for the IOMMU units: their MMIO pages mapped uncached,
//! then read and written with volatile accesses of the register's width.

use core::ptr::{read_volatile, write_volatile};

use crate::arch::{frames, paging, physmem};

/// One unit's register block at `base` (identity-mapped, uncached).
#[derive(Debug, Clone, Copy)]
pub struct Regs {
    base: u64,
    len: u64,
}

/// Why a register block cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Outside the identity map, or the page tables could not be changed.
    NotMapped(u64),
}

impl Regs {
    /// Maps `base..base+len` uncached (PCD|PWT: UC with the default PAT,
    /// Intel SDM Vol. 3A 11.12.3; device registers must not be cached or
    /// combined) and returns the block.
    pub fn map(base: u64, len: u64) -> Result<Self, MapError> {
        let len = len.next_multiple_of(4096);
        if !physmem::is_mapped(base, len) || !base.is_multiple_of(4096) {
            return Err(MapError::NotMapped(base));
        }
        let mut space = paging::KERNEL_SPACE.lock();
        let Some(space) = space.as_mut() else {
            return Err(MapError::NotMapped(base));
        };
        let mut alloc = || frames::alloc_frame();
        space
            .map(
                base,
                base,
                len,
                paging::W | paging::NX | paging::PCD | paging::PWT,
                &mut alloc,
            )
            .map_err(|_| MapError::NotMapped(base))?;
        for page in (base..base + len).step_by(4096) {
            x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(page));
        }
        Ok(Self { base, len })
    }

    /// The block's physical base.
    pub fn base(&self) -> u64 {
        self.base
    }

    fn at(&self, off: u64, width: u64) -> u64 {
        // A register offset comes from this code or from the unit's own
        // capability fields (fault record and IOTLB offsets); clamp it so
        // a wild capability value can never reach outside the block.
        assert!(
            off + width <= self.len,
            "IOMMU register {off:#x} outside its {:#x}-byte block",
            self.len
        );
        self.base + off
    }

    pub fn r32(&self, off: u64) -> u32 {
        let a = self.at(off, 4);
        // SAFETY: `a` lies in this unit's register block, identity-mapped
        // uncached by `map`; a 32-bit register is read with one aligned
        // 32-bit access (VT-d 10.2, AMD IOMMU spec 3.4).
        unsafe { read_volatile(a as *const u32) }
    }

    pub fn w32(&self, off: u64, v: u32) {
        let a = self.at(off, 4);
        // SAFETY: as in `r32`; writes to the IOMMU's own registers change
        // only what the IOMMU does, which is this module's job.
        unsafe { write_volatile(a as *mut u32, v) }
    }

    pub fn r64(&self, off: u64) -> u64 {
        let a = self.at(off, 8);
        // SAFETY: as in `r32`, one aligned 64-bit access.
        unsafe { read_volatile(a as *const u64) }
    }

    pub fn w64(&self, off: u64, v: u64) {
        let a = self.at(off, 8);
        // SAFETY: as in `w32`, one aligned 64-bit access.
        unsafe { write_volatile(a as *mut u64, v) }
    }
}

/// Writes back the cache lines of `addr..addr+len` so a unit that does
/// not snoop the CPU caches (VT-d ECAP.C = 0, VT-d 6.2.2) reads the
/// tables as written.
pub fn flush_cache(addr: u64, len: u64) {
    let mut line = addr & !63;
    while line < addr + len {
        // SAFETY: CLFLUSH of an identity-mapped address changes no data,
        // only where it lives (Intel SDM Vol. 2A CLFLUSH).
        unsafe {
            core::arch::asm!("clflush [{0}]", in(reg) line, options(nostack, preserves_flags))
        };
        line += 64;
    }
    // SAFETY: a fence orders the flushes before the register write that
    // tells the unit to look.
    unsafe { core::arch::asm!("mfence", options(nostack, preserves_flags)) };
}
