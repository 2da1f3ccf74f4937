//! The hypervisor's own page tables: an identity map of the first 4 GiB
//! and all RAM, with the image mapped by section (text RX, rodata R, data
//! RW+NX), page 0 unmapped (null pointers fault) and a guard page under
//! every stack. No page is both writable and executable; [`verify_wx`]
//! walks the live tables to prove it at boot.
//!
//! Entry format: Intel SDM Vol. 3A 5.5 (4-level paging), AMD APM Vol. 2 5.3.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use super::physmem;

/// Present.
pub const P: u64 = 1 << 0;
/// Writable.
pub const W: u64 = 1 << 1;
/// Write-through.
pub const PWT: u64 = 1 << 3;
/// Cache disable.
pub const PCD: u64 = 1 << 4;
/// Large page (in a PDE: 2 MiB).
pub const PS: u64 = 1 << 7;
/// Global.
pub const G: u64 = 1 << 8;
/// No-execute.
pub const NX: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

const PAGE: u64 = 4096;
const LARGE: u64 = 2 << 20;

/// Frames used for page tables so far (for the memory report).
pub static TABLE_FRAMES: AtomicU64 = AtomicU64::new(0);

/// Supplies zeroed frames for page tables.
pub type FrameSource<'a> = &'a mut dyn FnMut() -> Option<u64>;

/// Why a mapping could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No frame for a page table.
    OutOfMemory,
    /// Address not canonical / not aligned.
    BadAddress(u64),
}

/// A four-level address space, reached through the identity map.
pub struct AddressSpace {
    pml4: u64,
}

fn table(phys: u64) -> &'static mut [u64; 512] {
    // SAFETY: page-table frames are allocated below the identity-map limit,
    // zeroed when allocated, and only touched under the PAGE_TABLES lock or
    // during single-threaded boot.
    unsafe { &mut *(phys as *mut [u64; 512]) }
}

fn new_table(alloc: FrameSource<'_>) -> Result<u64, MapError> {
    let f = alloc().ok_or(MapError::OutOfMemory)?;
    // SAFETY: the allocator handed us this frame; it is identity-mapped.
    unsafe { physmem::zero_frame(f) };
    TABLE_FRAMES.fetch_add(1, Ordering::Relaxed);
    Ok(f)
}

impl AddressSpace {
    /// An empty address space.
    pub fn new(alloc: FrameSource<'_>) -> Result<Self, MapError> {
        Ok(Self {
            pml4: new_table(alloc)?,
        })
    }

    /// Physical address of the top-level table (for CR3).
    pub fn root(&self) -> u64 {
        self.pml4
    }

    /// The entry one level down for `virt`, creating (or splitting a large
    /// page into) a table as needed.
    fn next(entry: &mut u64, level_size: u64, alloc: FrameSource<'_>) -> Result<u64, MapError> {
        if *entry & P == 0 {
            let t = new_table(alloc)?;
            // Intermediate entries are permissive; the leaf decides.
            *entry = t | P | W;
            return Ok(t);
        }
        if *entry & PS != 0 {
            // Split a large page into 512 smaller ones with the same rights.
            let t = new_table(alloc)?;
            let base = *entry & ADDR_MASK & !(level_size - 1);
            let flags = *entry & !ADDR_MASK & !PS;
            let child = level_size / 512;
            for (i, e) in table(t).iter_mut().enumerate() {
                *e = (base + i as u64 * child) | flags | if child > PAGE { PS } else { 0 };
            }
            *entry = t | P | W;
            return Ok(t);
        }
        Ok(*entry & ADDR_MASK)
    }

    /// Maps `[virt, virt+len)` to `[phys, ...)` with `flags` (P implied),
    /// using 2 MiB pages where alignment allows.
    pub fn map(
        &mut self,
        virt: u64,
        phys: u64,
        len: u64,
        flags: u64,
        alloc: FrameSource<'_>,
    ) -> Result<(), MapError> {
        if !virt.is_multiple_of(PAGE) || !phys.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
            return Err(MapError::BadAddress(virt));
        }
        let mut off = 0;
        while off < len {
            let (v, p) = (virt + off, phys + off);
            let large = v % LARGE == 0 && p % LARGE == 0 && len - off >= LARGE;
            let pml4e = &mut table(self.pml4)[((v >> 39) & 511) as usize];
            let pdpt = Self::next(pml4e, 1 << 39, alloc)?;
            let pdpte = &mut table(pdpt)[((v >> 30) & 511) as usize];
            let pd = Self::next(pdpte, 1 << 30, alloc)?;
            let pde = &mut table(pd)[((v >> 21) & 511) as usize];
            if large {
                *pde = p | flags | P | PS;
                off += LARGE;
                continue;
            }
            let pt = Self::next(pde, LARGE, alloc)?;
            table(pt)[((v >> 12) & 511) as usize] = p | flags | P;
            off += PAGE;
        }
        Ok(())
    }

    /// Removes the 4 KiB page at `virt` (splitting a large page if needed).
    pub fn unmap_page(&mut self, virt: u64, alloc: FrameSource<'_>) -> Result<(), MapError> {
        let pml4e = &mut table(self.pml4)[((virt >> 39) & 511) as usize];
        if *pml4e & P == 0 {
            return Ok(());
        }
        let pdpt = Self::next(pml4e, 1 << 39, alloc)?;
        let pdpte = &mut table(pdpt)[((virt >> 30) & 511) as usize];
        if *pdpte & P == 0 {
            return Ok(());
        }
        let pd = Self::next(pdpte, 1 << 30, alloc)?;
        let pde = &mut table(pd)[((virt >> 21) & 511) as usize];
        if *pde & P == 0 {
            return Ok(());
        }
        let pt = Self::next(pde, LARGE, alloc)?;
        table(pt)[((virt >> 12) & 511) as usize] = 0;
        Ok(())
    }

    /// Walks every present leaf: `(virt, size, entry)`.
    pub fn for_each_leaf(&self, mut f: impl FnMut(u64, u64, u64)) {
        for (i4, e4) in table(self.pml4).iter().enumerate() {
            if e4 & P == 0 {
                continue;
            }
            for (i3, e3) in table(e4 & ADDR_MASK).iter().enumerate() {
                if e3 & P == 0 {
                    continue;
                }
                let v3 = ((i4 as u64) << 39) | ((i3 as u64) << 30);
                if e3 & PS != 0 {
                    f(v3, 1 << 30, *e3);
                    continue;
                }
                for (i2, e2) in table(e3 & ADDR_MASK).iter().enumerate() {
                    if e2 & P == 0 {
                        continue;
                    }
                    let v2 = v3 | ((i2 as u64) << 21);
                    if e2 & PS != 0 {
                        f(v2, LARGE, *e2);
                        continue;
                    }
                    for (i1, e1) in table(e2 & ADDR_MASK).iter().enumerate() {
                        if e1 & P != 0 {
                            f(v2 | ((i1 as u64) << 12), PAGE, *e1);
                        }
                    }
                }
            }
        }
    }
}

