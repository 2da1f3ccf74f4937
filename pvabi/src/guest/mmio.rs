//! Device registers (2.1, `crate::HC_PCI_LIST`): a domain that owns
//! a PCI device reaches the memory BARs the hypervisor mapped for it
//! ([`crate::PCI_BAR_MAPPED`]: guest-physical = host-physical, uncached
//! in the nested tables) by mapping the same addresses into its own page
//! tables, uncached too, and reading and writing them with single
//! volatile accesses.
//!
//! The guest starts on the identity map the hypervisor built (2 MiB pages
//! over its RAM); [`map`] adds 4 KiB pages with PCD|PWT for the device
//! range, taking the table pages it needs from a small static pool
//! (identity-mapped like all of the guest's image). Mapping changes only
//! present-bit-clear entries, so no TLB entry can be stale; each new page
//! is flushed with INVLPG all the same.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicUsize, Ordering};

/// Page-table entry bits (Intel SDM Vol. 3A 4.5; AMD APM Vol. 2 5.3).
const P: u64 = 1 << 0;
const W: u64 = 1 << 1;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const PS: u64 = 1 << 7;
const ADDR: u64 = 0x000f_ffff_ffff_f000;
const PAGE: u64 = 4096;

/// Table pages for device mappings: enough for a few BARs in distinct
/// 2 MiB regions.
const POOL_PAGES: usize = 8;

#[repr(C, align(4096))]
struct Pool([[u64; 512]; POOL_PAGES]);

static mut POOL: Pool = Pool([[0; 512]; POOL_PAGES]);
static POOL_USED: AtomicUsize = AtomicUsize::new(0);

/// Why a device range could not be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Not page-aligned, empty, or beyond 2^48.
    BadRange,
    /// The range is covered by a 2 MiB page of the guest's own RAM map.
    InRam,
    /// No table page left in the pool.
    NoTables,
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::BadRange => "device range not page-aligned, empty or beyond 2^48",
            Self::InRam => "device range inside the guest's RAM map",
            Self::NoTables => "no page-table page left for device mappings",
        })
    }
}

/// A mapped device range.
#[derive(Debug, Clone, Copy)]
pub struct Mmio {
    base: u64,
    len: u64,
}

fn cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effect; the guest runs at CPL 0.
    unsafe {
        core::arch::asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v & ADDR
}

/// The table that `entry` (at `at`) points to, made from a pool page if
/// the entry is empty.
fn next_table(at: *mut u64) -> Result<*mut u64, MapError> {
    // SAFETY: `at` points into a page table reached from CR3 on the
    // identity map (guest-virtual = guest-physical); one vCPU maps at a
    // time (the caller's contract on `map`).
    let e = unsafe { at.read_volatile() };
    if e & P != 0 {
        if e & PS != 0 {
            return Err(MapError::InRam);
        }
        return Ok((e & ADDR) as *mut u64);
    }
    let i = POOL_USED.fetch_add(1, Ordering::Relaxed);
    if i >= POOL_PAGES {
        POOL_USED.fetch_sub(1, Ordering::Relaxed);
        return Err(MapError::NoTables);
    }
    // SAFETY: page `i` of the pool is taken by this call alone (the
    // counter), zeroed in .bss, and identity-mapped.
    let page = unsafe { (&raw mut POOL.0[i]) as *mut u64 };
    // SAFETY: as above for `at`.
    unsafe { at.write_volatile(page as u64 | P | W) };
    Ok(page)
}

/// Maps `[base, base + len)` (page-aligned) uncached at the same virtual
/// addresses. Only ranges the hypervisor mapped for the domain may then be
/// touched (anything else is outside the domain's memory: it is killed).
/// Call from one vCPU at a time.
pub fn map(base: u64, len: u64) -> Result<Mmio, MapError> {
    let end = base.checked_add(len).ok_or(MapError::BadRange)?;
    if len == 0 || !base.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) || end > 1 << 48 {
        return Err(MapError::BadRange);
    }
    let pml4 = cr3() as *mut u64;
    let mut va = base;
    while va < end {
        let idx = |shift: u32| ((va >> shift) & 511) as usize;
        // SAFETY: indexes are < 512 inside 4 KiB tables.
        let pdpt = next_table(unsafe { pml4.add(idx(39)) })?;
        // SAFETY: as above.
        let pd = next_table(unsafe { pdpt.add(idx(30)) })?;
        // SAFETY: as above.
        let pt = next_table(unsafe { pd.add(idx(21)) })?;
        // SAFETY: as above; then INVLPG for the page (harmless if nothing
        // was cached).
        unsafe {
            pt.add(idx(12)).write_volatile(va | P | W | PCD | PWT);
            core::arch::asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags));
        }
        va += PAGE;
    }
    Ok(Mmio { base, len })
}

impl Mmio {
    /// Reads the 32-bit register at `off` (4-aligned, inside the range).
    pub fn read32(&self, off: u64) -> Option<u32> {
        if !off.is_multiple_of(4) || off.checked_add(4)? > self.len {
            return None;
        }
        // SAFETY: inside a range `map` mapped; the hypervisor maps the
        // device there; one aligned access as device registers want.
        Some(unsafe { ((self.base + off) as *const u32).read_volatile() })
    }

    /// Writes the 32-bit register at `off` (4-aligned, inside the range).
    pub fn write32(&self, off: u64, value: u32) -> Option<()> {
        if !off.is_multiple_of(4) || off.checked_add(4)? > self.len {
            return None;
        }
        // SAFETY: as in `read32`.
        unsafe { ((self.base + off) as *mut u32).write_volatile(value) };
        Some(())
    }
}
