//! Descriptions, the summary line, release.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::boot::pciopts::{IommuMode, PciHide};
use crate::pci::fake::{BUS0, FakeConfig, FakeFn, bdf, found};
use crate::pci::walk::walk;

fn devices(iommu: IommuMode) -> Vec<Device> {
    let cfg = FakeConfig::default();
    cfg.add(bdf(0), FakeFn::new(0x8086, 0x29c0, 0x0600_0000, 0));
    cfg.add(
        bdf(3),
        FakeFn::new(0x1af4, 0x1042, 0x0100_0000, 0)
            .mem_bar(4, 0xfe00_0000, 0x4000, true, true)
            .caps(0x40, &[(0x40, 0x11, 0x50), (0x50, 0x10, 0)]),
    );
    cfg.add(bdf(4), FakeFn::edu());
    let p = Policy {
        iommu,
        hide: PciHide::parse("0000:00:04").unwrap(),
        console_port: Some(0x3f8),
    };
    walk(&cfg, &BUS0)
        .into_iter()
        .map(|f| {
            let policy = assign::decide(&f, &p);
            found(f, policy)
        })
        .collect()
}

#[test]
fn describe_line() {
    let d = devices(IommuMode::On);
    assert_eq!(
        describe(&d[1].f),
        "0000:00:03.0 1af4:1042 class 01.00 BAR4 mem64 pf 0xfe000000+0x4000 msix pcie"
    );
}

#[test]
fn summary_names_each_reason() {
    let d = devices(IommuMode::On);
    assert_eq!(
        summary(&d),
        "pci: 3 devices, 0 assigned to dom0, 3 kept (1 bridge, 1 pci-hide, 1 no IOMMU covers it and iommu=off-unsafe is not set)"
    );
    let mut d = devices(IommuMode::OffUnsafe);
    d[1].owner = Some(DomainId(0));
    assert_eq!(
        summary(&d),
        "pci: 3 devices, 1 assigned to dom0, 2 kept (1 bridge, 1 pci-hide)"
    );
}
