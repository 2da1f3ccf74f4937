//! PCI in the hypervisor: the devices it finds at boot and who owns them.
//!
//! Everything here is pure and host-tested: the MCFG decoder
//! (`mcfg.rs`), the config-space header and BAR/capability decoding
//! (`header.rs`), the bus walker (`walk.rs`) and the assignment policy
//! (`assign.rs`). Config space itself is reached through [`ConfigAccess`],
//! which `arch/pci.rs` implements on bare metal (ECAM, or the legacy
//! 0xCF8/0xCFC ports where there is no MCFG) and the tests fake.
//! `docs/pci.md` says what the hypervisor does with PCI and what it does not.

use core::fmt;

pub mod assign;
pub mod bars;
pub mod config;
pub mod header;
pub mod live;
pub mod mcfg;
pub mod msi;
pub mod msi_live;
pub mod msi_remap;
pub mod reassign;
pub mod table;
pub mod walk;

#[cfg(test)]
mod fake;

/// A PCI function: segment (PCI segment group), bus, device, function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// PCI segment group (ACPI MCFG; 0 on the legacy path).
    pub seg: u16,
    /// Bus number.
    pub bus: u8,
    /// Device number, 0..=31.
    pub dev: u8,
    /// Function number, 0..=7.
    pub func: u8,
}

impl Bdf {
    /// The requester id the device puts on its DMA transactions and the
    /// IOMMU indexes by: bus << 8 | dev << 3 | func (PCIe Base 6.0 2.2.6.2).
    pub fn rid(self) -> u16 {
        u16::from(self.bus) << 8 | u16::from(self.dev & 31) << 3 | u16::from(self.func & 7)
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.seg, self.bus, self.dev, self.func
        )
    }
}

/// Reads and writes a function's configuration space.
///
/// Offsets are dword-aligned and below [`ConfigAccess::limit`]; a function
/// that does not exist reads as all ones (PCI Local Bus 3.0 6.1: a master
/// abort on a configuration read returns 0xFFFF_FFFF).
pub trait ConfigAccess {
    /// Reads the dword at `off` (4-aligned).
    fn read32(&self, bdf: Bdf, off: u16) -> u32;
    /// Writes the dword at `off` (4-aligned).
    fn write32(&self, bdf: Bdf, off: u16, value: u32);
    /// Bytes of config space each function has: 4096 through ECAM, 256
    /// through the legacy ports.
    fn limit(&self) -> u16;
}
