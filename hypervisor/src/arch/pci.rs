//! Raw PCI configuration access: ECAM windows from the ACPI MCFG, mapped
//! uncached, or the legacy 0xCF8/0xCFC port pair where there is no MCFG
//! (Bochs' i440fx). Everything that can be decided without touching
//! hardware lives in `crate::pci` and is host-tested; this file only reads
//! and writes.

use alloc::vec::Vec;

use acpi::mcfg::Mcfg;
use acpi::{AcpiTable, AcpiTables};
use spin::Mutex;
use x86_64::instructions::port::Port;

use super::acpi::IdentityHandler;
use super::{paging, physmem};
use crate::pci::mcfg::{self, EcamRegion};
use crate::pci::walk::Segment;
use crate::pci::{Bdf, ConfigAccess};

/// How config space is reached on this machine.
pub enum Access {
    /// Memory-mapped (PCIe Base 6.0 7.2.2), one window per MCFG entry.
    Ecam(Vec<EcamRegion>),
    /// Configuration mechanism #1 (PCI Local Bus 3.0 3.2.2.3.2): the
    /// address into 0xCF8, the data through 0xCFC; segment 0, 256 bytes.
    Legacy,
}

/// The address/data pair is one shared register: every legacy access
/// holds this lock across both halves.
static LEGACY: Mutex<()> = Mutex::new(());

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

impl Access {
    /// A name for the log.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ecam(_) => "ECAM",
            Self::Legacy => "legacy 0xcf8/0xcfc",
        }
    }

    fn ecam_addr(regions: &[EcamRegion], bdf: Bdf, off: u16) -> Option<u64> {
        if off >= 4096 || !off.is_multiple_of(4) {
            return None;
        }
        regions
            .iter()
            .filter(|r| r.seg == bdf.seg)
            .find_map(|r| r.address(bdf.bus, bdf.dev, bdf.func))
            .map(|a| a + u64::from(off))
    }

    fn legacy_addr(bdf: Bdf, off: u16) -> Option<u32> {
        (bdf.seg == 0 && off < 256 && off.is_multiple_of(4) && bdf.dev < 32 && bdf.func < 8).then(
            || {
                0x8000_0000
                    | u32::from(bdf.bus) << 16
                    | u32::from(bdf.dev) << 11
                    | u32::from(bdf.func) << 8
                    | u32::from(off)
            },
        )
    }
}

impl ConfigAccess for Access {
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        match self {
            Self::Ecam(r) => match Self::ecam_addr(r, bdf, off) {
                // SAFETY: `discover` mapped every region's whole window
                // uncached before building this `Access`; the address is
                // inside one (checked by `EcamRegion::address`) and
                // 4-aligned. Config space is device registers, read with
                // one aligned 32-bit access as ECAM requires.
                Some(a) => unsafe { core::ptr::read_volatile(a as *const u32) },
                None => 0xffff_ffff,
            },
            Self::Legacy => match Self::legacy_addr(bdf, off) {
                Some(a) => {
                    let _g = LEGACY.lock();
                    // SAFETY: ports 0xCF8/0xCFC are the PCI configuration
                    // mechanism on every PC; the lock keeps the address
                    // and data halves together.
                    unsafe {
                        Port::<u32>::new(CONFIG_ADDRESS).write(a);
                        Port::<u32>::new(CONFIG_DATA).read()
                    }
                }
                None => 0xffff_ffff,
            },
        }
    }

    fn write32(&self, bdf: Bdf, off: u16, value: u32) {
        match self {
            Self::Ecam(r) => {
                if let Some(a) = Self::ecam_addr(r, bdf, off) {
                    // SAFETY: as in `read32`: inside a window mapped
                    // uncached, aligned. The callers (`crate::pci`) decide
                    // which registers are written.
                    unsafe { core::ptr::write_volatile(a as *mut u32, value) }
                }
            }
            Self::Legacy => {
                if let Some(a) = Self::legacy_addr(bdf, off) {
                    let _g = LEGACY.lock();
                    // SAFETY: as in `read32`.
                    unsafe {
                        Port::<u32>::new(CONFIG_ADDRESS).write(a);
                        Port::<u32>::new(CONFIG_DATA).write(value);
                    }
                }
            }
        }
    }

    fn limit(&self) -> u16 {
        match self {
            Self::Ecam(_) => 4096,
            Self::Legacy => 256,
        }
    }
}

/// The MCFG's bytes, if the firmware has one.
fn mcfg_bytes(rsdp: Option<u64>) -> Option<&'static [u8]> {
    // SAFETY: as in `acpi::read_topology`: the RSDP comes from the loader
    // or the BIOS-area search, and the handler maps only identity-mapped
    // memory.
    let tables = unsafe {
        match rsdp {
            Some(addr) => AcpiTables::from_rsdp(IdentityHandler, addr as usize),
            None => AcpiTables::search_for_rsdp_bios(IdentityHandler),
        }
    }
    .ok()?;
    let m = tables.find_table::<Mcfg>().ok()?;
    let (at, len) = (m.physical_start() as u64, m.get().header().length);
    if !physmem::is_mapped(at, u64::from(len)) {
        log::warn!("pci: MCFG at {at:#x} ({len} bytes) is outside the identity map");
        return None;
    }
    // SAFETY: mapped (checked above); firmware tables are not written
    // after boot.
    Some(unsafe { physmem::slice(at, len as usize) })
}

/// Finds how to reach config space: the MCFG's ECAM windows (each mapped
/// uncached), or the legacy ports where there is no usable MCFG.
pub fn discover(rsdp: Option<u64>) -> (Access, Vec<Segment>) {
    let mut regions = Vec::new();
    match mcfg_bytes(rsdp).map(mcfg::parse) {
        None => log::info!("pci: no ACPI MCFG: legacy configuration ports"),
        Some(Err(e)) => log::warn!("pci: {e}: legacy configuration ports"),
        Some(Ok(m)) => {
            for p in &m.dropped {
                log::warn!("pci: {p}");
            }
            for r in m.regions {
                match paging::map_uncached(r.base, r.len()) {
                    Ok(()) => regions.push(r),
                    Err(e) => log::warn!(
                        "pci: segment {:04x} ECAM at {:#x}: not mapped ({e:?}): its devices are not listed",
                        r.seg,
                        r.base
                    ),
                }
            }
        }
    }
    if regions.is_empty() {
        let all = Segment {
            seg: 0,
            bus_start: 0,
            bus_end: 0xff,
        };
        return (Access::Legacy, alloc::vec![all]);
    }
    let segs = regions
        .iter()
        .map(|r| Segment {
            seg: r.seg,
            bus_start: r.bus_start,
            bus_end: r.bus_end,
        })
        .collect();
    for r in &regions {
        log::info!(
            "pci: segment {:04x} buses {:02x}-{:02x} ECAM at {:#x}",
            r.seg,
            r.bus_start,
            r.bus_end,
            r.base
        );
    }
    (Access::Ecam(regions), segs)
}
