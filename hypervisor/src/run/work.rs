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
    use super::*;

    /// The word is one global: the tests that use it run one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn note_then_take_clears() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let _ = take();
        assert_eq!(WORK.load(Ordering::Relaxed), 0);
        note(MGMT_RX);
        note(MSI);
        assert_eq!(take(), MGMT_RX | MSI);
        assert_eq!(take(), 0);
        note(END_RECORDED);
        assert_ne!(WORK.load(Ordering::Relaxed), 0);
        assert_eq!(take(), END_RECORDED);
    }
}
