//! The balloon: release and re-populate pages with the safe wrappers
//! (`pvabi::guest::memory`, which act only inside `free_region`), checking
//! the domain's page count and the memory's contents at every step.
//!
//! 1. Write a pattern over 64 pages and a 2 MiB block of the free region.
//! 2. Release 16 + 1 of the 64 pages: `current_pages` drops by 17, the
//!    pages are gone (the hypervisor refuses to write there).
//! 3. Wrong requests get the documented error and change nothing: releasing
//!    released pages (ENOENT, also when only part of the range is), bad
//!    counts and alignment (EINVAL), ranges past the end of guest-physical
//!    memory (EFAULT), populating present pages (EEXIST, also partly).
//! 4. Populate them again: `current_pages` is back, they read as zeros,
//!    every page left alone still holds the pattern, and they work.
//! 5. The same for a whole 2 MiB block (512 pages, one call each way, which
//!    splits a large nested-paging mapping), in halves, and release plus
//!    populate in one multicall; then 16 cycles of release/populate (the
//!    boot test checks that the hypervisor's free memory is the same after
//!    all domains end, so no frame leaks).
//!
//! Where the 64 pages lie relative to 2 MiB boundaries (the nested page
//! tables' large pages) depends on where the free region starts, that is on
//! the image's size, which changes with the build's paths. Two arguments
//! put them where a test wants, whatever the size:
//! - `shift=<pages>` moves the working area (the 64 pages and the 2 MiB
//!   block's search) that many pages up inside the free region;
//! - `cross2m` puts the first 2 MiB boundary above the region's start at
//!   page 16: the 16 released pages (8..24) and the 64 of the cycles
//!   straddle it (the 2 MiB block then usually no longer fits in the 8 MiB
//!   domain: those checks are left out).
//!
//! Prints `balloon: <name> ok|FAILED ...` per check and
//! `balloon: <N> checks, <M> failed`; exits 0 iff all passed.
//!
//! Reading and writing the free region needs raw pointers: that is the one
//! `unsafe` module here (the runtime promises the program uses none of it).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::ops::Range;
use core::sync::atomic::{AtomicU32, Ordering};

use pvabi::guest::{hypercall6, memory};
use pvabi::{
    Error, HC_MEM_INFO, HC_MEM_POPULATE, HC_MEM_RELEASE, MEM_OP_MAX_PAGES, MulticallEntry,
    PAGE_SIZE, StartInfo,
};

pvabi::entry_point!(main);

const P: u64 = PAGE_SIZE;

/// Word access to the free region.
mod raw {
    #![allow(unsafe_code)]

    /// Writes the word at `addr`.
    pub fn write(addr: u64, value: u64) {
        // SAFETY: callers pass 8-byte-aligned addresses inside
        // `memory::free_region()`, which no part of the program uses
        // (identity-mapped, so the address is the pointer), in pages they
        // have not released.
        unsafe { core::ptr::write_volatile(addr as *mut u64, value) }
    }

    /// Reads the word at `addr`.
    pub fn read(addr: u64) -> u64 {
        // SAFETY: as in `write`.
        unsafe { core::ptr::read_volatile(addr as *const u64) }
    }
}

static CHECKS: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);

fn check(name: &str, ok: bool, what: core::fmt::Arguments<'_>) -> bool {
    CHECKS.fetch_add(1, Ordering::Relaxed);
    if ok {
        pvabi::println!("balloon: {name} ok");
    } else {
        FAILED.fetch_add(1, Ordering::Relaxed);
        pvabi::println!("balloon: {name} FAILED got {what}");
    }
    ok
}

fn eq<T: PartialEq + core::fmt::Debug>(name: &str, got: T, want: T) -> bool {
    let ok = got == want;
    check(name, ok, format_args!("{got:?} want {want:?}"))
}

fn pattern(addr: u64) -> u64 {
    addr.rotate_left(17) ^ 0xba11_00a5_5eed_0001
}

fn fill(pages: Range<u64>) {
    for a in (pages.start..pages.end).step_by(8) {
        raw::write(a, pattern(a));
    }
}

/// The first address in `pages` whose word is not `want(addr)`.
fn first_wrong(pages: Range<u64>, want: impl Fn(u64) -> u64) -> Option<(u64, u64)> {
    (pages.start..pages.end)
        .step_by(8)
        .map(|a| (a, raw::read(a)))
        .find(|&(a, v)| v != want(a))
}

fn current() -> u64 {
    memory::info().map_or(u64::MAX, |m| m.current_pages)
}

