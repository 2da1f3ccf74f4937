//! The physical frame allocator: one bit per 4 KiB frame.
//!
//! The bitmap lives in storage the caller provides (found with
//! [`find_storage`] before any allocator exists), so this works on bare
//! metal with no heap. Two bitmaps share that storage:
//!
//! - `free`: the frame can be handed out now;
//! - `managed`: the frame belongs to the allocator (free or handed out).
//!
//! `managed` is what lets [`FrameAllocator::free`] refuse to "free" a frame
//! that was never RAM or that holds the hypervisor image, instead of
//! silently handing it out later.
#![forbid(unsafe_code)]

use crate::boot::{MemoryRegion, RegionKind};
use core::fmt;

/// Size of one frame.
pub const FRAME_SIZE: u64 = 4096;
/// End of the first megabyte: real-mode memory, kept for the AP trampoline
/// and avoided for everything else when possible.
pub const LOW_MEMORY_END: u64 = 1 << 20;

const BITS: u64 = u64::BITS as u64;

/// Why the allocator refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The storage given to [`FrameAllocator::new`] is too small.
    StorageTooSmall {
        /// Words needed ([`storage_words`]).
        needed: usize,
        /// Words given.
        have: usize,
    },
    /// The address is not frame-aligned.
    Unaligned(u64),
    /// The address is above the highest frame the allocator covers.
    OutOfRange(u64),
    /// The frame was never the allocator's (not usable RAM, or reserved).
    NotManaged(u64),
    /// The frame is already free.
    DoubleFree(u64),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::StorageTooSmall { needed, have } => write!(
                f,
                "frame bitmap storage too small: {needed} words needed, {have} given"
            ),
            Self::Unaligned(a) => write!(f, "frame address {a:#x} is not 4 KiB aligned"),
            Self::OutOfRange(a) => {
                write!(f, "frame address {a:#x} is above all usable memory")
            }
            Self::NotManaged(a) => write!(
                f,
                "frame {a:#x} was never allocatable (reserved or not usable RAM)"
            ),
            Self::DoubleFree(a) => write!(f, "frame {a:#x} freed twice"),
        }
    }
}

/// Number of frames the bitmap covers: up to the end of the highest whole
/// usable frame in `map`.
fn covered_frames(map: &[MemoryRegion]) -> u64 {
    map.iter()
        .filter(|r| r.kind == RegionKind::Usable)
        .map(|r| (r.start.div_ceil(FRAME_SIZE), r.end / FRAME_SIZE))
        .filter(|(lo, hi)| lo < hi)
        .map(|(_, hi)| hi)
        .max()
        .unwrap_or(0)
}

/// Words of one bitmap covering `frames` frames.
fn bitmap_words(frames: u64) -> usize {
    // frames <= 2^52, so this fits a 64-bit usize; saturate elsewhere.
    usize::try_from(frames.div_ceil(BITS)).unwrap_or(usize::MAX)
}

/// How many `u64` words of storage [`FrameAllocator::new`] needs for the
/// (normalized) `map`: two bitmaps reaching the highest usable frame.
pub fn storage_words(map: &[MemoryRegion]) -> usize {
    bitmap_words(covered_frames(map)).saturating_mul(2)
}

/// Whether `[start, end)` intersects any of the (byte) `reserved` ranges.
fn hits_reserved(reserved: &[(u64, u64)], start: u64, end: u64) -> bool {
    reserved.iter().any(|&(s, e)| s < e && s < end && start < e)
}

