//! Device-visible memory for drivers that build their own structures
//! (NVMe queues, PRP lists, bounce buffers): whole zeroed pages from
//! dom0's heap whose bus address is their address (`hal.rs`), reached
//! only through bounds-checked volatile accesses and copies, since the
//! device reads and writes them behind the compiler's back.
#![allow(unsafe_code)]

use core::ptr::NonNull;

use virtio_drivers::PAGE_SIZE;

use super::hal;

/// Pages a device may read and write.
#[derive(Debug)]
pub struct DmaBuf {
    ptr: NonNull<u8>,
    pages: usize,
}

// SAFETY: the buffer is plain memory owned by this value; every access
// goes through `&self`/`&mut self` methods with volatile or copy
// operations, so moving it between vCPUs is sound.
unsafe impl Send for DmaBuf {}

impl DmaBuf {
    /// `pages` zeroed pages; `None` when dom0's heap has no room.
    pub fn new(pages: usize) -> Option<Self> {
        Some(Self {
            ptr: hal::dma_pages(pages)?,
            pages: pages.max(1),
        })
    }

    /// Bytes in the buffer.
    pub fn len(&self) -> usize {
        self.pages * PAGE_SIZE
    }

    /// The bus address of byte `off` (module doc: identity map + IOMMU).
    pub fn addr(&self, off: usize) -> u64 {
        self.ptr.as_ptr() as u64 + off as u64
    }

    fn in_bounds(&self, off: usize, len: usize, align: usize) -> bool {
        off.is_multiple_of(align) && off.checked_add(len).is_some_and(|e| e <= self.len())
    }

    /// Reads the dword at `off` (4-aligned, inside); 0 outside.
    pub fn read32(&self, off: usize) -> u32 {
        if !self.in_bounds(off, 4, 4) {
            return 0;
        }
        // SAFETY: inside the allocation and aligned (checked above); a
        // volatile read because the device writes the memory.
        unsafe { self.ptr.as_ptr().add(off).cast::<u32>().read_volatile() }
    }

    /// Writes the dword at `off` (4-aligned, inside; ignored outside).
    pub fn write32(&mut self, off: usize, v: u32) {
        if self.in_bounds(off, 4, 4) {
            // SAFETY: as in `read32`.
            unsafe { self.ptr.as_ptr().add(off).cast::<u32>().write_volatile(v) };
        }
    }

    /// Writes the qword at `off` (8-aligned, inside; ignored outside).
    pub fn write64(&mut self, off: usize, v: u64) {
        if self.in_bounds(off, 8, 8) {
            // SAFETY: as in `read32`.
            unsafe { self.ptr.as_ptr().add(off).cast::<u64>().write_volatile(v) };
        }
    }

    /// Copies `src` to byte `off` on; `false` (nothing copied) if it
    /// does not fit.
    pub fn copy_in(&mut self, off: usize, src: &[u8]) -> bool {
        if !self.in_bounds(off, src.len(), 1) {
            return false;
        }
        // SAFETY: the destination range is inside the allocation (checked)
        // and cannot overlap `src`, which Rust owns elsewhere; no device
        // transfer is in flight while the driver copies (one command at a
        // time, copied before submission).
        unsafe {
            core::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(off), src.len())
        };
        true
    }

    /// Copies from byte `off` on into `dst`; `false` (nothing copied) if
    /// it is not inside.
    pub fn copy_out(&self, off: usize, dst: &mut [u8]) -> bool {
        if !self.in_bounds(off, dst.len(), 1) {
            return false;
        }
        // SAFETY: as in `copy_in`, after the command completed.
        unsafe {
            core::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), dst.as_mut_ptr(), dst.len())
        };
        true
    }

    /// Gives the pages up for good: a device that never completed a
    /// command may still write them, so they must never be reused.
    pub fn leak(self) {
        core::mem::forget(self);
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `dma_pages(pages)`; the owner drops the
        // buffer only once the device is done with it (`leak` otherwise).
        unsafe { hal::free_dma_pages(self.ptr, self.pages) };
    }
}
