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
        if self.high_water <= 64 {
            // A table of at most 64 ports (the usual one): one word, read
            // once (no hint, no `scan`: a raise sets the hint and only a
            // scan that finds the word empty clears it). A cursor at or
            // past the table's end masks every bit off, which falls back
            // to the lowest ready port, as a scan from port 0 would.
            let all = self.ready_word(0);
            let after = all & (!0u64).checked_shl(self.cursor).unwrap_or(0);
            let pick = if after != 0 { after } else { all };
            return (pick != 0).then(|| pick.trailing_zeros());
        }
        let words = self.high_water.div_ceil(64) as usize;
        let start = if self.cursor >= self.high_water {
            0
        } else {
            self.cursor
        };
        let w0 = start as usize / 64;
        let first = self.ready_word(w0) & (!0u64 << (start % 64));
        if first != 0 {
            return Some((w0 * 64) as u32 + first.trailing_zeros());
        }
        // The rest of the table, then from the start round to word w0
        // (whose bits at and after the cursor are known clear).
        self.scan(w0 + 1, words).or_else(|| self.scan(0, w0 + 1))
    }

    /// Whether any port is pending and unmasked (no cursor: a waiter only
    /// asks whether it must be told of other ports). Inlined by force: the
    /// usual table's answer is two loads.
    #[inline(always)]
    pub(super) fn any_ready(&mut self) -> bool {
        if self.high_water <= 64 {
            return self.ready_word(0) != 0;
        }
        self.find_ready().is_some()
    }

    /// The pending and unmasked ports of word `w`.
    #[inline(always)]
    fn ready_word(&self, w: usize) -> u64 {
        self.bits.ready_word(w)
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
