//! Turning the loader's memory map into one the allocator can trust.
//!
//! Firmware maps overlap, come unsorted, repeat entries and use byte
//! granularity. [`normalize`] produces a sorted list of disjoint,
//! page-aligned regions where, for every 4 KiB page:
//!
//! - the page's kind is the most restrictive kind ([`RegionKind`]'s order)
//!   of any input region touching any byte of it, so a reserved byte makes
//!   its whole page reserved ("others grow outward");
//! - a page is `Usable` only if every byte of it is covered by `Usable`
//!   input and nothing else ("Usable shrinks inward"); a page only partly
//!   covered by `Usable` input and by nothing else is dropped;
//! - a page touched by no input is absent.
//!
//! Adjacent regions of the same kind are merged. Usable input regions that
//! meet at an unaligned address are therefore merged before rounding, so no
//! fully usable page is lost.
#![forbid(unsafe_code)]

use crate::boot::{MemoryRegion, RegionKind};
use arrayvec::ArrayVec;
use core::fmt;

/// Page size the map is aligned to.
pub const PAGE_SIZE: u64 = 4096;

/// Why a map could not be normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemMapError {
    /// The normalized map needs more than `limit` regions.
    TooManyRegions {
        /// The output capacity.
        limit: usize,
    },
}

impl fmt::Display for MemMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyRegions { limit } => {
                write!(
                    f,
                    "the normalized memory map needs more than {limit} regions"
                )
            }
        }
    }
}

/// First page touched by `[start, end)` and one past the last, in page
/// numbers. Page numbers go up to 2^52, so nothing here overflows.
fn touched_pages(r: &MemoryRegion) -> (u64, u64) {
    (r.start / PAGE_SIZE, r.end.div_ceil(PAGE_SIZE))
}

/// Byte address of page `p` as u128 (page 2^52 is address 2^64).
fn page_addr(p: u64) -> u128 {
    u128::from(p) * u128::from(PAGE_SIZE)
}

/// Byte address of page `p` as u64; the end of the address space (2^64)
/// becomes `u64::MAX`, the largest exclusive end a [`MemoryRegion`] holds.
fn page_addr_u64(p: u64) -> u64 {
    u64::try_from(page_addr(p)).unwrap_or(u64::MAX)
}

/// The smallest candidate page boundary strictly above `cur`. Candidate
/// boundaries are the first and last touched page of every input region,
/// plus the pages either side of each unaligned endpoint.
fn next_boundary(raw: &[MemoryRegion], cur: Option<u64>) -> Option<u64> {
    raw.iter()
        .filter(|r| !r.is_empty())
        .flat_map(|r| {
            let (first, last) = touched_pages(r);
            [first, r.start.div_ceil(PAGE_SIZE), r.end / PAGE_SIZE, last]
        })
        .filter(|&b| cur.is_none_or(|c| b > c))
        .min()
}

/// Whether the byte range `[lo, hi)` is wholly covered by the union of the
/// non-empty `raw` regions.
fn covered(raw: &[MemoryRegion], lo: u128, hi: u128) -> bool {
    let mut cursor = lo;
    // Each pass either advances the cursor past the end of some region or
    // stops, so this runs at most raw.len() + 1 times.
    while cursor < hi {
        let reach = raw
            .iter()
            .filter(|r| {
                !r.is_empty() && u128::from(r.start) <= cursor && cursor < u128::from(r.end)
            })
            .map(|r| u128::from(r.end))
            .max();
        match reach {
            Some(end) => cursor = end,
            None => return false,
        }
    }
    true
}

