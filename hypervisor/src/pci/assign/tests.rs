//! The assignment policy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::pci::fake::nvme;
use crate::pci::header::{Bar, BarKind};
use arrayvec::ArrayVec;

fn func(dev: u8, class: u8, header_type: u8, io: Option<(u64, u64)>) -> Function {
    let mut bars = ArrayVec::new();
    if let Some((base, size)) = io {
        bars.push(Bar {
            index: 0,
            kind: BarKind::Io,
            prefetchable: false,
            base,
            size,
        });
    }
    Function {
        vendor: 0x1af4,
        device: 0x1042,
        class,
        subclass: 0,
        prog_if: 0,
        header_type,
        bars,
        ..nvme(dev)
    }
}

fn policy(iommu: IommuMode, hide: &str) -> Policy {
    Policy {
        iommu,
        hide: if hide.is_empty() {
            PciHide::default()
        } else {
            PciHide::parse(hide).unwrap()
        },
        console_port: Some(0x3f8),
    }
}

#[test]
fn without_an_iommu_nothing_is_assigned() {
    let p = policy(IommuMode::On, "");
    assert_eq!(decide(&func(3, 1, 0, None), &p), Err(Keep::NoIommu));
    let b = func(3, 1, 0, None).bdf;
    assert_eq!(dma_fence(b, IommuMode::On), Fence::None);
}

#[test]
fn off_unsafe_assigns_with_no_fence() {
    let p = policy(IommuMode::OffUnsafe, "");
    assert_eq!(decide(&func(3, 1, 0, None), &p), Ok(Fence::Unsafe));
}

#[test]
fn bridges_console_and_hidden_are_kept_first() {
    let p = policy(IommuMode::OffUnsafe, "0000:00:05");
    assert_eq!(decide(&func(0, 6, 0, None), &p), Err(Keep::Bridge));
    assert_eq!(decide(&func(1, 2, 1, None), &p), Err(Keep::Bridge));
    // A PCI UART whose I/O BAR holds COM1.
    assert_eq!(
        decide(&func(4, 7, 0, Some((0x3f8, 8))), &p),
        Err(Keep::Console)
    );
    assert_eq!(
        decide(&func(4, 7, 0, Some((0x2f8, 8))), &p),
        Ok(Fence::Unsafe)
    );
    assert_eq!(decide(&func(5, 1, 0, None), &p), Err(Keep::Hidden));
    // Hidden beats "no IOMMU": the operator's reason is the one logged.
    let p = policy(IommuMode::On, "0000:00:05");
    assert_eq!(decide(&func(5, 1, 0, None), &p), Err(Keep::Hidden));
}

#[test]
fn fences_without_an_iommu() {
    let b = func(3, 1, 0, None).bdf;
    let mem = DomainMemory::new(crate::domain::memory::CHUNK).unwrap();
    // iommu=off-unsafe: nothing to build or tear down.
    assert_eq!(fence_attach(b, DomainId(0), &mem, Fence::Unsafe), Ok(()));
    assert_eq!(fence_detach(b, DomainId(0), Fence::Unsafe), Ok(()));
    // No unit: neither an IOMMU fence nor none at all attaches.
    assert!(fence_attach(b, DomainId(0), &mem, Fence::Iommu).is_err());
    assert_eq!(
        fence_attach(b, DomainId(0), &mem, Fence::None),
        Err(FenceError(IommuError::NoIommu))
    );
}

#[test]
fn an_iommu_function_is_always_kept() {
    // The AMD IOMMU's own PCI function (class 08.06), even with the fence
    // off: its owner could move the unit's registers.
    let mut f = func(1, 0x08, 0, None);
    f.subclass = 0x06;
    assert_eq!(
        decide(&f, &policy(IommuMode::OffUnsafe, "")),
        Err(Keep::Iommu)
    );
    // Other system peripherals (08.xx) follow the usual policy.
    f.subclass = 0x80;
    assert_eq!(
        decide(&f, &policy(IommuMode::OffUnsafe, "")),
        Ok(Fence::Unsafe)
    );
}
