//! Device interrupts as events, the pure parts (pvabi `msi.rs`): the
//! message a device writes to reach a CPU's local APIC, the MSI and MSI-X
//! register layouts, programming and disabling a message through
//! [`MsiHw`], and the table of bound messages with its host-vector
//! allocator. `msi_live.rs` runs them on the live device table; the IDT
//! handler that notes a vector is in `arch/msi.rs`.

use alloc::vec::Vec;

use pvabi::Error;

use super::header::{BarKind, Function};
use super::{Bdf, ConfigAccess};
use crate::domain::ids::DomainId;

/// The host vectors messages may carry: above the LAPIC timer and the
/// management line (0x30, 0x31, `arch/idt.rs`), below the remapped legacy
/// PIC (0xe0) and the shoot-down and spurious vectors (0xf1, 0xff).
pub const VECTOR_FIRST: u8 = 0x40;
/// One past the last such vector.
pub const VECTOR_END: u8 = 0xe0;

/// Dword access to device memory (an MSI-X table in a BAR).
pub trait Mmio32 {
    /// Reads the dword at host-physical `addr`.
    fn read32(&self, addr: u64) -> u32;
    /// Writes the dword at host-physical `addr`.
    fn write32(&self, addr: u64, value: u32);
}

/// The bytes of `f`'s MSI-X table: (host-physical start, length); `None`
/// without MSI-X or when the table does not lie inside its BAR.
pub fn msix_table_range(f: &Function) -> Option<(u64, u64)> {
    if f.caps.msix == 0 || f.caps.msix_entries == 0 {
        return None;
    }
    let start = msix_entry_addr(f, 0)?;
    msix_entry_addr(f, f.caps.msix_entries - 1)?;
    Some((start, u64::from(f.caps.msix_entries) * MSIX_ENTRY))
}

/// An interrupt message: the device writes `data` (32 bits) to `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    /// Message address.
    pub addr: u64,
    /// Message data.
    pub data: u32,
}

/// The message that delivers `vector` to the local APIC with physical id
/// `dest`, fixed delivery, edge triggered (Intel SDM Vol. 3A, APIC
/// chapter, "Message Signalled Interrupts": Message Address Register
/// Format — bits 31:20 0FEEH, 19:12 destination ID, RH (bit 3) = 0 so the
/// destination is the one named, DM (bit 2) ignored then; Message Data
/// Register Format — bits 7:0 vector, 10:8 delivery mode 000 fixed, bit 15
/// trigger mode 0 edge). AMD APM Vol. 2 16.7 uses the same format.
pub fn message(dest: u8, vector: u8) -> Message {
    Message {
        addr: 0xfee0_0000 | u64::from(dest) << 12,
        data: u32::from(vector),
    }
}

/// Which message of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The MSI capability's (one vector: Multiple Message Enable 0).
    Msi,
    /// An entry of the MSI-X table.
    Msix(u16),
}

impl Kind {
    /// Decodes pvabi `HC_PCI_MSI_BIND`'s RSI and RDX (`EINVAL`: an unknown
    /// kind, an entry over 2047, or one that is not 0 for MSI).
    pub fn decode(kind: u64, entry: u64) -> Result<Self, Error> {
        match (kind, entry) {
            (pvabi::PCI_MSI, 0) => Ok(Self::Msi),
            (pvabi::PCI_MSIX, e) if e < 2048 => Ok(Self::Msix(e as u16)),
            _ => Err(Error::Invalid),
        }
    }

    /// Whether `f` has this message: `EINVAL` if it lacks the capability
    /// or the MSI-X table is shorter.
    pub fn check(self, f: &Function) -> Result<(), Error> {
        let ok = match self {
            Self::Msi => f.caps.msi != 0,
            Self::Msix(e) => f.caps.msix != 0 && e < f.caps.msix_entries,
        };
        if ok { Ok(()) } else { Err(Error::Invalid) }
    }
}