/// Normalizes `raw` into `out` (cleared first); see the module
/// documentation for the exact rules. Works for arbitrary input: unsorted,
/// overlapping, unaligned, empty or duplicate entries.
///
/// Runs in O(n²) time for n input regions and needs no scratch memory,
/// which suits a map of a few hundred entries read once at boot before any
/// allocator exists.
pub fn normalize<const N: usize>(
    raw: &[MemoryRegion],
    out: &mut ArrayVec<MemoryRegion, N>,
) -> Result<(), MemMapError> {
    out.clear();
    // Walk the sorted candidate page boundaries. Between two consecutive
    // boundaries no input endpoint lies strictly inside a page or on an
    // inner page edge (an unaligned endpoint makes its page a segment of its
    // own), so every page of a segment is touched by the same inputs in the
    // same way: one decision per segment is exact.
    let mut lo = next_boundary(raw, None);
    while let Some(p) = lo {
        let Some(q) = next_boundary(raw, Some(p)) else {
            break;
        };
        let (seg_lo, seg_hi) = (page_addr(p), page_addr(q));
        let kind = raw
            .iter()
            .filter(|r| !r.is_empty() && u128::from(r.start) < seg_hi && seg_lo < u128::from(r.end))
            .map(|r| r.kind)
            .max();
        let kind = match kind {
            Some(RegionKind::Usable) if !covered(raw, seg_lo, seg_hi) => None,
            k => k,
        };
        if let Some(kind) = kind {
            let (start, end) = (page_addr_u64(p), page_addr_u64(q));
            match out.last_mut() {
                Some(last) if last.kind == kind && last.end == start => last.end = end,
                _ => out
                    .try_push(MemoryRegion { start, end, kind })
                    .map_err(|_| MemMapError::TooManyRegions { limit: N })?,
            }
        }
        lo = Some(q);
    }
    Ok(())
}

/// Bytes of RAM in `map` (usable, ACPI reclaimable and ACPI NVS): what the
/// machine has, for the boot banner.
pub fn ram_bytes(map: &[MemoryRegion]) -> u64 {
    map.iter()
        .filter(|r| r.kind.is_ram())
        .fold(0u64, |acc, r| acc.saturating_add(r.len()))
}

/// Bytes of `Usable` memory in `map`.
pub fn usable_bytes(map: &[MemoryRegion]) -> u64 {
    map.iter()
        .filter(|r| r.kind == RegionKind::Usable)
        .fold(0u64, |acc, r| acc.saturating_add(r.len()))
}

