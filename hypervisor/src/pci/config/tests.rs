//! Decoding, the write filter, and the live ops over a fake config space.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::domain::ids::DomainId;
use crate::pci::fake::{BUS0, FakeConfig, FakeFn, bdf, found};
use crate::pci::header::{CAP_MSI, CAP_MSIX, CAP_PCIE};
use crate::pci::live::config_op;
use crate::pci::table::Device;
use crate::pci::walk::walk;
use alloc::vec::Vec;
use pvabi::{HC_PCI_CONFIG_READ, HC_PCI_CONFIG_WRITE, HC_PCI_LIST, sbdf};

const DOM0: DomainId = DomainId(0);
const OTHER: DomainId = DomainId(7);

/// A virtio-like device at 00:03.0 (MSI-X at 0x40, MSI 64-bit at 0x50,
/// PCIe at 0x68) owned by dom0, and one at 00:04.0 owned by nobody.
fn setup() -> (FakeConfig, Vec<Device>) {
    let cfg = FakeConfig::default();
    let mut f = FakeFn::virtio().caps(
        0x40,
        &[
            (0x40, CAP_MSIX, 0x50),
            (0x50, CAP_MSI, 0x68),
            (0x68, CAP_PCIE, 0),
        ],
    );
    f.regs[0x50 / 4] |= 0x80 << 16; // MSI message control: 64-bit
    f.regs[1] |= 0x0006; // memory + bus master on
    cfg.add(bdf(3), f);
    cfg.add(bdf(4), FakeFn::edu());
    let t = walk(&cfg, &BUS0)
        .into_iter()
        .map(|f| Device {
            owner: (f.bdf.dev == 3).then_some(DOM0),
            ..found(f, Ok(crate::pci::assign::Fence::Unsafe))
        })
        .collect();
    (cfg, t)
}

fn dec(nr: u64, a: [u64; 6]) -> Result<PciOp, Error> {
    PciOp::decode(nr, a).expect("a PCI hypercall")
}

fn rd(
    t: &[Device],
    cfg: &FakeConfig,
    dom: DomainId,
    dev: u8,
    off: u64,
    size: u64,
) -> Result<u64, Error> {
    let op = dec(
        HC_PCI_CONFIG_READ,
        [u64::from(sbdf(0, 0, dev, 0)), off, size, 0, 0, 0],
    )?;
    config_op(t, cfg, dom, op)
}

fn wr(
    t: &[Device],
    cfg: &FakeConfig,
    dom: DomainId,
    dev: u8,
    off: u64,
    size: u64,
    v: u64,
) -> Result<u64, Error> {
    let op = dec(
        HC_PCI_CONFIG_WRITE,
        [u64::from(sbdf(0, 0, dev, 0)), off, size, v, 0, 0],
    )?;
    config_op(t, cfg, dom, op)
}

