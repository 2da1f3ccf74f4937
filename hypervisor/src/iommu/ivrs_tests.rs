#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloc::vec::Vec;

use super::super::bytes::{header, seal};
use super::*;

fn ivrs_header() -> Vec<u8> {
    let mut t = header(b"IVRS");
    t.extend(0x0020_3041u32.to_le_bytes()); // IVinfo
    t.extend([0u8; 8]);
    t
}

fn ivhd(ty: u8, base: u64, entries: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = entries.concat();
    let fixed = if ty == 0x10 { 24 } else { 40 };
    let mut s = alloc::vec![ty, 0xb0];
    s.extend(((fixed + body.len()) as u16).to_le_bytes());
    s.extend(0x0010u16.to_le_bytes()); // the IOMMU at 00:02.0
    s.extend(0x40u16.to_le_bytes());
    s.extend(base.to_le_bytes());
    s.extend(0u16.to_le_bytes());
    s.extend(0u16.to_le_bytes());
    s.extend(0u32.to_le_bytes());
    if ty != 0x10 {
        s.extend(0x0000_0000_0000_00a5u64.to_le_bytes());
        s.extend(0u64.to_le_bytes());
    }
    s.extend(body);
    s
}

fn e4(ty: u8, devid: u16) -> Vec<u8> {
    let mut e = alloc::vec![ty];
    e.extend(devid.to_le_bytes());
    e.push(0);
    e
}

fn e8(ty: u8, devid: u16, b4: u8, w5: u16, b7: u8) -> Vec<u8> {
    let mut e = e4(ty, devid);
    e.push(b4);
    e.extend(w5.to_le_bytes());
    e.push(b7);
    e
}

fn table(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut t = ivrs_header();
    for p in parts {
        t.extend(p);
    }
    seal(&mut t);
    t
}

fn err(t: &[u8]) -> TableError {
    match parse(t) {
        Err(e) => e,
        Ok(d) => panic!("malformed table accepted: {d:?}"),
    }
}

/// What QEMU's `-device amd-iommu` gives: a 10h and a 11h block for the
/// same unit, a range over bus 0, an IOAPIC special entry.
#[test]
fn qemu_like_table() {
    let entries = [
        e4(3, 0x0000),
        e4(4, 0x00ff),
        e8(0x48, 0, 0, 0x00a0, 1), // IOAPIC 0 at 00:14.0
    ];
    let t = table(&[
        ivhd(0x10, 0xfed8_0000, &entries),
        ivhd(0x11, 0xfed8_0000, &entries),
    ]);
    let r = parse(&t).unwrap();
    assert_eq!(r.blocks.len(), 2);
    let units: Vec<_> = r.units().collect();
    assert_eq!(units.len(), 1, "one unit, its newest block");
    let u = units[0];
    assert_eq!(
        (u.ty, u.base, u.iommu_devid, u.efr),
        (0x11, 0xfed8_0000, 0x10, 0xa5)
    );
    assert_eq!(
        u.ranges,
        alloc::vec![DevRange {
            first: 0,
            last: 0xff,
            data: 0,
            alias: None
        }]
    );
    assert_eq!(
        u.specials,
        alloc::vec![Special {
            kind: SpecialKind::IoApic,
            handle: 0,
            devid: 0xa0
        }]
    );
    assert_eq!(u.source_id(0x18), Some(0x18));
    assert_eq!(u.source_id(0x100), None);
}

#[test]
fn select_alias_all_and_memory() {
    let t = table(&[
        ivhd(
            0x40,
            0xfed8_0000,
            &[
                e4(2, 0x0300),
                e8(0x42, 0x0400, 0, 0x0018, 0),
                e8(0x43, 0x0500, 0, 0x0020, 0),
                e4(4, 0x05ff),
                e8(0x46, 0x0600, 0, 0, 0),
                e4(0, 0), // padding
            ],
        ),
        {
            let mut m = alloc::vec![0x21, 1, 32, 0];
            m.extend(0x0300u16.to_le_bytes());
            m.extend([0u8; 10]);
            m.extend(0x000a_0000u64.to_le_bytes());
            m.extend(0x2_0000u64.to_le_bytes());
            m
        },
    ]);
    let r = parse(&t).unwrap();
    let u = &r.blocks[0];
    assert_eq!(u.source_id(0x0300), Some(0x0300));
    assert_eq!(u.source_id(0x0400), Some(0x0018));
    assert_eq!(u.source_id(0x0542), Some(0x0020));
    assert_eq!(u.source_id(0x0600), Some(0x0600));
    assert_eq!(u.source_id(0x0700), None);
    assert_eq!(
        r.memory,
        alloc::vec![Ivmd {
            flags: 1,
            first: 0x300,
            last: 0x300,
            start: 0xa_0000,
            len: 0x2_0000
        }]
    );
    assert_eq!(
        r.unity_for(0x300).collect::<Vec<_>>(),
        alloc::vec![(0xa_0000, 0x2_0000, false)]
    );
    assert_eq!(r.unity_for(0x301).count(), 0);
    // The "all" entry.
    let r = parse(&table(&[ivhd(0x10, 0xfed8_0000, &[e4(1, 0)])])).unwrap();
    assert_eq!(r.blocks[0].source_id(0xbeef), Some(0xbeef));
}

