//! The ACPI I/O Virtualization Reporting Structure (IVRS, AMD I/O
//! Virtualization Technology (IOMMU) Specification rev. 3.x, section 5.2):
//! where the AMD-Vi units are, which device ids each one translates
//! (IVHD device entries), and memory that must stay mapped (IVMD).
//!
//! Pure and host-tested: every length is checked against its container;
//! a malformed table gives a [`TableError`] naming the offset.

use alloc::vec::Vec;

use super::bytes::{Bytes, Problem, TableError};

/// Device ids `first..=last` behind this unit, with their DTE setting
/// byte; `alias` is the id the unit sees their requests under (IVHD
/// entries 42h/43h: e.g. devices behind a PCIe-to-PCI bridge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevRange {
    pub first: u16,
    pub last: u16,
    pub data: u8,
    pub alias: Option<u16>,
}

/// What a special-device entry (48h) names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialKind {
    IoApic,
    Hpet,
    Other(u8),
}

/// A special device (48h): an I/O APIC or HPET and the device id its
/// interrupts arrive under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Special {
    pub kind: SpecialKind,
    /// I/O APIC id or HPET number.
    pub handle: u8,
    pub devid: u16,
}

/// An I/O virtualization hardware definition (IVHD, types 10h/11h/40h).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ivhd {
    pub ty: u8,
    pub flags: u8,
    /// The IOMMU's own PCI device id.
    pub iommu_devid: u16,
    /// Offset of its capability block in its config space.
    pub cap_offset: u16,
    pub base: u64,
    pub segment: u16,
    pub info: u16,
    /// 10h: IOMMU feature reporting; 11h/40h: IOMMU attributes.
    pub attrs: u32,
    /// 11h/40h: the Extended Feature Register's image (0 for 10h).
    pub efr: u64,
    pub ranges: Vec<DevRange>,
    pub specials: Vec<Special>,
}

impl Ivhd {
    /// Whether this unit translates `devid` (after aliasing: the id the
    /// unit will see is returned).
    pub fn source_id(&self, devid: u16) -> Option<u16> {
        self.ranges
            .iter()
            .rev()
            .find(|r| (r.first..=r.last).contains(&devid))
            .map(|r| r.alias.unwrap_or(devid))
    }
}

/// An I/O virtualization memory definition (IVMD, 20h/21h/22h): memory
/// devices `first..=last` keep using (unity-mapped or excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ivmd {
    pub flags: u8,
    pub first: u16,
    pub last: u16,
    pub start: u64,
    pub len: u64,
}

/// What the IVRS says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ivrs {
    pub ivinfo: u32,
    /// Every IVHD block, all types (see [`Ivrs::units`]).
    pub blocks: Vec<Ivhd>,
    pub memory: Vec<Ivmd>,
    /// IVDB blocks of types this code does not know, skipped by length.
    pub skipped: usize,
}

impl Ivrs {
    /// The unity-mapped ranges (IVMD flag bit 0) for requester `devid`:
    /// (start, length, writable). Exclusion ranges (bit 3) are not used:
    /// they bypass translation entirely.
    pub fn unity_for(&self, devid: u16) -> impl Iterator<Item = (u64, u64, bool)> + '_ {
        self.memory
            .iter()
            .filter(move |m| m.flags & 1 != 0 && (m.first..=m.last).contains(&devid))
            .map(|m| (m.start, m.len, m.flags & 4 != 0))
    }

    /// One block per unit: firmware may describe a unit with a 10h block
    /// for old software and an 11h/40h block for new; software uses the
    /// newest type it knows (spec 5.2.2.1), as Linux does.
    pub fn units(&self) -> impl Iterator<Item = &Ivhd> {
        self.blocks.iter().filter(move |b| {
            !self.blocks.iter().any(|o| {
                o.iommu_devid == b.iommu_devid
                    && o.segment == b.segment
                    && o.base == b.base
                    && o.ty > b.ty
            })
        })
    }
}

const TABLE: &str = "IVRS";
const FIRST: usize = 48;

