//! I/O page tables: what a device's DMA addresses translate through once
//! it is attached to a domain. One radix-tree walker, two entry formats:
//!
//! - VT-d second-level tables (Intel VT-d spec 4.1, 9.8): bit 0 read,
//!   bit 1 write, bits 51:12 the address; a non-leaf entry needs R|W too,
//!   as the unit ANDs the rights of every level (3.7). 3 levels for a
//!   39-bit AGAW, 4 for 48-bit.
//! - AMD-Vi page tables (AMD IOMMU spec 3.x, 2.2.3, tables 14/15): bit 0
//!   present, bits 11:9 NextLevel (the level of the table pointed at;
//!   0 in a leaf), bits 51:12 the address, bit 61 IR, bit 62 IW. The
//!   unit follows NextLevel, so a non-leaf entry must carry its level.
//!
//! Only 4 KiB leaves: large IOMMU pages depend on the unit (VT-d SLLPS,
//! AMD's NextLevel-7 encoding) and a device's map changes page by page
//! anyway. Tables live in frames reached through
//! [`crate::mm::gpt::TableMemory`] (the identity map on bare metal, a map
//! in host tests). Invalidation of the unit's caches is the caller's job.

use crate::mm::gpt::TableMemory;

const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const PAGE: u64 = 4096;

/// The entry format of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    VtdSecondLevel,
    AmdVi,
}

const VTD_R: u64 = 1 << 0;
const VTD_W: u64 = 1 << 1;
const AMD_PR: u64 = 1 << 0;
const AMD_IR: u64 = 1 << 61;
const AMD_IW: u64 = 1 << 62;

impl Format {
    fn table_entry(self, table: u64, child_level: u32) -> u64 {
        match self {
            Format::VtdSecondLevel => (table & ADDR_MASK) | VTD_R | VTD_W,
            Format::AmdVi => {
                (table & ADDR_MASK) | AMD_PR | AMD_IR | AMD_IW | (u64::from(child_level) << 9)
            }
        }
    }

    fn leaf_entry(self, hpa: u64, write: bool) -> u64 {
        match self {
            Format::VtdSecondLevel => (hpa & ADDR_MASK) | VTD_R | if write { VTD_W } else { 0 },
            Format::AmdVi => (hpa & ADDR_MASK) | AMD_PR | AMD_IR | if write { AMD_IW } else { 0 },
        }
    }

    /// A not-present entry. VT-d: 0. AMD-Vi: PR = 0 with NextLevel = 1.
    /// The unit ignores every other bit of a not-present entry (AMD IOMMU
    /// spec 2.2.3), but QEMU 7.2's walker gives up silently on an all-zero
    /// entry and logs IO_PAGE_FAULT only for a non-zero one that is not
    /// present; a logged fault for DMA outside the domain is the point, so
    /// empty entries are never zero.
    fn empty(self) -> u64 {
        match self {
            Format::VtdSecondLevel => 0,
            Format::AmdVi => 1 << 9,
        }
    }

    fn present(self, e: u64) -> bool {
        match self {
            Format::VtdSecondLevel => e & (VTD_R | VTD_W) != 0,
            Format::AmdVi => e & AMD_PR != 0,
        }
    }

    fn writable(self, e: u64) -> bool {
        match self {
            Format::VtdSecondLevel => e & VTD_W != 0,
            Format::AmdVi => e & AMD_IW != 0,
        }
    }
}

/// Why a mapping change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PtError {
    /// An address not 4 KiB aligned, or a device address beyond the
    /// table's reach.
    BadAddress(u64),
    /// The device address is already mapped.
    AlreadyMapped(u64),
    /// No frame for a table.
    OutOfMemory,
}

/// One device address space.
#[derive(Debug)]
pub struct IoPageTable {
    format: Format,
    levels: u32,
    root: u64,
    tables: usize,
}

/// A table of `format`'s empty entries.
fn new_table<M: TableMemory + ?Sized>(format: Format, mem: &mut M) -> Result<u64, PtError> {
    let t = mem.alloc_table().ok_or(PtError::OutOfMemory)?;
    if format.empty() != 0 {
        for i in 0..512 {
            mem.write_entry(t, i, format.empty());
        }
    }
    Ok(t)
}