/// Finds a page-aligned physical range of at least `bytes` bytes inside one
/// `Usable` region of `map` that intersects none of the `reserved` byte
/// ranges: the lowest one at or above 1 MiB, else the lowest below.
/// Returns `None` when there is none or `bytes` is 0.
///
/// Used to place the allocator's own bitmap, so it must work before any
/// allocator exists; the caller then adds the range to `reserved`.
pub fn find_storage(map: &[MemoryRegion], reserved: &[(u64, u64)], bytes: u64) -> Option<u64> {
    if bytes == 0 {
        return None;
    }
    let len = bytes.checked_next_multiple_of(FRAME_SIZE)?;
    let fits = |c: u64| {
        let Some(end) = c.checked_add(len) else {
            return false;
        };
        map.iter()
            .any(|r| r.kind == RegionKind::Usable && r.start <= c && end <= r.end)
            && !hits_reserved(reserved, c, end)
    };
    // The lowest fitting start is always a region start, 1 MiB, or the
    // first page after a reserved range: moving any other fitting start one
    // page down would still fit.
    let candidates = map
        .iter()
        .filter(|r| r.kind == RegionKind::Usable)
        .map(|r| r.start)
        .chain(reserved.iter().map(|&(_, e)| e))
        .chain([LOW_MEMORY_END])
        .filter_map(|a| a.checked_next_multiple_of(FRAME_SIZE))
        .filter(|&c| fits(c));
    let (mut high, mut low) = (None::<u64>, None::<u64>);
    for c in candidates {
        let slot = if c >= LOW_MEMORY_END {
            &mut high
        } else {
            &mut low
        };
        *slot = Some(slot.map_or(c, |s| s.min(c)));
    }
    high.or(low)
}

/// Bit mask of bits `[lo, hi)` of one word (`hi` may be 64).
fn mask(lo: u64, hi: u64) -> u64 {
    let upper = if hi >= BITS {
        u64::MAX
    } else {
        (1u64 << hi) - 1
    };
    upper & !((1u64 << lo) - 1)
}

/// Calls `f(word_index, mask)` for each word touched by frames `[lo, hi)`.
fn for_each_word(lo: u64, hi: u64, mut f: impl FnMut(usize, u64)) {
    let mut i = lo;
    while i < hi {
        let word_end = (i / BITS + 1) * BITS;
        let end = word_end.min(hi);
        f((i / BITS) as usize, mask(i % BITS, end - (i / BITS) * BITS));
        i = end;
    }
}

/// The frame allocator. See the module documentation.
pub struct FrameAllocator<'a> {
    /// Bit set: frame free.
    free: &'a mut [u64],
    /// Bit set: frame belongs to the allocator.
    managed: &'a mut [u64],
    /// Frames covered, `[0, frames)`.
    frames: u64,
    free_count: u64,
    total: u64,
    /// Where the next single-frame search starts (next fit), so repeated
    /// allocations do not rescan the exhausted low memory every time.
    hint: u64,
}

