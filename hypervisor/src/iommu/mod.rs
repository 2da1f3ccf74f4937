//! DMA remapping: Intel VT-d and AMD-Vi.
//!
//! Every PCI device's DMA goes through an IOMMU unit: blocked by default,
//! translated through its owning domain's guest-physical map once
//! attached. The table parsers ([`dmar`], [`ivrs`]) and the I/O page
//! tables ([`pt`]) are pure and host-tested; the units themselves
//! (`vtd.rs`, `amdvi.rs`, register access in `mmio.rs`) are bare-metal
//! only, and `unsafe` is allowed there alone (MMIO, CLFLUSH).
//!
//! The interface the rest of the hypervisor uses (`pci/` for assignment):
//! [`init`] once at boot, [`present`], [`covers`], [`attach`],
//! [`detach`], and [`poll_faults`]. A device's DMA address space is the
//! domain's guest-physical space: each present page of the domain's
//! memory mapped GPA → HPA, writable, in the IOMMU's own tables (not the
//! EPT/NPT: see `pt.rs`). Requester id = bus << 8 | dev << 3 | func.
#![deny(unsafe_code)]

pub mod bytes;
pub mod dmar;
pub mod encode;
pub mod encode_ir;
pub mod ivrs;
pub mod pt;

#[cfg(target_os = "none")]
mod amdvi;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
mod mmio;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod selftest;
#[cfg(target_os = "none")]
mod state;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
mod tables;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
mod vtd;

#[cfg(target_os = "none")]
pub use state::{
    attach, covers, detach, detach_domain, has_devices, init, irq_bind, irq_unbind, poll_faults,
    present, remap_ioapic, vendor,
};

use core::fmt;

/// Why an IOMMU operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IommuError {
    /// No IOMMU was found (or it failed to start).
    NoIommu,
    /// No unit translates this device.
    NotCovered { seg: u16, rid: u16 },
    /// The device is already attached to a domain.
    AlreadyAttached { seg: u16, rid: u16 },
    /// Frames for tables ran out.
    NoMemory,
    /// A domain page could not be mapped (address beyond the unit's
    /// address width).
    BadAddress(u64),
    /// The unit did not complete a command.
    Hardware(&'static str),
    /// A firmware reserved region (RMRR, IVMD) of the device overlaps the
    /// domain's own memory at this address.
    ReservedRegionConflict(u64),
    /// The unit's domain id for this domain is held by another live
    /// domain (ids wrap).
    DomainIdInUse(u16),
    /// The device shares its requester id (an IVRS alias) with a device
    /// of another domain.
    AliasConflict {
        seg: u16,
        rid: u16,
        other: DomainIdNum,
    },
}

/// A domain's number, as [`IommuError`] carries it.
pub type DomainIdNum = crate::domain::ids::DomainId;

impl fmt::Display for IommuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoIommu => write!(f, "no IOMMU"),
            Self::NotCovered { seg, rid } => {
                write!(f, "no IOMMU unit covers {}", Bdf(*seg, *rid))
            }
            Self::AlreadyAttached { seg, rid } => {
                write!(f, "{} is already attached", Bdf(*seg, *rid))
            }
            Self::NoMemory => write!(f, "out of frames for IOMMU tables"),
            Self::BadAddress(a) => write!(f, "address {a:#x} beyond the IOMMU's width"),
            Self::Hardware(what) => write!(f, "IOMMU did not complete: {what}"),
            Self::ReservedRegionConflict(a) => write!(
                f,
                "the device's firmware reserved region at {a:#x} overlaps the domain's memory"
            ),
            Self::DomainIdInUse(did) => {
                write!(f, "IOMMU domain id {did} is in use by another domain")
            }
            Self::AliasConflict { seg, rid, other } => write!(
                f,
                "{} shares its requester id with a device of domain {other}",
                Bdf(*seg, *rid)
            ),
        }
    }
}

/// Prints a segment and requester id as `ssss:bb:dd.f`.
#[derive(Debug, Clone, Copy)]
pub struct Bdf(pub u16, pub u16);

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Bdf(seg, rid) = *self;
        write!(
            f,
            "{seg:04x}:{:02x}:{:02x}.{}",
            rid >> 8,
            (rid >> 3) & 31,
            rid & 7
        )
    }
}