/// The live address space, once [`super::bootcpu::switch_page_tables`]
/// switched to it.
pub static KERNEL_SPACE: Mutex<Option<AddressSpace>> = Mutex::new(None);

/// Counts of what [`verify_wx`] saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct WxReport {
    /// Present leaf entries.
    pub leaves: u64,
    /// Executable leaves.
    pub executable: u64,
    /// Leaves both writable and executable (must be zero).
    pub writable_executable: u64,
}

/// Walks the live page tables and counts writable+executable leaves.
pub fn verify_wx() -> WxReport {
    let mut r = WxReport::default();
    if let Some(space) = KERNEL_SPACE.lock().as_ref() {
        space.for_each_leaf(|_, _, e| {
            r.leaves += 1;
            if e & NX == 0 {
                r.executable += 1;
                if e & W != 0 {
                    r.writable_executable += 1;
                }
            }
        });
    }
    r
}

/// Makes `[addr, addr + PAGE)` a guard page: any access faults.
pub fn guard_page(addr: u64) -> Result<(), MapError> {
    let mut guard = KERNEL_SPACE.lock();
    let space = guard.as_mut().ok_or(MapError::BadAddress(addr))?;
    space.unmap_page(addr, &mut || crate::arch::frames::alloc_frame())?;
    x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(addr));
    Ok(())
}

/// Guard pages (boot stack, AP stacks, IST stacks), so a fault report can
/// say "stack overflow". Lock-free: read from exception handlers.
static GUARDS: [AtomicU64; 1 + 4 * super::percpu::MAX_CPUS] =
    [const { AtomicU64::new(0) }; 1 + 4 * super::percpu::MAX_CPUS];

/// Remembers a guard page.
pub fn register_guard(addr: u64) {
    for g in &GUARDS {
        if g.compare_exchange(0, addr, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

/// Whether `addr` falls in a registered guard page.
pub fn is_guard(addr: u64) -> bool {
    GUARDS.iter().any(|g| {
        let base = g.load(Ordering::Relaxed);
        base != 0 && (base..base + PAGE).contains(&addr)
    })
}

/// Allocates a stack of `pages` pages with an unmapped guard page below it
/// and returns the top.
pub fn alloc_stack(pages: u64) -> Option<u64> {
    let base = crate::arch::frames::alloc_frames(pages + 1)?;
    guard_page(base).ok()?;
    register_guard(base);
    Some(base + (pages + 1) * PAGE)
}

/// Maps `[addr, addr + len)` identity, read/write, never executable and
/// uncached (PCD|PWT: PAT entry 3, UC, in the power-on PAT, Intel SDM
/// Vol. 3A 13.12.3), for device registers such as ECAM. Memory-mapped
/// config space must not be cached: PCIe Base 6.0 7.2.2 requires each
/// access to reach the device as issued. Boot only, before the other CPUs
/// start (they load these tables fresh; no other TLB holds the old entry).
pub fn map_uncached(addr: u64, len: u64) -> Result<(), MapError> {
    let end = addr.checked_add(len).ok_or(MapError::BadAddress(addr))?;
    // The identity map must stay canonical and below the 52-bit limit.
    if end > 1 << 46 {
        return Err(MapError::BadAddress(addr));
    }
    let mut guard = KERNEL_SPACE.lock();
    let space = guard.as_mut().ok_or(MapError::BadAddress(addr))?;
    space.map(addr, addr, len, W | NX | PCD | PWT, &mut || {
        crate::arch::frames::alloc_frame()
    })?;
    x86_64::instructions::tlb::flush_all();
    Ok(())
}
