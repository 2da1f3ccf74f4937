//! Console lines: dom0 drains each domain's console ring as bytes and
//! prints whole lines, `[<name>] <text>`. Control characters other than
//! tab become `?` (a guest must not forge lines or send terminal escapes
//! to the operator's console), bytes that are not UTF-8 become U+FFFD, and
//! a line longer than [`LINE_MAX`] is cut into pieces.

use alloc::string::String;
use alloc::vec::Vec;

/// Longest line printed in one piece (as the hypervisor's own console).
pub const LINE_MAX: usize = 200;

/// One domain's unfinished console line.
#[derive(Debug, Default)]
pub struct ConsoleLines {
    line: Vec<u8>,
}

impl ConsoleLines {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes console bytes; returns the lines they complete, cleaned.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b'\n' => out.push(self.take()),
                b'\r' => {}
                _ => {
                    if self.line.len() >= LINE_MAX {
                        out.push(self.take());
                    }
                    let ok = b == b'\t' || b >= 0x20 && b != 0x7f;
                    self.line.push(if ok { b } else { b'?' });
                }
            }
        }
        out
    }

    /// The unfinished line, if any (the domain has ended).
    pub fn flush(&mut self) -> Option<String> {
        (!self.line.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let bytes = core::mem::take(&mut self.line);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn lines_are_whole_cleaned_and_bounded() {
        let mut c = ConsoleLines::new();
        assert!(c.push(b"hel").is_empty());
        assert_eq!(c.push(b"lo\r\nwor"), vec!["hello".to_string()]);
        assert_eq!(c.push(b"ld\x1b[2J\x07\n"), vec!["world?[2J?".to_string()]);
        assert_eq!(
            c.push(b"\xff\xfe ok\n"),
            vec!["\u{fffd}\u{fffd} ok".to_string()]
        );
        let long = vec![b'x'; LINE_MAX * 2 + 5];
        let lines = c.push(&long);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == LINE_MAX));
        assert_eq!(c.flush().as_deref(), Some("xxxxx"));
        assert_eq!(c.flush(), None);
    }
}
