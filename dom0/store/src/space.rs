//! The extent allocator. Free space is not stored: it is whatever no
//! object, no metadata extent and no import in progress owns, computed
//! from the in-memory lists when something is allocated. So there is no
//! free map to keep consistent with the metadata across a crash: the
//! root that wins on the next boot defines what is free.

use alloc::vec::Vec;

use crate::disk::BLOCK;
use crate::error::{Result, StoreError};
use crate::layout::{Extent, FIRST_DATA};

/// The free runs between `used` extents in `FIRST_DATA..total`, in order.
pub fn free_runs(total: u64, used: &[Extent]) -> Vec<Extent> {
    let mut used: Vec<Extent> = used.to_vec();
    used.sort();
    let mut free = Vec::new();
    let mut at = FIRST_DATA;
    for u in used {
        if u.start > at {
            free.push(Extent {
                start: at,
                blocks: u.start - at,
            });
        }
        at = at.max(u.end());
    }
    if total > at {
        free.push(Extent {
            start: at,
            blocks: total - at,
        });
    }
    free
}

/// Free blocks.
pub fn free_blocks(total: u64, used: &[Extent]) -> u64 {
    free_runs(total, used).iter().map(|e| e.blocks).sum()
}

fn no_space(need: u64, free: u64) -> StoreError {
    StoreError::NoSpace {
        need: need.saturating_mul(BLOCK as u64),
        free: free.saturating_mul(BLOCK as u64),
    }
}

/// `blocks` blocks in as few extents as first fit gives, largest free
/// run first so big images stay in few pieces. `max_extents` bounds
/// the result (the metadata's per-object limit).
pub fn allocate(
    total: u64,
    used: &[Extent],
    blocks: u64,
    max_extents: usize,
) -> Result<Vec<Extent>> {
    let mut free = free_runs(total, used);
    let have: u64 = free.iter().map(|e| e.blocks).sum();
    if have < blocks {
        return Err(no_space(blocks, have));
    }
    // A run that fits whole wins (the first such), else largest first.
    if let Some(e) = free.iter().find(|e| e.blocks >= blocks) {
        return Ok(if blocks == 0 {
            Vec::new()
        } else {
            alloc::vec![Extent {
                start: e.start,
                blocks,
            }]
        });
    }
    free.sort_by(|a, b| b.blocks.cmp(&a.blocks).then(a.start.cmp(&b.start)));
    let mut out = Vec::new();
    let mut left = blocks;
    for e in free {
        if left == 0 {
            break;
        }
        let n = e.blocks.min(left);
        out.push(Extent {
            start: e.start,
            blocks: n,
        });
        left -= n;
    }
    if out.len() > max_extents {
        return Err(StoreError::Invalid(alloc::format!(
            "free space is too fragmented: {blocks} blocks would take {} extents (at most {max_extents})",
            out.len()
        )));
    }
    Ok(out)
}

/// One contiguous run of `blocks` (the metadata's extent).
pub fn allocate_contiguous(total: u64, used: &[Extent], blocks: u64) -> Result<Extent> {
    let free = free_runs(total, used);
    free.iter()
        .find(|e| e.blocks >= blocks)
        .map(|e| Extent {
            start: e.start,
            blocks,
        })
        .ok_or_else(|| no_space(blocks, free.iter().map(|e| e.blocks).max().unwrap_or(0)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn e(start: u64, blocks: u64) -> Extent {
        Extent { start, blocks }
    }

    #[test]
    fn free_runs_are_the_gaps() {
        let used = [e(10, 5), e(2, 3), e(12, 10)];
        assert_eq!(free_runs(40, &used), alloc::vec![e(5, 5), e(22, 18)]);
        assert_eq!(free_blocks(40, &used), 23);
    }

    #[test]
    fn allocation_prefers_one_run_then_largest_first() {
        let used = [e(5, 5), e(12, 3)];
        assert_eq!(allocate(30, &used, 3, 8).unwrap(), alloc::vec![e(2, 3)]);
        assert_eq!(allocate(30, &used, 15, 8).unwrap(), alloc::vec![e(15, 15)]);
        assert_eq!(
            allocate(30, &used, 18, 8).unwrap(),
            alloc::vec![e(15, 15), e(2, 3)]
        );
        assert!(matches!(
            allocate(30, &used, 30, 8),
            Err(StoreError::NoSpace { .. })
        ));
        assert!(allocate(30, &used, 19, 1).is_err());
    }
}