impl fmt::Debug for FrameAllocator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameAllocator")
            .field("frames", &self.frames)
            .field("free", &self.free_count)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl<'a> FrameAllocator<'a> {
    /// Builds the allocator over `storage` (at least [`storage_words`] words;
    /// extra words are unused). A frame starts free when it lies wholly in a
    /// `Usable` region of `map` and touches none of the `reserved` byte
    /// ranges. The caller reserves what it must keep: the hypervisor image,
    /// modules, loader structures, the bitmap storage itself, and the first
    /// MiB if it wants it kept out of general use.
    pub fn new(
        map: &[MemoryRegion],
        reserved: &[(u64, u64)],
        storage: &'a mut [u64],
    ) -> Result<Self, FrameError> {
        let frames = covered_frames(map);
        let words = bitmap_words(frames);
        let needed = words.saturating_mul(2);
        let have = storage.len();
        let too_small = FrameError::StorageTooSmall { needed, have };
        let (free, rest) = storage.split_at_mut_checked(words).ok_or(too_small)?;
        let (managed, _) = rest.split_at_mut_checked(words).ok_or(too_small)?;
        managed.fill(0);
        for r in map.iter().filter(|r| r.kind == RegionKind::Usable) {
            let hi = (r.end / FRAME_SIZE).min(frames);
            for_each_word(r.start.div_ceil(FRAME_SIZE), hi, |w, m| {
                if let Some(x) = managed.get_mut(w) {
                    *x |= m;
                }
            });
        }
        for &(s, e) in reserved.iter().filter(|(s, e)| s < e) {
            let hi = e.div_ceil(FRAME_SIZE).min(frames);
            for_each_word(s / FRAME_SIZE, hi, |w, m| {
                if let Some(x) = managed.get_mut(w) {
                    *x &= !m;
                }
            });
        }
        free.copy_from_slice(managed);
        let total = managed.iter().map(|w| u64::from(w.count_ones())).sum();
        Ok(Self {
            free,
            managed,
            frames,
            free_count: total,
            total,
            hint: 0,
        })
    }

    /// [`storage_words`], reachable through the type for callers that
    /// name only `FrameAllocator`.
    pub fn storage_words(map: &[MemoryRegion]) -> usize {
        storage_words(map)
    }

    /// [`find_storage`], reachable through the type.
    pub fn find_storage(map: &[MemoryRegion], reserved: &[(u64, u64)], bytes: u64) -> Option<u64> {
        find_storage(map, reserved, bytes)
    }

    /// Frames free now.
    pub fn free_frames(&self) -> u64 {
        self.free_count
    }

    /// Frames the allocator manages: those free at creation plus any added
    /// by [`release`](Self::release).
    pub fn total_frames(&self) -> u64 {
        self.total
    }

    /// Frames handed out and not yet freed.
    pub fn used_frames(&self) -> u64 {
        self.total - self.free_count
    }

    /// Whether the frame at `addr` is free now.
    pub fn is_free(&self, addr: u64) -> bool {
        addr.is_multiple_of(FRAME_SIZE) && self.test(&*self.free, addr / FRAME_SIZE)
    }

    fn test(&self, bits: &[u64], frame: u64) -> bool {
        frame < self.frames
            && bits
                .get((frame / BITS) as usize)
                .is_some_and(|w| w & (1 << (frame % BITS)) != 0)
    }

    /// First frame in `[lo, hi)` whose bit in `free` equals `want`.
    fn find(&self, lo: u64, hi: u64, want: bool) -> Option<u64> {
        let hi = hi.min(self.frames);
        let mut found = None;
        let mut i = lo;
        while i < hi && found.is_none() {
            let w = (i / BITS) as usize;
            let word = self.free.get(w).copied().unwrap_or(0);
            let word = if want { word } else { !word };
            let word_base = (i / BITS) * BITS;
            let m = mask(i % BITS, (hi - word_base).min(BITS)) & word;
            if m != 0 {
                found = Some(word_base + u64::from(m.trailing_zeros()));
            }
            i = word_base + BITS;
        }
        found
    }

    fn take_range(&mut self, lo: u64, hi: u64) {
        let free = &mut *self.free;
        for_each_word(lo, hi, |w, m| {
            if let Some(x) = free.get_mut(w) {
                *x &= !m;
            }
        });
        self.free_count -= hi - lo;
    }

    /// Allocates one frame anywhere; returns its physical address. The
    /// frame's contents are whatever was there: callers zero it.
    pub fn alloc(&mut self) -> Option<u64> {
        self.alloc_below(u64::MAX)
    }

    /// Allocates one frame lying wholly below `limit` (e.g. 1 MiB for the
    /// AP start-up trampoline, 4 GiB for structures with 32-bit pointers).
    pub fn alloc_below(&mut self, limit: u64) -> Option<u64> {
        let lim = (limit / FRAME_SIZE).min(self.frames);
        let frame = if self.hint < lim {
            self.find(self.hint, lim, true)
                .or_else(|| self.find(0, self.hint, true))
        } else {
            self.find(0, lim, true)
        }?;
        self.take_range(frame, frame + 1);
        self.hint = frame + 1;
        Some(frame * FRAME_SIZE)
    }

    /// Allocates `count` physically contiguous frames starting at a multiple
    /// of `align` bytes (a power of two; values below 4 KiB mean 4 KiB) and
    /// ending at or below `limit`. Returns the first address, choosing the
    /// lowest fit. `None` if `count` is 0, `align` is not a power of two, or
    /// nothing fits.
    pub fn alloc_contiguous(&mut self, count: usize, align: u64, limit: u64) -> Option<u64> {
        let align = align.max(FRAME_SIZE);
        let count = u64::try_from(count).ok()?;
        if count == 0 || !align.is_power_of_two() {
            return None;
        }
        let step = align / FRAME_SIZE;
        let lim = (limit / FRAME_SIZE).min(self.frames);
        let mut start = 0u64;
        loop {
            start = start.checked_next_multiple_of(step)?;
            let end = start.checked_add(count)?;
            if end > lim {
                return None;
            }
            match self.find(start, end, false) {
                // A used frame inside the window: no window containing it
                // can fit, so resume just past it.
                Some(used) => start = used + 1,
                None => {
                    self.take_range(start, end);
                    return Some(start * FRAME_SIZE);
                }
            }
        }
    }

    /// Returns the frame at `addr` to the allocator.
    pub fn free(&mut self, addr: u64) -> Result<(), FrameError> {
        if !addr.is_multiple_of(FRAME_SIZE) {
            return Err(FrameError::Unaligned(addr));
        }
        let frame = addr / FRAME_SIZE;
        if frame >= self.frames {
            return Err(FrameError::OutOfRange(addr));
        }
        if !self.test(&*self.managed, frame) {
            return Err(FrameError::NotManaged(addr));
        }
        if self.test(&*self.free, frame) {
            return Err(FrameError::DoubleFree(addr));
        }
        if let Some(w) = self.free.get_mut((frame / BITS) as usize) {
            *w |= 1 << (frame % BITS);
        }
        self.free_count += 1;
        Ok(())
    }

    /// Hands the frames lying wholly inside the byte range `[start, end)` to
    /// the allocator as free, e.g. loader structures once the boot
    /// information is consumed, or ACPI reclaimable memory once the tables
    /// are parsed. Frames already managed (free or allocated) are left as
    /// they are; frames above the covered range cannot be added. Returns the
    /// number of frames added.
    pub fn release(&mut self, start: u64, end: u64) -> u64 {
        let hi = (end / FRAME_SIZE).min(self.frames);
        let (free, managed) = (&mut *self.free, &mut *self.managed);
        let mut added = 0u64;
        for_each_word(start.div_ceil(FRAME_SIZE), hi, |w, m| {
            if let (Some(f), Some(g)) = (free.get_mut(w), managed.get_mut(w)) {
                let new = m & !*g;
                *g |= new;
                *f |= new;
                added += u64::from(new.count_ones());
            }
        });
        self.free_count += added;
        self.total += added;
        added
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;

    fn usable(start: u64, end: u64) -> MemoryRegion {
        MemoryRegion {
            start,
            end,
            kind: RegionKind::Usable,
        }
    }

    fn reserved(start: u64, end: u64) -> MemoryRegion {
        MemoryRegion {
            start,
            end,
            kind: RegionKind::Reserved,
        }
    }

    fn storage(map: &[MemoryRegion]) -> Vec<u64> {
        std::vec![0xdead_beef; storage_words(map)]
    }

    #[test]
    fn counts_and_reservations() {
        let map = [
            usable(0, 0x9f000),
            reserved(0x9f000, 0x10_0000),
            usable(MIB, 64 * MIB),
        ];
        assert_eq!(
            storage_words(&map),
            2 * (64 * MIB / FRAME_SIZE / 64) as usize
        );
        let mut st = storage(&map);
        // Image at 1-3 MiB, a byte-sized structure at 0x5010..0x5011.
        let a = FrameAllocator::new(&map, &[(MIB, 3 * MIB), (0x5010, 0x5011)], &mut st).unwrap();
        let usable_frames = 0x9f + (63 * MIB / FRAME_SIZE);
        let expect = usable_frames - (2 * MIB / FRAME_SIZE) - 1;
        assert_eq!(a.total_frames(), expect);
        assert_eq!(a.free_frames(), expect);
        assert_eq!(a.used_frames(), 0);
        assert!(!a.is_free(0x5000));
        assert!(a.is_free(0x6000));
        assert!(!a.is_free(0x9f000));
        assert!(!a.is_free(MIB));
        assert!(a.is_free(3 * MIB));
        assert!(!a.is_free(64 * MIB));
    }

    #[test]
    fn storage_too_small() {
        let map = [usable(0, 64 * MIB)];
        let mut st = std::vec![0u64; storage_words(&map) - 1];
        assert_eq!(
            FrameAllocator::new(&map, &[], &mut st).unwrap_err(),
            FrameError::StorageTooSmall {
                needed: storage_words(&map),
                have: st.len()
            }
        );
    }

    #[test]
    fn empty_map() {
        assert_eq!(storage_words(&[]), 0);
        let mut st = [];
        let mut a = FrameAllocator::new(&[], &[], &mut st).unwrap();
        assert_eq!(a.alloc(), None);
        assert_eq!(a.alloc_contiguous(1, 0, u64::MAX), None);
        assert_eq!(a.free(0), Err(FrameError::OutOfRange(0)));
    }

    #[test]
    fn partial_frames_are_not_usable() {
        let map = [usable(0x800, 0x2800)];
        let mut st = storage(&map);
        let mut a = FrameAllocator::new(&map, &[], &mut st).unwrap();
        assert_eq!(a.total_frames(), 1);
        assert_eq!(a.alloc(), Some(0x1000));
        assert_eq!(a.alloc(), None);
    }

    #[test]
    fn alloc_free_and_errors() {
        let map = [
            usable(0, 0x4000),
            reserved(0x4000, 0x5000),
            usable(0x5000, 0x8000),
        ];
        let mut st = storage(&map);
        let mut a = FrameAllocator::new(&map, &[(0x1000, 0x2000)], &mut st).unwrap();
        let mut got = BTreeSet::new();
        while let Some(f) = a.alloc() {
            assert!(got.insert(f), "{f:#x} handed out twice");
        }
        assert_eq!(
            got,
            [0, 0x2000, 0x3000, 0x5000, 0x6000, 0x7000]
                .into_iter()
                .collect()
        );
        assert_eq!(a.free_frames(), 0);
        assert_eq!(a.used_frames(), 6);
        assert_eq!(a.free(0x2001), Err(FrameError::Unaligned(0x2001)));
        assert_eq!(a.free(0x8000), Err(FrameError::OutOfRange(0x8000)));
        assert_eq!(a.free(0x4000), Err(FrameError::NotManaged(0x4000)));
        assert_eq!(a.free(0x1000), Err(FrameError::NotManaged(0x1000)));
        assert_eq!(a.free(0x3000), Ok(()));
        assert_eq!(a.free(0x3000), Err(FrameError::DoubleFree(0x3000)));
        assert_eq!(a.alloc(), Some(0x3000));
        assert!(
            FrameError::DoubleFree(0x3000)
                .to_string()
                .contains("0x3000")
        );
    }

    #[test]
    fn next_fit_hint() {
        let map = [usable(0, 0x10000)];
        let mut st = storage(&map);
        let mut a = FrameAllocator::new(&map, &[], &mut st).unwrap();
        assert_eq!(a.alloc(), Some(0));
        assert_eq!(a.alloc(), Some(0x1000));
        a.free(0).unwrap();
        // Next fit continues after the last allocation, then wraps.
        assert_eq!(a.alloc(), Some(0x2000));
        for _ in 3..16 {
            a.alloc().unwrap();
        }
        assert_eq!(a.alloc(), Some(0));
        assert_eq!(a.alloc(), None);
    }

    #[test]
    fn alloc_below_limits() {
        let map = [usable(0x1000, 0x9f000), usable(MIB, 8 * MIB)];
        let mut st = storage(&map);
        let mut a = FrameAllocator::new(&map, &[], &mut st).unwrap();
        // Exhaust low memory and move the hint above 1 MiB, then free one
        // low frame: alloc_below must wrap around to find it.
        for _ in 0..200 {
            a.alloc().unwrap();
        }
        assert_eq!(a.alloc_below(MIB), None);
        a.free(0x5000).unwrap();
        assert_eq!(a.alloc_below(MIB), Some(0x5000));
        // A limit inside a frame excludes that frame.
        let mut st2 = storage(&map);
        let mut b = FrameAllocator::new(&map, &[], &mut st2).unwrap();
        assert_eq!(b.alloc_below(0x2fff), Some(0x1000));
        assert_eq!(b.alloc_below(0x2fff), None);
        assert_eq!(b.alloc_below(0), None);
        let mut n = 0;
        while b.alloc_below(MIB).is_some() {
            n += 1;
        }
        assert_eq!(n, 0x9e - 1);
        assert!(b.alloc_below(4 << 30).unwrap() >= MIB);
    }

    #[test]
    fn contiguous() {
        let map = [usable(0, 0x20_0000)];
        let mut st = storage(&map);
        let mut a = FrameAllocator::new(&map, &[(0x3000, 0x4000)], &mut st).unwrap();
        assert_eq!(a.alloc_contiguous(3, 0, u64::MAX), Some(0));
        // 0x3000 is reserved, so four frames start after it.
        assert_eq!(a.alloc_contiguous(4, FRAME_SIZE, u64::MAX), Some(0x4000));
        assert_eq!(a.alloc_contiguous(1, 0x1_0000, u64::MAX), Some(0x1_0000));
        // A 2 MiB-aligned 2 MiB block does not fit (frames in use at 0).
        assert_eq!(a.alloc_contiguous(512, 0x20_0000, u64::MAX), None);
        assert_eq!(
            a.alloc_contiguous(2, 0x3000, u64::MAX),
            None,
            "align not a power of two"
        );
        assert_eq!(a.alloc_contiguous(0, 0, u64::MAX), None);
        assert_eq!(a.alloc_contiguous(usize::MAX, 0, u64::MAX), None);
        // Limit: must end at or below it.
        assert_eq!(a.alloc_contiguous(8, 0x8000, 0x1_0000), Some(0x8000));
        assert_eq!(
            a.alloc_contiguous(1, 0, 0x1_0000),
            None,
            "all below 64 KiB taken"
        );
        assert_eq!(a.used_frames(), 3 + 4 + 1 + 8);
        // A run crossing word boundaries.
        assert_eq!(a.alloc_contiguous(130, 0x4_0000, u64::MAX), Some(0x4_0000));
        a.free(0x4_0000 + 64 * FRAME_SIZE).unwrap();
        assert_eq!(a.alloc_contiguous(1, 0x4_0000, u64::MAX), Some(0x8_0000));
        assert_eq!(a.alloc_contiguous(1, 0x4_0000, u64::MAX), Some(0x10_0000));
    }

    #[test]
    fn release_adds_frames() {
        let map = [
            usable(0, 0x10000),
            MemoryRegion {
                start: 0x10000,
                end: 0x12000,
                kind: RegionKind::AcpiReclaimable,
            },
            usable(0x12000, 0x20000),
        ];
        let mut st = storage(&map);
        let mut a = FrameAllocator::new(&map, &[(0x8000, 0x9800)], &mut st).unwrap();
        let before = a.total_frames();
        assert_eq!(a.free(0x10000), Err(FrameError::NotManaged(0x10000)));
        // Unaligned edges only cover whole frames; managed frames untouched.
        assert_eq!(a.release(0x7800, 0x12800), 2 + 2);
        assert_eq!(a.total_frames(), before + 4);
        assert!(a.is_free(0x8000) && a.is_free(0x9000) && a.is_free(0x10000));
        assert_eq!(a.release(0x0, 0x100_0000), 0);
        assert_eq!(a.release(0x5000, 0x1000), 0);
    }

    #[test]
    fn find_storage_prefers_above_1mib() {
        let map = [usable(0x1000, 0x9f000), usable(MIB, 16 * MIB)];
        assert_eq!(find_storage(&map, &[], 100), Some(MIB));
        assert_eq!(
            find_storage(&map, &[(MIB, 2 * MIB + 1)], 0x2000),
            Some(2 * MIB + 0x1000)
        );
        // Must be inside one region: too big for the high region, fits low.
        assert_eq!(find_storage(&map, &[(0, 16 * MIB)], 1), None);
        assert_eq!(find_storage(&map, &[(MIB, 16 * MIB)], 0x5000), Some(0x1000));
        assert_eq!(find_storage(&map, &[], 0), None);
        assert_eq!(find_storage(&map, &[], u64::MAX), None);
        // Skips a reserved island and lands after it.
        let r = [(MIB, MIB + 10), (MIB + 0x3000, MIB + 0x3001)];
        assert_eq!(find_storage(&map, &r, 0x2000), Some(MIB + 0x1000));
        assert_eq!(find_storage(&map, &r, 0x3000), Some(MIB + 0x4000));
        // Usable region starting below 1 MiB and extending above it.
        assert_eq!(
            find_storage(&[usable(0x8000, 4 * MIB)], &[], 0x1000),
            Some(MIB)
        );
    }

    /// Random maps, reservations and operations checked against a set model.
    #[test]
    fn matches_set_model() {
        crate::testing::check(300, 1024, |rng| {
            const FRAMES: u64 = 300;
            let n = rng.below(5);
            let map: Vec<_> = (0..n)
                .map(|_| {
                    let s = rng.below(FRAMES * 4) * 1024;
                    usable(s, s + rng.below(FRAMES) * 1024)
                })
                .collect();
            let res: Vec<_> = (0..rng.below(4))
                .map(|_| {
                    let s = rng.below(FRAMES * FRAME_SIZE);
                    (s, s + rng.below(20_000))
                })
                .collect();
            let mut model: BTreeSet<u64> = (0..FRAMES + 100)
                .map(|f| f * FRAME_SIZE)
                .filter(|&a| {
                    map.iter().any(|r| r.start <= a && a + FRAME_SIZE <= r.end)
                        && !hits_reserved(&res, a, a + FRAME_SIZE)
                })
                .collect();
            let managed = model.clone();
            let mut st = storage(&map);
            let mut a = FrameAllocator::new(&map, &res, &mut st).unwrap();
            assert_eq!(a.total_frames(), model.len() as u64);
            let mut held = Vec::new();
            for _ in 0..200 {
                match rng.below(4) {
                    0 | 1 => {
                        let limit = if rng.below(2) == 0 {
                            u64::MAX
                        } else {
                            rng.below(FRAMES * FRAME_SIZE)
                        };
                        match a.alloc_below(limit) {
                            Some(f) => {
                                assert!(f + FRAME_SIZE <= limit);
                                assert!(model.remove(&f), "{f:#x} not free");
                                held.push(f);
                            }
                            None => assert!(!model.iter().any(|&f| f + FRAME_SIZE <= limit)),
                        }
                    }
                    2 => {
                        let count = rng.below(6) as usize + 1;
                        let align = FRAME_SIZE << rng.below(3);
                        if let Some(s) = a.alloc_contiguous(count, align, u64::MAX) {
                            assert_eq!(s % align, 0);
                            for i in 0..count as u64 {
                                assert!(model.remove(&(s + i * FRAME_SIZE)));
                                held.push(s + i * FRAME_SIZE);
                            }
                        }
                    }
                    _ => {
                        if !held.is_empty() {
                            let i = rng.below(held.len() as u64) as usize;
                            let f = held.swap_remove(i);
                            a.free(f).unwrap();
                            model.insert(f);
                            assert_eq!(a.free(f), Err(FrameError::DoubleFree(f)));
                        } else {
                            let f = rng.below(FRAMES) * FRAME_SIZE;
                            if !managed.contains(&f) {
                                assert!(a.free(f).is_err());
                            }
                        }
                    }
                }
                assert_eq!(a.free_frames(), model.len() as u64);
                assert_eq!(a.used_frames(), held.len() as u64);
            }
            for f in 0..FRAMES + 100 {
                assert_eq!(a.is_free(f * FRAME_SIZE), model.contains(&(f * FRAME_SIZE)));
            }
        });
    }
}