/// MSI control register bits (PCI Local Bus 3.0 6.8.1.3).
const MSI_ENABLE: u32 = 1 << 0;
/// Multiple Message Enable (bits 6:4): 0, one vector.
const MSI_MME: u32 = 7 << 4;
/// MSI-X control (PCI Local Bus 3.0 6.8.2.3): MSI-X enable, function mask.
const MSIX_ENABLE: u32 = 1 << 15;
const MSIX_FUNCTION_MASK: u32 = 1 << 14;
/// MSI-X table entry: 16 bytes, vector control bit 0 masks it (6.8.2.9).
const MSIX_ENTRY: u64 = 16;
const MSIX_MASKED: u32 = 1;

/// Where the MSI capability's registers are (PCI Local Bus 3.0 6.8.1):
/// the 64-bit form (16 or 24 bytes, `Caps::msi_len`) has an upper address
/// dword before the data; with per-vector masking the mask bits follow
/// the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiRegs {
    /// The capability's first dword (id, next, control in bits 31:16).
    pub head: u16,
    /// Message address, low dword.
    pub addr_lo: u16,
    /// Message address, high dword (64-bit form only).
    pub addr_hi: Option<u16>,
    /// Message data (16 bits; the dword's upper half written 0).
    pub data: u16,
    /// Mask bits (per-vector masking only).
    pub mask: Option<u16>,
}

impl MsiRegs {
    /// The layout of `f`'s MSI capability (`None`: it has none).
    pub fn of(f: &Function) -> Option<Self> {
        let cap = u16::from(f.caps.msi);
        if cap == 0 {
            return None;
        }
        let wide = matches!(f.caps.msi_len, 16 | 24);
        let masking = matches!(f.caps.msi_len, 20 | 24);
        let data = if wide { cap + 12 } else { cap + 8 };
        Some(Self {
            head: cap,
            addr_lo: cap + 4,
            addr_hi: wide.then_some(cap + 8),
            data,
            mask: masking.then_some(data + 4),
        })
    }
}

/// The host-physical address of MSI-X table entry `entry` of `f`: its
/// memory BAR's base plus the table offset (`None`: the BIR names no
/// memory BAR, or the sum wraps).
pub fn msix_entry_addr(f: &Function, entry: u16) -> Option<u64> {
    let (bir, off) = f.caps.msix_table;
    let bar = f
        .bars
        .iter()
        .find(|b| b.index == bir && b.kind != BarKind::Io)?;
    let at = u64::from(off).checked_add(u64::from(entry) * MSIX_ENTRY)?;
    if at.checked_add(MSIX_ENTRY)? > bar.size {
        return None;
    }
    bar.base.checked_add(at)
}

/// What programming a message needs of the machine: config space, and
/// 32-bit accesses to the MSI-X table in a BAR (mapped uncached in the
/// hypervisor, never in a guest: `bars.rs`).
pub trait MsiHw {
    /// Config space.
    fn config(&self) -> &dyn ConfigAccess;
    /// Reads the dword at host-physical `addr` (an MSI-X table).
    fn mmio_read32(&self, addr: u64) -> u32;
    /// Writes the dword at host-physical `addr` (an MSI-X table).
    fn mmio_write32(&self, addr: u64, value: u32);
}

/// The machine's config space and MSI-X tables together.
pub struct Hw<'a> {
    /// Config space.
    pub cfg: &'a dyn ConfigAccess,
    /// The MSI-X tables.
    pub mmio: &'a dyn Mmio32,
}

impl MsiHw for Hw<'_> {
    fn config(&self) -> &dyn ConfigAccess {
        self.cfg
    }
    fn mmio_read32(&self, addr: u64) -> u32 {
        self.mmio.read32(addr)
    }
    fn mmio_write32(&self, addr: u64, value: u32) {
        self.mmio.write32(addr, value);
    }
}

/// Why a message could not be programmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramError {
    /// The function has no such message.
    NoCapability,
    /// The MSI-X table lies outside its BAR.
    TableOutsideBar,
}

