//! `HC_DOMCTL_PCI_ASSIGN`'s decoding and checks, in the ABI's order, and
//! the command-register write that stops a function's DMA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::pci::fake::{bdf, device};

const DOM0: DomainId = DomainId(1);

fn at(dev: u8, policy: Result<Fence, Keep>, owner: Option<DomainId>) -> Device {
    Device {
        owner,
        ..device(dev, policy)
    }
}

#[test]
fn decode_checks_both_registers() {
    let sbdf = u64::from(pvabi::sbdf(0, 0, 6, 0));
    match decode([2, sbdf, 0, 0, 0, 0]) {
        Ok(DomctlReq::PciAssign { id, bdf: b }) => {
            assert_eq!(id, DomainId(2));
            assert_eq!(b, bdf(6));
        }
        other => panic!("{other:?}"),
    }
    for a in [[1 << 32, sbdf], [2, 1 << 32], [u64::MAX, u64::MAX]] {
        assert_eq!(
            decode([a[0], a[1], 0, 0, 0, 0]).err(),
            Some(Error::Invalid),
            "{a:?}"
        );
    }
    // The segment, bus, device and function come back as pvabi wrote them.
    let b = bdf_of(pvabi::sbdf(0x12, 0x34, 31, 7));
    assert_eq!((b.seg, b.bus, b.dev, b.func), (0x12, 0x34, 31, 7));
}

#[test]
fn check_order_names_each_refusal() {
    let t = [
        at(5, Ok(Fence::Iommu), Some(DOM0)),
        at(6, Err(Keep::Bridge), None),
        at(7, Ok(Fence::Iommu), Some(DomainId(4))),
        at(8, Err(Keep::Quarantined), None),
        at(9, Ok(Fence::Iommu), None),
        at(10, Err(Keep::Hidden), Some(DOM0)),
    ];
    assert_eq!(check(&t, DOM0, bdf(5), false), Ok(0));
    assert_eq!(check(&t, DOM0, bdf(3), false), Err(Error::NoEntry));
    assert_eq!(check(&t, DOM0, bdf(6), false), Err(Error::Perm), "kept");
    assert_eq!(
        check(&t, DOM0, bdf(7), false),
        Err(Error::Exists),
        "another's"
    );
    assert_eq!(
        check(&t, DOM0, bdf(8), false),
        Err(Error::Perm),
        "quarantined"
    );
    assert_eq!(
        check(&t, DOM0, bdf(9), false),
        Err(Error::Perm),
        "being moved"
    );
    assert_eq!(
        check(&t, DOM0, bdf(10), false),
        Err(Error::Perm),
        "kept wins"
    );
    assert_eq!(check(&t, DOM0, bdf(5), true), Err(Error::Busy), "bound");
    // Ownership before the binding: another domain's bound function is
    // `EEXIST`, not `EBUSY`.
    assert_eq!(check(&t, DOM0, bdf(7), true), Err(Error::Exists));
    // Only the owner may give it away.
    assert_eq!(check(&t, DomainId(4), bdf(5), false), Err(Error::Exists));
}

#[test]
fn bus_master_off_keeps_the_rest_and_never_clears_status() {
    // Command 0x0107 (I/O, memory, bus master, SERR#), status 0xf900
    // (error bits set: write-one-to-clear).
    let old = 0xf900_0107;
    let new = bus_master_off(old);
    assert_eq!(new & 0xffff, 0x0103);
    assert_eq!(new >> 16, 0, "status written as 0 changes nothing");
    assert_eq!(bus_master_off(0x0000_0002), 0x0000_0002);
}
