//! The memory op group: [`crate::HC_MEM_INFO`], [`crate::HC_MEM_RELEASE`],
//! [`crate::HC_MEM_POPULATE`]: the balloon.
//!
//! Released pages are gone from the domain until populated again, and come
//! back zeroed. Doing that to memory the program is using would change it
//! behind the compiler's back, so [`release`] and [`populate`] only act
//! inside the [`free_region`]: the guest-physical pages between the end of
//! the program image (its `.bss`, and so the [`crate::guest_heap!`], included)
//! and the boot area at the top of memory (the initial stack, page tables
//! and start-info page). Ranges the hypervisor would reject anyway
//! (unaligned, 0 or too many pages, outside guest-physical memory) go
//! through, so the caller sees the hypervisor's own error.

use core::ops::Range;

pub use super::memtarget::balloon_toward_target;

use super::{hypercall6, start_info, status, sys};
use crate::{
    Error, HC_MEM_INFO, HC_MEM_POPULATE, HC_MEM_RELEASE, MEM_OP_MAX_PAGES, MemInfo, PAGE_SIZE,
    StartInfo,
};

/// How far below the lowest of `stack_top`, `page_tables_gpa` and
/// `start_info_gpa` the runtime assumes the boot area may reach: the
/// initial stack lies below `stack_top` and the start info does not say
/// its size (the hypervisor gives 64 KiB), so this is generous.
pub const BOOT_AREA_GUARD: u64 = 1 << 20;

/// Reports the domain's memory: pages present now, its quota, page size.
pub fn info() -> Result<MemInfo, Error> {
    let mut out = MemInfo::zeroed();
    // `out` is ours; the hypervisor fills it in (any bytes are valid).
    status(hypercall6(
        HC_MEM_INFO,
        [&raw mut out as u64, 0, 0, 0, 0, 0],
    ))?;
    Ok(out)
}

/// The page-aligned guest-physical range [`release`] and [`populate`] may
/// touch: from the end of the program image up to [`BOOT_AREA_GUARD`] below
/// the boot area. `None` if it is empty, or if the program's linker script
/// does not define `_end` (the end of the image), without which the image's
/// extent is unknown.
pub fn free_region() -> Option<Range<u64>> {
    free_region_for(sys::image_end(), start_info())
}

/// [`free_region`] for a given image end and start info.
fn free_region_for(image_end: Option<u64>, si: &StartInfo) -> Option<Range<u64>> {
    let start = image_end?.checked_next_multiple_of(PAGE_SIZE)?;
    let boot = si.stack_top.min(si.page_tables_gpa).min(si.start_info_gpa);
    let end = boot.min(si.memory_bytes).checked_sub(BOOT_AREA_GUARD)? & !(PAGE_SIZE - 1);
    (start < end).then_some(start..end)
}

/// Whether the runtime lets `gpa, pages` through: inside the free region,
/// or rejected by the hypervisor anyway (with no effect).
fn check(gpa: u64, pages: u64) -> Result<(), Error> {
    check_for(gpa, pages, free_region(), start_info().memory_bytes)
}

fn check_for(
    gpa: u64,
    pages: u64,
    free: Option<Range<u64>>,
    memory_bytes: u64,
) -> Result<(), Error> {
    if pages == 0 || pages > MEM_OP_MAX_PAGES || !gpa.is_multiple_of(PAGE_SIZE) {
        return Ok(()); // EINVAL from the hypervisor
    }
    let Some(end) = gpa.checked_add(pages * PAGE_SIZE) else {
        return Ok(()); // EFAULT
    };
    if end > memory_bytes {
        return Ok(()); // EFAULT
    }
    match free {
        Some(free) if free.start <= gpa && end <= free.end => Ok(()),
        _ => Err(Error::Perm),
    }
}