/// Parses an IVRS table (`data` from its signature on).
pub fn parse(data: &[u8]) -> Result<Ivrs, TableError> {
    let b = Bytes::checked_table(TABLE, data, FIRST)?;
    let mut ivrs = Ivrs {
        ivinfo: b.u32(36)?,
        blocks: Vec::new(),
        memory: Vec::new(),
        skipped: 0,
    };
    let end = b.data.len();
    let mut off = FIRST;
    while off < end {
        let ty = b.u8(off)?;
        let len = usize::from(b.u16(off + 2)?);
        match ty {
            0x10 | 0x11 | 0x40 => {
                let entries = if ty == 0x10 { 24 } else { 40 };
                b.structure(off, len, end, entries, u16::from(ty))?;
                let base = b.u64(off + 8)?;
                // The base is 16 KiB aligned (spec 3.4, MMIO offset 0).
                if base == 0 || base % 0x4000 != 0 {
                    return Err(b.err(off + 8, Problem::BadBase(base)));
                }
                let mut unit = Ivhd {
                    ty,
                    flags: b.u8(off + 1)?,
                    iommu_devid: b.u16(off + 4)?,
                    cap_offset: b.u16(off + 6)?,
                    base,
                    segment: b.u16(off + 16)?,
                    info: b.u16(off + 18)?,
                    attrs: b.u32(off + 20)?,
                    efr: if ty == 0x10 { 0 } else { b.u64(off + 24)? },
                    ranges: Vec::new(),
                    specials: Vec::new(),
                };
                device_entries(&b, off + entries, off + len, &mut unit)?;
                ivrs.blocks.push(unit);
            }
            0x20..=0x22 => {
                b.structure(off, len, end, 32, u16::from(ty))?;
                let devid = b.u16(off + 4)?;
                let (first, last) = match ty {
                    0x20 => (0, u16::MAX),
                    0x21 => (devid, devid),
                    _ => (devid, b.u16(off + 6)?),
                };
                ivrs.memory.push(Ivmd {
                    flags: b.u8(off + 1)?,
                    first,
                    last,
                    start: b.u64(off + 16)?,
                    len: b.u64(off + 24)?,
                });
            }
            _ => {
                b.structure(off, len, end, 4, u16::from(ty))?;
                ivrs.skipped += 1;
            }
        }
        off += len;
    }
    Ok(ivrs)
}

/// The device entries of one IVHD in `[off, end)` (spec 5.2.2.2).
fn device_entries(
    b: &Bytes<'_>,
    mut off: usize,
    end: usize,
    unit: &mut Ivhd,
) -> Result<(), TableError> {
    // A start-of-range entry waiting for its end: (offset, type, first
    // id, data, alias).
    let mut open: Option<(usize, u8, u16, u8, Option<u16>)> = None;
    while off < end {
        let ty = b.u8(off)?;
        let len = match ty {
            0xf0 => 22 + usize::from(b.u8(off + 21)?),
            0x00..=0x3f => 4,
            0x40..=0x7f => 8,
            t => return Err(b.err(off, Problem::UnknownType(u16::from(t)))),
        };
        b.structure(off, len, end, len, u16::from(ty))?;
        let devid = b.u16(off + 1)?;
        let data = b.u8(off + 3)?;
        if let Some((o, t, ..)) = open
            && !matches!(ty, 0x00 | 0x04)
        {
            return Err(b.err(o, Problem::UnpairedRange(t)));
        }
        let range = |first, last, alias| DevRange {
            first,
            last,
            data,
            alias,
        };
        match ty {
            0x01 => unit.ranges.push(range(0, u16::MAX, None)),
            0x02 | 0x42 | 0x46 | 0xf0 => {
                let alias = (ty == 0x42).then(|| b.u16(off + 5)).transpose()?;
                unit.ranges.push(range(devid, devid, alias))
            }
            0x03 | 0x43 | 0x47 => {
                let alias = (ty == 0x43).then(|| b.u16(off + 5)).transpose()?;
                open = Some((off, ty, devid, data, alias));
            }
            0x04 => {
                let Some((o, t, first, d, alias)) = open.take() else {
                    return Err(b.err(off, Problem::UnpairedRange(ty)));
                };
                if devid < first {
                    return Err(b.err(o, Problem::UnpairedRange(t)));
                }
                unit.ranges.push(DevRange {
                    first,
                    last: devid,
                    data: d,
                    alias,
                });
            }
            0x48 => unit.specials.push(Special {
                kind: match b.u8(off + 7)? {
                    1 => SpecialKind::IoApic,
                    2 => SpecialKind::Hpet,
                    v => SpecialKind::Other(v),
                },
                handle: b.u8(off + 4)?,
                devid: b.u16(off + 5)?,
            }),
            // 00h padding and reserved types of a known size.
            _ => {}
        }
        off += len;
    }
    if let Some((o, t, ..)) = open {
        return Err(b.err(o, Problem::UnpairedRange(t)));
    }
    Ok(())
}

#[cfg(test)]
#[path = "ivrs_tests.rs"]
mod tests;
