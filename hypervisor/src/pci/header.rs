//! One function's configuration header: identity, BARs, capabilities
//! (PCI Local Bus 3.0 6.1-6.2 and 6.7; PCI-to-PCI Bridge 1.2 3.2; PCIe Base
//! 6.0 7.5).

use arrayvec::ArrayVec;
use core::fmt;

use super::{Bdf, ConfigAccess};

/// Command register bits (PCI Local Bus 3.0 6.2.2).
pub const CMD_IO: u16 = 1 << 0;
/// Memory space decode.
pub const CMD_MEM: u16 = 1 << 1;
/// Bus master (the function may DMA).
pub const CMD_BUS_MASTER: u16 = 1 << 2;
/// Status bit 4: the capability list at 0x34 is valid.
const STATUS_CAP_LIST: u32 = 1 << 20;

/// Capability ids (PCI Code and ID Assignment 1.11, 2).
pub const CAP_MSI: u8 = 0x05;
/// PCI Express capability.
pub const CAP_PCIE: u8 = 0x10;
/// MSI-X.
pub const CAP_MSIX: u8 = 0x11;

/// What kind of space a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// I/O ports.
    Io,
    /// Memory below 4 GiB.
    Mem32,
    /// Memory anywhere (this BAR and the next register).
    Mem64,
}

/// One implemented BAR, sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// Register index, 0..=5 (a 64-bit BAR takes index and index + 1).
    pub index: u8,
    /// What it decodes.
    pub kind: BarKind,
    /// Prefetchable memory (no read side effects).
    pub prefetchable: bool,
    /// Address the firmware assigned.
    pub base: u64,
    /// Bytes decoded (a power of two).
    pub size: u64,
}

impl fmt::Display for Bar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            BarKind::Io => "io",
            BarKind::Mem32 => "mem32",
            BarKind::Mem64 => "mem64",
        };
        let pf = if self.prefetchable { " pf" } else { "" };
        write!(
            f,
            "BAR{} {kind}{pf} {:#x}+{:#x}",
            self.index, self.base, self.size
        )
    }
}

/// Where the capabilities this code cares about sit (offsets into
/// config space; 0 = absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// MSI capability.
    pub msi: u8,
    /// Bytes the MSI capability spans: 12 (32-bit address), 16 (64-bit),
    /// 20 or 24 with per-vector masking (PCI Local Bus 3.0 6.8.1).
    pub msi_len: u8,
    /// MSI-X capability.
    pub msix: u8,
    /// MSI-X table size (entries, 1..=2048), and where the table and the
    /// pending-bit array are: (BAR index, offset) each (PCI Local Bus 3.0
    /// 6.8.2.4-6.8.2.5). Their pages are never mapped into a guest.
    pub msix_entries: u16,
    /// MSI-X table: BAR index (BIR) and offset.
    pub msix_table: (u8, u32),
    /// MSI-X pending-bit array: BAR index and offset.
    pub msix_pba: (u8, u32),
    /// PCI Express capability.
    pub pcie: u8,
    /// The list was cut short: it looped, or pointed into the header.
    pub broken: bool,
}

/// A function's identity and resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// Where it is.
    pub bdf: Bdf,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Base class.
    pub class: u8,
    /// Subclass.
    pub subclass: u8,
    /// Programming interface.
    pub prog_if: u8,
    /// Header layout (bit 7, multi-function, cleared): 0 device, 1 bridge.
    pub header_type: u8,
    /// Implemented BARs.
    pub bars: ArrayVec<Bar, 6>,
    /// Capabilities.
    pub caps: Caps,
    /// A PCI-to-PCI bridge's secondary and subordinate bus.
    pub bridge: Option<(u8, u8)>,
}

impl Function {
    /// Base class 06: host, ISA, PCI-to-PCI ... bridges.
    pub fn is_bridge(&self) -> bool {
        self.class == 0x06 || self.header_type == 1
    }
}

/// Reads the 16-bit word at `off` (2-aligned).
pub fn read16(cfg: &dyn ConfigAccess, bdf: Bdf, off: u16) -> u16 {
    (cfg.read32(bdf, off & !3) >> ((off & 2) * 8)) as u16
}

/// Reads the byte at `off`.
pub fn read8(cfg: &dyn ConfigAccess, bdf: Bdf, off: u16) -> u8 {
    (cfg.read32(bdf, off & !3) >> ((off & 3) * 8)) as u8
}

/// Writes the command register, leaving the status register alone (its
/// bits are write-one-to-clear: a zero there changes nothing).
fn write_command(cfg: &dyn ConfigAccess, bdf: Bdf, cmd: u16) {
    cfg.write32(bdf, 0x04, u32::from(cmd));
}

