//! The ACPI DMA Remapping table (DMAR, Intel VT-d spec rev. 4.1 ch. 8):
//! where the remapping units are, which devices each one translates, and
//! which memory (RMRR) firmware keeps using for DMA behind the OS's back.
//!
//! Pure and host-tested: every length field is checked against its
//! container, so a malformed table gives a [`TableError`] naming the
//! offset, never a panic or an endless loop.

use alloc::vec::Vec;

use super::bytes::{Bytes, Problem, TableError};

/// DRHD flags bit 0: this unit covers every PCI device of its segment not
/// listed by another unit (VT-d 8.3).
const INCLUDE_PCI_ALL: u8 = 1;

/// What a device scope names (VT-d 8.3.1, table 8-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    Endpoint,
    Bridge,
    IoApic,
    Hpet,
    AcpiNamespace,
    /// A type this code does not know; its length is still known.
    Other(u8),
}

/// One device scope: a start bus and a path of (device, function) hops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub kind: ScopeKind,
    /// I/O APIC id, HPET number or ACPI device number for those kinds.
    pub enum_id: u8,
    pub start_bus: u8,
    pub path: Vec<(u8, u8)>,
}

impl Scope {
    /// The requester id (bus << 8 | dev << 3 | func) of the device the
    /// path ends at, following bridges with `secondary(bus, dev, func)`,
    /// which reads a bridge's secondary bus number from its config space
    /// (VT-d 8.3.2: each hop but the last is a PCI-PCI bridge).
    pub fn rid(&self, mut secondary: impl FnMut(u8, u8, u8) -> u8) -> Option<u16> {
        let mut bus = self.start_bus;
        let (last, hops) = self.path.split_last()?;
        for &(d, f) in hops {
            bus = secondary(bus, d, f);
        }
        Some(rid(bus, last.0, last.1))
    }

    /// The requester id when the path is one hop (a device on the start
    /// bus: the common case, and all that can be known without config
    /// space).
    pub fn direct_rid(&self) -> Option<u16> {
        match self.path.as_slice() {
            [(d, f)] => Some(rid(self.start_bus, *d, *f)),
            _ => None,
        }
    }
}

/// bus << 8 | dev << 3 | func, the PCI requester id.
pub fn rid(bus: u8, dev: u8, func: u8) -> u16 {
    (u16::from(bus) << 8) | (u16::from(dev & 31) << 3) | u16::from(func & 7)
}

/// A DMA-remapping hardware unit (DRHD, VT-d 8.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drhd {
    pub base: u64,
    pub segment: u16,
    pub include_all: bool,
    pub scopes: Vec<Scope>,
}

/// A reserved memory region (RMRR, VT-d 8.4): the devices in `scopes`
/// must keep `base..=limit` identity-mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rmrr {
    pub segment: u16,
    pub base: u64,
    pub limit: u64,
    pub scopes: Vec<Scope>,
}

/// What the DMAR says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dmar {
    /// Host address width in bits (the field is N-1).
    pub host_addr_width: u8,
    /// Flags: bit 0 INTR_REMAP, bit 1 X2APIC_OPT_OUT, bit 2
    /// DMA_CTRL_PLATFORM_OPT_IN.
    pub flags: u8,
    pub units: Vec<Drhd>,
    pub rmrrs: Vec<Rmrr>,
    /// Structures skipped by their length: ATSR, RHSA, ANDD, SATC and
    /// types newer than this code (VT-d 8.2: software must skip reserved
    /// types so that newer firmware keeps working).
    pub skipped: usize,
}

impl Dmar {
    /// The unit translating `(segment, rid)`: the one whose scope names the
    /// device, else the INCLUDE_PCI_ALL unit of its segment (VT-d 8.3).
    /// Bridge scopes match the bridge's own requester id only: devices
    /// behind a bridge need config space to place and fall to the
    /// segment's catch-all unit.
    pub fn unit_for(&self, segment: u16, rid: u16) -> Option<usize> {
        let listed = self.units.iter().position(|u| {
            u.segment == segment && u.scopes.iter().any(|s| s.direct_rid() == Some(rid))
        });
        listed.or_else(|| {
            self.units
                .iter()
                .position(|u| u.segment == segment && u.include_all)
        })
    }