#[test]
fn decode_checks_arguments() {
    assert_eq!(PciOp::decode(50, [0; 6]), None);
    assert_eq!(PciOp::decode(56, [0; 6]), None);
    // 54-55: the message hypercalls (`pci/msi.rs` decodes the kind).
    use crate::pci::msi::Kind;
    let edu = u64::from(sbdf(0, 0, 6, 0));
    assert_eq!(
        PciOp::decode(54, [edu, 1, 0, 0, 0, 0]),
        Some(Ok(PciOp::MsiBind {
            bdf: bdf(6),
            kind: Kind::Msi
        }))
    );
    assert_eq!(
        PciOp::decode(54, [edu, 2, 7, 0, 0, 0]),
        Some(Ok(PciOp::MsiBind {
            bdf: bdf(6),
            kind: Kind::Msix(7)
        }))
    );
    for a in [[edu, 0, 0], [edu, 1, 1], [edu, 2, 2048], [1 << 32, 1, 0]] {
        assert_eq!(
            PciOp::decode(54, [a[0], a[1], a[2], 0, 0, 0]),
            Some(Err(Error::Invalid)),
            "{a:?}"
        );
    }
    assert_eq!(
        PciOp::decode(55, [9, 0, 0, 0, 0, 0]),
        Some(Ok(PciOp::MsiUnbind { port: 9 }))
    );
    assert_eq!(
        PciOp::decode(55, [1 << 32, 0, 0, 0, 0, 0]),
        Some(Err(Error::Invalid))
    );
    for (off, size) in [
        (0, 0),
        (0, 3),
        (0, 8),
        (1, 2),
        (2, 4),
        (4096, 1),
        (4095, 2),
        (u64::MAX, 1),
    ] {
        assert_eq!(
            dec(HC_PCI_CONFIG_READ, [0, off, size, 0, 0, 0]),
            Err(Error::Invalid),
            "{off} {size}"
        );
    }
    assert_eq!(
        dec(HC_PCI_CONFIG_READ, [1 << 32, 0, 4, 0, 0, 0]),
        Err(Error::Invalid)
    );
    assert_eq!(
        dec(HC_PCI_CONFIG_WRITE, [0, 4, 2, 0x1_0000, 0, 0]),
        Err(Error::Invalid)
    );
    assert_eq!(
        dec(HC_PCI_CONFIG_WRITE, [0, 4, 4, 1 << 32, 0, 0]),
        Err(Error::Invalid)
    );
    assert_eq!(dec(HC_PCI_LIST, [0, 33, 0, 0, 0, 0]), Err(Error::TooBig));
    assert_eq!(
        dec(
            HC_PCI_CONFIG_READ,
            [u64::from(sbdf(2, 0x12, 3, 5)), 4095, 1, 0, 0, 0]
        ),
        Ok(PciOp::Read {
            bdf: Bdf {
                seg: 2,
                bus: 0x12,
                dev: 3,
                func: 5
            },
            off: 4095,
            size: 1
        })
    );
}

#[test]
fn owner_reads_sizes_and_offsets() {
    let (cfg, t) = setup();
    assert_eq!(rd(&t, &cfg, DOM0, 3, 0, 4), Ok(0x1042_1af4));
    assert_eq!(rd(&t, &cfg, DOM0, 3, 2, 2), Ok(0x1042));
    assert_eq!(rd(&t, &cfg, DOM0, 3, 1, 1), Ok(0x1a));
    assert_eq!(rd(&t, &cfg, DOM0, 3, 0x10, 4), Ok(0xfeb0_0000));
    assert_eq!(rd(&t, &cfg, DOM0, 3, 0x40, 1), Ok(u64::from(CAP_MSIX)));
    assert_eq!(rd(&t, &cfg, DOM0, 3, 0xffc, 4), Ok(0));
}

#[test]
fn other_domains_and_missing_functions_refused() {
    let (cfg, t) = setup();
    assert_eq!(rd(&t, &cfg, OTHER, 3, 0, 4), Err(Error::Perm));
    assert_eq!(wr(&t, &cfg, OTHER, 3, 4, 2, 0), Err(Error::Perm));
    // 00:04.0 exists but has no owner; 00:05.0 does not exist.
    assert_eq!(rd(&t, &cfg, DOM0, 4, 0, 4), Err(Error::Perm));
    assert_eq!(rd(&t, &cfg, DOM0, 5, 0, 4), Err(Error::NoEntry));
    // Nothing changed.
    assert_eq!(cfg.fns.borrow()[&bdf(3)].regs[1] & 0xffff, 6);
}

#[test]
fn bars_and_msi_registers_are_never_written() {
    let (cfg, t) = setup();
    let before = cfg.fns.borrow()[&bdf(3)].regs;
    for (off, size) in [
        (0x10, 4),
        (0x14, 4),
        (0x24, 4),
        (0x26, 2),
        (0x30, 4),
        (0x33, 1),
        // MSI-X control, table offset/BIR, PBA offset/BIR.
        (0x42, 2),
        (0x44, 4),
        (0x48, 4),
        (0x4b, 1),
        // MSI: control, address low/high, data.
        (0x52, 2),
        (0x54, 4),
        (0x58, 4),
        (0x5c, 2),
        (0x5e, 1),
    ] {
        assert_eq!(
            wr(&t, &cfg, DOM0, 3, off, size, 0),
            Err(Error::Perm),
            "{off:#x}/{size}"
        );
    }
    assert_eq!(cfg.fns.borrow()[&bdf(3)].regs, before);
    // Just past the MSI capability (64-bit, no masking: 16 bytes): allowed.
    assert_eq!(wr(&t, &cfg, DOM0, 3, 0x60, 4, 0xabcd), Ok(0));
    assert_eq!(rd(&t, &cfg, DOM0, 3, 0x60, 4), Ok(0xabcd));
}