/// Gives `pages` pages at `gpa` back to the hypervisor; returns how many
/// (all of them). Errors: [`Error::Perm`] when the range is outside
/// [`free_region`] (not made); from the hypervisor, [`Error::Invalid`]
/// (unaligned, 0 or over [`MEM_OP_MAX_PAGES`] pages), [`Error::Fault`]
/// (outside guest-physical memory), [`Error::NoEntry`] (a page is already
/// released). All or nothing.
pub fn release(gpa: u64, pages: u64) -> Result<u64, Error> {
    check(gpa, pages)?;
    status(hypercall6(HC_MEM_RELEASE, [gpa, pages, 0, 0, 0, 0]))
}

/// Gets fresh zeroed pages at `gpa` (`pages` of them, all released before);
/// returns how many. Errors: [`Error::Perm`] when the range is outside
/// [`free_region`]; from the hypervisor, [`Error::Invalid`],
/// [`Error::Fault`], [`Error::Exists`] (a page is present),
/// [`Error::NoMem`] (over the quota or the host is out of memory). All or
/// nothing.
pub fn populate(gpa: u64, pages: u64) -> Result<u64, Error> {
    check(gpa, pages)?;
    status(hypercall6(HC_MEM_POPULATE, [gpa, pages, 0, 0, 0, 0]))
}

/// Whether a [`crate::MulticallEntry`] releasing or populating with `args`
/// would be let through by [`release`]/[`populate`] (for
/// [`super::multicall`]).
pub(super) fn check_entry(args: &[u64; 6]) -> Result<(), Error> {
    check(args[0], args[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn boot(memory: u64) -> StartInfo {
        // The hypervisor's layout: stack, tables, GDT, start info at the top.
        let mut si = StartInfo::zeroed();
        si.memory_bytes = memory;
        si.start_info_gpa = memory - PAGE_SIZE;
        si.page_tables_gpa = memory - 4 * PAGE_SIZE;
        si.stack_top = si.page_tables_gpa;
        si
    }

    #[test]
    fn free_region_lies_between_image_and_boot_area() {
        let si = boot(64 * MIB);
        let free = free_region_for(Some(0x21_2345), &si);
        let want = 0x21_3000..(64 * MIB - 4 * PAGE_SIZE - BOOT_AREA_GUARD);
        assert_eq!(free, Some(want));
        assert_eq!(free_region_for(None, &si), None, "no _end, no region");
        // An image reaching the boot area (or its guard) leaves nothing.
        assert_eq!(free_region_for(Some(63 * MIB), &si), None);
        let tiny = boot(3 * MIB);
        assert_eq!(free_region_for(Some(0x21_0000), &tiny), None);
        assert_eq!(free_region_for(Some(u64::MAX), &si), None);
    }

    #[test]
    fn check_refuses_program_memory_and_passes_hypervisor_errors() {
        let mem = 64 * MIB;
        let free = Some(4 * MIB..60 * MIB);
        let ok = |gpa, pages| check_for(gpa, pages, free.clone(), mem);
        assert_eq!(ok(4 * MIB, 1), Ok(()));
        assert_eq!(ok(60 * MIB - 512 * PAGE_SIZE, 512), Ok(()));
        // The image and the boot area are refused.
        assert_eq!(ok(2 * MIB, 1), Err(Error::Perm));
        assert_eq!(ok(4 * MIB - PAGE_SIZE, 2), Err(Error::Perm));
        assert_eq!(ok(60 * MIB - PAGE_SIZE, 2), Err(Error::Perm));
        assert_eq!(ok(mem - PAGE_SIZE, 1), Err(Error::Perm));
        // What the hypervisor rejects with no effect goes through.
        assert_eq!(ok(4 * MIB + 1, 1), Ok(()));
        assert_eq!(ok(4 * MIB, 0), Ok(()));
        assert_eq!(ok(4 * MIB, MEM_OP_MAX_PAGES + 1), Ok(()));
        assert_eq!(ok(mem, 1), Ok(()));
        assert_eq!(ok(!(PAGE_SIZE - 1), 512), Ok(()));
        // Without a free region, nothing valid passes.
        assert_eq!(check_for(4 * MIB, 1, None, mem), Err(Error::Perm));
    }
}