    /// The RMRRs naming `(segment, rid)`.
    pub fn rmrrs_for(&self, segment: u16, rid: u16) -> impl Iterator<Item = &Rmrr> {
        self.rmrrs.iter().filter(move |r| {
            r.segment == segment && r.scopes.iter().any(|s| s.direct_rid() == Some(rid))
        })
    }
}

const TABLE: &str = "DMAR";
/// Header (36) + host address width, flags, 10 reserved bytes.
const FIRST: usize = 48;

/// Parses a DMAR table (`data` from its signature on).
pub fn parse(data: &[u8]) -> Result<Dmar, TableError> {
    let b = Bytes::checked_table(TABLE, data, FIRST)?;
    let mut dmar = Dmar {
        host_addr_width: b.u8(36)?.saturating_add(1),
        flags: b.u8(37)?,
        units: Vec::new(),
        rmrrs: Vec::new(),
        skipped: 0,
    };
    let end = b.data.len();
    let mut off = FIRST;
    while off < end {
        let ty = b.u16(off)?;
        let len = usize::from(b.u16(off + 2)?);
        match ty {
            0 => {
                b.structure(off, len, end, 16, ty)?;
                let base = b.u64(off + 8)?;
                if base == 0 || base % 4096 != 0 {
                    return Err(b.err(off + 8, Problem::BadBase(base)));
                }
                dmar.units.push(Drhd {
                    base,
                    segment: b.u16(off + 6)?,
                    include_all: b.u8(off + 4)? & INCLUDE_PCI_ALL != 0,
                    scopes: scopes(&b, off + 16, off + len)?,
                });
            }
            1 => {
                b.structure(off, len, end, 24, ty)?;
                let (base, limit) = (b.u64(off + 8)?, b.u64(off + 16)?);
                // VT-d 8.4: base 4 KiB aligned, limit + 1 4 KiB aligned.
                if limit < base || base % 4096 != 0 || limit.wrapping_add(1) % 4096 != 0 {
                    return Err(b.err(off + 8, Problem::BadRegion { base, limit }));
                }
                dmar.rmrrs.push(Rmrr {
                    segment: b.u16(off + 6)?,
                    base,
                    limit,
                    scopes: scopes(&b, off + 24, off + len)?,
                });
            }
            _ => {
                b.structure(off, len, end, 4, ty)?;
                dmar.skipped += 1;
            }
        }
        off += len;
    }
    Ok(dmar)
}

/// The device scopes in `[off, end)` (VT-d 8.3.1).
fn scopes(b: &Bytes<'_>, mut off: usize, end: usize) -> Result<Vec<Scope>, TableError> {
    let mut out = Vec::new();
    while off < end {
        let ty = b.u8(off)?;
        let len = usize::from(b.u8(off + 1)?);
        // Six fixed bytes and at least one (device, function) pair.
        b.structure(off, len, end, 8, u16::from(ty))?;
        if (len - 6) % 2 != 0 {
            return Err(b.err(off, Problem::BadPath(len - 6)));
        }
        let kind = match ty {
            1 => ScopeKind::Endpoint,
            2 => ScopeKind::Bridge,
            3 => ScopeKind::IoApic,
            4 => ScopeKind::Hpet,
            5 => ScopeKind::AcpiNamespace,
            t => ScopeKind::Other(t),
        };
        let mut path = Vec::new();
        let mut p = off + 6;
        while p < off + len {
            path.push((b.u8(p)?, b.u8(p + 1)?));
            p += 2;
        }
        out.push(Scope {
            kind,
            enum_id: b.u8(off + 4)?,
            start_bus: b.u8(off + 5)?,
            path,
        });
        off += len;
    }
    Ok(out)
}

#[cfg(test)]
#[path = "dmar_tests.rs"]
mod tests;