/// Whether the hypervisor takes the page at `gpa` as present: it writes a
/// `MemInfo` there only if so, so a released page is never touched.
fn present(gpa: u64) -> bool {
    hypercall6(HC_MEM_INFO, [gpa, 0, 0, 0, 0, 0]) == 0
}

fn main(si: &StartInfo) -> i32 {
    let Some(free) = memory::free_region() else {
        pvabi::println!("balloon: no free region");
        return 1;
    };
    let m = si.memory_bytes;
    let info0 = memory::info();
    pvabi::println!("balloon: start: free region {free:x?}, {info0:?}");
    let Ok(info0) = info0 else { return 1 };
    let base = info0.current_pages;
    eq(
        "mem_info.quota_is_start_info",
        (info0.max_pages, info0.page_size),
        (si.max_pages, P),
    );
    check(
        "mem_info.current_within_quota",
        base > 0 && base <= info0.max_pages,
        format_args!("{info0:?}"),
    );

    // 64 pages at the start of the free region (moved up by `shift`
    // pages, or to straddle a 2 MiB boundary); a 2 MiB block above them.
    const M2: u64 = 2 << 20;
    let shift = if si.flag("cross2m") {
        let boundary = (free.start + 16 * P).next_multiple_of(M2);
        (boundary - 16 * P - free.start) / P
    } else {
        si.arg_or("shift", 0).unwrap_or(u64::MAX)
    };
    let Some(r) = shift
        .checked_mul(P)
        .and_then(|s| free.start.checked_add(s))
        .filter(|&r| r + 64 * P <= free.end)
    else {
        pvabi::println!("balloon: shift={shift} pages leaves no 64 pages in {free:x?}");
        return 1;
    };
    pvabi::println!(
        "balloon: working area {:#x}..{:#x} (shift {shift})",
        r,
        r + 64 * P
    );
    let page = |i: u64| r + i * P;
    let pages = |a: u64, b: u64| page(a)..page(b);
    let big = (page(64) + (2 << 20) - 1) & !((2 << 20) - 1);
    let have_big = big + (2 << 20) <= free.end;
    fill(pages(0, 64));
    if have_big {
        fill(big..big + (2 << 20));
    }
    eq("pattern_written", first_wrong(pages(0, 64), pattern), None);

    // Release 16 + 1 pages.
    eq("release.16_pages", memory::release(page(8), 16), Ok(16));
    eq("release.1_page", memory::release(page(40), 1), Ok(1));
    eq("release.current_pages_down_17", current(), base - 17);
    check(
        "release.pages_gone",
        !present(page(8)) && !present(page(23)) && !present(page(40)),
        format_args!("a released page is still present"),
    );

    // Wrong requests: the documented error, and nothing changes.
    eq(
        "release.again_enoent",
        memory::release(page(8), 16),
        Err(Error::NoEntry),
    );
    eq(
        "release.partly_released_enoent",
        memory::release(page(20), 10),
        Err(Error::NoEntry),
    );
    eq(
        "release.zero_pages_einval",
        memory::release(page(0), 0),
        Err(Error::Invalid),
    );
    eq(
        "release.too_many_pages_einval",
        memory::release(page(0), MEM_OP_MAX_PAGES + 1),
        Err(Error::Invalid),
    );
    eq(
        "release.unaligned_einval",
        memory::release(page(0) + 8, 1),
        Err(Error::Invalid),
    );
    eq(
        "release.past_end_of_memory_efault",
        memory::release(m, 1),
        Err(Error::Fault),
    );
    eq(
        "release.straddles_end_efault",
        memory::release(m - P, 2),
        Err(Error::Fault),
    );
    eq(
        "release.outside_free_region_refused",
        memory::release(free.end, 1),
        Err(Error::Perm),
    );
    eq(
        "populate.present_eexist",
        memory::populate(page(0), 1),
        Err(Error::Exists),
    );
    eq(
        "populate.partly_present_eexist",
        memory::populate(page(0), 10),
        Err(Error::Exists),
    );
    eq(
        "populate.too_many_pages_einval",
        memory::populate(page(8), MEM_OP_MAX_PAGES + 1),
        Err(Error::Invalid),
    );
    eq(
        "populate.past_end_of_memory_efault",
        memory::populate(m, 1),
        Err(Error::Fault),
    );
    eq("errors.current_pages_unchanged", current(), base - 17);
    check(
        "errors.released_pages_still_gone",
        !present(page(8)) && !present(page(9)) && !present(page(23)),
        format_args!("a failed populate made a page present"),
    );
    eq(
        "errors.untouched_pages_kept",
        first_wrong(pages(24, 30), pattern),
        None,
    );
    // The quota: a populate can never take current_pages past max_pages.
    // Here the quota is the whole guest-physical space, so every page that
    // could be populated was released first and ENOMEM cannot happen.
    if info0.max_pages * P >= m {
        pvabi::println!(
            "balloon: note: quota of {} pages covers all {} MiB of guest-physical memory: populate beyond the quota (ENOMEM) is unreachable",
            info0.max_pages,
            m >> 20
        );
    }

    // Populate them again: count back, zeros there, the pattern elsewhere.
    eq("populate.16_pages", memory::populate(page(8), 16), Ok(16));
    eq("populate.1_page", memory::populate(page(40), 1), Ok(1));
    eq("populate.current_pages_back", current(), base);
    let zero = |_| 0;
    eq("populate.zeroed_16", first_wrong(pages(8, 24), zero), None);
    eq("populate.zeroed_1", first_wrong(pages(40, 41), zero), None);
    eq(
        "populate.rest_kept_pattern",
        [
            first_wrong(pages(0, 8), pattern),
            first_wrong(pages(24, 40), pattern),
            first_wrong(pages(41, 64), pattern),
        ],
        [None, None, None],
    );
    eq(
        "populate.again_eexist",
        memory::populate(page(8), 16),
        Err(Error::Exists),
    );
    fill(pages(8, 24));
    fill(pages(40, 41));
    eq(
        "populate.pages_usable",
        first_wrong(pages(0, 64), pattern),
        None,
    );

    if have_big {
        let half = big + (1 << 20);
        eq(
            "big.pattern_written",
            first_wrong(big..big + (2 << 20), pattern),
            None,
        );
        eq(
            "big.release_512",
            memory::release(big, MEM_OP_MAX_PAGES),
            Ok(512),
        );
        eq("big.current_pages_down_512", current(), base - 512);
        eq(
            "big.populate_first_half",
            memory::populate(big, 256),
            Ok(256),
        );
        eq(
            "big.populate_whole_eexist",
            memory::populate(big, 512),
            Err(Error::Exists),
        );
        eq(
            "big.populate_second_half",
            memory::populate(half, 256),
            Ok(256),
        );
        eq("big.current_pages_back", current(), base);
        eq("big.zeroed", first_wrong(big..big + (2 << 20), |_| 0), None);
        fill(big..big + (2 << 20));
        eq(
            "big.release_halves",
            [memory::release(big, 256), memory::release(half, 256)],
            [Ok(256), Ok(256)],
        );
        eq(
            "big.populate_512",
            memory::populate(big, MEM_OP_MAX_PAGES),
            Ok(512),
        );
        eq(
            "big.zeroed_again",
            first_wrong(big..big + (2 << 20), |_| 0),
            None,
        );
        eq("big.current_pages_back_again", current(), base);
    } else {
        pvabi::println!("balloon: note: no 2 MiB block in the free region");
    }

    // Release and populate in one multicall: both run, in order.
    let mut batch = [
        MulticallEntry::new(HC_MEM_RELEASE, [page(50), 2, 0, 0, 0, 0]),
        MulticallEntry::new(HC_MEM_POPULATE, [page(50), 2, 0, 0, 0, 0]),
    ];
    eq(
        "multicall.release_populate",
        pvabi::guest::multicall(&mut batch),
        Ok(2),
    );
    eq(
        "multicall.statuses",
        [batch[0].status(), batch[1].status()],
        [Ok(2), Ok(2)],
    );
    eq("multicall.zeroed", first_wrong(pages(50, 52), |_| 0), None);
    eq(
        "multicall.rest_kept_pattern",
        [
            first_wrong(pages(49, 50), pattern),
            first_wrong(pages(52, 53), pattern),
        ],
        [None, None],
    );
    eq("multicall.current_pages_back", current(), base);

    // Cycles: no page (or frame) goes missing.
    let mut bad_cycle = None;
    for c in 0..16 {
        let ok = memory::release(page(0), 64) == Ok(64)
            && current() == base - 64
            && memory::populate(page(0), 64) == Ok(64)
            && current() == base;
        if !ok && bad_cycle.is_none() {
            bad_cycle = Some(c);
        }
    }
    eq("cycles.16_release_populate_64", bad_cycle, None);
    eq("cycles.zeroed", first_wrong(pages(0, 64), |_| 0), None);
    let end = memory::info();
    eq(
        "final.current_pages",
        end.map(|i| (i.current_pages, i.max_pages)),
        Ok((base, info0.max_pages)),
    );

    let checks = CHECKS.load(Ordering::Relaxed);
    let failed = FAILED.load(Ordering::Relaxed);
    pvabi::println!("balloon: {checks} checks, {failed} failed");
    if failed == 0 { 0 } else { 1 }
}
