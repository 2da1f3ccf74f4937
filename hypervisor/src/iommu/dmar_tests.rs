#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloc::vec::Vec;

use super::super::bytes::{header, seal};
use super::*;

fn dmar_header() -> Vec<u8> {
    let mut t = header(b"DMAR");
    t.push(38); // host address width 39 bits
    t.push(1); // INTR_REMAP
    t.extend([0u8; 10]);
    t
}

fn scope(ty: u8, id: u8, bus: u8, path: &[(u8, u8)]) -> Vec<u8> {
    let mut s = alloc::vec![ty, (6 + 2 * path.len()) as u8, 0, 0, id, bus];
    for (d, f) in path {
        s.extend([*d, *f]);
    }
    s
}

fn drhd(flags: u8, seg: u16, base: u64, scopes: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = scopes.concat();
    let mut s = Vec::new();
    s.extend(0u16.to_le_bytes());
    s.extend(((16 + body.len()) as u16).to_le_bytes());
    s.extend([flags, 0]);
    s.extend(seg.to_le_bytes());
    s.extend(base.to_le_bytes());
    s.extend(body);
    s
}

fn rmrr(seg: u16, base: u64, limit: u64, scopes: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = scopes.concat();
    let mut s = Vec::new();
    s.extend(1u16.to_le_bytes());
    s.extend(((24 + body.len()) as u16).to_le_bytes());
    s.extend([0, 0]);
    s.extend(seg.to_le_bytes());
    s.extend(base.to_le_bytes());
    s.extend(limit.to_le_bytes());
    s.extend(body);
    s
}

fn table(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut t = dmar_header();
    for p in parts {
        t.extend(p);
    }
    seal(&mut t);
    t
}

/// What QEMU's q35 with `-device intel-iommu` gives: one catch-all unit.
#[test]
fn qemu_like_table() {
    let t = table(&[
        drhd(1, 0, 0xfed9_0000, &[scope(3, 0, 0xff, &[(0, 0)])]),
        // An ATSR (type 2): skipped by its length.
        alloc::vec![2, 0, 8, 0, 0, 0, 0, 0],
    ]);
    let d = parse(&t).unwrap();
    assert_eq!(d.host_addr_width, 39);
    assert_eq!(d.flags, 1);
    assert_eq!(d.units.len(), 1);
    assert_eq!(d.units[0].base, 0xfed9_0000);
    assert!(d.units[0].include_all);
    assert_eq!(d.units[0].scopes[0].kind, ScopeKind::IoApic);
    assert_eq!(d.skipped, 1);
    assert_eq!(d.unit_for(0, rid(0, 4, 0)), Some(0));
    assert_eq!(d.unit_for(1, rid(0, 4, 0)), None);
}

#[test]
fn listed_device_beats_catch_all_and_rmrr_found() {
    let gpu = scope(1, 0, 0, &[(2, 0)]);
    let t = table(&[
        drhd(0, 0, 0xfed9_1000, core::slice::from_ref(&gpu)),
        drhd(1, 0, 0xfed9_0000, &[]),
        rmrr(0, 0x7c00_0000, 0x7fff_ffff, &[gpu]),
    ]);
    let d = parse(&t).unwrap();
    assert_eq!(d.unit_for(0, rid(0, 2, 0)), Some(0));
    assert_eq!(d.unit_for(0, rid(0, 3, 0)), Some(1));
    let r: Vec<_> = d.rmrrs_for(0, rid(0, 2, 0)).collect();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].base, r[0].limit), (0x7c00_0000, 0x7fff_ffff));
    assert_eq!(d.rmrrs_for(0, rid(0, 3, 0)).count(), 0);
}

