//! Message encoding, register layouts, programming over a fake config
//! space and MSI-X table, and the binding table's rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::*;
use crate::pci::fake::{BUS0, FakeConfig, FakeFn, VIRTIO_BAR4, bdf};
use crate::pci::header::{CAP_MSI, CAP_MSIX};
use crate::pci::walk::walk;

const DOM0: DomainId = DomainId(0);
const OTHER: DomainId = DomainId(7);

/// Config space plus an MSI-X table in memory.
#[derive(Default)]
struct Hw {
    cfg: FakeConfig,
    mem: RefCell<BTreeMap<u64, u32>>,
}

impl MsiHw for Hw {
    fn config(&self) -> &dyn ConfigAccess {
        &self.cfg
    }
    fn mmio_read32(&self, addr: u64) -> u32 {
        self.mem.borrow().get(&addr).copied().unwrap_or(0)
    }
    fn mmio_write32(&self, addr: u64, value: u32) {
        self.mem.borrow_mut().insert(addr, value);
    }
}

const TABLE: u64 = VIRTIO_BAR4;

/// 00:03.0: MSI-X (4 entries, table at BAR4 + 0, PBA at BAR4 + 0x800) at
/// 0x40 and MSI at 0x50 (`msi_ctl` its message control); 00:04.0: no
/// capability at all.
fn setup(msi_ctl: u32) -> (Hw, Vec<Function>) {
    let hw = Hw::default();
    let mut f = FakeFn::virtio().caps(0x40, &[(0x40, CAP_MSIX, 0x50), (0x50, CAP_MSI, 0)]);
    f.regs[0x40 / 4] |= 3 << 16; // table size 4
    f.regs[0x44 / 4] = 4; // BIR 4, offset 0
    f.regs[0x48 / 4] = 0x800 | 4;
    f.regs[0x50 / 4] |= msi_ctl << 16;
    hw.cfg.add(bdf(3), f);
    hw.cfg.add(bdf(4), FakeFn::edu());
    // Entries as firmware may leave them: unmasked, with junk.
    for e in 0..4u64 {
        hw.mmio_write32(TABLE + e * 16 + 8, 0xdead);
        hw.mmio_write32(TABLE + e * 16 + 12, 0);
    }
    let fs = walk(&hw.cfg, &BUS0);
    (hw, fs)
}

#[test]
fn message_format() {
    let m = message(0x12, 0x45);
    assert_eq!(
        m.addr, 0xfee1_2000,
        "0FEEH, destination in 19:12, RH = DM = 0"
    );
    assert_eq!(m.data, 0x45, "fixed, edge, the vector in 7:0");
    assert_eq!(message(0, 0x40).addr, 0xfee0_0000);
}

#[test]
fn kind_decoding() {
    assert_eq!(Kind::decode(pvabi::PCI_MSI, 0), Ok(Kind::Msi));
    assert_eq!(Kind::decode(pvabi::PCI_MSI, 1), Err(Error::Invalid));
    assert_eq!(Kind::decode(pvabi::PCI_MSIX, 2047), Ok(Kind::Msix(2047)));
    assert_eq!(Kind::decode(pvabi::PCI_MSIX, 2048), Err(Error::Invalid));
    assert_eq!(Kind::decode(0, 0), Err(Error::Invalid));
    assert_eq!(Kind::decode(3, 0), Err(Error::Invalid));
    let (_, fs) = setup(0);
    assert_eq!(Kind::Msi.check(&fs[0]), Ok(()));
    assert_eq!(Kind::Msix(3).check(&fs[0]), Ok(()));
    assert_eq!(
        Kind::Msix(4).check(&fs[0]),
        Err(Error::Invalid),
        "table has 4"
    );
    assert_eq!(Kind::Msi.check(&fs[1]), Err(Error::Invalid));
    assert_eq!(Kind::Msix(0).check(&fs[1]), Err(Error::Invalid));
}

#[test]
fn msi_layouts() {
    for (ctl, hi, data, mask) in [
        (0x000, None, 0x58, None),
        (0x080, Some(0x58), 0x5c, None),
        (0x100, None, 0x58, Some(0x5c)),
        (0x180, Some(0x58), 0x5c, Some(0x60)),
    ] {
        let (_, fs) = setup(ctl);
        let r = MsiRegs::of(&fs[0]).unwrap();
        assert_eq!((r.head, r.addr_lo), (0x50, 0x54));
        assert_eq!(
            (r.addr_hi, r.data, r.mask),
            (hi, data, mask),
            "control {ctl:#x}"
        );
    }
    let (_, fs) = setup(0);
    assert_eq!(MsiRegs::of(&fs[1]), None);
}

#[test]
fn msi_programmed_then_disabled() {
    let (hw, fs) = setup(0x180 | 0x70 | 1); // 64-bit, masking, MME junk, enabled
    let f = &fs[0];
    let rd = |off: u16| hw.cfg.read32(f.bdf, off);
    hw.cfg.write32(f.bdf, 0x60, 1); // masked by someone
    program(&hw, f, Kind::Msi, message(1, 0x41)).unwrap();
    assert_eq!(rd(0x54), 0xfee0_1000);
    assert_eq!(rd(0x58), 0);
    assert_eq!(rd(0x5c), 0x41);
    assert_eq!(rd(0x60) & 1, 0, "vector unmasked");
    let ctl = rd(0x50) >> 16;
    assert_eq!(ctl & 1, 1, "enabled");
    assert_eq!(ctl & 0x70, 0, "one vector (MME 0)");
    assert_eq!(rd(0x50) & 0xffff, u32::from(CAP_MSI), "id and next kept");
    disable(&hw, f, Kind::Msi, true);
    assert_eq!(rd(0x50) >> 16 & 1, 0, "disabled");
}