/// Writes `m` into `f`'s message `kind` and enables it. MSI: disabled
/// while address and data change, one vector, unmasked, then enabled.
/// MSI-X: the table entry masked while it changes, then unmasked; the
/// first bound entry also enables MSI-X with every other entry masked
/// (entries are the hypervisor's: a stale unmasked one must not fire).
pub fn program(hw: &dyn MsiHw, f: &Function, kind: Kind, m: Message) -> Result<(), ProgramError> {
    let cfg = hw.config();
    let bdf = f.bdf;
    match kind {
        Kind::Msi => {
            let r = MsiRegs::of(f).ok_or(ProgramError::NoCapability)?;
            let head = cfg.read32(bdf, r.head);
            let off = head & !((MSI_ENABLE | MSI_MME) << 16);
            cfg.write32(bdf, r.head, off);
            cfg.write32(bdf, r.addr_lo, m.addr as u32);
            if let Some(hi) = r.addr_hi {
                cfg.write32(bdf, hi, (m.addr >> 32) as u32);
            }
            cfg.write32(bdf, r.data, m.data & 0xffff);
            if let Some(mask) = r.mask {
                cfg.write32(bdf, mask, cfg.read32(bdf, mask) & !1);
            }
            cfg.write32(bdf, r.head, off | MSI_ENABLE << 16);
        }
        Kind::Msix(e) => {
            let at = msix_entry_addr(f, e).ok_or(ProgramError::TableOutsideBar)?;
            let cap = u16::from(f.caps.msix);
            if cap == 0 {
                return Err(ProgramError::NoCapability);
            }
            let head = cfg.read32(bdf, cap);
            if head & MSIX_ENABLE << 16 == 0 {
                // Function mask on while the table is made safe.
                cfg.write32(bdf, cap, head | (MSIX_ENABLE | MSIX_FUNCTION_MASK) << 16);
                for other in 0..f.caps.msix_entries {
                    if let Some(o) = msix_entry_addr(f, other) {
                        hw.mmio_write32(o + 12, hw.mmio_read32(o + 12) | MSIX_MASKED);
                    }
                }
            }
            hw.mmio_write32(at + 12, hw.mmio_read32(at + 12) | MSIX_MASKED);
            hw.mmio_write32(at, m.addr as u32);
            hw.mmio_write32(at + 4, (m.addr >> 32) as u32);
            hw.mmio_write32(at + 8, m.data);
            hw.mmio_write32(at + 12, hw.mmio_read32(at + 12) & !MSIX_MASKED);
            let head = cfg.read32(bdf, cap);
            cfg.write32(
                bdf,
                cap,
                (head | MSIX_ENABLE << 16) & !(MSIX_FUNCTION_MASK << 16),
            );
        }
    }
    Ok(())
}

/// Stops `f`'s message `kind` at the device: MSI's enable bit cleared;
/// the MSI-X entry masked and its message cleared, and MSI-X disabled
/// when `last` (no other entry of the function is bound). After this the
/// device sends nothing for it (an interrupt already on its way may
/// still arrive: the caller counts it as unbound).
pub fn disable(hw: &dyn MsiHw, f: &Function, kind: Kind, last: bool) {
    let cfg = hw.config();
    let bdf = f.bdf;
    match kind {
        Kind::Msi => {
            if let Some(r) = MsiRegs::of(f) {
                let head = cfg.read32(bdf, r.head);
                cfg.write32(bdf, r.head, head & !((MSI_ENABLE | MSI_MME) << 16));
            }
        }
        Kind::Msix(e) => {
            if let Some(at) = msix_entry_addr(f, e) {
                hw.mmio_write32(at + 12, hw.mmio_read32(at + 12) | MSIX_MASKED);
                hw.mmio_write32(at, 0);
                hw.mmio_write32(at + 4, 0);
                hw.mmio_write32(at + 8, 0);
            }
            let cap = u16::from(f.caps.msix);
            if last && cap != 0 {
                let head = cfg.read32(bdf, cap);
                cfg.write32(bdf, cap, head & !((MSIX_ENABLE | MSIX_FUNCTION_MASK) << 16));
            }
        }
    }
}

/// One bound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// The owner (the caller of the bind).
    pub dom: DomainId,
    /// Its port.
    pub port: u32,
    /// The function.
    pub bdf: Bdf,
    /// Which message.
    pub kind: Kind,
    /// The host vector the message carries.
    pub vector: u8,
}

