//! Guest-physical page tables: one builder for Intel EPT and AMD NPT.
//!
//! Both formats are four-level radix trees indexed by the same bits of a
//! 48-bit guest-physical address (PML4 39..47, PDPT 30..38, PD 21..29,
//! PT 12..20); only the bits inside an entry differ. [`EntryFormat`] captures
//! that difference ([`Ept`], [`Npt`]) and [`GuestPageTable`] does everything
//! else once: 2 MiB leaves where alignment allows, splitting a 2 MiB leaf
//! when a 4 KiB change lands inside it, freeing tables that become empty.
//!
//! The tables live in frames reached through [`TableMemory`], so the same
//! code runs over the identity map on bare metal and over a hash map in host
//! tests. Only the hypervisor writes these tables (they are never mapped into
//! a guest), so their contents are trusted; the *arguments* are checked.
//!
//! Invalidation is the caller's job: after [`GuestPageTable::unmap`] (which
//! may also split large pages) the vCPUs using the table must flush
//! (INVEPT on Intel, Intel SDM Vol. 3C 29.4.3; a TLB flush for the ASID on
//! AMD, AMD APM Vol. 2 15.16). A fresh [`GuestPageTable::map`] into empty
//! space needs none: neither vendor caches a translation through a
//! non-present entry (Intel SDM Vol. 3C 29.4.1), so nothing stale exists.
#![forbid(unsafe_code)]

use core::fmt;
use core::marker::PhantomData;

/// Size of a small page and of a table.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a large (PD-level) page.
pub const LARGE_PAGE_SIZE: u64 = 2 << 20;
/// Guest-physical addresses are below this (4-level tables: 48 bits).
pub const GPA_LIMIT: u64 = 1 << 48;
/// Host-physical addresses are below this (the architectural MAXPHYADDR
/// ceiling, 52 bits).
pub const HPA_LIMIT: u64 = 1 << 52;

/// Entries per table.
const ENTRIES: usize = 512;
/// Address bits 12..51 of an entry.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Bit 7: a PD entry maps a 2 MiB page (both formats).
const LARGE: u64 = 1 << 7;

/// Access rights of a mapping, mapped onto each entry format.
///
/// Every mapping must be readable: EPT treats write-without-read as a
/// misconfiguration (Intel SDM Vol. 3C 29.3.3.1) and NPT cannot express
/// anything but readable-when-present, so one rule serves both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Perms {
    /// Reads allowed.
    pub read: bool,
    /// Writes allowed.
    pub write: bool,
    /// Instruction fetches allowed.
    pub execute: bool,
    /// Device memory (a PCI BAR): uncached, EPT memory type UC / NPT
    /// PCD|PWT (`pci/bars.rs`); guest RAM is write-back.
    pub uncached: bool,
}

impl Perms {
    /// Read-only, not executable.
    pub const READ: Self = Self::new(true, false, false);
    /// Read-write, not executable.
    pub const READ_WRITE: Self = Self::new(true, true, false);
    /// Read and execute.
    pub const READ_EXECUTE: Self = Self::new(true, false, true);
    /// Read, write and execute: ordinary guest RAM.
    pub const ALL: Self = Self::new(true, true, true);

    /// Permissions from the three flags.
    pub const fn new(read: bool, write: bool, execute: bool) -> Self {
        Self {
            read,
            write,
            execute,
            uncached: false,
        }
    }

    /// The same rights, uncached (device memory).
    pub const fn uncached(self) -> Self {
        Self {
            uncached: true,
            ..self
        }
    }

    /// Whether both formats can express these rights (see the type's docs).
    pub const fn is_valid(self) -> bool {
        self.read
    }
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = |on: bool, c: char| if on { c } else { '-' };
        write!(
            f,
            "{}{}{}",
            flag(self.read, 'r'),
            flag(self.write, 'w'),
            flag(self.execute, 'x')
        )
    }
}

/// The size of one leaf mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageSize {
    /// A 4 KiB page (PT entry).
    Size4K,
    /// A 2 MiB page (PD entry with bit 7 set).
    Size2M,
}

impl PageSize {
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Size4K => PAGE_SIZE,
            Self::Size2M => LARGE_PAGE_SIZE,
        }
    }
}

/// The bits of one entry format. Implemented by [`Ept`] and [`Npt`].
pub trait EntryFormat {
    /// Name for log lines: `"EPT"` or `"NPT"`.
    const NAME: &'static str;
    /// An entry pointing at the next-level table at host-physical `table`.
    fn table_entry(table: u64) -> u64;
    /// A leaf mapping host-physical `hpa` (aligned to `size`).
    fn leaf_entry(hpa: u64, perms: Perms, size: PageSize) -> u64;
    /// Whether the entry maps or points at anything.
    fn is_present(entry: u64) -> bool;
    /// The rights a present leaf grants.
    fn perms(entry: u64) -> Perms;
}

/// Intel EPT entries (Intel SDM Vol. 3C 29.3.2): bit 0 read, 1 write,
/// 2 execute (supervisor-mode execute when mode-based control is off),
/// leaf bits 3..5 the memory type, bit 7 a large page in a PD/PDPT entry.
/// An entry is present when any of R/W/X is set. Non-leaf entries grant
/// R|W|X so only the leaf decides. The EPTP (memory type, walk length) is
/// built by the VT-x backend from [`GuestPageTable::root`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ept {}

impl Ept {
    /// Bit 0: read access.
    pub const READ: u64 = 1 << 0;
    /// Bit 1: write access.
    pub const WRITE: u64 = 1 << 1;
    /// Bit 2: execute access.
    pub const EXECUTE: u64 = 1 << 2;
    /// Bits 3..5 of a leaf: memory type 6, write-back (Intel SDM Vol. 3C
    /// 29.3.7). Guest RAM is ordinary cacheable memory.
    pub const MEMTYPE_WB: u64 = 6 << 3;
    /// Bit 7 of a PD entry: maps a 2 MiB page.
    pub const LARGE: u64 = LARGE;
}

impl EntryFormat for Ept {
    const NAME: &'static str = "EPT";

    fn table_entry(table: u64) -> u64 {
        (table & ADDR_MASK) | Self::READ | Self::WRITE | Self::EXECUTE
    }

    fn leaf_entry(hpa: u64, perms: Perms, size: PageSize) -> u64 {
        // UC in the EPT makes the access UC whatever the guest's PAT says
        // (Intel SDM Vol. 3A 13.11.2 / Vol. 3C 29.3.7.2).
        let memtype = if perms.uncached { 0 } else { Self::MEMTYPE_WB };
        let mut e = (hpa & ADDR_MASK) | memtype;
        if perms.read {
            e |= Self::READ;
        }
        if perms.write {
            e |= Self::WRITE;
        }
        if perms.execute {
            e |= Self::EXECUTE;
        }
        if size == PageSize::Size2M {
            e |= Self::LARGE;
        }
        e
    }

