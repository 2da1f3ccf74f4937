//! DMA remapping: Intel VT-d and AMD-Vi.
//!
//! Every PCI device's DMA goes through an IOMMU unit: blocked by default,
//! translated through its owning domain's guest-physical map once
//! attached. The table parsers ([`dmar`], [`ivrs`]) and the I/O page
//! tables ([`pt`]) are pure and host-tested.

#![deny(unsafe_code)]

pub mod bytes;
pub mod dmar;
pub mod ivrs;
pub mod pt;