/// Every bound message and the host vectors in use. A vector is taken
/// when a message is bound and given back only after the message is
/// disabled at its device ([`Bindings::free_vector`]), so a vector never
/// serves two messages.
pub struct Bindings {
    list: Vec<Binding>,
    /// Vectors `first..end` may be handed out.
    first: u8,
    end: u8,
    /// Bit `v`: vector `v` is taken.
    used: [u64; 4],
}

impl Bindings {
    /// An empty table handing out vectors `first..end`.
    pub const fn new(first: u8, end: u8) -> Self {
        Self {
            list: Vec::new(),
            first,
            end,
            used: [0; 4],
        }
    }

    /// Whether `dom` may bind `kind` of `bdf` now: `EBUSY` when it is
    /// bound already or the function's other kind is (MSI and MSI-X are
    /// never both enabled, PCI Local Bus 3.0 6.8), `ENOMEM` when `dom`
    /// has [`pvabi::PCI_MSI_MAX_BOUND`] bound.
    pub fn check(&self, dom: DomainId, bdf: Bdf, kind: Kind) -> Result<(), Error> {
        let clash = self.list.iter().any(|b| {
            b.bdf == bdf
                && match (b.kind, kind) {
                    (Kind::Msix(a), Kind::Msix(c)) => a == c,
                    _ => true,
                }
        });
        if clash {
            return Err(Error::Busy);
        }
        let mine = self.list.iter().filter(|b| b.dom == dom).count();
        if mine >= pvabi::PCI_MSI_MAX_BOUND as usize {
            return Err(Error::NoMem);
        }
        Ok(())
    }

    /// Takes a free vector (`ENOMEM`: none left).
    pub fn alloc_vector(&mut self) -> Result<u8, Error> {
        let v = (self.first..self.end)
            .find(|&v| self.used[usize::from(v / 64)] & 1 << (v % 64) == 0)
            .ok_or(Error::NoMem)?;
        self.used[usize::from(v / 64)] |= 1 << (v % 64);
        Ok(v)
    }

    /// Gives `v` back (its message is disabled at the device).
    pub fn free_vector(&mut self, v: u8) {
        self.used[usize::from(v / 64)] &= !(1 << (v % 64));
    }

    /// Vectors taken now.
    pub fn vectors_in_use(&self) -> u32 {
        self.used.iter().map(|w| w.count_ones()).sum()
    }

    /// Records a binding (its vector from [`Bindings::alloc_vector`]).
    pub fn insert(&mut self, b: Binding) {
        self.list.push(b);
    }

    /// The binding vector `v` carries, if any.
    pub fn by_vector(&self, v: u8) -> Option<&Binding> {
        self.list.iter().find(|b| b.vector == v)
    }

    /// Removes `dom`'s binding on `port` (its vector stays taken until
    /// [`Bindings::free_vector`]).
    pub fn remove_port(&mut self, dom: DomainId, port: u32) -> Option<Binding> {
        let i = self
            .list
            .iter()
            .position(|b| b.dom == dom && b.port == port)?;
        Some(self.list.remove(i))
    }

    /// Removes every binding of `dom` (vectors still taken).
    pub fn take_domain(&mut self, dom: DomainId) -> Vec<Binding> {
        let (gone, kept) = core::mem::take(&mut self.list)
            .into_iter()
            .partition(|b| b.dom == dom);
        self.list = kept;
        gone
    }

    /// Whether another MSI-X entry of `bdf` is still bound.
    pub fn msix_bound(&self, bdf: Bdf) -> bool {
        self.list
            .iter()
            .any(|b| b.bdf == bdf && matches!(b.kind, Kind::Msix(_)))
    }

    /// Whether any message of `bdf` is bound.
    pub fn bound_any(&self, bdf: Bdf) -> bool {
        self.list.iter().any(|b| b.bdf == bdf)
    }

    /// How many messages `dom` has bound.
    pub fn count(&self, dom: DomainId) -> usize {
        self.list.iter().filter(|b| b.dom == dom).count()
    }
}

#[cfg(test)]
mod tests;
