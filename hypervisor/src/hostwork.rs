//! Host work that interrupts and other CPUs leave for the run loop, folded
//! into one word so that an exit tests it with one load (`run/work.rs`
//! polls it after every exit).
//!
//! A leaf below every layer, `arch/` included: atomics only, no import
//! from the crate, so the interrupt handlers in `arch/` and the host
//! platform set their bits without reaching up into the runtime.
//!
//! Each source keeps its own flag, which its own poll takes (the idle
//! loop polls those directly); the note here only says "some flag may be
//! set". A source sets its flag first and its bit after, both with
//! release; [`take`] (acquire) comes before the flags are polled, so a
//! flag whose bit was taken is seen. A bit set after the take stays for
//! the next exit; one whose flag the idle loop took meanwhile costs one
//! poll that finds nothing.
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU32, Ordering};

/// The management line's receive interrupt came (`VIRQ_MGMT_RX`).
pub const MGMT_RX: u32 = 1 << 0;
/// A domain's end report was kept (`VIRQ_DOM_EXC`).
pub const END_RECORDED: u32 = 1 << 1;
/// A device's message interrupt came (`pci::msi_live`).
pub const MSI: u32 = 1 << 2;

static WORK: AtomicU32 = AtomicU32::new(0);

/// Notes that `bits`' flags may be set; the caller set them before.
/// Lock-free: interrupt handlers call it.
#[inline]
pub fn note(bits: u32) {
    WORK.fetch_or(bits, Ordering::Release);
}

/// Whether some bit is noted (one relaxed load: the exit path's test).
#[inline(always)]
pub fn pending() -> bool {
    WORK.load(Ordering::Relaxed) != 0
}

/// The bits noted since the last [`take`] (cleared).
#[inline]
pub fn take() -> u32 {
    WORK.swap(0, Ordering::AcqRel)
}