#[test]
fn command_register_only_decode_and_bus_master_bits() {
    let (cfg, t) = setup();
    {
        let mut fns = cfg.fns.borrow_mut();
        let r = &mut fns.get_mut(&bdf(3)).unwrap().regs[1];
        *r |= 0x0100 | (0x0010 << 16); // SERR# enable; status: cap list
    }
    // Turn everything off and try to clear SERR and status bits.
    assert_eq!(wr(&t, &cfg, DOM0, 3, 4, 4, 0xffff_0000), Ok(0));
    let r = cfg.fns.borrow()[&bdf(3)].regs[1];
    assert_eq!(r & 0xffff, 0x0100, "SERR kept, I/O, memory, bus master off");
    assert_eq!(r >> 16, 0x0010, "status untouched");
    // A one-byte write of 0xff turns on only bits 0-2.
    assert_eq!(wr(&t, &cfg, DOM0, 3, 4, 1, 0xff), Ok(0));
    assert_eq!(cfg.fns.borrow()[&bdf(3)].regs[1] & 0xffff, 0x0107);
    // A write to the status half alone changes nothing.
    assert_eq!(wr(&t, &cfg, DOM0, 3, 6, 2, 0xffff), Ok(0));
    assert_eq!(cfg.fns.borrow()[&bdf(3)].regs[1], 0x0010_0107);
}

#[test]
fn merge_and_extract() {
    assert_eq!(merged(Plan::Merge, 0x1122_3344, 0x3d, 1, 0xaa), 0x1122_aa44);
    assert_eq!(
        merged(Plan::Merge, 0x1122_3344, 0x3e, 2, 0xbeef),
        0xbeef_3344
    );
    assert_eq!(merged(Plan::Merge, 0x1122_3344, 0x3c, 4, 7), 7);
    assert_eq!(extract(0x1122_3344, 0x3f, 1), 0x11);
    assert_eq!(extract(0x1122_3344, 0x3c, 4), 0x1122_3344);
}

#[test]
fn legacy_limit_is_256() {
    let (cfg, t) = setup();
    let f = &t[0].f;
    assert_eq!(check_write(f, 256, 0xfc, 4), Ok(Plan::Merge));
    assert_eq!(check_write(f, 256, 0x100, 4), Err(Error::Invalid));
    let _ = cfg;
}

proptest::proptest! {
    /// Whatever a guest writes, through any size and offset the decoder
    /// lets through: the BARs, ROM BAR, MSI and MSI-X registers keep their
    /// value, the status register is never written and only the three
    /// guest bits of the command register change.
    #[test]
    fn no_write_reaches_a_protected_register(
        writes in proptest::collection::vec((0u64..0x100, 0usize..3, proptest::prelude::any::<u32>()), 1..40)
    ) {
        let (cfg, t) = setup();
        let before = cfg.fns.borrow()[&bdf(3)].regs;
        for (off, s, v) in writes {
            let size = [1u64, 2, 4][s];
            let off = off & !(size - 1);
            let v = if size == 4 { u64::from(v) } else { u64::from(v) & ((1 << (size * 8)) - 1) };
            let _ = wr(&t, &cfg, DOM0, 3, off, size, v);
        }
        let after = cfg.fns.borrow()[&bdf(3)].regs;
        for r in [0x10usize, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x30, 0x40, 0x44, 0x48, 0x50, 0x54, 0x58, 0x5c] {
            proptest::prop_assert_eq!(after[r / 4], before[r / 4], "register {:#x}", r);
        }
        proptest::prop_assert_eq!(after[1] >> 16, before[1] >> 16, "status");
        let keep = !u32::from(CMD_GUEST_BITS) & 0xffff;
        proptest::prop_assert_eq!(after[1] & keep, before[1] & keep, "command");
    }
}
