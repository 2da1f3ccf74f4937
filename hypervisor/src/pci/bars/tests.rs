//! BAR mapping plans.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::pci::fake::nvme;
use crate::pci::header::{Bar, Caps};
use arrayvec::ArrayVec;

fn func(bars: &[(u8, BarKind, u64, u64)], caps: Caps) -> Function {
    let mut v = ArrayVec::new();
    for &(index, kind, base, size) in bars {
        v.push(Bar {
            index,
            kind,
            prefetchable: false,
            base,
            size,
        });
    }
    Function {
        bars: v,
        caps,
        ..nvme(3)
    }
}

#[test]
fn whole_bars_mapped_io_skipped() {
    let f = func(
        &[
            (0, BarKind::Io, 0xc000, 0x40),
            (1, BarKind::Mem32, 0xfeb5_1000, 0x1000),
            (4, BarKind::Mem64, 0xfe00_0000, 0x4000),
        ],
        Caps::default(),
    );
    let p = plan(&f, &[], 128 << 20);
    assert_eq!(p.len(), 2);
    assert_eq!(
        p[0],
        BarPlan {
            index: 1,
            ranges: Ok(alloc::vec![(0xfeb5_1000, 0x1000)])
        }
    );
    assert_eq!(
        p[1],
        BarPlan {
            index: 4,
            ranges: Ok(alloc::vec![(0xfe00_0000, 0x4000)])
        }
    );
}

#[test]
fn msix_table_and_pba_pages_left_out() {
    // NVMe-like: BAR0 16 KiB, table at 0x2000 (64 entries: 1 KiB), PBA at 0x3000.
    let caps = Caps {
        msix: 0x40,
        msix_entries: 64,
        msix_table: (0, 0x2000),
        msix_pba: (0, 0x3000),
        ..Caps::default()
    };
    let f = func(&[(0, BarKind::Mem64, 0xfeb5_0000, 0x4000)], caps);
    let p = plan(&f, &[], 128 << 20);
    assert_eq!(p[0].ranges, Ok(alloc::vec![(0xfeb5_0000, 0x2000)]));
    // Table in another BAR: this one whole.
    let caps = Caps {
        msix_table: (4, 0),
        msix_pba: (4, 0x800),
        ..caps
    };
    let f = func(
        &[
            (0, BarKind::Mem64, 0xfeb5_0000, 0x4000),
            (4, BarKind::Mem64, 0xfe00_0000, 0x4000),
        ],
        caps,
    );
    let p = plan(&f, &[], 128 << 20);
    assert_eq!(p[0].ranges, Ok(alloc::vec![(0xfeb5_0000, 0x4000)]));
    assert_eq!(p[1].ranges, Ok(alloc::vec![(0xfe00_1000, 0x3000)]));
}

#[test]
fn refusals() {
    let f = func(&[(0, BarKind::Mem32, 0x0400_0000, 0x1000)], Caps::default());
    assert_eq!(
        plan(&f, &[], 128 << 20)[0].ranges,
        Err(Refusal::OverlapsRam)
    );
    // A 256-byte BAR whose page holds another function's BAR.
    let f = func(&[(0, BarKind::Mem32, 0xfeb5_6000, 0x100)], Caps::default());
    assert_eq!(
        plan(&f, &[(0xfeb5_6100, 0x100)], 0)[0].ranges,
        Err(Refusal::SharesPage)
    );
    assert_eq!(
        plan(&f, &[(0xfeb5_7000, 0x100)], 0)[0].ranges,
        Ok(alloc::vec![(0xfeb5_6000, 0x1000)])
    );
    let f = func(
        &[(0, BarKind::Mem64, u64::MAX - 0xfff, 0x1000)],
        Caps::default(),
    );
    assert_eq!(plan(&f, &[], 0)[0].ranges, Err(Refusal::OutOfRange));
    let f = func(&[(0, BarKind::Mem64, 1 << 48, 0x1000)], Caps::default());
    assert_eq!(plan(&f, &[], 0)[0].ranges, Err(Refusal::OutOfRange));
}

#[test]
fn device_pages_are_uncached_in_both_formats() {
    use crate::mm::gpt::{EntryFormat, Ept, Npt, PageSize, Perms};
    let uc = Perms::READ_WRITE.uncached();
    let e = Ept::leaf_entry(0xfe00_0000, uc, PageSize::Size4K);
    assert_eq!(e & (7 << 3), 0, "EPT memory type UC (0)");
    assert_eq!(Ept::perms(e), uc);
    let wb = Ept::leaf_entry(0x1000, Perms::READ_WRITE, PageSize::Size4K);
    assert_eq!(wb & (7 << 3), 6 << 3);
    assert_eq!(Ept::perms(wb), Perms::READ_WRITE);
    let n = Npt::leaf_entry(0xfe00_0000, uc, PageSize::Size2M);
    assert_eq!(n & (3 << 3), 3 << 3, "NPT PCD|PWT");
    assert_eq!(Npt::perms(n), uc);
    assert_eq!(
        Npt::leaf_entry(0x1000, Perms::READ_WRITE, PageSize::Size4K) & (3 << 3),
        0
    );
}