#[test]
fn malformed_blocks() {
    let good = table(&[ivhd(0x10, 0xfed8_0000, &[e4(2, 8)])]);
    assert_eq!(err(&good[..30]).problem, Problem::Truncated);
    let mut sum = good.clone();
    sum[60] ^= 0x40;
    assert_eq!(err(&sum).problem, Problem::BadChecksum);
    // Zero-length IVDB: an error, not an endless loop.
    let e = err(&table(&[alloc::vec![0x99, 0, 0, 0]]));
    assert_eq!(
        (e.offset, e.problem),
        (48, Problem::LengthTooSmall { ty: 0x99, len: 0 })
    );
    assert!(alloc::format!("{e}").starts_with("IVRS: at offset 0x30"));
    // IVHD length shorter than its fixed part.
    let mut short = ivhd(0x11, 0xfed8_0000, &[]);
    short[2] = 20;
    assert_eq!(
        err(&table(&[short])).problem,
        Problem::LengthTooSmall { ty: 0x11, len: 20 }
    );
    // IVHD running past the table.
    let mut long = ivhd(0x10, 0xfed8_0000, &[]);
    long[2] = 0xff;
    assert_eq!(
        err(&table(&[long])).problem,
        Problem::PastEnd {
            ty: 0x10,
            len: 0xff
        }
    );
    assert_eq!(
        err(&table(&[ivhd(0x10, 0xfed8_1000, &[])])).problem,
        Problem::BadBase(0xfed8_1000)
    );
}

#[test]
fn malformed_device_entries() {
    // An 8-byte entry cut by the end of its IVHD.
    let mut cut = ivhd(0x10, 0xfed8_0000, &[e8(0x42, 1, 0, 2, 0)]);
    let n = cut.len() - 3;
    cut.truncate(n);
    cut[2..4].copy_from_slice(&(n as u16).to_le_bytes());
    let e = err(&table(&[cut]));
    assert_eq!(
        (e.offset, e.problem),
        (48 + 24, Problem::PastEnd { ty: 0x42, len: 8 })
    );
    // A type whose size is unknown.
    let e = err(&table(&[ivhd(0x10, 0xfed8_0000, &[e4(0x85, 0)])]));
    assert_eq!(e.problem, Problem::UnknownType(0x85));
    // A range that never ends, an end with no start, a start then a select.
    let e = err(&table(&[ivhd(0x10, 0xfed8_0000, &[e4(3, 0)])]));
    assert_eq!(e.problem, Problem::UnpairedRange(3));
    let e = err(&table(&[ivhd(0x10, 0xfed8_0000, &[e4(4, 9)])]));
    assert_eq!(e.problem, Problem::UnpairedRange(4));
    let e = err(&table(&[ivhd(
        0x10,
        0xfed8_0000,
        &[e4(3, 0), e4(2, 1), e4(4, 5)],
    )]));
    assert_eq!(e.problem, Problem::UnpairedRange(3));
    // An end below its start.
    let e = err(&table(&[ivhd(0x10, 0xfed8_0000, &[e4(3, 9), e4(4, 5)])]));
    assert_eq!(e.problem, Problem::UnpairedRange(3));
    // An ACPI HID entry whose UID length runs past the block.
    let mut hid = alloc::vec![0xf0u8; 22];
    hid[21] = 200;
    let e = err(&table(&[ivhd(0x10, 0xfed8_0000, &[hid])]));
    assert_eq!(e.problem, Problem::PastEnd { ty: 0xf0, len: 222 });
}

/// Whatever the bytes, parsing ends (no panic, no hang).
#[test]
fn arbitrary_bytes_never_panic() {
    use proptest::prelude::*;
    proptest!(|(body in proptest::collection::vec(any::<u8>(), 0..200))| {
        let mut t = ivrs_header();
        t.extend(ivhd(0x10, 0xfed8_0000, &[]));
        t.extend(body);
        let n = t.len() - 48;
        t[50..52].copy_from_slice(&(n as u16).to_le_bytes());
        seal(&mut t);
        let _ = parse(&t);
    });
}
