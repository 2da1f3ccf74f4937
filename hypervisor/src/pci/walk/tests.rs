//! The walker and header decoding over a fake config space.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::pci::fake::{FakeConfig, FakeFn};
use crate::pci::header::{BarKind, CAP_MSI, CAP_MSIX, CAP_PCIE};

fn bdf(bus: u8, dev: u8, func: u8) -> Bdf {
    Bdf {
        seg: 0,
        bus,
        dev,
        func,
    }
}

const ALL: [Segment; 1] = [Segment {
    seg: 0,
    bus_start: 0,
    bus_end: 0xff,
}];

#[test]
fn rid_and_display() {
    let b = Bdf {
        seg: 1,
        bus: 0x12,
        dev: 3,
        func: 5,
    };
    assert_eq!(b.rid(), 0x121d);
    assert_eq!(b.to_string(), "0001:12:03.5");
}

#[test]
fn sizes_bars_with_decode_off_and_restores_them() {
    let cfg = FakeConfig::default();
    let mut f = FakeFn::new(0x1af4, 0x1042, 0x0100_0000, 0)
        .io_bar(0, 0xc040, 0x40)
        .mem_bar(1, 0xfebf_1000, 0x1000, false, false)
        .mem_bar(4, 0x8_0000_0000, 0x4000, true, true);
    f.regs[1] = 3; // I/O and memory decode on, as firmware leaves it
    cfg.add(bdf(0, 3, 0), f.clone());
    let found = walk(&cfg, &ALL);
    assert_eq!(found.len(), 1);
    let d = &found[0];
    assert_eq!(
        (d.vendor, d.device, d.class, d.subclass),
        (0x1af4, 0x1042, 1, 0)
    );
    assert_eq!(d.bars.len(), 3);
    assert_eq!(
        (d.bars[0].kind, d.bars[0].base, d.bars[0].size),
        (BarKind::Io, 0xc040, 0x40)
    );
    assert_eq!(
        (d.bars[1].kind, d.bars[1].base, d.bars[1].size),
        (BarKind::Mem32, 0xfebf_1000, 0x1000)
    );
    assert_eq!(d.bars[2].index, 4);
    assert_eq!(
        (
            d.bars[2].kind,
            d.bars[2].prefetchable,
            d.bars[2].base,
            d.bars[2].size
        ),
        (BarKind::Mem64, true, 0x8_0000_0000, 0x4000)
    );
    assert_eq!(d.bars[2].to_string(), "BAR4 mem64 pf 0x800000000+0x4000");
    // Nothing was written to a BAR while the function decoded.
    assert_eq!(*cfg.live_bar_writes.borrow(), 0);
    // Every register is as it was, the command register included.
    assert_eq!(cfg.fns.borrow()[&bdf(0, 3, 0)].regs, f.regs);
}

#[test]
fn follows_bridges_and_multifunction() {
    let cfg = FakeConfig::default();
    cfg.add(bdf(0, 0, 0), FakeFn::new(0x8086, 0x29c0, 0x0600_0000, 0));
    // A multi-function device: functions 0 and 2.
    cfg.add(bdf(0, 2, 0), FakeFn::new(0x1234, 1, 0x0200_0000, 0x80));
    cfg.add(bdf(0, 2, 2), FakeFn::new(0x1234, 2, 0x0200_0000, 0));
    // Function 3 of a single-function device is not looked at.
    cfg.add(bdf(0, 4, 0), FakeFn::new(0x1234, 3, 0x0200_0000, 0));
    cfg.add(bdf(0, 4, 3), FakeFn::new(0x1234, 4, 0x0200_0000, 0));
    // Bridge to bus 1, whose bridge goes to bus 2.
    cfg.add(
        bdf(0, 0x1c, 0),
        FakeFn::new(0x1b36, 0xc, 0x0604_0000, 1).buses(1, 2),
    );
    cfg.add(
        bdf(1, 0, 0),
        FakeFn::new(0x1b36, 0xc, 0x0604_0000, 1).buses(2, 2),
    );
    cfg.add(bdf(2, 0, 0), FakeFn::new(0x1b36, 0x10, 0x0108_0200, 0));
    let found = walk(&cfg, &ALL);
    let at: Vec<_> = found.iter().map(|f| f.bdf).collect();
    assert_eq!(
        at,
        vec![
            bdf(0, 0, 0),
            bdf(0, 2, 0),
            bdf(0, 2, 2),
            bdf(0, 4, 0),
            bdf(0, 0x1c, 0),
            bdf(1, 0, 0),
            bdf(2, 0, 0)
        ]
    );
    assert_eq!(found[4].bridge, Some((1, 2)));
    assert!(found[4].is_bridge() && found[0].is_bridge() && !found[6].is_bridge());
}

