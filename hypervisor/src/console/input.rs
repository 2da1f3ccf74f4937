//! Console input queues (with a control domain): the bytes the
//! control domain queues for a domain (`HC_DOMCTL_CONSOLE_WRITE`) wait
//! here until that domain reads them (`HC_CONSOLE_READ`). Bounded at
//! [`CONSOLE_INPUT_BYTES`]: a write takes what fits and says how much, so
//! the writer can offer the rest again; nothing is dropped silently.

use alloc::collections::VecDeque;

use pvabi::{CONSOLE_INPUT_BYTES, Error};

use crate::domain::budget::Budget;

/// One domain's console input, oldest byte first.
#[derive(Default)]
pub struct InputQueue {
    bytes: VecDeque<u8>,
}

impl InputQueue {
    /// An empty queue (allocates nothing until input arrives).
    pub const fn new() -> Self {
        Self {
            bytes: VecDeque::new(),
        }
    }

    /// Makes room for [`CONSOLE_INPUT_BYTES`] once, charged to the
    /// domain's `budget` (`NoMem` when it does not fit): after that,
    /// [`InputQueue::push`] never allocates.
    pub fn make_room(&mut self, budget: &Budget) -> Result<(), Error> {
        let more = CONSOLE_INPUT_BYTES.saturating_sub(self.bytes.len());
        if self.bytes.capacity() >= CONSOLE_INPUT_BYTES {
            return Ok(());
        }
        let cost = CONSOLE_INPUT_BYTES as u64 + crate::domain::budget::ALLOC_SLACK;
        crate::domain::budget::charged(Some(budget), cost, || {
            self.bytes.try_reserve_exact(more).map_err(|_| Error::NoMem)
        })
    }

    /// Appends as much of `bytes` as fits: how many were taken (no
    /// allocation after [`InputQueue::make_room`]).
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let room = CONSOLE_INPUT_BYTES.saturating_sub(self.bytes.len());
        let taken = bytes.get(..room).unwrap_or(bytes);
        self.bytes.extend(taken.iter().copied());
        taken.len()
    }

    /// Moves up to `buf.len()` bytes into `buf`, oldest first: how many.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        for slot in buf.iter_mut() {
            let Some(b) = self.bytes.pop_front() else {
                break;
            };
            *slot = b;
            n += 1;
        }
        n
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn bytes_come_out_in_order_and_reads_never_block() {
        let mut q = InputQueue::new();
        let mut buf = [0u8; 8];
        assert_eq!(q.read(&mut buf), 0, "empty: 0, at once");
        assert_eq!(q.push(b"ls\r"), 3);
        assert_eq!(q.push(b"pwd\r"), 4);
        assert_eq!(q.read(&mut buf[..5]), 5);
        assert_eq!(&buf[..5], b"ls\rpw");
        assert_eq!(q.read(&mut buf), 2);
        assert_eq!(&buf[..2], b"d\r");
        assert!(q.is_empty());
        assert_eq!(q.read(&mut []), 0);
    }

    #[test]
    fn a_full_queue_takes_what_fits_and_says_so() {
        let mut q = InputQueue::new();
        let big = vec![b'x'; CONSOLE_INPUT_BYTES - 2];
        assert_eq!(q.push(&big), CONSOLE_INPUT_BYTES - 2);
        assert_eq!(q.push(b"abcd"), 2, "partial: the rest is not taken");
        assert_eq!(q.push(b"e"), 0, "full: nothing taken");
        assert_eq!(q.len(), CONSOLE_INPUT_BYTES);
        let mut buf = [0u8; 1];
        assert_eq!(q.read(&mut buf), 1);
        assert_eq!(q.push(b"fg"), 1, "room for exactly what was read");
        let mut all = vec![0u8; CONSOLE_INPUT_BYTES + 10];
        assert_eq!(q.read(&mut all), CONSOLE_INPUT_BYTES);
        assert_eq!(&all[CONSOLE_INPUT_BYTES - 3..CONSOLE_INPUT_BYTES], b"abf");
    }
}