    fn is_present(entry: u64) -> bool {
        entry & (Self::READ | Self::WRITE | Self::EXECUTE) != 0
    }

    fn perms(entry: u64) -> Perms {
        let p = Perms::new(
            entry & Self::READ != 0,
            entry & Self::WRITE != 0,
            entry & Self::EXECUTE != 0,
        );
        if entry & (7 << 3) == 0 {
            p.uncached()
        } else {
            p
        }
    }
}

/// AMD NPT entries: ordinary long-mode page-table entries (AMD APM Vol. 2
/// 5.3 and 15.25): bit 0 present, 1 writable, 2 user, 7 page size, 63
/// no-execute. Every entry sets U because the nested walk treats all guest
/// accesses as user accesses (AMD APM Vol. 2 15.25.5). Non-leaf entries are
/// P|W|U so only the leaf decides.
///
/// NX is only honoured (and bit 63 only legal) when the host runs with
/// EFER.NXE = 1, which the hypervisor's own paging already requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Npt {}

impl Npt {
    /// Bit 0: present.
    pub const PRESENT: u64 = 1 << 0;
    /// Bit 1: writable.
    pub const WRITE: u64 = 1 << 1;
    /// Bit 2: user.
    pub const USER: u64 = 1 << 2;
    /// Bit 7 of a PD entry: maps a 2 MiB page.
    pub const LARGE: u64 = LARGE;
    /// Bit 63: no instruction fetch.
    pub const NO_EXECUTE: u64 = 1 << 63;
    /// Bits 3 (PWT) and 4 (PCD): uncached.
    pub const PCD_PWT: u64 = 3 << 3;
}

impl EntryFormat for Npt {
    const NAME: &'static str = "NPT";

    fn table_entry(table: u64) -> u64 {
        (table & ADDR_MASK) | Self::PRESENT | Self::WRITE | Self::USER
    }

    fn leaf_entry(hpa: u64, perms: Perms, size: PageSize) -> u64 {
        // Readable is implied by present; `Perms::is_valid` was checked.
        let mut e = (hpa & ADDR_MASK) | Self::PRESENT | Self::USER;
        // PCD|PWT: UC in the nested table, which wins over the guest's
        // own type when the two combine (AMD APM Vol. 2 15.25.8).
        if perms.uncached {
            e |= Self::PCD_PWT;
        }
        if perms.write {
            e |= Self::WRITE;
        }
        if !perms.execute {
            e |= Self::NO_EXECUTE;
        }
        if size == PageSize::Size2M {
            e |= Self::LARGE;
        }
        e
    }

    fn is_present(entry: u64) -> bool {
        entry & Self::PRESENT != 0
    }

    fn perms(entry: u64) -> Perms {
        let p = Perms::new(
            entry & Self::PRESENT != 0,
            entry & Self::WRITE != 0,
            entry & Self::NO_EXECUTE == 0,
        );
        if entry & Self::PCD_PWT == Self::PCD_PWT {
            p.uncached()
        } else {
            p
        }
    }
}

/// Where the table frames live. Bare metal implements this over the
/// identity map of host memory; tests over a hash map.
pub trait TableMemory {
    /// A zeroed 4 KiB frame for a table, by host-physical address, or `None`
    /// when the domain's memory is exhausted.
    fn alloc_table(&mut self) -> Option<u64>;
    /// Entry `index` (< 512) of the table at `table`.
    fn read_entry(&self, table: u64, index: usize) -> u64;
    /// Sets entry `index` (< 512) of the table at `table`.
    fn write_entry(&mut self, table: u64, index: usize, value: u64);
    /// Returns a frame obtained from [`TableMemory::alloc_table`].
    fn free_table(&mut self, table: u64);
}

/// Why a request was refused. No refused request changes any mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GptError {
    /// The guest-physical address is not 4 KiB aligned.
    UnalignedGpa(u64),
    /// The host-physical address is not 4 KiB aligned.
    UnalignedHpa(u64),
    /// The length is not a multiple of 4 KiB.
    UnalignedLength(u64),
    /// The guest-physical range wraps or reaches beyond [`GPA_LIMIT`].
    GpaOutOfRange {
        /// Start of the range.
        gpa: u64,
        /// Length of the range.
        len: u64,
    },
    /// The host-physical range wraps or reaches beyond [`HPA_LIMIT`].
    HpaOutOfRange {
        /// Start of the range.
        hpa: u64,
        /// Length of the range.
        len: u64,
    },
    /// The rights cannot be expressed (not readable; see [`Perms`]).
    BadPerms(Perms),
    /// A page in the range is already mapped; mappings are never silently
    /// replaced.
    AlreadyMapped {
        /// The first mapped guest-physical address found in the range.
        gpa: u64,
    },
    /// No 4 KiB leaf maps this guest-physical page (nothing to replace).
    NotMapped {
        /// The guest-physical page.
        gpa: u64,
    },
    /// No frame was left for a table.
    OutOfMemory,
}

impl fmt::Display for GptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnalignedGpa(a) => {
                write!(f, "guest-physical address {a:#x} is not 4 KiB aligned")
            }
            Self::UnalignedHpa(a) => {
                write!(f, "host-physical address {a:#x} is not 4 KiB aligned")
            }
            Self::UnalignedLength(l) => write!(f, "length {l:#x} is not a multiple of 4 KiB"),
            Self::GpaOutOfRange { gpa, len } => write!(
                f,
                "guest-physical range {gpa:#x} + {len:#x} is beyond the 48-bit limit"
            ),
            Self::HpaOutOfRange { hpa, len } => write!(
                f,
                "host-physical range {hpa:#x} + {len:#x} is beyond the 52-bit limit"
            ),
            Self::BadPerms(p) => write!(f, "permissions {p} are not readable"),
            Self::AlreadyMapped { gpa } => {
                write!(f, "guest-physical page {gpa:#x} is already mapped")
            }
            Self::NotMapped { gpa } => {
                write!(f, "guest-physical page {gpa:#x} has no 4 KiB mapping")
            }
            Self::OutOfMemory => f.write_str("out of memory for a page table"),
        }
    }
}

/// Bytes covered by one entry at `level` (1 = PT .. 4 = PML4).
const fn entry_span(level: u32) -> u64 {
    1 << (12 + 9 * (level - 1))
}

