//! A domain's memory: 2 MiB chunks of host frames, zeroed when taken, and
//! the frames behind its nested page tables. Guest-physical address `g`
//! lives at `chunks[g / 2 MiB] + g % 2 MiB`. Frames come from, and bytes
//! reach them through, the platform (`platform/`): the identity map on bare
//! metal, a simulated physical memory in host tests.

use alloc::vec::Vec;

use crate::domain::{GuestMemory, OutOfBounds, check_range};
use crate::hypercall::GuestRead;
use crate::mm::gpt::TableMemory;
use crate::platform::{P, Platform};
use pvabi::Error;

/// Gives back `count` frames from `base`.
fn free(base: u64, count: u64) {
    P::free_frames(base, count);
}

/// Size of one chunk.
pub const CHUNK: u64 = 2 << 20;

/// Frames owned by one domain: one host frame per 4 KiB guest page, 0 where
/// the guest released the page (balloon). Initially the pages come in
/// 2 MiB-aligned contiguous chunks, so nested paging can use 2 MiB pages.
pub struct DomainMemory {
    frames: Vec<u64>,
    chunks: Vec<u64>,
    size: u64,
    max_pages: u64,
}

const PAGE: u64 = 4096;

impl DomainMemory {
    /// Takes `size` bytes (a multiple of 2 MiB) of zeroed memory; the quota
    /// is the same number of pages.
    pub fn new(size: u64) -> Option<Self> {
        if size == 0 || !size.is_multiple_of(CHUNK) {
            return None;
        }
        let mut mem = Self {
            frames: Vec::new(),
            chunks: Vec::new(),
            size,
            max_pages: size / PAGE,
        };
        // The page list lives on the hypervisor heap (8 bytes per 4 KiB
        // page): a domain too big for the heap is refused like one too big
        // for free memory, never an allocation failure that stops us.
        let pages = usize::try_from(size / PAGE).ok()?;
        let chunks = usize::try_from(size / CHUNK).ok()?;
        mem.frames.try_reserve_exact(pages).ok()?;
        mem.chunks.try_reserve_exact(chunks).ok()?;
        for _ in 0..size / CHUNK {
            let c = P::alloc_aligned(CHUNK / PAGE, CHUNK)?;
            // Zeroed so nothing of a previous owner leaks into this domain.
            P::fill_phys(c, CHUNK, 0);
            mem.chunks.push(c);
            mem.frames.extend((0..CHUNK / PAGE).map(|i| c + i * PAGE));
        }
        Some(mem)
    }

    /// The initial chunks' host-physical addresses, in guest-physical order.
    pub fn chunks(&self) -> &[u64] {
        &self.chunks
    }

    /// Pages present now.
    pub fn present_pages(&self) -> u64 {
        self.frames.iter().filter(|&&f| f != 0).count() as u64
    }

    /// The quota in pages.
    pub fn max_pages(&self) -> u64 {
        self.max_pages
    }

    /// Guest-physical space size.
    pub fn phys_size(&self) -> u64 {
        self.size
    }

    fn page_range(&self, gpa: u64, pages: u64) -> Option<core::ops::Range<usize>> {
        let first = usize::try_from(gpa / PAGE).ok()?;
        let end = first.checked_add(usize::try_from(pages).ok()?)?;
        (gpa.is_multiple_of(PAGE) && end <= self.frames.len()).then_some(first..end)
    }

    /// The host frame of the present page at `gpa` (page aligned), if any.
    pub fn frame(&self, gpa: u64) -> Option<u64> {
        if !gpa.is_multiple_of(PAGE) {
            return None;
        }
        let f = *self.frames.get(usize::try_from(gpa / PAGE).ok()?)?;
        (f != 0).then_some(f)
    }

    /// Takes pages out of the domain: returns their host frames (the caller
    /// unmaps them, shoots down TLBs, then frees them). `Err(ENOENT)` if any
    /// is already absent; nothing changes then.
    pub fn release(&mut self, gpa: u64, pages: u64) -> Result<Vec<u64>, Error> {
        let r = self.page_range(gpa, pages).ok_or(Error::Fault)?;
        let slots = self.frames.get_mut(r).ok_or(Error::Fault)?;
        if slots.contains(&0) {
            return Err(Error::NoEntry);
        }
        Ok(slots.iter_mut().map(core::mem::take).collect())
    }

    /// Puts back a frame that `release` took (undoing a failed release).
    pub fn restore(&mut self, gpa: u64, frame: u64) -> Result<(), Error> {
        let slot = self
            .frames
            .get_mut((gpa / PAGE) as usize)
            .ok_or(Error::Fault)?;
        if *slot != 0 {
            return Err(Error::Exists);
        }
        *slot = frame;
        Ok(())
    }

