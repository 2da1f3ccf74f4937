//! A domain's memory: 2 MiB chunks of host frames, zeroed when taken, and
//! the frames behind its nested page tables. Guest-physical address `g`
//! lives at `chunks[g / 2 MiB] + g % 2 MiB`.

use alloc::vec::Vec;

use super::{physmem, start};
use crate::domain::exits::GuestRead;
use crate::domain::{GuestMemory, OutOfBounds, check_range};
use crate::mm::gpt::TableMemory;

/// Size of one chunk.
pub const CHUNK: u64 = 2 << 20;

/// Frames owned by one domain.
pub struct DomainMemory {
    chunks: Vec<u64>,
    size: u64,
}

impl DomainMemory {
    /// Takes `size` bytes (a multiple of 2 MiB) of zeroed memory.
    pub fn new(size: u64) -> Option<Self> {
        if size == 0 || !size.is_multiple_of(CHUNK) {
            return None;
        }
        let mut mem = Self {
            chunks: Vec::new(),
            size,
        };
        for _ in 0..size / CHUNK {
            let c = start::alloc_aligned(CHUNK / 4096, CHUNK)?;
            // SAFETY: freshly allocated, identity-mapped frames we own; zeroed
            // so nothing of a previous owner leaks into this domain.
            unsafe { core::ptr::write_bytes(c as *mut u8, 0, CHUNK as usize) };
            mem.chunks.push(c);
        }
        Some(mem)
    }

    /// The chunks' host-physical addresses, in guest-physical order.
    pub fn chunks(&self) -> &[u64] {
        &self.chunks
    }

    /// Calls `f(host_address, offset_in_request, len)` for each piece of
    /// `[gpa, gpa + len)`, which must be inside the domain.
    fn pieces(
        &self,
        gpa: u64,
        len: u64,
        mut f: impl FnMut(u64, usize, usize),
    ) -> Result<(), OutOfBounds> {
        check_range(gpa, len, self.size)?;
        let mut done = 0u64;
        while done < len {
            let g = gpa + done;
            let n = (CHUNK - g % CHUNK).min(len - done);
            let Some(&chunk) = self.chunks.get((g / CHUNK) as usize) else {
                return Err(OutOfBounds {
                    gpa,
                    len,
                    size: self.size,
                });
            };
            f(chunk + g % CHUNK, done as usize, n as usize);
            done += n;
        }
        Ok(())
    }
}

impl Drop for DomainMemory {
    fn drop(&mut self) {
        for &c in &self.chunks {
            start::free_frames(c, CHUNK / 4096);
        }
    }
}

impl GuestMemory for DomainMemory {
    fn size(&self) -> u64 {
        self.size
    }

    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfBounds> {
        self.pieces(gpa, bytes.len() as u64, |host, off, n| {
            // SAFETY: `host..host+n` lies in one of this domain's chunks
            // (checked by `pieces`), identity-mapped and owned by it.
            unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr().add(off), host as *mut u8, n) }
        })
    }

    fn fill(&mut self, gpa: u64, len: u64, byte: u8) -> Result<(), OutOfBounds> {
        self.pieces(gpa, len, |host, _, n| {
            // SAFETY: as in `write`.
            unsafe { core::ptr::write_bytes(host as *mut u8, byte, n) }
        })
    }
}

impl GuestRead for DomainMemory {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        let dst = buf.as_mut_ptr();
        self.pieces(gpa, buf.len() as u64, |host, off, n| {
            // SAFETY: the source is this domain's memory (checked); the
            // destination is `buf`, `off + n <= buf.len()`. The guest may be
            // writing the source concurrently on another CPU only if it has
            // several vCPUs; bytes are copied, never interpreted in place.
            unsafe { core::ptr::copy_nonoverlapping(host as *const u8, dst.add(off), n) }
        })
    }
}

/// Page-table frames for nested paging, from the hypervisor's allocator.
#[derive(Default)]
pub struct FrameTables {
    /// Table frames currently held.
    pub frames: u64,
}

impl TableMemory for FrameTables {
    fn alloc_table(&mut self) -> Option<u64> {
        let f = start::alloc_frame()?;
        // SAFETY: a fresh identity-mapped frame we own.
        unsafe { physmem::zero_frame(f) };
        self.frames += 1;
        Some(f)
    }

    fn read_entry(&self, table: u64, index: usize) -> u64 {
        // SAFETY: `table` came from `alloc_table` (owned, mapped) and
        // `index < 512` by the trait's contract.
        unsafe { core::ptr::read_volatile((table as *const u64).add(index.min(511))) }
    }

    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        // SAFETY: as in `read_entry`.
        unsafe { core::ptr::write_volatile((table as *mut u64).add(index.min(511)), value) }
    }

    fn free_table(&mut self, table: u64) {
        start::free_frames(table, 1);
        self.frames = self.frames.saturating_sub(1);
    }
}
