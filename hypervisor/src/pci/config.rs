//! The config-space hypercalls, decided without touching hardware:
//! argument checks, and the write filter that keeps the BARs and the
//! interrupt messages the hypervisor's (pvabi `pci.rs` has the contract).

use pvabi::Error;

use super::Bdf;
use super::header::{CMD_BUS_MASTER, CMD_IO, CMD_MEM, Function};

/// One decoded config hypercall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciOp {
    /// `HC_PCI_LIST`: (array address, entries, first index).
    List { gpa: u64, max: u64, first: u64 },
    /// `HC_PCI_CONFIG_READ`.
    Read { bdf: Bdf, off: u16, size: u8 },
    /// `HC_PCI_CONFIG_WRITE`.
    Write {
        bdf: Bdf,
        off: u16,
        size: u8,
        value: u32,
    },
    /// `HC_PCI_MSI_BIND` (`msi_live.rs`).
    MsiBind { bdf: Bdf, kind: super::msi::Kind },
    /// `HC_PCI_MSI_UNBIND`.
    MsiUnbind { port: u32 },
}

/// The function named by an SBDF word (`pvabi::sbdf`).
pub fn bdf_of(sbdf: u64) -> Result<Bdf, Error> {
    let w = u32::try_from(sbdf).map_err(|_| Error::Invalid)?;
    Ok(Bdf {
        seg: (w >> 16) as u16,
        bus: (w >> 8) as u8,
        dev: ((w >> 3) & 31) as u8,
        func: (w & 7) as u8,
    })
}

impl PciOp {
    /// Decodes hypercall `nr` if it is one of the PCI group. The checks
    /// that need no device: size, alignment, the widest config space
    /// (4096), the value's width, the list length.
    pub fn decode(nr: u64, a: [u64; 6]) -> Option<Result<Self, Error>> {
        let access = |a: [u64; 6]| -> Result<(Bdf, u16, u8), Error> {
            let bdf = bdf_of(a[0])?;
            let size = match a[2] {
                1 | 2 | 4 => a[2] as u8,
                _ => return Err(Error::Invalid),
            };
            if a[1] >= 4096 || !a[1].is_multiple_of(a[2]) {
                return Err(Error::Invalid);
            }
            Ok((bdf, a[1] as u16, size))
        };
        Some(match nr {
            pvabi::HC_PCI_LIST => {
                if a[1] > pvabi::PCI_LIST_MAX {
                    Err(Error::TooBig)
                } else {
                    Ok(Self::List {
                        gpa: a[0],
                        max: a[1],
                        first: a[2],
                    })
                }
            }
            pvabi::HC_PCI_CONFIG_READ => {
                access(a).map(|(bdf, off, size)| Self::Read { bdf, off, size })
            }
            pvabi::HC_PCI_CONFIG_WRITE => access(a).and_then(|(bdf, off, size)| {
                let value = u32::try_from(a[3]).map_err(|_| Error::Invalid)?;
                if size < 4 && value >> (u32::from(size) * 8) != 0 {
                    return Err(Error::Invalid);
                }
                Ok(Self::Write {
                    bdf,
                    off,
                    size,
                    value,
                })
            }),
            pvabi::HC_PCI_MSI_BIND => bdf_of(a[0]).and_then(|bdf| {
                Ok(Self::MsiBind {
                    bdf,
                    kind: super::msi::Kind::decode(a[1], a[2])?,
                })
            }),
            pvabi::HC_PCI_MSI_UNBIND => u32::try_from(a[0])
                .map(|port| Self::MsiUnbind { port })
                .map_err(|_| Error::Invalid),
            _ => return None,
        })
    }
}

/// Command-register bits that follow the guest's write.
pub const CMD_GUEST_BITS: u16 = CMD_IO | CMD_MEM | CMD_BUS_MASTER;

/// The bytes of `f`'s config space a guest may never write: BARs, the
/// ROM BAR, the MSI capability, the MSI-X capability's registers
/// (control, table and PBA location: 12 bytes, PCI Local Bus 3.0 6.8.2).
fn protected(f: &Function) -> [(u16, u16); 4] {
    let c = f.caps;
    let msi = if c.msi != 0 {
        (u16::from(c.msi), u16::from(c.msi) + u16::from(c.msi_len))
    } else {
        (0, 0)
    };
    let msix = if c.msix != 0 {
        (u16::from(c.msix), u16::from(c.msix) + 12)
    } else {
        (0, 0)
    };
    [(0x10, 0x28), (0x30, 0x34), msi, msix]
}

/// What a permitted write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Merge `value` into the dword at `off & !3` (the other bytes read
    /// back first).
    Merge,
    /// A write touching the command/status dword: only
    /// [`CMD_GUEST_BITS`] of the command register follow the guest, the
    /// status register is written as 0 (its bits are write-one-to-clear:
    /// 0 changes nothing).
    Command,
}

/// Checks a write of `size` bytes at `off` (decoded already) against the
/// function's filter and its config-space size.
pub fn check_write(f: &Function, limit: u16, off: u16, size: u8) -> Result<Plan, Error> {
    let end = off + u16::from(size);
    if end > limit {
        return Err(Error::Invalid);
    }
    if protected(f)
        .iter()
        .any(|&(s, e)| s < e && off < e && s < end)
    {
        return Err(Error::Perm);
    }
    Ok(if off < 0x08 && end > 0x04 {
        Plan::Command
    } else {
        Plan::Merge
    })
}

/// The dword to write for `plan`: `old` is the dword now, `value` the
/// guest's `size` bytes at `off`.
pub fn merged(plan: Plan, old: u32, off: u16, size: u8, value: u32) -> u32 {
    let shift = u32::from(off & 3) * 8;
    let mask = if size == 4 {
        u32::MAX
    } else {
        ((1u32 << (u32::from(size) * 8)) - 1) << shift
    };
    let new = (old & !mask) | ((value << shift) & mask);
    match plan {
        Plan::Merge => new,
        Plan::Command => {
            let keep = u32::from(!CMD_GUEST_BITS);
            (old & keep & 0xffff) | (new & u32::from(CMD_GUEST_BITS))
        }
    }
}

/// Extracts `size` bytes at `off` from the dword read at `off & !3`.
pub fn extract(dword: u32, off: u16, size: u8) -> u32 {
    let v = dword >> (u32::from(off & 3) * 8);
    if size == 4 {
        v
    } else {
        v & ((1u32 << (u32::from(size) * 8)) - 1)
    }
}

#[cfg(test)]
mod tests;