    /// Gives the domain fresh zeroed pages at `gpa`: returns their host
    /// frames for mapping. All or nothing.
    pub fn populate(&mut self, gpa: u64, pages: u64) -> Result<Vec<u64>, Error> {
        let r = self.page_range(gpa, pages).ok_or(Error::Fault)?;
        if self
            .frames
            .get(r.clone())
            .ok_or(Error::Fault)?
            .iter()
            .any(|&f| f != 0)
        {
            return Err(Error::Exists);
        }
        if self.present_pages() + pages > self.max_pages {
            return Err(Error::NoMem);
        }
        let mut got = Vec::new();
        got.try_reserve_exact(usize::try_from(pages).map_err(|_| Error::NoMem)?)
            .map_err(|_| Error::NoMem)?;
        for _ in 0..pages {
            match P::alloc_frame_anywhere() {
                Some(f) => {
                    P::fill_phys(f, PAGE, 0);
                    got.push(f);
                }
                None => {
                    for &f in &got {
                        free(f, 1);
                    }
                    return Err(Error::NoMem);
                }
            }
        }
        for (slot, &f) in self
            .frames
            .get_mut(r)
            .ok_or(Error::Fault)?
            .iter_mut()
            .zip(&got)
        {
            *slot = f;
        }
        Ok(got)
    }

    /// Calls `f(host_address, offset_in_request, len)` for each piece of
    /// `[gpa, gpa + len)`. Every page of the range must be inside the domain
    /// and present; that is checked for all of them before `f` is called
    /// once, so a failed request touches nothing.
    fn pieces(
        &self,
        gpa: u64,
        len: u64,
        mut f: impl FnMut(u64, usize, usize),
    ) -> Result<(), OutOfBounds> {
        check_range(gpa, len, self.size)?;
        let oob = OutOfBounds {
            gpa,
            len,
            size: self.size,
        };
        if len > 0 {
            let first = (gpa / PAGE) as usize;
            let last = ((gpa + len - 1) / PAGE) as usize;
            let pages = self.frames.get(first..=last).ok_or(oob)?;
            if pages.contains(&0) {
                return Err(oob);
            }
        }
        let mut done = 0u64;
        while done < len {
            let g = gpa + done;
            let n = (PAGE - g % PAGE).min(len - done);
            let frame = self.frames.get((g / PAGE) as usize).copied().unwrap_or(0);
            f(frame + g % PAGE, done as usize, n as usize);
            done += n;
        }
        Ok(())
    }
}

impl DomainMemory {
    /// Gives every frame back now (the domain is gone); what is left owns
    /// nothing.
    pub fn free_all(&mut self) {
        for f in self.frames.drain(..) {
            if f != 0 {
                free(f, 1);
            }
        }
        self.chunks.clear();
    }
}

impl Drop for DomainMemory {
    fn drop(&mut self) {
        self.free_all();
    }
}

impl GuestMemory for DomainMemory {
    fn size(&self) -> u64 {
        self.size
    }

    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfBounds> {
        // `host..host+n` lies in one of this domain's present frames
        // (checked by `pieces`), owned by it.
        self.pieces(gpa, bytes.len() as u64, |host, off, n| {
            P::write_phys(host, &bytes[off..off + n]);
        })
    }

    fn fill(&mut self, gpa: u64, len: u64, byte: u8) -> Result<(), OutOfBounds> {
        self.pieces(gpa, len, |host, _, n| P::fill_phys(host, n as u64, byte))
    }
}

impl GuestRead for DomainMemory {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        // The source is this domain's memory (checked by `pieces`). Another
        // vCPU of the domain may write it meanwhile: bytes are copied, never
        // interpreted in place.
        self.pieces(gpa, buf.len() as u64, |host, off, n| {
            P::read_phys(host, &mut buf[off..off + n]);
        })
    }
}

/// Page-table frames for nested paging, from the platform's allocator.
#[derive(Default)]
pub struct FrameTables {
    /// Table frames currently held.
    pub frames: u64,
}

impl TableMemory for FrameTables {
    fn alloc_table(&mut self) -> Option<u64> {
        let f = P::alloc_frame()?;
        P::fill_phys(f, PAGE, 0);
        self.frames += 1;
        Some(f)
    }

    // `table` came from `alloc_table` (owned) and `index < 512` by the
    // trait's contract. The entries are read and written as whole words,
    // as the CPU's page walker reads them.
    fn read_entry(&self, table: u64, index: usize) -> u64 {
        P::phys_word(table + index.min(511) as u64 * 8)
            .map_or(0, |w| w.load(core::sync::atomic::Ordering::Relaxed))
    }

    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        if let Some(w) = P::phys_word(table + index.min(511) as u64 * 8) {
            w.store(value, core::sync::atomic::Ordering::Relaxed);
        }
    }

    fn free_table(&mut self, table: u64) {
        free(table, 1);
        self.frames = self.frames.saturating_sub(1);
    }
}