/// The hypervisor heap's size for `usable` bytes of memory: 1/256 of it
/// (per-domain page lists take 8 bytes per 4 KiB page, 1/512 of a domain's
/// size, so the largest domain that fits in memory fits in the heap too),
/// at least 1 MiB, at most 64 MiB, whole pages.
pub fn heap_bytes(usable: u64) -> u64 {
    (usable / 256).clamp(1 << 20, 64 << 20) & !0xfff
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::vec::Vec;

    use RegionKind::{AcpiNvs, AcpiReclaimable, BadMemory, Reserved, Usable};

    fn r(start: u64, end: u64, kind: RegionKind) -> MemoryRegion {
        MemoryRegion { start, end, kind }
    }

    fn norm(raw: &[MemoryRegion]) -> Vec<MemoryRegion> {
        let mut out = ArrayVec::<MemoryRegion, 64>::new();
        normalize(raw, &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn empty_input() {
        assert!(norm(&[]).is_empty());
        assert!(norm(&[r(0x5000, 0x5000, Usable), r(0x9000, 0x1000, Reserved)]).is_empty());
    }

    #[test]
    fn typical_bios_map() {
        let map = [
            r(0x10_0000, 0x7ffe_0000, Usable),
            r(0, 0x9fc00, Usable),
            r(0x9fc00, 0xa0000, Reserved),
            r(0xf0000, 0x10_0000, Reserved),
            r(0x7ffe_0000, 0x8000_0000, Reserved),
            r(0xfeff_c000, 0xff00_0000, Reserved),
            r(0xfffc_0000, 0x1_0000_0000, Reserved),
        ];
        assert_eq!(
            norm(&map),
            [
                r(0, 0x9f000, Usable),
                r(0x9f000, 0xa0000, Reserved),
                r(0xf0000, 0x10_0000, Reserved),
                r(0x10_0000, 0x7ffe_0000, Usable),
                r(0x7ffe_0000, 0x8000_0000, Reserved),
                r(0xfeff_c000, 0xff00_0000, Reserved),
                r(0xfffc_0000, 0x1_0000_0000, Reserved),
            ]
        );
    }

    #[test]
    fn restrictive_kind_wins_and_grows() {
        let map = [r(0, 0x10000, Usable), r(0x1800, 0x1900, AcpiNvs)];
        assert_eq!(
            norm(&map),
            [
                r(0, 0x1000, Usable),
                r(0x1000, 0x2000, AcpiNvs),
                r(0x2000, 0x10000, Usable)
            ]
        );
        // Overlapping non-usable kinds: the larger wins on the overlap.
        let map = [r(0, 0x4000, AcpiReclaimable), r(0x2000, 0x6000, BadMemory)];
        assert_eq!(
            norm(&map),
            [r(0, 0x2000, AcpiReclaimable), r(0x2000, 0x6000, BadMemory)]
        );
    }

    #[test]
    fn usable_shrinks_but_merges_first() {
        assert_eq!(
            norm(&[r(0x800, 0x3800, Usable)]),
            [r(0x1000, 0x3000, Usable)]
        );
        assert!(norm(&[r(0x800, 0x1800, Usable)]).is_empty());
        // Two usable halves meeting mid-page still make the page usable.
        assert_eq!(
            norm(&[r(0x1800, 0x3000, Usable), r(0, 0x1800, Usable)]),
            [r(0, 0x3000, Usable)]
        );
        // A gap mid-page loses the page.
        assert_eq!(
            norm(&[r(0, 0x1800, Usable), r(0x1900, 0x3000, Usable)]),
            [r(0, 0x1000, Usable), r(0x2000, 0x3000, Usable)]
        );
    }

    #[test]
    fn merges_same_kind_and_duplicates() {
        let map = [
            r(0x3000, 0x5000, Reserved),
            r(0x1000, 0x3000, Reserved),
            r(0x1000, 0x3000, Reserved),
            r(0x5000, 0x5001, Reserved),
        ];
        assert_eq!(norm(&map), [r(0x1000, 0x6000, Reserved)]);
    }

    #[test]
    fn top_of_address_space() {
        let map = [
            r(u64::MAX - 0x2fff, u64::MAX, Usable),
            r(u64::MAX - 10, u64::MAX, Reserved),
        ];
        assert_eq!(
            norm(&map),
            [
                r(u64::MAX - 0x2fff, u64::MAX - 0xfff, Usable),
                r(u64::MAX - 0xfff, u64::MAX, Reserved)
            ]
        );
        assert_eq!(
            norm(&[r(0, u64::MAX, Usable)]),
            [r(0, u64::MAX - 0xfff, Usable)]
        );
        assert_eq!(norm(&[r(1, u64::MAX, AcpiNvs)]), [r(0, u64::MAX, AcpiNvs)]);
    }

    #[test]
    fn too_many_regions() {
        let raw: Vec<_> = (0..10u64)
            .map(|i| {
                r(
                    i * 0x2000,
                    i * 0x2000 + 0x1000,
                    if i % 2 == 0 { Usable } else { Reserved },
                )
            })
            .collect();
        let mut out = ArrayVec::<MemoryRegion, 4>::new();
        assert_eq!(
            normalize(&raw, &mut out),
            Err(MemMapError::TooManyRegions { limit: 4 })
        );
        let mut out = ArrayVec::<MemoryRegion, 10>::new();
        assert_eq!(normalize(&raw, &mut out), Ok(()));
    }

    #[test]
    fn byte_counts() {
        let map = [
            r(0, 0x1000, Usable),
            r(0x1000, 0x3000, AcpiReclaimable),
            r(0x3000, 0x4000, AcpiNvs),
            r(0x4000, 0x8000, BadMemory),
            r(0x8000, 0x10000, Reserved),
            r(0x10000, 0x30000, Usable),
        ];
        assert_eq!(usable_bytes(&map), 0x21000);
        assert_eq!(ram_bytes(&map), 0x24000);
        assert_eq!(
            ram_bytes(&[r(0, u64::MAX, Usable), r(0, u64::MAX, Usable)]),
            u64::MAX
        );
    }

    use proptest::prelude::*;

    const KINDS: [RegionKind; 5] = [Usable, AcpiReclaimable, AcpiNvs, BadMemory, Reserved];
    /// The reference model works in 512-byte units, eight per page, so
    /// inputs have unaligned endpoints while staying cheap to enumerate.
    const UNIT: u64 = 512;
    const PAGES: u64 = 24;

    /// Brute-force reference: the kind of every page, straight from the
    /// rules in the module documentation.
    fn model(raw: &[MemoryRegion]) -> Vec<Option<RegionKind>> {
        (0..PAGES)
            .map(|p| {
                let units: Vec<Option<RegionKind>> = (0..PAGE_SIZE / UNIT)
                    .map(|u| {
                        let a = p * PAGE_SIZE + u * UNIT;
                        raw.iter()
                            .filter(|r| r.start <= a && a < r.end)
                            .map(|r| r.kind)
                            .max()
                    })
                    .collect();
                match units.iter().flatten().max() {
                    Some(Usable) if units.iter().any(Option::is_none) => None,
                    k => k.copied(),
                }
            })
            .collect()
    }

    fn expand(map: &[MemoryRegion]) -> Vec<Option<RegionKind>> {
        (0..PAGES)
            .map(|p| {
                let a = p * PAGE_SIZE;
                map.iter()
                    .find(|r| r.start <= a && a < r.end)
                    .map(|r| r.kind)
            })
            .collect()
    }

    /// One raw region: mostly short, sometimes empty or inverted, with
    /// unaligned endpoints.
    fn raw_region() -> impl Strategy<Value = MemoryRegion> {
        (0..PAGES * 8, 0..40u64, 0..10u8, 0..KINDS.len()).prop_map(|(s, len, inv, k)| {
            let s = s * UNIT;
            let e = if inv == 0 {
                s.saturating_sub(UNIT)
            } else {
                s + len * UNIT
            };
            r(s, e.min(PAGES * PAGE_SIZE), KINDS[k])
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn matches_reference_model(raw in proptest::collection::vec(raw_region(), 0..9)) {
            let got = norm(&raw);
            // Invariants of the output.
            for w in got.windows(2) {
                prop_assert!(w[0].end <= w[1].start, "unsorted/overlapping {got:?}");
                prop_assert!(
                    !(w[0].end == w[1].start && w[0].kind == w[1].kind),
                    "unmerged {got:?}"
                );
            }
            for g in &got {
                prop_assert!(!g.is_empty() && g.start % PAGE_SIZE == 0 && g.end % PAGE_SIZE == 0);
            }
            prop_assert_eq!(expand(&got), model(&raw), "input {:?} output {:?}", raw, got);
        }
    }

    #[test]
    fn heap_grows_with_memory_within_bounds() {
        assert_eq!(heap_bytes(0), 1 << 20);
        assert_eq!(heap_bytes(128 << 20), 1 << 20);
        assert_eq!(heap_bytes(2 << 30), 8 << 20);
        assert_eq!(heap_bytes((2 << 30) + 12345), 8 << 20, "whole pages");
        assert_eq!(heap_bytes(1 << 40), 64 << 20);
        // A 1 GiB domain's page list (2 MiB) fits once 1 GiB is free.
        assert!(heap_bytes(1 << 30) >= ((1 << 30) / 4096) * 8);
    }
}
