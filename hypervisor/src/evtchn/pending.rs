//! Round-robin choice of the next pending port.

use super::{EventBits, EventTable};

impl<B: EventBits> EventTable<B> {
    /// Takes the next pending, unmasked port round-robin (clearing its
    /// pending bit), starting just after the last port taken.
    pub fn take_next_pending(&mut self) -> Option<u32> {
        let port = self.find_ready()?;
        self.bits.test_and_clear_pending(port);
        self.cursor = port + 1;
        Some(port)
    }

    /// The first pending, unmasked port at or after the cursor, wrapping.
    pub(super) fn find_ready(&mut self) -> Option<u32> {
        let words = self.high_water.div_ceil(64) as usize;
        let start = if self.cursor >= self.high_water {
            0
        } else {
            self.cursor
        };
        let w0 = start as usize / 64;
        let ready = |bits: &B, w: usize| bits.pending_word(w) & !bits.mask_word(w);
        let first = ready(&self.bits, w0) & (!0u64 << (start % 64));
        if first != 0 {
            return Some((w0 * 64) as u32 + first.trailing_zeros());
        }
        if words <= 1 {
            // A table of at most 64 ports (the usual one): the rest is
            // word 0 below the cursor, read whole (no hint, no `scan`: a
            // raise sets the hint and only a scan that finds the word
            // empty clears it, so every look after a take paid for one).
            let all = ready(&self.bits, 0);
            return (all != 0).then(|| all.trailing_zeros());
        }
        // The rest of the table, then from the start round to word w0
        // (whose bits at and after the cursor are known clear).
        self.scan(w0 + 1, words).or_else(|| self.scan(0, w0 + 1))
    }

    /// The first ready port in words `lo..hi`, visiting only words the hint
    /// says may be pending, and dropping hints that turn out stale.
    fn scan(&mut self, lo: usize, hi: usize) -> Option<u32> {
        let mut w = lo;
        while w < hi {
            let hint = self.hint.get(w / 64).copied().unwrap_or(0) & (!0u64 << (w % 64));
            if hint == 0 {
                w = (w / 64 + 1) * 64;
                continue;
            }
            w = (w / 64) * 64 + hint.trailing_zeros() as usize;
            if w >= hi {
                break;
            }
            let pending = self.bits.pending_word(w);
            let ready = pending & !self.bits.mask_word(w);
            if ready != 0 {
                return Some((w * 64) as u32 + ready.trailing_zeros());
            }
            if pending == 0
                && let Some(h) = self.hint.get_mut(w / 64)
            {
                *h &= !(1 << (w % 64));
            }
            w += 1;
        }
        None
    }
}