/// Index into the table at `level` for `gpa`; always < 512.
const fn index(gpa: u64, level: u32) -> usize {
    ((gpa >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

/// Checks a guest-physical range; returns its end.
fn check_gpa_range(gpa: u64, len: u64) -> Result<u64, GptError> {
    if !gpa.is_multiple_of(PAGE_SIZE) {
        return Err(GptError::UnalignedGpa(gpa));
    }
    if !len.is_multiple_of(PAGE_SIZE) {
        return Err(GptError::UnalignedLength(len));
    }
    match gpa.checked_add(len) {
        Some(end) if end <= GPA_LIMIT => Ok(end),
        _ => Err(GptError::GpaOutOfRange { gpa, len }),
    }
}

/// Checks what a mapping points at: `hpa..hpa+len` aligned and below
/// [`HPA_LIMIT`], `perms` expressible.
fn check_target(hpa: u64, len: u64, perms: Perms) -> Result<(), GptError> {
    if !hpa.is_multiple_of(PAGE_SIZE) {
        return Err(GptError::UnalignedHpa(hpa));
    }
    if hpa.checked_add(len).is_none_or(|e| e > HPA_LIMIT) {
        return Err(GptError::HpaOutOfRange { hpa, len });
    }
    if !perms.is_valid() {
        return Err(GptError::BadPerms(perms));
    }
    Ok(())
}

/// A guest-physical address space in format `F`. All addresses in and out
/// are plain `u64`s: guest-physical for `gpa`, host-physical for `hpa` and
/// table frames.
///
/// There is no `Drop`: the table frames must be handed back with
/// [`GuestPageTable::destroy`], which needs the [`TableMemory`].
#[derive(Debug)]
pub struct GuestPageTable<F: EntryFormat> {
    root: u64,
    tables: usize,
    format: PhantomData<F>,
}

impl<F: EntryFormat> GuestPageTable<F> {
    /// An empty address space: one zeroed PML4.
    pub fn new<M: TableMemory + ?Sized>(mem: &mut M) -> Result<Self, GptError> {
        let root = mem.alloc_table().ok_or(GptError::OutOfMemory)?;
        Ok(Self {
            root,
            tables: 1,
            format: PhantomData,
        })
    }

    /// Host-physical address of the PML4 (for the EPTP or the VMCB's
    /// `N_CR3`).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Number of table frames in use, the PML4 included.
    pub fn tables_in_use(&self) -> usize {
        self.tables
    }

    /// Maps guest-physical `gpa..gpa+len` to host-physical `hpa..hpa+len`
    /// with `perms`. Uses 2 MiB leaves wherever `gpa`, `hpa` and the
    /// remaining length allow, 4 KiB leaves elsewhere. All three arguments
    /// must be 4 KiB aligned; a zero length maps nothing. Fails without
    /// changing anything if any page of the range is already mapped, or if
    /// table frames run out.
    pub fn map<M: TableMemory + ?Sized>(
        &mut self,
        gpa: u64,
        hpa: u64,
        len: u64,
        perms: Perms,
        mem: &mut M,
    ) -> Result<(), GptError> {
        let end = check_gpa_range(gpa, len)?;
        check_target(hpa, len, perms)?;
        if let Some(mapped) = self.find_mapped(mem, self.root, 4, gpa, end) {
            return Err(GptError::AlreadyMapped { gpa: mapped });
        }
        // From here all addresses are below their limits, so the sums below
        // cannot overflow.
        let mut cur = gpa;
        while cur < end {
            let host = hpa + (cur - gpa);
            let large = cur.is_multiple_of(LARGE_PAGE_SIZE)
                && host.is_multiple_of(LARGE_PAGE_SIZE)
                && end - cur >= LARGE_PAGE_SIZE;
            match self.map_one(mem, cur, host, perms, large) {
                Ok(size) => cur += size.bytes(),
                Err(e) => {
                    // The range was empty before, so unmapping all of it
                    // restores that (and frees the tables made for it)
                    // without splitting, hence without allocating.
                    self.unmap_range(mem, self.root, 4, gpa, end);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Points the 4 KiB leaf at `gpa` at `hpa` with `perms`, in one entry
    /// write, and returns the host-physical frame it mapped before. There
    /// is no moment at which `gpa` is unmapped, so a vCPU of the domain
    /// running meanwhile on another CPU reads either frame, never a fault
    /// (an unmap then a map would give it one). Refused, changing nothing,
    /// unless a 4 KiB leaf maps `gpa`. The caller must then invalidate
    /// cached translations (see the module docs).
    pub fn replace<M: TableMemory + ?Sized>(
        &mut self,
        gpa: u64,
        hpa: u64,
        perms: Perms,
        mem: &mut M,
    ) -> Result<u64, GptError> {
        check_gpa_range(gpa, PAGE_SIZE)?;
        check_target(hpa, PAGE_SIZE, perms)?;
        let mut table = self.root;
        for level in [4, 3, 2] {
            let e = mem.read_entry(table, index(gpa, level));
            if !F::is_present(e) || (level == 2 && e & LARGE != 0) {
                return Err(GptError::NotMapped { gpa });
            }
            table = e & ADDR_MASK;
        }
        let old = mem.read_entry(table, index(gpa, 1));
        if !F::is_present(old) {
            return Err(GptError::NotMapped { gpa });
        }
        mem.write_entry(
            table,
            index(gpa, 1),
            F::leaf_entry(hpa, perms, PageSize::Size4K),
        );
        Ok(old & ADDR_MASK)
    }

    /// Unmaps every page in `gpa..gpa+len` (holes are fine) and frees tables
    /// that become empty. A 2 MiB leaf that straddles either end is split
    /// first, so pages outside the range stay mapped. Returns the number of
    /// 4 KiB pages that were mapped and now are not. The caller must then
    /// invalidate cached translations (see the module docs).
    pub fn unmap<M: TableMemory + ?Sized>(
        &mut self,
        gpa: u64,
        len: u64,
        mem: &mut M,
    ) -> Result<u64, GptError> {
        let end = check_gpa_range(gpa, len)?;
        if len == 0 {
            return Ok(0);
        }
        // Split before changing anything: a failed split (no memory) leaves
        // the same translations as before.
        self.split_at(mem, gpa)?;
        self.split_at(mem, end)?;
        Ok(self.unmap_range(mem, self.root, 4, gpa, end))
    }

    /// The host-physical address `gpa` maps to, with the leaf's rights and
    /// size, or `None` if unmapped (or `gpa` is beyond [`GPA_LIMIT`]).
    pub fn translate<M: TableMemory + ?Sized>(
        &self,
        gpa: u64,
        mem: &M,
    ) -> Option<(u64, Perms, PageSize)> {
        if gpa >= GPA_LIMIT {
            return None;
        }
        let mut table = self.root;
        for level in (1..=4).rev() {
            let e = mem.read_entry(table, index(gpa, level));
            if !F::is_present(e) {
                return None;
            }
            let size = match level {
                1 => PageSize::Size4K,
                2 if e & LARGE != 0 => PageSize::Size2M,
                _ => {
                    table = e & ADDR_MASK;
                    continue;
                }
            };
            let base = e & ADDR_MASK & !(size.bytes() - 1);
            return Some((base | (gpa & (size.bytes() - 1)), F::perms(e), size));
        }
        None
    }

    /// [`GuestPageTable::translate`] in the tables rooted at `root`, for a
    /// reader that holds only the root (what the CPU's walker holds: the
    /// fake vCPU of host tests walks it as the hardware would).
    pub fn translate_root<M: TableMemory + ?Sized>(
        root: u64,
        gpa: u64,
        mem: &M,
    ) -> Option<(u64, Perms, PageSize)> {
        let view = Self {
            root,
            tables: 0,
            format: PhantomData,
        };
        view.translate(gpa, mem)
    }

    /// Frees every table frame, the PML4 included, and returns how many.
    /// The mapped (data) frames are not touched: they belong to the domain.
    pub fn destroy<M: TableMemory + ?Sized>(self, mem: &mut M) -> usize {
        Self::free_tree(mem, self.root, 4)
    }

    fn free_tree<M: TableMemory + ?Sized>(mem: &mut M, table: u64, level: u32) -> usize {
        let mut freed = 1;
        if level > 1 {
            for i in 0..ENTRIES {
                let e = mem.read_entry(table, i);
                if F::is_present(e) && !(level == 2 && e & LARGE != 0) {
                    freed += Self::free_tree(mem, e & ADDR_MASK, level - 1);
                }
            }
        }
        mem.free_table(table);
        freed
    }

    /// The first mapped address in `start..end` below `table` (at `level`),
    /// skipping absent subtrees whole.
    fn find_mapped<M: TableMemory + ?Sized>(
        &self,
        mem: &M,
        table: u64,
        level: u32,
        start: u64,
        end: u64,
    ) -> Option<u64> {
        let span = entry_span(level);
        let mut cur = start;
        while cur < end {
            let next = ((cur & !(span - 1)) + span).min(end);
            let e = mem.read_entry(table, index(cur, level));
            if F::is_present(e) {
                if level == 1 || (level == 2 && e & LARGE != 0) {
                    return Some(cur);
                }
                if let Some(a) = self.find_mapped(mem, e & ADDR_MASK, level - 1, cur, next) {
                    return Some(a);
                }
            }
            cur = next;
        }
        None
    }

    /// The next-level table under entry `i` of `table`, allocated if absent.
    fn child<M: TableMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        table: u64,
        i: usize,
    ) -> Result<u64, GptError> {
        let e = mem.read_entry(table, i);
        if F::is_present(e) {
            return Ok(e & ADDR_MASK);
        }
        let new = mem.alloc_table().ok_or(GptError::OutOfMemory)?;
        self.tables += 1;
        mem.write_entry(table, i, F::table_entry(new));
        Ok(new)
    }

    /// Maps one page (2 MiB if `large` and the PD slot is free) at `gpa`.
    fn map_one<M: TableMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        gpa: u64,
        hpa: u64,
        perms: Perms,
        large: bool,
    ) -> Result<PageSize, GptError> {
        let pdpt = self.child(mem, self.root, index(gpa, 4))?;
        let pd = self.child(mem, pdpt, index(gpa, 3))?;
        let pde = mem.read_entry(pd, index(gpa, 2));
        if large && !F::is_present(pde) {
            mem.write_entry(
                pd,
                index(gpa, 2),
                F::leaf_entry(hpa, perms, PageSize::Size2M),
            );
            return Ok(PageSize::Size2M);
        }
        if F::is_present(pde) && pde & LARGE != 0 {
            // Ruled out by the caller's `find_mapped`; kept as a refusal.
            return Err(GptError::AlreadyMapped { gpa });
        }
        let pt = self.child(mem, pd, index(gpa, 2))?;
        if F::is_present(mem.read_entry(pt, index(gpa, 1))) {
            return Err(GptError::AlreadyMapped { gpa });
        }
        mem.write_entry(
            pt,
            index(gpa, 1),
            F::leaf_entry(hpa, perms, PageSize::Size4K),
        );
        Ok(PageSize::Size4K)
    }

    /// If a 2 MiB leaf covers `gpa` and `gpa` is not its start, replaces it
    /// by a table of 512 equivalent 4 KiB leaves.
    fn split_at<M: TableMemory + ?Sized>(&mut self, mem: &mut M, gpa: u64) -> Result<(), GptError> {
        if gpa.is_multiple_of(LARGE_PAGE_SIZE) || gpa >= GPA_LIMIT {
            return Ok(());
        }
        let mut table = self.root;
        for level in [4, 3] {
            let e = mem.read_entry(table, index(gpa, level));
            if !F::is_present(e) {
                return Ok(());
            }
            table = e & ADDR_MASK;
        }
        let pde = mem.read_entry(table, index(gpa, 2));
        if !F::is_present(pde) || pde & LARGE == 0 {
            return Ok(());
        }
        let pt = mem.alloc_table().ok_or(GptError::OutOfMemory)?;
        self.tables += 1;
        let base = pde & ADDR_MASK & !(LARGE_PAGE_SIZE - 1);
        let perms = F::perms(pde);
        for (i, offset) in (0..LARGE_PAGE_SIZE).step_by(4096).enumerate() {
            let leaf = F::leaf_entry(base + offset, perms, PageSize::Size4K);
            mem.write_entry(pt, i, leaf);
        }
        mem.write_entry(table, index(gpa, 2), F::table_entry(pt));
        Ok(())
    }

    /// Clears leaves in `start..end` below `table` (whole 2 MiB leaves only:
    /// the caller split the ends), frees tables left empty, and returns the
    /// number of 4 KiB pages unmapped.
    fn unmap_range<M: TableMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        table: u64,
        level: u32,
        start: u64,
        end: u64,
    ) -> u64 {
        let span = entry_span(level);
        let mut pages = 0;
        let mut cur = start;
        while cur < end {
            let next = ((cur & !(span - 1)) + span).min(end);
            let i = index(cur, level);
            let e = mem.read_entry(table, i);
            if F::is_present(e) {
                if level == 1 || (level == 2 && e & LARGE != 0) {
                    mem.write_entry(table, i, 0);
                    pages += span / PAGE_SIZE;
                } else {
                    let child = e & ADDR_MASK;
                    pages += self.unmap_range(mem, child, level - 1, cur, next);
                    if (0..ENTRIES).all(|j| !F::is_present(mem.read_entry(child, j))) {
                        mem.write_entry(table, i, 0);
                        mem.free_table(child);
                        self.tables = self.tables.saturating_sub(1);
                    }
                }
            }
            cur = next;
        }
        pages
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::collections::{BTreeMap, HashMap};
    use std::string::ToString;

    /// Tables in a hash map, frames handed out from a counter; catches
    /// double frees, accesses to freed tables and out-of-range indices.
    struct FakeMem {
        tables: HashMap<u64, Box<[u64; ENTRIES]>>,
        next: u64,
        /// Allocations still allowed (`None`: unlimited).
        budget: Option<usize>,
        allocs: usize,
        /// Every entry value written, in order.
        written: std::vec::Vec<u64>,
    }

    impl FakeMem {
        fn new() -> Self {
            Self {
                tables: HashMap::new(),
                next: 0x10_0000_0000,
                budget: None,
                allocs: 0,
                written: std::vec::Vec::new(),
            }
        }

        fn live(&self) -> usize {
            self.tables.len()
        }
    }

    impl TableMemory for FakeMem {
        fn alloc_table(&mut self) -> Option<u64> {
            if let Some(b) = self.budget.as_mut() {
                *b = b.checked_sub(1)?;
            }
            let t = self.next;
            self.next += PAGE_SIZE;
            self.allocs += 1;
            self.tables.insert(t, Box::new([0; ENTRIES]));
            Some(t)
        }

        fn read_entry(&self, table: u64, index: usize) -> u64 {
            self.tables.get(&table).expect("read of a freed table")[index]
        }

        fn write_entry(&mut self, table: u64, index: usize, value: u64) {
            self.written.push(value);
            self.tables.get_mut(&table).expect("write to a freed table")[index] = value;
        }

        fn free_table(&mut self, table: u64) {
            assert!(
                self.tables.remove(&table).is_some(),
                "double free {table:#x}"
            );
        }
    }

    /// The table `entry` points at (checking it is a non-leaf entry).
    fn next<F: EntryFormat>(mem: &FakeMem, table: u64, i: usize) -> u64 {
        let e = mem.read_entry(table, i);
        assert_eq!(e, F::table_entry(e & ADDR_MASK), "non-leaf entry {e:#x}");
        e & ADDR_MASK
    }

    fn setup<F: EntryFormat>() -> (FakeMem, GuestPageTable<F>) {
        let mut mem = FakeMem::new();
        let gpt = GuestPageTable::<F>::new(&mut mem).unwrap();
        (mem, gpt)
    }

    const MB2: u64 = LARGE_PAGE_SIZE;

    #[test]
    fn ept_entry_bits() {
        let (mut mem, mut gpt) = setup::<Ept>();
        gpt.map(0x1000, 0x5000, 0x1000, Perms::READ_WRITE, &mut mem)
            .unwrap();
        gpt.map(MB2, 2 * MB2, MB2, Perms::READ_EXECUTE, &mut mem)
            .unwrap();
        let root = gpt.root();
        let pml4e = mem.read_entry(root, 0);
        assert_eq!(pml4e & 0xfff, 0b111, "non-leaf: R|W|X, nothing else");
        let pdpt = next::<Ept>(&mem, root, 0);
        let pd = next::<Ept>(&mem, pdpt, 0);
        assert_eq!(mem.read_entry(pdpt, 0) & 0xfff, 0b111);
        let pt = next::<Ept>(&mem, pd, 0);
        assert_eq!(mem.read_entry(pd, 0) & 0xfff, 0b111);
        // 4 KiB leaf: R|W, WB (6 << 3), no bit 7.
        assert_eq!(mem.read_entry(pt, 1), 0x5000 | 0b011 | (6 << 3));
        // 2 MiB leaf: R|X, WB, bit 7.
        assert_eq!(
            mem.read_entry(pd, 1),
            0x40_0000 | 0b101 | (6 << 3) | (1 << 7)
        );
        assert_eq!(
            Ept::leaf_entry(0x7000, Perms::ALL, PageSize::Size4K),
            0x7037
        );
        assert_eq!(Ept::perms(0x7031), Perms::READ);
        assert!(!Ept::is_present(0x7000 | (6 << 3)));
        assert!(Ept::is_present(0x4));
        assert_eq!(gpt.tables_in_use(), 4);
    }

    #[test]
    fn npt_entry_bits() {
        let (mut mem, mut gpt) = setup::<Npt>();
        gpt.map(0x1000, 0x5000, 0x1000, Perms::READ_WRITE, &mut mem)
            .unwrap();
        gpt.map(MB2, 2 * MB2, MB2, Perms::READ_EXECUTE, &mut mem)
            .unwrap();
        let root = gpt.root();
        assert_eq!(mem.read_entry(root, 0) & 0xfff, 0b111, "non-leaf: P|W|U");
        assert_eq!(mem.read_entry(root, 0) >> 52, 0, "non-leaf: no NX");
        let pdpt = next::<Npt>(&mem, root, 0);
        let pd = next::<Npt>(&mem, pdpt, 0);
        let pt = next::<Npt>(&mem, pd, 0);
        // 4 KiB leaf: P|W|U, NX.
        assert_eq!(mem.read_entry(pt, 1), 0x8000_0000_0000_5007);
        // 2 MiB leaf: P|U|PS, executable, read-only.
        assert_eq!(mem.read_entry(pd, 1), 0x40_0000 | 0b101 | (1 << 7));
        assert_eq!(
            Npt::leaf_entry(0x7000, Perms::READ, PageSize::Size4K),
            (1 << 63) | 0x7005
        );
        assert_eq!(Npt::perms(0x7007), Perms::ALL);
        assert!(!Npt::is_present(0x7006));
    }

    fn large_page_selection<F: EntryFormat>() {
        let (mut mem, mut gpt) = setup::<F>();
        // 4 KiB head, one 2 MiB middle, 4 KiB tail.
        let (gpa, hpa) = (MB2 - 0x1000, 5 * MB2 - 0x1000);
        gpt.map(gpa, hpa, MB2 + 0x2000, Perms::ALL, &mut mem)
            .unwrap();
        let t = |g| gpt.translate(g, &mem);
        assert_eq!(t(gpa), Some((hpa, Perms::ALL, PageSize::Size4K)));
        assert_eq!(t(MB2), Some((5 * MB2, Perms::ALL, PageSize::Size2M)));
        assert_eq!(
            t(MB2 + 0x1234),
            Some((5 * MB2 + 0x1234, Perms::ALL, PageSize::Size2M))
        );
        assert_eq!(t(2 * MB2), Some((6 * MB2, Perms::ALL, PageSize::Size4K)));
        assert_eq!(t(2 * MB2 + 0x1000), None);
        assert_eq!(t(gpa - 0x1000), None);
        // Two PTs (head and tail) + PML4, PDPT, PD.
        assert_eq!(gpt.tables_in_use(), 5);

        // GPA and HPA differently aligned: 4 KiB only.
        gpt.map(8 * MB2, 16 * MB2 + 0x1000, MB2, Perms::READ, &mut mem)
            .unwrap();
        assert_eq!(t_size(&gpt, &mem, 8 * MB2), Some(PageSize::Size4K));
        // Aligned but shorter than 2 MiB: 4 KiB only.
        gpt.map(10 * MB2, 10 * MB2, MB2 - 0x1000, Perms::READ, &mut mem)
            .unwrap();
        assert_eq!(t_size(&gpt, &mem, 10 * MB2), Some(PageSize::Size4K));
        // A large region: every 2 MiB a leaf, no PT at all.
        let before = gpt.tables_in_use();
        gpt.map(1 << 30, 1 << 31, 1 << 30, Perms::ALL, &mut mem)
            .unwrap();
        assert_eq!(gpt.tables_in_use(), before + 1, "one new PD only");
        assert_eq!(
            t_size(&gpt, &mem, (1 << 30) + (1 << 29)),
            Some(PageSize::Size2M)
        );
        assert_eq!(gpt.tables_in_use(), mem.live());
    }

    fn t_size<F: EntryFormat>(g: &GuestPageTable<F>, m: &FakeMem, gpa: u64) -> Option<PageSize> {
        g.translate(gpa, m).map(|(_, _, s)| s)
    }

    #[test]
    fn large_page_selection_ept() {
        large_page_selection::<Ept>();
    }

    #[test]
    fn large_page_selection_npt() {
        large_page_selection::<Npt>();
    }

    fn splitting<F: EntryFormat>() {
        let (mut mem, mut gpt) = setup::<F>();
        gpt.map(0, 0x4000_0000, 2 * MB2, Perms::READ_EXECUTE, &mut mem)
            .unwrap();
        assert_eq!(gpt.tables_in_use(), 3);
        assert_eq!(gpt.unmap(MB2 + 0x1000, 0x1000, &mut mem), Ok(1));
        assert_eq!(gpt.tables_in_use(), 4, "one PT for the split leaf");
        let t = |g| gpt.translate(g, &mem);
        assert_eq!(
            t(0),
            Some((0x4000_0000, Perms::READ_EXECUTE, PageSize::Size2M))
        );
        assert_eq!(
            t(MB2),
            Some((0x4020_0000, Perms::READ_EXECUTE, PageSize::Size4K))
        );
        assert_eq!(t(MB2 + 0x1000), None);
        assert_eq!(
            t(MB2 + 0x2fff),
            Some((0x4020_2fff, Perms::READ_EXECUTE, PageSize::Size4K))
        );
        assert_eq!(
            t(2 * MB2 - 1),
            Some((0x403f_ffff, Perms::READ_EXECUTE, PageSize::Size4K))
        );
        // The hole can be filled again, with other rights.
        gpt.map(MB2 + 0x1000, 0x9000, 0x1000, Perms::READ, &mut mem)
            .unwrap();
        assert_eq!(t_size(&gpt, &mem, MB2 + 0x1000), Some(PageSize::Size4K));
        assert_eq!(
            gpt.translate(MB2 + 0x1000, &mem),
            Some((0x9000, Perms::READ, PageSize::Size4K))
        );
        // An unmap straddling both leaves splits the first, keeps the rest.
        assert_eq!(gpt.unmap(MB2 - 0x2000, 0x4000, &mut mem), Ok(4));
        assert_eq!(t_size(&gpt, &mem, MB2 - 0x3000), Some(PageSize::Size4K));
        assert_eq!(gpt.translate(MB2 - 0x2000, &mem), None);
        assert_eq!(gpt.translate(MB2 + 0x1000, &mem), None);
        // Unmapping a whole leaf needs no split.
        let mut mem2 = FakeMem::new();
        let mut g2 = GuestPageTable::<F>::new(&mut mem2).unwrap();
        g2.map(0, 0, 2 * MB2, Perms::ALL, &mut mem2).unwrap();
        mem2.budget = Some(0);
        assert_eq!(g2.unmap(MB2, MB2, &mut mem2), Ok(512));
        assert_eq!(g2.unmap(0, MB2, &mut mem2), Ok(512));
        assert_eq!(g2.tables_in_use(), 1, "empty PD and PDPT freed");
        assert_eq!(mem2.live(), 1);
    }

    #[test]
    fn splitting_ept() {
        splitting::<Ept>();
    }

    #[test]
    fn splitting_npt() {
        splitting::<Npt>();
    }

    fn errors<F: EntryFormat>() {
        let (mut mem, mut gpt) = setup::<F>();
        let rw = Perms::READ_WRITE;
        let cases = [
            (0x1001, 0, 0x1000, rw, GptError::UnalignedGpa(0x1001)),
            (0x1000, 0x10, 0x1000, rw, GptError::UnalignedHpa(0x10)),
            (0x1000, 0, 0x800, rw, GptError::UnalignedLength(0x800)),
            (
                GPA_LIMIT - 0x1000,
                0,
                0x2000,
                rw,
                GptError::GpaOutOfRange {
                    gpa: GPA_LIMIT - 0x1000,
                    len: 0x2000,
                },
            ),
            (
                !0xfff,
                0,
                0x2000,
                rw,
                GptError::GpaOutOfRange {
                    gpa: !0xfff,
                    len: 0x2000,
                },
            ),
            (
                0,
                HPA_LIMIT - 0x1000,
                0x2000,
                rw,
                GptError::HpaOutOfRange {
                    hpa: HPA_LIMIT - 0x1000,
                    len: 0x2000,
                },
            ),
            (
                0,
                !0xfff,
                0x2000,
                rw,
                GptError::HpaOutOfRange {
                    hpa: !0xfff,
                    len: 0x2000,
                },
            ),
            (
                0,
                0,
                0x1000,
                Perms::new(false, true, false),
                GptError::BadPerms(Perms::new(false, true, false)),
            ),
            (
                0,
                0,
                0x1000,
                Perms::default(),
                GptError::BadPerms(Perms::default()),
            ),
            (
                0,
                0,
                0x1000,
                Perms::new(false, false, true),
                GptError::BadPerms(Perms::new(false, false, true)),
            ),
        ];
        for (gpa, hpa, len, perms, want) in cases {
            assert_eq!(gpt.map(gpa, hpa, len, perms, &mut mem), Err(want));
        }
        assert_eq!(gpt.tables_in_use(), 1, "refusals allocate nothing");
        // Highest page is fine.
        gpt.map(GPA_LIMIT - 0x1000, HPA_LIMIT - 0x1000, 0x1000, rw, &mut mem)
            .unwrap();
        assert_eq!(
            gpt.translate(GPA_LIMIT - 1, &mem).map(|t| t.0),
            Some(HPA_LIMIT - 1)
        );
        assert_eq!(gpt.translate(GPA_LIMIT, &mem), None);
        assert_eq!(gpt.translate(u64::MAX, &mem), None);

        // Remapping is refused, naming the first mapped page, and changes
        // nothing.
        gpt.map(4 * MB2, 0, MB2, rw, &mut mem).unwrap();
        gpt.map(0x3000, 0x3000, 0x1000, rw, &mut mem).unwrap();
        let tables = gpt.tables_in_use();
        assert_eq!(
            gpt.map(0, 0x10_0000, 0x8000, Perms::ALL, &mut mem),
            Err(GptError::AlreadyMapped { gpa: 0x3000 })
        );
        assert_eq!(
            gpt.translate(0, &mem),
            None,
            "nothing of the refused range mapped"
        );
        assert_eq!(
            gpt.map(4 * MB2 + 0x5000, 0, 0x1000, rw, &mut mem),
            Err(GptError::AlreadyMapped {
                gpa: 4 * MB2 + 0x5000
            })
        );
        assert_eq!(
            gpt.map(3 * MB2, 0, 2 * MB2, rw, &mut mem),
            Err(GptError::AlreadyMapped { gpa: 4 * MB2 })
        );
        assert_eq!(gpt.tables_in_use(), tables);
        assert_eq!(t_size(&gpt, &mem, 4 * MB2), Some(PageSize::Size2M));

        // unmap checks its arguments the same way.
        assert_eq!(
            gpt.unmap(1, 0x1000, &mut mem),
            Err(GptError::UnalignedGpa(1))
        );
        assert_eq!(gpt.unmap(0, 1, &mut mem), Err(GptError::UnalignedLength(1)));
        assert_eq!(
            gpt.unmap(GPA_LIMIT, 0x1000, &mut mem),
            Err(GptError::GpaOutOfRange {
                gpa: GPA_LIMIT,
                len: 0x1000
            })
        );
        // Zero lengths and holes are fine.
        assert_eq!(gpt.map(0x7000, 0, 0, rw, &mut mem), Ok(()));
        assert_eq!(gpt.unmap(0x7000, 0, &mut mem), Ok(0));
        assert_eq!(gpt.unmap(0x40_0000_0000, 0x10_0000, &mut mem), Ok(0));
    }

    #[test]
    fn errors_ept() {
        errors::<Ept>();
    }

    #[test]
    fn errors_npt() {
        errors::<Npt>();
    }

    #[test]
    fn error_messages() {
        let cases = [
            (
                GptError::UnalignedGpa(0x1001),
                "guest-physical address 0x1001 is not 4 KiB aligned",
            ),
            (
                GptError::UnalignedHpa(0x10),
                "host-physical address 0x10 is not 4 KiB aligned",
            ),
            (
                GptError::UnalignedLength(0x800),
                "length 0x800 is not a multiple of 4 KiB",
            ),
            (
                GptError::GpaOutOfRange {
                    gpa: 0x1000,
                    len: 0x2000,
                },
                "guest-physical range 0x1000 + 0x2000 is beyond the 48-bit limit",
            ),
            (
                GptError::HpaOutOfRange {
                    hpa: 0x1000,
                    len: 0x2000,
                },
                "host-physical range 0x1000 + 0x2000 is beyond the 52-bit limit",
            ),
            (
                GptError::BadPerms(Perms::new(false, true, true)),
                "permissions -wx are not readable",
            ),
            (
                GptError::AlreadyMapped { gpa: 0x3000 },
                "guest-physical page 0x3000 is already mapped",
            ),
            (
                GptError::NotMapped { gpa: 0x6000 },
                "guest-physical page 0x6000 has no 4 KiB mapping",
            ),
            (GptError::OutOfMemory, "out of memory for a page table"),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
        assert_eq!(Perms::ALL.to_string(), "rwx");
        assert_eq!(Perms::READ.to_string(), "r--");
        assert_eq!(Ept::NAME, "EPT");
        assert_eq!(Npt::NAME, "NPT");
    }

    fn out_of_memory<F: EntryFormat>() {
        let (mut mem, mut gpt) = setup::<F>();
        gpt.map(0, 0, 2 * MB2, Perms::ALL, &mut mem).unwrap();
        let tables = gpt.tables_in_use();
        // A map that needs a new PDPT, PD and PT fails at each step and
        // leaves nothing behind.
        for budget in 0..3 {
            mem.budget = Some(budget);
            assert_eq!(
                gpt.map(1 << 40, 0, 0x3000, Perms::ALL, &mut mem),
                Err(GptError::OutOfMemory)
            );
            assert_eq!(gpt.tables_in_use(), tables);
            assert_eq!(mem.live(), tables);
            assert_eq!(gpt.translate(1 << 40, &mem), None);
        }
        // A map spanning two PDs, where the second PD cannot be had:
        // the first part is rolled back.
        mem.budget = Some(0);
        assert_eq!(
            gpt.map((1 << 30) - MB2, 0, 2 * MB2, Perms::ALL, &mut mem),
            Err(GptError::OutOfMemory)
        );
        assert_eq!(gpt.translate((1 << 30) - MB2, &mem), None);
        assert_eq!(gpt.tables_in_use(), tables);
        assert_eq!(mem.live(), tables);
        // A split that cannot get its PT changes nothing.
        mem.budget = Some(0);
        assert_eq!(
            gpt.unmap(0x1000, 0x1000, &mut mem),
            Err(GptError::OutOfMemory)
        );
        assert_eq!(
            gpt.translate(0x1000, &mem),
            Some((0x1000, Perms::ALL, PageSize::Size2M))
        );
        // Second split fails after the first succeeded: translations kept.
        mem.budget = Some(1);
        assert_eq!(gpt.unmap(0x1000, MB2, &mut mem), Err(GptError::OutOfMemory));
        for g in [0, 0x1000, MB2, MB2 + 0x1000] {
            assert_eq!(gpt.translate(g, &mem).map(|t| t.0), Some(g));
        }
        assert_eq!(gpt.tables_in_use(), mem.live());
        mem.budget = None;
        assert_eq!(gpt.unmap(0x1000, MB2, &mut mem), Ok(512));
        assert_eq!(gpt.translate(0, &mem).map(|t| t.2), Some(PageSize::Size4K));
        assert_eq!(
            gpt.translate(MB2 + 0x1000, &mem).map(|t| t.0),
            Some(MB2 + 0x1000)
        );
        assert!(
            GuestPageTable::<F>::new(&mut FakeMem {
                budget: Some(0),
                ..FakeMem::new()
            })
            .is_err()
        );
    }

    #[test]
    fn out_of_memory_ept() {
        out_of_memory::<Ept>();
    }

    #[test]
    fn out_of_memory_npt() {
        out_of_memory::<Npt>();
    }

    /// `replace` repoints a mapped 4 KiB page in one entry write (the
    /// page is never unmapped on the way: a vCPU of the domain on another
    /// CPU must not fault on it) and refuses anything else unchanged.
    fn replace<F: EntryFormat>() {
        let (mut mem, mut gpt) = setup::<F>();
        gpt.map(0x5000, 0x9000, 0x1000, Perms::READ_WRITE, &mut mem)
            .unwrap();
        gpt.map(MB2, 2 * MB2, MB2, Perms::ALL, &mut mem).unwrap();
        let (tables, before) = (mem.live(), mem.written.len());
        assert_eq!(
            gpt.replace(0x5000, 0x7000, Perms::READ, &mut mem),
            Ok(0x9000)
        );
        assert_eq!(
            mem.written[before..],
            [F::leaf_entry(0x7000, Perms::READ, PageSize::Size4K)]
        );
        assert_eq!(
            gpt.translate(0x5123, &mem),
            Some((0x7123, Perms::READ, PageSize::Size4K))
        );
        assert_eq!(mem.live(), tables);
        let refused = [
            (
                0x6000,
                0x7000,
                Perms::READ,
                GptError::NotMapped { gpa: 0x6000 },
            ),
            (MB2, 0x7000, Perms::READ, GptError::NotMapped { gpa: MB2 }),
            (
                1 << 40,
                0x7000,
                Perms::READ,
                GptError::NotMapped { gpa: 1 << 40 },
            ),
            (0x5001, 0x7000, Perms::READ, GptError::UnalignedGpa(0x5001)),
            (0x5000, 0x7001, Perms::READ, GptError::UnalignedHpa(0x7001)),
            (
                0x5000,
                HPA_LIMIT,
                Perms::READ,
                GptError::HpaOutOfRange {
                    hpa: HPA_LIMIT,
                    len: PAGE_SIZE,
                },
            ),
        ];
        let before = mem.written.len();
        for (gpa, hpa, perms, want) in refused {
            assert_eq!(gpt.replace(gpa, hpa, perms, &mut mem), Err(want));
        }
        assert_eq!(mem.written.len(), before, "a refusal wrote an entry");
        assert_eq!(mem.live(), tables);
    }

    #[test]
    fn replace_ept() {
        replace::<Ept>();
    }

    #[test]
    fn replace_npt() {
        replace::<Npt>();
    }

    fn destroy_frees_everything<F: EntryFormat>() {
        let (mut mem, mut gpt) = setup::<F>();
        gpt.map(0x1000, 0x1000, 3 * MB2, Perms::ALL, &mut mem)
            .unwrap();
        gpt.map(1 << 39, 0, 0x1000, Perms::READ, &mut mem).unwrap();
        gpt.map(5 << 30, 0, 4 * MB2, Perms::READ, &mut mem).unwrap();
        gpt.unmap(0x2000, 0x1000, &mut mem).unwrap();
        let n = gpt.tables_in_use();
        assert_eq!(n, mem.live());
        assert_eq!(gpt.destroy(&mut mem), n);
        assert_eq!(mem.live(), 0);
        assert_eq!(mem.allocs, n);
    }

    #[test]
    fn destroy_frees_everything_ept() {
        destroy_frees_everything::<Ept>();
    }

    #[test]
    fn destroy_frees_everything_npt() {
        destroy_frees_everything::<Npt>();
    }

    use crate::testing::Choices;

    /// Random maps and unmaps against a page-level model.
    fn randomized<F: EntryFormat>(rng: &mut Choices<'_>) {
        let (mut mem, mut gpt) = setup::<F>();
        let mut model: BTreeMap<u64, (u64, Perms)> = BTreeMap::new();
        // Three 16 MiB windows under different PML4 and PDPT entries.
        let windows = [0, (3 << 39) + (7 << 30), GPA_LIMIT - (16 << 20)];
        let perms = [
            Perms::READ,
            Perms::READ_WRITE,
            Perms::READ_EXECUTE,
            Perms::ALL,
        ];
        let (mut saw_large, mut refused, mut splits) = (false, 0, 0);
        for step in 0..1500 {
            let base = windows[rng.below(3) as usize];
            let is_map = rng.below(2) == 0;
            // Maps favour 2 MiB-friendly ranges; unmaps favour small,
            // unaligned holes (which split leaves) with an occasional wipe.
            let (start_page, pages) = match (is_map, rng.below(4)) {
                (true, 0) | (false, 0 | 1) => (rng.below(4096), 1 + rng.below(16)),
                (true, 1) => (rng.below(4096), 1 + rng.below(1200)),
                (true, _) => (
                    rng.below(8) * 512,
                    512 * (1 + rng.below(2)) + rng.below(512),
                ),
                (false, _) => (rng.below(8) * 512, 512 * (1 + rng.below(3))),
            };
            let pages = pages.min(4096 - start_page);
            let gpa = base + start_page * PAGE_SIZE;
            let len = pages * PAGE_SIZE;
            if is_map {
                let hpa = if rng.below(4) != 0 {
                    rng.below(1 << 20) * MB2
                } else {
                    rng.below(1 << 28) * PAGE_SIZE
                };
                let p = perms[rng.below(4) as usize];
                let first = model.range(gpa..gpa + len).next().map(|(&g, _)| g);
                let got = gpt.map(gpa, hpa, len, p, &mut mem);
                match first {
                    Some(g) => {
                        assert_eq!(got, Err(GptError::AlreadyMapped { gpa: g }));
                        refused += 1;
                    }
                    None => {
                        assert_eq!(got, Ok(()));
                        for i in 0..pages {
                            model.insert(gpa + i * PAGE_SIZE, (hpa + i * PAGE_SIZE, p));
                        }
                    }
                }
            } else {
                let gone: std::vec::Vec<u64> =
                    model.range(gpa..gpa + len).map(|(&g, _)| g).collect();
                for g in &gone {
                    model.remove(g);
                }
                let straddles = |g: u64| {
                    !g.is_multiple_of(MB2) && t_size(&gpt, &mem, g) == Some(PageSize::Size2M)
                };
                let split_here = straddles(gpa) || straddles(gpa + len);
                assert_eq!(gpt.unmap(gpa, len, &mut mem), Ok(gone.len() as u64));
                splits += usize::from(split_here);
            }
            assert_eq!(gpt.tables_in_use(), mem.live());
            // Probe around the range touched, and everything now and then.
            let probes: std::vec::Vec<u64> = if step % 300 == 299 {
                windows
                    .iter()
                    .flat_map(|&w| (0..4096).map(move |p| w + p * PAGE_SIZE))
                    .collect()
            } else {
                (0..64)
                    .map(|_| {
                        gpa.saturating_sub(0x4000) + rng.below(len + 0x8000) / PAGE_SIZE * PAGE_SIZE
                    })
                    .filter(|&g| g < GPA_LIMIT)
                    .collect()
            };
            for g in probes {
                let off = rng.below(PAGE_SIZE);
                let want = model.get(&g).map(|&(h, p)| (h + off, p));
                let full = gpt.translate(g + off, &mem);
                saw_large |= full.is_some_and(|t| t.2 == PageSize::Size2M);
                let got = full.map(|(h, p, _)| (h, p));
                assert_eq!(got, want, "step {step} gpa {:#x}", g + off);
            }
        }
        assert!(saw_large, "no 2 MiB leaf was ever made");
        // That the generator reaches refusals and splits at all, not how
        // often: over 300 random cases (session 21) the fewest were 457
        // refusals and 16 splits, so the old bound of 15 splits failed now
        // and then on a good case (a CI flake, not a page-table bug).
        assert!(
            refused > 100 && splits > 3,
            "{refused} refusals, {splits} splits"
        );
        // Unmapping everything leaves only the PML4.
        for w in windows {
            gpt.unmap(w, 16 << 20, &mut mem).unwrap();
        }
        assert_eq!(gpt.tables_in_use(), 1);
        let n = gpt.destroy(&mut mem);
        assert_eq!(n, 1);
        assert_eq!(mem.live(), 0);
    }

    #[test]
    fn randomized_ept() {
        crate::testing::check(6, 1500 * 160, randomized::<Ept>);
    }

    #[test]
    fn randomized_npt() {
        crate::testing::check(6, 1500 * 160, randomized::<Npt>);
    }
}