/// Reads a present function's header, sizing its BARs with the
/// decode turned off (PCI Local Bus 3.0 6.2.5.1: sizing writes all ones
/// to a BAR, which would otherwise decode whatever address that is).
/// `None` if no function answers at `bdf`.
pub fn read_function(cfg: &dyn ConfigAccess, bdf: Bdf) -> Option<Function> {
    let id = cfg.read32(bdf, 0x00);
    let vendor = id as u16;
    if vendor == 0xffff || vendor == 0 {
        return None;
    }
    let class = cfg.read32(bdf, 0x08);
    let header_type = read8(cfg, bdf, 0x0e) & 0x7f;
    let nbars = match header_type {
        0 => 6,
        1 => 2,
        // CardBus (2) and unknown layouts: identity only.
        _ => 0,
    };
    let cmd = read16(cfg, bdf, 0x04);
    let mut bars = ArrayVec::new();
    if nbars > 0 {
        write_command(cfg, bdf, cmd & !(CMD_IO | CMD_MEM));
        size_bars(cfg, bdf, nbars, &mut bars);
        write_command(cfg, bdf, cmd);
    }
    let bridge = (header_type == 1).then(|| {
        let b = cfg.read32(bdf, 0x18);
        ((b >> 8) as u8, (b >> 16) as u8)
    });
    let caps = if cfg.read32(bdf, 0x04) & STATUS_CAP_LIST != 0 && header_type <= 1 {
        walk_caps(cfg, bdf)
    } else {
        Caps::default()
    };
    Some(Function {
        bdf,
        vendor,
        device: (id >> 16) as u16,
        class: (class >> 24) as u8,
        subclass: (class >> 16) as u8,
        prog_if: (class >> 8) as u8,
        header_type,
        bars,
        caps,
        bridge,
    })
}

/// Writes all ones to `off` and reads back which bits stick, restoring
/// the register.
fn probe(cfg: &dyn ConfigAccess, bdf: Bdf, off: u16) -> (u32, u32) {
    let orig = cfg.read32(bdf, off);
    cfg.write32(bdf, off, 0xffff_ffff);
    let mask = cfg.read32(bdf, off);
    cfg.write32(bdf, off, orig);
    (orig, mask)
}

fn size_bars(cfg: &dyn ConfigAccess, bdf: Bdf, nbars: u8, out: &mut ArrayVec<Bar, 6>) {
    let mut i = 0u8;
    while i < nbars {
        let off = 0x10 + u16::from(i) * 4;
        let (orig, mask) = probe(cfg, bdf, off);
        let index = i;
        i += 1;
        if orig & 1 == 1 {
            // I/O BAR: bits 31:2 address; devices may leave bits 31:16 zero.
            let mut m = mask & !3;
            if m == 0 {
                continue;
            }
            if m & 0xffff_0000 == 0 {
                m |= 0xffff_0000;
            }
            let _ = out.try_push(Bar {
                index,
                kind: BarKind::Io,
                prefetchable: false,
                base: u64::from(orig & !3),
                size: u64::from((!m).wrapping_add(1)),
            });
            continue;
        }
        let prefetchable = orig & 8 != 0;
        let (kind, base, m) = if (orig >> 1) & 3 == 2 && i < nbars {
            // 64-bit: the next register holds the upper half.
            let (hi, hi_mask) = probe(cfg, bdf, off + 4);
            i += 1;
            (
                BarKind::Mem64,
                u64::from(hi) << 32 | u64::from(orig & !0xf),
                u64::from(hi_mask) << 32 | u64::from(mask & !0xf),
            )
        } else {
            (
                BarKind::Mem32,
                u64::from(orig & !0xf),
                0xffff_ffff_0000_0000 | u64::from(mask & !0xf),
            )
        };
        if m & 0xffff_ffff == 0 && (kind == BarKind::Mem32 || m == 0) {
            continue;
        }
        let size = (!m).wrapping_add(1);
        if size == 0 {
            continue;
        }
        let _ = out.try_push(Bar {
            index,
            kind,
            prefetchable,
            base,
            size,
        });
    }
}

/// Follows the capability list from 0x34. A list that loops or points into
/// the header is cut there (each of the 48 dword slots past the header can
/// hold one capability, so a longer list has looped).
pub fn walk_caps(cfg: &dyn ConfigAccess, bdf: Bdf) -> Caps {
    let mut caps = Caps::default();
    let mut seen = [false; 64];
    let mut ptr = read8(cfg, bdf, 0x34) & 0xfc;
    while ptr != 0 {
        let slot = usize::from(ptr / 4);
        if ptr < 0x40 || seen[slot] {
            caps.broken = true;
            break;
        }
        seen[slot] = true;
        let word = read16(cfg, bdf, u16::from(ptr));
        let mut other = 0;
        let field = match word as u8 {
            CAP_MSI => &mut caps.msi,
            CAP_MSIX => &mut caps.msix,
            CAP_PCIE => &mut caps.pcie,
            _ => &mut other,
        };
        if *field == 0 {
            *field = ptr;
            if word as u8 == CAP_MSIX {
                let at = u16::from(ptr);
                caps.msix_entries = (read16(cfg, bdf, at + 2) & 0x7ff) + 1;
                let t = cfg.read32(bdf, at + 4);
                let p = cfg.read32(bdf, at + 8);
                caps.msix_table = ((t & 7) as u8, t & !7);
                caps.msix_pba = ((p & 7) as u8, p & !7);
            }
            if word as u8 == CAP_MSI {
                // Message control: bit 7 64-bit address, bit 8 masking.
                let ctl = read16(cfg, bdf, u16::from(ptr) + 2);
                caps.msi_len = match (ctl & 0x80 != 0, ctl & 0x100 != 0) {
                    (false, false) => 12,
                    (true, false) => 16,
                    (false, true) => 20,
                    (true, true) => 24,
                };
            }
        }
        ptr = (word >> 8) as u8 & 0xfc;
    }
    caps
}
