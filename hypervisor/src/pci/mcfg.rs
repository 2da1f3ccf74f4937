//! The ACPI MCFG table: where each PCI segment's ECAM window lies
//! (PCI Firmware Specification 3.2 4.1.2; ACPI 6.5 5.2.6 for the header).
//!
//! Decoded here from the raw bytes rather than through the `acpi` crate's
//! `PciConfigRegions`: that type needs the nightly `allocator_api`
//! feature, and it takes every entry as given. Firmware tables are
//! input: an entry whose bus range runs backwards, whose window is not
//! aligned or wraps, or that overlaps an earlier entry is dropped, with the
//! reason, and the others are still used.

use alloc::vec::Vec;
use core::fmt;

/// The standard ACPI table header.
const HEADER: usize = 36;
/// The header plus MCFG's 8 reserved bytes.
const ENTRIES_AT: usize = HEADER + 8;
/// One configuration-space base address allocation structure.
const ENTRY: usize = 16;
/// ECAM gives each bus 1 MiB (32 devices x 8 functions x 4 KiB).
const BUS_BYTES: u64 = 1 << 20;

/// One segment's ECAM window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcamRegion {
    /// Physical address of bus `bus_start`'s config space.
    pub base: u64,
    /// PCI segment group.
    pub seg: u16,
    /// First bus decoded.
    pub bus_start: u8,
    /// Last bus decoded (inclusive).
    pub bus_end: u8,
}

impl EcamRegion {
    /// Bytes the window spans.
    pub fn len(&self) -> u64 {
        (u64::from(self.bus_end) - u64::from(self.bus_start) + 1) * BUS_BYTES
    }

    /// Never empty (a decoded region has at least one bus); for clippy.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Physical address of the config space of (`bus`, `dev`, `func`), if
    /// the bus is in this window (PCIe Base 6.0 7.2.2, Table 7-1).
    pub fn address(&self, bus: u8, dev: u8, func: u8) -> Option<u64> {
        if bus < self.bus_start || bus > self.bus_end || dev > 31 || func > 7 {
            return None;
        }
        Some(
            self.base
                + (u64::from(bus - self.bus_start) << 20)
                + (u64::from(dev) << 15)
                + (u64::from(func) << 12),
        )
    }
}

/// Why the whole table is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McfgError {
    /// Shorter than its header, or its length field says more than there is.
    Truncated {
        /// Bytes the table says it has.
        claimed: usize,
        /// Bytes there are.
        have: usize,
    },
    /// The signature is not "MCFG".
    Signature,
    /// The bytes do not sum to zero (ACPI 6.5 5.2.6).
    Checksum,
    /// The entries do not fill the table in whole 16-byte entries.
    Ragged {
        /// Bytes after the header.
        bytes: usize,
    },
    /// No entry at all.
    NoSegments,
}

impl fmt::Display for McfgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { claimed, have } => write!(
                f,
                "MCFG truncated: its header says {claimed} bytes, {have} are there (at least {ENTRIES_AT} needed)"
            ),
            Self::Signature => f.write_str("MCFG signature is not \"MCFG\""),
            Self::Checksum => f.write_str("MCFG checksum does not add up to 0"),
            Self::Ragged { bytes } => write!(
                f,
                "MCFG has {bytes} bytes of entries, not a multiple of {ENTRY}"
            ),
            Self::NoSegments => f.write_str("MCFG lists no segment"),
        }
    }
}

/// Why one entry was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryProblem {
    /// Its last bus is below its first.
    BusRange {
        /// Index of the entry.
        index: usize,
        /// First bus.
        start: u8,
        /// Last bus.
        end: u8,
    },
    /// The base is 0, not 1 MiB aligned, or the window wraps.
    Base {
        /// Index of the entry.
        index: usize,
        /// The base address.
        base: u64,
    },
    /// Buses or addresses overlap an earlier entry's.
    Overlap {
        /// Index of the entry.
        index: usize,
        /// The earlier entry it overlaps.
        with: usize,
    },
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BusRange { index, start, end } => write!(
                f,
                "MCFG entry {index} dropped: bus range {start:#x}-{end:#x} ends before it starts"
            ),
            Self::Base { index, base } => write!(
                f,
                "MCFG entry {index} dropped: base {base:#x} is 0, not 1 MiB aligned, or its window wraps"
            ),
            Self::Overlap { index, with } => write!(
                f,
                "MCFG entry {index} dropped: it overlaps entry {with} (same segment and buses, or same addresses)"
            ),
        }
    }
}

/// The usable regions and the entries that were dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Mcfg {
    /// Regions to use, table order.
    pub regions: Vec<EcamRegion>,
    /// Entries dropped, and why.
    pub dropped: Vec<EntryProblem>,
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// Decodes an MCFG table from its bytes (`bytes` may run past the table:
/// only the length its header gives is read).
pub fn parse(bytes: &[u8]) -> Result<Mcfg, McfgError> {
    if bytes.len() < HEADER {
        return Err(McfgError::Truncated {
            claimed: 0,
            have: bytes.len(),
        });
    }
    let claimed = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    if claimed < ENTRIES_AT || claimed > bytes.len() {
        return Err(McfgError::Truncated {
            claimed,
            have: bytes.len(),
        });
    }
    let table = &bytes[..claimed];
    if &table[..4] != b"MCFG" {
        return Err(McfgError::Signature);
    }
    if table.iter().fold(0u8, |s, b| s.wrapping_add(*b)) != 0 {
        return Err(McfgError::Checksum);
    }
    let body = &table[ENTRIES_AT..];
    if !body.len().is_multiple_of(ENTRY) {
        return Err(McfgError::Ragged { bytes: body.len() });
    }
    if body.is_empty() {
        return Err(McfgError::NoSegments);
    }
    let mut out = Mcfg::default();
    // Table index of each kept region, for the overlap message.
    let mut kept_index = Vec::new();
    for (index, e) in body.chunks_exact(ENTRY).enumerate() {
        let base = le_u64(e, 0);
        let seg = u16::from_le_bytes([e[8], e[9]]);
        let (start, end) = (e[10], e[11]);
        if end < start {
            out.dropped
                .push(EntryProblem::BusRange { index, start, end });
            continue;
        }
        let r = EcamRegion {
            base,
            seg,
            bus_start: start,
            bus_end: end,
        };
        if base == 0 || !base.is_multiple_of(BUS_BYTES) || base.checked_add(r.len()).is_none() {
            out.dropped.push(EntryProblem::Base { index, base });
            continue;
        }
        let clash = out.regions.iter().position(|o: &EcamRegion| {
            let buses = o.seg == seg && start <= o.bus_end && o.bus_start <= end;
            let addrs = base < o.base + o.len() && o.base < base + r.len();
            buses || addrs
        });
        if let Some(i) = clash {
            out.dropped.push(EntryProblem::Overlap {
                index,
                with: kept_index[i],
            });
            continue;
        }
        out.regions.push(r);
        kept_index.push(index);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
