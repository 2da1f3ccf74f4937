//! `dma-canary=<GPA>` (decimal, page-aligned, in dom0's free region):
//! a page of dom0's memory filled with a known pattern before any domain
//! is built, and checked each time a domain ends, with the free memory
//! then and before the boot configuration's domains were built. The
//! driver-domain boot tests (tests/tests/boot/driverdom.rs) point the
//! driver's out-of-bounds DMA at the same guest-physical address: had the
//! device kept dom0's IOMMU context after it was moved, the write would
//! land here.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use alloc::format;

use crate::say;

/// Words in the page.
const WORDS: u64 = 512;
/// The canary's GPA, 0 when there is none.
static AT: AtomicU64 = AtomicU64::new(0);
/// Free memory when it was laid, in bytes.
static FREE_BEFORE: AtomicU64 = AtomicU64::new(0);

fn word(i: u64) -> u64 {
    0xca4a_4e59_0000_0000 | i
}

fn write(gpa: u64, v: u64) {
    // SAFETY: `gpa` is 8-aligned, in a page of dom0's free region (checked
    // in `lay`), which nothing else of dom0 uses; dom0's memory is
    // identity-mapped, so the address is the pointer.
    unsafe { core::ptr::write_volatile(gpa as *mut u64, v) }
}

fn read(gpa: u64) -> u64 {
    // SAFETY: as in `write`.
    unsafe { core::ptr::read_volatile(gpa as *const u64) }
}

/// Lays the canary named by `arg` (the option's value); `free` is the
/// free memory now.
pub fn lay(arg: &str, free: Option<u64>) {
    let region = pvabi::guest::memory::free_region();
    let gpa = match (arg.parse::<u64>(), region.clone()) {
        (Ok(g), Some(r))
            if g.is_multiple_of(pvabi::PAGE_SIZE)
                && g >= r.start
                && g.checked_add(pvabi::PAGE_SIZE).is_some_and(|e| e <= r.end) =>
        {
            g
        }
        _ => {
            say(&format!(
                "dma-canary={arg}: not a page of my free memory {region:x?}: no canary"
            ));
            return;
        }
    };
    for i in 0..WORDS {
        write(gpa + i * 8, word(i));
    }
    AT.store(gpa, Ordering::Relaxed);
    FREE_BEFORE.store(free.unwrap_or(0), Ordering::Relaxed);
    say(&format!("dma canary at GPA {gpa:#x}: laid"));
}

/// After a domain ended: is the canary intact, and how much memory is
/// free (`free`) against before any domain was built.
pub fn check(free: Option<u64>) {
    let gpa = AT.load(Ordering::Relaxed);
    if gpa == 0 {
        return;
    }
    let changed = (0..WORDS).filter(|&i| read(gpa + i * 8) != word(i)).count();
    say(&format!(
        "dma canary at GPA {gpa:#x}: {}; free memory {} bytes, {} before the domains were built",
        if changed == 0 {
            "intact".into()
        } else {
            format!("{changed} words CHANGED")
        },
        free.unwrap_or(0),
        FREE_BEFORE.load(Ordering::Relaxed)
    ));
}
