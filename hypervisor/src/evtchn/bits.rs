//! Pending and mask bits of event-channel ports.
//!
//! Kept behind [`EventBits`] so the same table logic can later keep them in
//! pages shared with the guest (where the guest clears pending bits and
//! sets and clears mask bits itself, and the hypervisor sets pending bits
//! with atomic operations). Port `p` is bit `p % 64` of word `p / 64`, as
//! in such a page (two arrays of `u64` words, pending and mask); the
//! hypervisor's own bitmaps keep the two words of each 64 ports together
//! ([`BitmapEvents`]), and [`super::DomainBits::share`] copies them over
//! word by word.

use alloc::vec::Vec;

use pvabi::Error;

/// Storage of per-port pending and mask bits, grown on demand.
///
/// Ports at or above [`EventBits::ports`] read as not pending and not
/// masked, and writes to them are ignored (the table never makes them).
pub trait EventBits {
    /// Ports covered now (a multiple of 64).
    fn ports(&self) -> u32;
    /// Makes room for ports `0..ports` (new ports not pending, not masked).
    /// `NoMem` when the storage cannot grow.
    fn grow(&mut self, ports: u32) -> Result<(), Error>;
    /// Sets the pending bit; returns whether it was set already.
    fn test_and_set_pending(&mut self, port: u32) -> bool;
    /// Clears the pending bit; returns whether it was set.
    fn test_and_clear_pending(&mut self, port: u32) -> bool;
    /// Sets or clears the mask bit; returns whether it was set.
    fn set_masked(&mut self, port: u32, masked: bool) -> bool;
    /// The pending bits of ports `64 * word ..`.
    fn pending_word(&self, word: usize) -> u64;
    /// The mask bits of ports `64 * word ..`.
    fn mask_word(&self, word: usize) -> u64;

    /// The ports of word `word` that are pending and not masked.
    #[inline(always)]
    fn ready_word(&self, word: usize) -> u64 {
        self.pending_word(word) & !self.mask_word(word)
    }

    /// `port` notified `vcpu` (it became pending and unmasked, or was
    /// unmasked while pending): a shared area records the upcall there.
    fn notify(&mut self, _vcpu: u32, _port: u32) {}
    /// Whether `vcpu` has an upcall pending and not masked (only a shared
    /// area has upcalls).
    fn upcall_ready(&self, _vcpu: u32) -> bool {
        false
    }

    /// Whether the guest can change the bits itself (a shared area).
    fn guest_owned(&self) -> bool {
        false
    }

    /// Whether the port is pending.
    fn is_pending(&self, port: u32) -> bool {
        self.pending_word(port as usize / 64) & bit(port) != 0
    }
    /// Whether the port is masked.
    fn is_masked(&self, port: u32) -> bool {
        self.mask_word(port as usize / 64) & bit(port) != 0
    }

    /// Whether the port is pending, and whether it is masked (read in
    /// that order): what a send to it asks, in one call (one dispatch of
    /// a [`super::DomainBits`]).
    #[inline(always)]
    fn pending_and_masked(&self, port: u32) -> (bool, bool) {
        (self.is_pending(port), self.is_masked(port))
    }

    /// Clears the port's pending bit (returns whether it was set), then
    /// reads the ready ports of word `word`: a waiter's look, in one call.
    #[inline(always)]
    fn take_then_ready(&mut self, port: u32, word: usize) -> (bool, u64) {
        let taken = self.test_and_clear_pending(port);
        (taken, self.ready_word(word))
    }
}

/// The bit of `port` in its word.
pub(super) fn bit(port: u32) -> u64 {
    1 << (port % 64)
}

/// [`EventBits`] in hypervisor memory: the pending and mask words of each
/// 64 ports side by side in one growable array, so that a read of both
/// (a send's, a waiter's look) checks one index.
#[derive(Debug, Default)]
pub struct BitmapEvents {
    /// `[pending, mask]` of ports `64 * i ..`.
    words: Vec<[u64; 2]>,
}

const PENDING: usize = 0;
const MASK: usize = 1;

impl BitmapEvents {
    /// Empty bitmaps (no ports).
    pub const fn new() -> Self {
        Self { words: Vec::new() }
    }

    /// Sets or clears bit `port` of kind `k` (`PENDING`, `MASK`); returns
    /// whether it was set.
    fn update(&mut self, k: usize, port: u32, set: bool) -> bool {
        match self.words.get_mut(port as usize / 64) {
            Some(w) => {
                let old = w[k] & bit(port) != 0;
                if set {
                    w[k] |= bit(port);
                } else {
                    w[k] &= !bit(port);
                }
                old
            }
            None => false,
        }
    }
}

impl EventBits for BitmapEvents {
    fn ports(&self) -> u32 {
        (self.words.len() * 64) as u32
    }

    fn grow(&mut self, ports: u32) -> Result<(), Error> {
        let words = (ports as usize).div_ceil(64);
        if words > self.words.len() {
            let more = words - self.words.len();
            self.words.try_reserve(more).map_err(|_| Error::NoMem)?;
            self.words.resize(words, [0; 2]);
        }
        Ok(())
    }

    fn test_and_set_pending(&mut self, port: u32) -> bool {
        self.update(PENDING, port, true)
    }

    fn test_and_clear_pending(&mut self, port: u32) -> bool {
        self.update(PENDING, port, false)
    }

    fn set_masked(&mut self, port: u32, masked: bool) -> bool {
        self.update(MASK, port, masked)
    }

    fn pending_word(&self, word: usize) -> u64 {
        self.words.get(word).map_or(0, |w| w[PENDING])
    }

    fn mask_word(&self, word: usize) -> u64 {
        self.words.get(word).map_or(0, |w| w[MASK])
    }

    #[inline(always)]
    fn ready_word(&self, word: usize) -> u64 {
        self.words.get(word).map_or(0, |w| w[PENDING] & !w[MASK])
    }

    #[inline(always)]
    fn pending_and_masked(&self, port: u32) -> (bool, bool) {
        self.words
            .get(port as usize / 64)
            .map_or((false, false), |w| {
                (w[PENDING] & bit(port) != 0, w[MASK] & bit(port) != 0)
            })
    }
}