#[test]
fn bridge_loops_and_out_of_range_buses_walk_each_bus_once() {
    let cfg = FakeConfig::default();
    // Two bridges claim bus 1; bus 1's bridge points back to bus 0 and
    // another to bus 9, beyond the segment.
    cfg.add(
        bdf(0, 1, 0),
        FakeFn::new(0x1b36, 0xc, 0x0604_0000, 1).buses(1, 1),
    );
    cfg.add(
        bdf(0, 2, 0),
        FakeFn::new(0x1b36, 0xc, 0x0604_0000, 1).buses(1, 1),
    );
    cfg.add(
        bdf(1, 0, 0),
        FakeFn::new(0x1b36, 0xc, 0x0604_0000, 1).buses(0, 0),
    );
    cfg.add(
        bdf(1, 1, 0),
        FakeFn::new(0x1b36, 0xc, 0x0604_0000, 1).buses(9, 9),
    );
    cfg.add(bdf(9, 0, 0), FakeFn::new(0x1234, 5, 0x0200_0000, 0));
    let seg = [Segment {
        seg: 0,
        bus_start: 0,
        bus_end: 7,
    }];
    let found = walk(&cfg, &seg);
    assert_eq!(found.len(), 4);
    assert!(found.iter().all(|f| f.bdf.bus <= 1));
}

#[test]
fn looping_capability_list_terminates() {
    let cfg = FakeConfig::default();
    // MSI-X at 0x40 -> PCIe at 0x50 -> MSI at 0x60 -> back to 0x40.
    cfg.add(
        bdf(0, 3, 0),
        FakeFn::new(0x1af4, 0x1042, 0x0100_0000, 0).caps(
            0x40,
            &[
                (0x40, CAP_MSIX, 0x50),
                (0x50, CAP_PCIE, 0x60),
                (0x60, CAP_MSI, 0x40),
            ],
        ),
    );
    // A self-loop, and a pointer into the header.
    cfg.add(
        bdf(0, 4, 0),
        FakeFn::new(0x1af4, 0x1042, 0x0100_0000, 0).caps(0x48, &[(0x48, 0x09, 0x48)]),
    );
    cfg.add(
        bdf(0, 5, 0),
        FakeFn::new(0x1af4, 0x1042, 0x0100_0000, 0).caps(0x44, &[(0x44, CAP_MSI, 0x10)]),
    );
    let found = walk(&cfg, &ALL);
    let c = found[0].caps;
    assert_eq!((c.msix, c.pcie, c.msi, c.broken), (0x40, 0x50, 0x60, true));
    assert!(found[1].caps.broken);
    assert_eq!((found[2].caps.msi, found[2].caps.broken), (0x44, true));
    // Bounded work: 3 functions' headers and lists, 32 slots on one bus.
    assert!(*cfg.reads.borrow() < 400, "{}", cfg.reads.borrow());
}

#[test]
fn unimplemented_bars_and_empty_bus() {
    let cfg = FakeConfig::default();
    assert!(walk(&cfg, &ALL).is_empty());
    cfg.add(bdf(0, 0, 0), FakeFn::new(0x8086, 0x1237, 0x0600_0000, 0));
    let found = walk(&cfg, &ALL);
    assert!(found[0].bars.is_empty());
}
