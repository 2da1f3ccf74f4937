//! The run loop's side of [`crate::hostwork`]: after every exit one load
//! of its word; the sources' polls only when some bit is set.

use crate::hostwork::{END_RECORDED, MGMT_RX, MSI, pending, take};

/// After every exit: one load; the sources' polls only if some bit is set.
#[inline(always)]
pub fn poll() {
    if pending() {
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
    use crate::hostwork::note;
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
        assert!(pending());
        poll();
        assert!(!pending());
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
        assert!(pending());
        assert!(P::msi_any());
        poll();
        assert!(!pending());
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
