//! A bounded history of text lines, kept in dom0's memory: its own log
//! (`hvctl log`) and each domain's console (`hvctl console --history`).
//! Bounded in bytes, not lines (a console line may be up to
//! [`crate::console::LINE_MAX`] bytes): the oldest lines go first, and how
//! many went is counted.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

#[derive(Debug)]
pub struct TextRing {
    lines: VecDeque<String>,
    bytes: usize,
    max_bytes: usize,
    dropped: u64,
}

impl TextRing {
    pub const fn new(max_bytes: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            bytes: 0,
            max_bytes,
            dropped: 0,
        }
    }

    /// Adds a line (without its newline), dropping the oldest to stay
    /// within the budget.
    pub fn push(&mut self, line: &str) {
        self.lines.push_back(String::from(line));
        self.bytes = self.bytes.saturating_add(line.len());
        while self.bytes > self.max_bytes {
            let Some(old) = self.lines.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(old.len());
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    /// Every line kept, oldest first, and how many were dropped before them.
    pub fn snapshot(&self) -> (Vec<String>, u64) {
        (self.lines.iter().cloned().collect(), self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_lines_go_first_and_are_counted() {
        let mut r = TextRing::new(10);
        r.push("aaaa");
        r.push("bbbb");
        assert_eq!(r.snapshot(), (alloc::vec!["aaaa".into(), "bbbb".into()], 0));
        r.push("cccc");
        assert_eq!(r.snapshot(), (alloc::vec!["bbbb".into(), "cccc".into()], 1));
        r.push("a line longer than the budget");
        assert_eq!(r.snapshot(), (alloc::vec![], 4));
    }
}
