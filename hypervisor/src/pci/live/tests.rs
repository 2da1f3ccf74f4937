//! The list entry dom0's drivers read: `PCI_CAP_IOMMU` says whether bus
//! addresses are the owner's guest-physical ones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::pci::fake;

/// An NVMe-like function at 0000:00:05.0, unowned.
fn device(policy: Result<Fence, crate::pci::assign::Keep>) -> Device {
    fake::device(5, policy)
}

#[test]
fn iommu_bit_only_behind_an_iommu() {
    let e = entry(&device(Ok(Fence::Iommu)));
    assert_eq!(e.caps & pvabi::PCI_CAP_IOMMU, pvabi::PCI_CAP_IOMMU);
    assert_eq!((e.class, e.subclass, e.prog_if), (1, 8, 2));
    for fence in [Fence::Unsafe, Fence::None] {
        assert_eq!(
            entry(&device(Ok(fence))).caps & pvabi::PCI_CAP_IOMMU,
            0,
            "{fence:?}"
        );
    }
    let kept = device(Err(crate::pci::assign::Keep::NoIommu));
    assert_eq!(entry(&kept).caps & pvabi::PCI_CAP_IOMMU, 0);
}
