//! Which pages of a device's memory BARs its owner gets, at GPA = HPA.
//!
//! The owner reaches its device's registers at the addresses the firmware
//! gave them, mapped uncached (`mm/gpt.rs`: EPT memory type UC, NPT
//! PCD|PWT). A BAR is refused, and the log says why, when its pages would
//! overlap the owner's RAM (guest-physical `0..ram_end`) or a page of
//! another function's BAR (a BAR smaller than a page shares its page).
//! The pages holding the MSI-X table and pending-bit array are left out:
//! the hypervisor owns the interrupt messages, and a guest that could
//! write the table could make the device send any message it likes.
//! I/O BARs are not mapped (port I/O is not passed through yet).

use alloc::vec::Vec;
use core::fmt;

use super::header::{BarKind, Function};

const PAGE: u64 = 4096;

/// Why a BAR is not mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its pages overlap the owner's RAM.
    OverlapsRam,
    /// Its pages overlap another function's BAR.
    SharesPage,
    /// Its range wraps or is beyond what the tables map.
    OutOfRange,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OverlapsRam => "it overlaps the owner's RAM (GPA = HPA)",
            Self::SharesPage => "its page is shared with another function's BAR",
            Self::OutOfRange => "its range wraps or lies beyond 2^48",
        })
    }
}

/// What to do with one memory BAR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarPlan {
    /// The BAR's register index.
    pub index: u8,
    /// Page-aligned ranges (start, length) to map, or why none.
    pub ranges: Result<Vec<(u64, u64)>, Refusal>,
}

fn page_range(base: u64, size: u64) -> Option<(u64, u64)> {
    let end = base.checked_add(size)?.checked_next_multiple_of(PAGE)?;
    Some((base & !(PAGE - 1), end))
}

/// Removes `[cut_s, cut_e)` from the ranges.
fn cut(ranges: &mut Vec<(u64, u64)>, cut_s: u64, cut_e: u64) {
    let mut out = Vec::new();
    for &(s, e) in ranges.iter() {
        if cut_e <= s || e <= cut_s {
            out.push((s, e));
            continue;
        }
        if s < cut_s {
            out.push((s, cut_s));
        }
        if cut_e < e {
            out.push((cut_e, e));
        }
    }
    *ranges = out;
}

/// The plan for each memory BAR of `f`; `others` are every other
/// function's BARs as (base, size), `ram_end` the end of the owner's RAM.
pub fn plan(f: &Function, others: &[(u64, u64)], ram_end: u64) -> Vec<BarPlan> {
    let c = f.caps;
    let mut out = Vec::new();
    for b in f.bars.iter().filter(|b| b.kind != BarKind::Io) {
        let ranges = (|| {
            let (s, e) = page_range(b.base, b.size).ok_or(Refusal::OutOfRange)?;
            if e > 1 << 48 {
                return Err(Refusal::OutOfRange);
            }
            if s < ram_end {
                return Err(Refusal::OverlapsRam);
            }
            if others
                .iter()
                .any(|&(ob, os)| page_range(ob, os).is_some_and(|(os_, oe)| os_ < e && s < oe))
            {
                return Err(Refusal::SharesPage);
            }
            let mut r = alloc::vec![(s, e)];
            if c.msix != 0 {
                let entries = u64::from(c.msix_entries);
                for (bir, off, len) in [
                    (c.msix_table.0, c.msix_table.1, entries * 16),
                    (c.msix_pba.0, c.msix_pba.1, entries.div_ceil(64) * 8),
                ] {
                    if bir == b.index
                        && let Some((cs, ce)) = page_range(b.base + u64::from(off), len)
                    {
                        cut(&mut r, cs, ce);
                    }
                }
            }
            Ok(r.into_iter().map(|(s, e)| (s, e - s)).collect())
        })();
        out.push(BarPlan {
            index: b.index,
            ranges,
        });
    }
    out
}

#[cfg(test)]
mod tests;