#[test]
fn msix_entry_programmed_others_masked() {
    let (hw, fs) = setup(0);
    let f = &fs[0];
    program(&hw, f, Kind::Msix(2), message(0, 0x50)).unwrap();
    let e = |i: u64, w: u64| hw.mmio_read32(TABLE + i * 16 + w * 4);
    assert_eq!(
        (e(2, 0), e(2, 1), e(2, 2), e(2, 3)),
        (0xfee0_0000, 0, 0x50, 0)
    );
    for i in [0, 1, 3] {
        assert_eq!(e(i, 3) & 1, 1, "entry {i} masked");
    }
    let ctl = hw.cfg.read32(f.bdf, 0x40) >> 16;
    assert_eq!(ctl & 0xc000, 0x8000, "enabled, function mask off");
    program(&hw, f, Kind::Msix(0), message(0, 0x51)).unwrap();
    assert_eq!((e(0, 2), e(0, 3)), (0x51, 0));
    assert_eq!(e(2, 2), 0x50, "the first entry untouched");
    disable(&hw, f, Kind::Msix(2), false);
    assert_eq!((e(2, 0), e(2, 2), e(2, 3)), (0, 0, 1), "masked and cleared");
    assert_eq!(hw.cfg.read32(f.bdf, 0x40) >> 31, 1, "still on for entry 0");
    disable(&hw, f, Kind::Msix(0), true);
    assert_eq!(hw.cfg.read32(f.bdf, 0x40) >> 30, 0, "MSI-X off");
}

#[test]
fn msix_table_outside_its_bar() {
    let (hw, mut fs) = setup(0);
    fs[0].caps.msix_table = (4, 0x3ff8); // the entry would cross the BAR's end
    assert_eq!(msix_entry_addr(&fs[0], 0), None);
    assert_eq!(
        program(&hw, &fs[0], Kind::Msix(0), message(0, 0x40)),
        Err(ProgramError::TableOutsideBar)
    );
    fs[0].caps.msix_table = (2, 0); // no BAR 2
    assert_eq!(msix_entry_addr(&fs[0], 0), None);
    let (_, fs) = setup(0);
    assert_eq!(msix_entry_addr(&fs[0], 3), Some(TABLE + 48));
}

fn binding(dom: DomainId, port: u32, kind: Kind, vector: u8) -> Binding {
    Binding {
        dom,
        port,
        bdf: bdf(3),
        kind,
        vector,
    }
}

#[test]
fn one_binding_per_message_and_kind() {
    let mut t = Bindings::new(0x40, 0x48);
    let v = t.alloc_vector().unwrap();
    t.insert(binding(DOM0, 5, Kind::Msix(1), v));
    assert_eq!(t.check(DOM0, bdf(3), Kind::Msix(1)), Err(Error::Busy));
    assert_eq!(t.check(OTHER, bdf(3), Kind::Msix(1)), Err(Error::Busy));
    assert_eq!(
        t.check(DOM0, bdf(3), Kind::Msi),
        Err(Error::Busy),
        "MSI-X is on"
    );
    assert_eq!(t.check(DOM0, bdf(3), Kind::Msix(2)), Ok(()));
    assert_eq!(t.check(DOM0, bdf(4), Kind::Msi), Ok(()));
    assert_eq!(t.by_vector(v).map(|b| b.port), Some(5));
    assert!(t.msix_bound(bdf(3)));
    assert_eq!(t.remove_port(OTHER, 5), None, "not OTHER's");
    assert_eq!(t.remove_port(DOM0, 5).map(|b| b.vector), Some(v));
    assert_eq!(t.by_vector(v), None);
    assert_eq!(t.vectors_in_use(), 1, "taken until freed");
    t.free_vector(v);
    assert_eq!(t.vectors_in_use(), 0);
    assert!(!t.msix_bound(bdf(3)));
}

#[test]
fn vectors_run_out_and_come_back() {
    let mut t = Bindings::new(0x40, 0x43);
    let vs: Vec<u8> = (0..3).map(|_| t.alloc_vector().unwrap()).collect();
    assert_eq!(vs, [0x40, 0x41, 0x42]);
    assert_eq!(t.alloc_vector(), Err(Error::NoMem));
    t.free_vector(0x41);
    assert_eq!(t.alloc_vector(), Ok(0x41));
}

#[test]
fn per_domain_limit() {
    let mut t = Bindings::new(0x40, 0xe0);
    for i in 0..pvabi::PCI_MSI_MAX_BOUND {
        let v = t.alloc_vector().unwrap();
        t.insert(binding(DOM0, i + 1, Kind::Msix(i as u16), v));
    }
    assert_eq!(t.check(DOM0, bdf(4), Kind::Msi), Err(Error::NoMem));
    let mut other = binding(OTHER, 1, Kind::Msi, 0);
    other.bdf = bdf(4);
    assert_eq!(
        t.check(OTHER, bdf(4), Kind::Msi),
        Ok(()),
        "another domain's count"
    );
    other.vector = t.alloc_vector().unwrap();
    t.insert(other);
    let gone = t.take_domain(DOM0);
    assert_eq!(gone.len(), pvabi::PCI_MSI_MAX_BOUND as usize);
    assert_eq!(t.count(DOM0), 0);
    assert_eq!(t.count(OTHER), 1);
}