#[test]
fn path_through_bridge_resolves_with_config_space() {
    let s = Scope {
        kind: ScopeKind::Endpoint,
        enum_id: 0,
        start_bus: 0,
        path: alloc::vec![(0x1c, 0), (0, 1)],
    };
    assert_eq!(s.direct_rid(), None);
    assert_eq!(
        s.rid(|b, d, f| {
            assert_eq!((b, d, f), (0, 0x1c, 0));
            5
        }),
        Some(rid(5, 0, 1))
    );
}

fn err(t: &[u8]) -> TableError {
    match parse(t) {
        Err(e) => e,
        Ok(d) => panic!("malformed table accepted: {d:?}"),
    }
}

#[test]
fn truncated_and_bad_headers() {
    let good = table(&[drhd(1, 0, 0xfed9_0000, &[])]);
    assert_eq!(err(&good[..20]).problem, Problem::Truncated);
    let mut sig = good.clone();
    sig[0] = b'X';
    assert_eq!(err(&sig).problem, Problem::BadSignature);
    let mut sum = good.clone();
    sum[40] ^= 1;
    assert_eq!(err(&sum).problem, Problem::BadChecksum);
    // Header length past the bytes given.
    assert_eq!(
        err(&good[..good.len() - 4]).problem,
        Problem::BadTableLength(good.len() as u32)
    );
}

#[test]
fn zero_length_structure_is_an_error_not_a_loop() {
    let t = table(&[alloc::vec![7, 0, 0, 0]]);
    let e = err(&t);
    assert_eq!(e.offset, 48);
    assert_eq!(e.problem, Problem::LengthTooSmall { ty: 7, len: 0 });
    assert!(alloc::format!("{e}").starts_with("DMAR: at offset 0x30: structure type 0x7"));
}

#[test]
fn structure_past_end() {
    let mut d = drhd(1, 0, 0xfed9_0000, &[]);
    d[2] = 200; // length 200, only 16 bytes there
    let e = err(&table(&[d]));
    assert_eq!(e.problem, Problem::PastEnd { ty: 0, len: 200 });
}

#[test]
fn bad_scopes() {
    // Scope of length 0 inside a DRHD.
    let mut zero = scope(1, 0, 0, &[(1, 0)]);
    zero[1] = 0;
    let e = err(&table(&[drhd(0, 0, 0xfed9_0000, &[zero])]));
    assert_eq!(e.offset, 48 + 16);
    assert_eq!(e.problem, Problem::LengthTooSmall { ty: 1, len: 0 });
    // Scope whose length runs past its DRHD.
    let mut long = scope(1, 0, 0, &[(1, 0)]);
    long[1] = 40;
    let e = err(&table(&[drhd(0, 0, 0xfed9_0000, &[long])]));
    assert_eq!(e.problem, Problem::PastEnd { ty: 1, len: 40 });
    // Odd path bytes.
    let mut odd = scope(1, 0, 0, &[(1, 0)]);
    odd.push(9);
    odd[1] = 9;
    let e = err(&table(&[drhd(0, 0, 0xfed9_0000, &[odd])]));
    assert_eq!(e.problem, Problem::BadPath(3));
}

#[test]
fn bad_bases_and_regions() {
    assert_eq!(
        err(&table(&[drhd(1, 0, 0, &[])])).problem,
        Problem::BadBase(0)
    );
    assert_eq!(
        err(&table(&[drhd(1, 0, 0xfed9_0010, &[])])).problem,
        Problem::BadBase(0xfed9_0010)
    );
    assert_eq!(
        err(&table(&[rmrr(0, 0x2000, 0x0fff, &[])])).problem,
        Problem::BadRegion {
            base: 0x2000,
            limit: 0xfff
        }
    );
}

/// Whatever the bytes, parsing ends (no panic, no hang).
#[test]
fn arbitrary_bytes_never_panic() {
    use proptest::prelude::*;
    proptest!(|(body in proptest::collection::vec(any::<u8>(), 0..200))| {
        let mut t = dmar_header();
        t.extend(body);
        seal(&mut t);
        let _ = parse(&t);
    });
}
