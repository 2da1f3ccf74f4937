//! A queue pair's bookkeeping (NVMe 1.4 4.1): the submission tail the
//! host advances, the completion head it consumes, and the phase tag that
//! tells a new completion entry from an old one: the controller inverts
//! the tag it writes each time it wraps, so the host expects 1 on its
//! first pass (the queue memory starts zeroed) and flips its expectation
//! whenever its head wraps.

/// Indices of one submission/completion queue pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    entries: u16,
    sq_tail: u16,
    cq_head: u16,
    phase: bool,
    next_cid: u16,
}

impl Ring {
    /// A pair of `entries` entries each (at least 2).
    pub fn new(entries: u16) -> Self {
        Self {
            entries: entries.max(2),
            sq_tail: 0,
            cq_head: 0,
            phase: true,
            next_cid: 0,
        }
    }

    /// Entries per queue.
    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// Takes the next submission slot: `(slot, new tail for the doorbell,
    /// command id)`. One command is in flight at a time in this driver,
    /// so the queue is never full.
    pub fn submit(&mut self) -> (u16, u16, u16) {
        let slot = self.sq_tail;
        self.sq_tail = (self.sq_tail + 1) % self.entries;
        let cid = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1);
        (slot, self.sq_tail, cid)
    }

    /// The completion slot to look at next.
    pub fn head(&self) -> u16 {
        self.cq_head
    }

    /// Whether the entry at [`Ring::head`] with phase tag `phase` is new.
    pub fn is_new(&self, phase: bool) -> bool {
        phase == self.phase
    }

    /// Consumes the entry at the head; returns the new head for the
    /// doorbell.
    pub fn consume(&mut self) -> u16 {
        self.cq_head += 1;
        if self.cq_head == self.entries {
            self.cq_head = 0;
            self.phase = !self.phase;
        }
        self.cq_head
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_flips_phase() {
        let mut r = Ring::new(4);
        assert!(r.is_new(true) && !r.is_new(false));
        let mut cids = [0; 9];
        for (i, c) in cids.iter_mut().enumerate() {
            let (slot, tail, cid) = r.submit();
            assert_eq!(slot, (i % 4) as u16);
            assert_eq!(tail, ((i + 1) % 4) as u16);
            *c = cid;
            assert_eq!(r.head(), (i % 4) as u16);
            // The first pass expects phase 1, the second 0, the third 1.
            assert!(r.is_new((i / 4) % 2 == 0), "entry {i}");
            assert_eq!(r.consume(), ((i + 1) % 4) as u16);
        }
        assert_eq!(cids, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Ring::new(0).entries(), 2);
    }
}
