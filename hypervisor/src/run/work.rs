//! Host work that interrupts and other CPUs leave for the run loop, folded
//! into one word so that an exit tests it with one load.
//!
//! Each source keeps its own flag, which its own poll takes (the idle
//! loop polls those directly); the note here only says "some flag may be
//! set". A source sets its flag first and its bit after, both with
//! release; [`poll`] takes the word (acquire) before it polls the flags,
//! so a flag whose bit it took is seen. A bit set after the take stays
//! for the next exit; one whose flag the idle loop took meanwhile costs
//! one poll that finds nothing.

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

/// The bits noted since the last [`take`] (cleared).
#[inline]
pub fn take() -> u32 {
    WORK.swap(0, Ordering::AcqRel)
}

/// After every exit: one load; the sources' polls only if some bit is set.
#[inline(always)]
pub fn poll() {
    if WORK.load(Ordering::Relaxed) != 0 {
        poll_all();
    }
}

#[cold]
#[inline(never)]
fn poll_all() {
    let bits = take();
    if bits & (MGMT_RX | END_RECORDED) != 0 {
        crate::console::wake::poll();
    }
    if bits & MSI != 0 {
        crate::pci::msi_live::poll();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::platform::{P, Platform, host};

    #[test]
    fn note_sets_bits_and_take_clears_them() {
        let _one = host::exclusive();
        let _ = take();
        note(MGMT_RX);
        note(MSI);
        assert_eq!(take(), MGMT_RX | MSI);
        assert_eq!(take(), 0);
        note(END_RECORDED);
        assert_eq!(take(), END_RECORDED);
    }

    /// The management line's interrupt sets its bit, and the exit path's
    /// one test runs its poll, which takes the flag.
    #[test]
    fn mgmt_rx_reaches_the_exit_poll() {
        let _one = host::exclusive();
        let _ = take();
        let _ = P::take_mgmt_rx();
        host::raise_mgmt_rx();
        assert_ne!(WORK.load(Ordering::Relaxed) & MGMT_RX, 0);
        poll();
        assert_eq!(WORK.load(Ordering::Relaxed), 0);
        assert!(!P::take_mgmt_rx(), "the exit poll took the flag");
    }

    /// A device message sets its bit; the exit poll delivers (here: finds
    /// no binding and counts it) and clears the vectors.
    #[test]
    fn msi_reaches_the_exit_poll() {
        let _one = host::exclusive();
        let _ = take();
        let _ = P::take_msi();
        host::raise_msi(0x61);
        assert_ne!(WORK.load(Ordering::Relaxed) & MSI, 0);
        assert!(P::msi_any());
        poll();
        assert_eq!(WORK.load(Ordering::Relaxed), 0);
        assert!(!P::msi_any(), "the exit poll took the vector");
    }

    /// With no bit set the exit poll touches no source: a flag raised
    /// without its note (none does that) would wait for the idle loop.
    #[test]
    fn no_bit_no_poll() {
        let _one = host::exclusive();
        let _ = take();
        let _ = P::take_mgmt_rx();
        host::raise_mgmt_rx();
        let _ = take();
        poll();
        assert!(P::take_mgmt_rx(), "the flag stayed for its own poll");
    }
}