fn index(addr: u64, level: u32) -> usize {
    ((addr >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

impl IoPageTable {
    /// An empty table of `levels` (3 or 4) levels.
    pub fn new<M: TableMemory + ?Sized>(
        format: Format,
        levels: u32,
        mem: &mut M,
    ) -> Result<Self, PtError> {
        if !(3..=4).contains(&levels) {
            return Err(PtError::BadAddress(0));
        }
        let root = new_table(format, mem)?;
        Ok(Self {
            format,
            levels,
            root,
            tables: 1,
        })
    }

    /// The root table's host-physical address (context entry SLPTPTR,
    /// DTE page table root).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Levels of the walk (the DTE's Mode, the context entry's AW).
    pub fn levels(&self) -> u32 {
        self.levels
    }

    /// Table frames held, the root included.
    pub fn tables(&self) -> usize {
        self.tables
    }

    /// Device addresses are below this.
    pub fn limit(&self) -> u64 {
        1 << (12 + 9 * self.levels)
    }

    fn check(&self, addr: u64) -> Result<(), PtError> {
        if !addr.is_multiple_of(PAGE) || addr >= self.limit() {
            return Err(PtError::BadAddress(addr));
        }
        Ok(())
    }

    /// Maps the 4 KiB page at device address `dva` to host-physical `hpa`.
    pub fn map<M: TableMemory + ?Sized>(
        &mut self,
        dva: u64,
        hpa: u64,
        write: bool,
        mem: &mut M,
    ) -> Result<(), PtError> {
        self.check(dva)?;
        if !hpa.is_multiple_of(PAGE) || hpa & !ADDR_MASK != 0 {
            return Err(PtError::BadAddress(hpa));
        }
        let mut table = self.root;
        for level in (2..=self.levels).rev() {
            let i = index(dva, level);
            let e = mem.read_entry(table, i);
            table = if self.format.present(e) {
                e & ADDR_MASK
            } else {
                let t = new_table(self.format, mem)?;
                self.tables += 1;
                mem.write_entry(table, i, self.format.table_entry(t, level - 1));
                t
            };
        }
        let i = index(dva, 1);
        if self.format.present(mem.read_entry(table, i)) {
            return Err(PtError::AlreadyMapped(dva));
        }
        mem.write_entry(table, i, self.format.leaf_entry(hpa, write));
        Ok(())
    }

    /// Unmaps the page at `dva`; returns the host frame it mapped. The
    /// unit may still cache it until the caller invalidates.
    pub fn unmap<M: TableMemory + ?Sized>(&mut self, dva: u64, mem: &mut M) -> Option<u64> {
        self.check(dva).ok()?;
        let (table, i, e) = self.walk(dva, mem)?;
        mem.write_entry(table, i, self.format.empty());
        Some(e & ADDR_MASK)
    }

    /// Where `dva` goes: the host address and whether writes are allowed.
    pub fn translate<M: TableMemory + ?Sized>(&self, dva: u64, mem: &M) -> Option<(u64, bool)> {
        let (_, _, e) = self.walk(dva & !(PAGE - 1), mem)?;
        Some((
            (e & ADDR_MASK) | (dva & (PAGE - 1)),
            self.format.writable(e),
        ))
    }

    fn walk<M: TableMemory + ?Sized>(&self, dva: u64, mem: &M) -> Option<(u64, usize, u64)> {
        if dva >= self.limit() {
            return None;
        }
        let mut table = self.root;
        for level in (2..=self.levels).rev() {
            let e = mem.read_entry(table, index(dva, level));
            if !self.format.present(e) {
                return None;
            }
            table = e & ADDR_MASK;
        }
        let i = index(dva, 1);
        let e = mem.read_entry(table, i);
        self.format.present(e).then_some((table, i, e))
    }

    /// Frees every table frame (not the mapped frames); returns how many.
    /// Only once no unit can walk it any more (detached and invalidated).
    pub fn destroy<M: TableMemory + ?Sized>(self, mem: &mut M) -> usize {
        fn free<M: TableMemory + ?Sized>(f: Format, mem: &mut M, t: u64, level: u32) -> usize {
            let mut n = 1;
            if level > 1 {
                for i in 0..512 {
                    let e = mem.read_entry(t, i);
                    if f.present(e) {
                        n += free(f, mem, e & ADDR_MASK, level - 1);
                    }
                }
            }
            mem.free_table(t);
            n
        }
        free(self.format, mem, self.root, self.levels)
    }
}

#[cfg(test)]
#[path = "pt_tests.rs"]
mod tests;
