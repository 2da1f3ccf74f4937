//! Hand-made MCFG tables, good and malformed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use alloc::vec;

/// Builds a table from (base, seg, start, end) entries with a correct
/// header and checksum.
fn table(entries: &[(u64, u16, u8, u8)]) -> Vec<u8> {
    let len = ENTRIES_AT + entries.len() * ENTRY;
    let mut t = vec![0u8; len];
    t[..4].copy_from_slice(b"MCFG");
    t[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    t[8] = 1;
    for (i, &(base, seg, s, e)) in entries.iter().enumerate() {
        let at = ENTRIES_AT + i * ENTRY;
        t[at..at + 8].copy_from_slice(&base.to_le_bytes());
        t[at + 8..at + 10].copy_from_slice(&seg.to_le_bytes());
        t[at + 10] = s;
        t[at + 11] = e;
    }
    fix_sum(&mut t);
    t
}

fn fix_sum(t: &mut [u8]) {
    t[9] = 0;
    let s = t.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    t[9] = 0u8.wrapping_sub(s);
}

#[test]
fn q35_table_decodes() {
    let m = parse(&table(&[(0xb000_0000, 0, 0, 0xff)])).unwrap();
    assert_eq!(m.dropped, vec![]);
    assert_eq!(m.regions.len(), 1);
    let r = m.regions[0];
    assert_eq!(r.len(), 256 << 20);
    assert_eq!(r.address(0, 3, 0), Some(0xb001_8000));
    assert_eq!(r.address(1, 0, 1), Some(0xb010_1000));
    assert_eq!(r.address(0, 32, 0), None);
    assert_eq!(r.address(0, 0, 8), None);
}

#[test]
fn bus_range_offsets_from_start() {
    let m = parse(&table(&[(0xe000_0000, 1, 0x10, 0x1f)])).unwrap();
    let r = m.regions[0];
    assert_eq!(r.address(0x0f, 0, 0), None);
    assert_eq!(r.address(0x10, 0, 0), Some(0xe000_0000));
    assert_eq!(
        r.address(0x1f, 31, 7),
        Some(0xe000_0000 + (15 << 20) + (31 << 15) + (7 << 12))
    );
    assert_eq!(r.address(0x20, 0, 0), None);
}

#[test]
fn truncated_tables_are_refused() {
    let good = table(&[(0xb000_0000, 0, 0, 0xff)]);
    // Cut anywhere: never a panic, always a clear error.
    for n in 0..good.len() {
        assert!(
            matches!(parse(&good[..n]), Err(McfgError::Truncated { .. })),
            "{n}"
        );
    }
    // A length field below the fixed part.
    let mut t = good.clone();
    t[4..8].copy_from_slice(&20u32.to_le_bytes());
    assert_eq!(
        parse(&t),
        Err(McfgError::Truncated {
            claimed: 20,
            have: good.len()
        })
    );
    // A length field beyond the bytes.
    let mut t = good.clone();
    t[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(parse(&t), Err(McfgError::Truncated { .. })));
}

#[test]
fn ragged_entries_are_refused() {
    let mut t = table(&[(0xb000_0000, 0, 0, 0xff)]);
    t.truncate(t.len() - 3);
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    fix_sum(&mut t);
    assert_eq!(parse(&t), Err(McfgError::Ragged { bytes: 13 }));
}

#[test]
fn zero_segments_is_an_error() {
    assert_eq!(parse(&table(&[])), Err(McfgError::NoSegments));
}

#[test]
fn signature_and_checksum_checked() {
    let mut t = table(&[(0xb000_0000, 0, 0, 0xff)]);
    t[20] ^= 1;
    assert_eq!(parse(&t), Err(McfgError::Checksum));
    let mut t = table(&[(0xb000_0000, 0, 0, 0xff)]);
    t[0] = b'X';
    fix_sum(&mut t);
    assert_eq!(parse(&t), Err(McfgError::Signature));
}

#[test]
fn backwards_bus_range_drops_that_entry_only() {
    let m = parse(&table(&[(0xb000_0000, 0, 5, 4), (0xc000_0000, 1, 0, 0)])).unwrap();
    assert_eq!(
        m.dropped,
        vec![EntryProblem::BusRange {
            index: 0,
            start: 5,
            end: 4
        }]
    );
    assert_eq!(m.regions.len(), 1);
    assert_eq!(m.regions[0].seg, 1);
}

#[test]
fn bad_bases_dropped() {
    let m = parse(&table(&[
        (0, 0, 0, 0),
        (0xb000_1000, 1, 0, 0),
        (!0xf_ffff, 2, 0, 0xff),
    ]))
    .unwrap();
    assert!(m.regions.is_empty());
    assert_eq!(m.dropped.len(), 3);
    assert!(
        m.dropped
            .iter()
            .all(|p| matches!(p, EntryProblem::Base { .. }))
    );
}

#[test]
fn overlaps_dropped() {
    let m = parse(&table(&[
        (0xb000_0000, 0, 0, 0x7f),
        // Same segment, buses overlap.
        (0xd000_0000, 0, 0x7f, 0xff),
        // Another segment, but its window overlaps entry 0's addresses.
        (0xb100_0000, 1, 0, 0),
        // Disjoint: kept.
        (0xd000_0000, 0, 0x80, 0xff),
    ]))
    .unwrap();
    assert_eq!(
        m.dropped,
        vec![
            EntryProblem::Overlap { index: 1, with: 0 },
            EntryProblem::Overlap { index: 2, with: 0 },
        ]
    );
    assert_eq!(m.regions.len(), 2);
    assert_eq!(m.regions[1].bus_start, 0x80);
    // Messages name the problem.
    assert!(m.dropped[0].to_string().contains("overlaps entry 0"));
}

#[test]
fn trailing_bytes_after_the_table_ignored() {
    let mut t = table(&[(0xb000_0000, 0, 0, 0xff)]);
    t.extend_from_slice(&[0xaa; 40]);
    assert_eq!(parse(&t).unwrap().regions.len(), 1);
}

proptest::proptest! {
    /// Any bytes: an error or regions that are aligned, in order of the
    /// table, and pairwise disjoint; never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), n in 0usize..8) {
        // Often a plausible header, so the entry checks run too.
        if bytes.len() >= ENTRIES_AT && n > 0 {
            bytes[..4].copy_from_slice(b"MCFG");
            let len = (ENTRIES_AT + n * ENTRY).min(bytes.len()) as u32;
            bytes[4..8].copy_from_slice(&len.to_le_bytes());
            let end = len as usize;
            fix_sum(&mut bytes[..end]);
        }
        if let Ok(m) = parse(&bytes) {
            for (i, a) in m.regions.iter().enumerate() {
                proptest::prop_assert!(a.base != 0 && a.base % BUS_BYTES == 0 && a.bus_start <= a.bus_end);
                for b in &m.regions[i + 1..] {
                    proptest::prop_assert!(a.base + a.len() <= b.base || b.base + b.len() <= a.base);
                    proptest::prop_assert!(a.seg != b.seg || a.bus_end < b.bus_start || b.bus_end < a.bus_start);
                }
            }
        }
    }
}
