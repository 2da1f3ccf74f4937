//! Prints `lines=` numbered lines (default 300) in console writes of up to
//! 4 KiB, as fast as its queue takes them, and exits with `code=` (default
//! 0) right after the last write: its last ~4 KiB are still queued in the
//! hypervisor when it ends (issue 12: a domain's leftover output is
//! printed after it ends, in order, before its `domain-end:` line, with
//! nothing lost and without holding the CPU that ends it).
//!
//! Output: `lastwords: K of N ........` (60 bytes and a newline) for K in
//! 0..N.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::fmt::Write;

use pvabi::StartInfo;
use pvabi::guest::console;

pvabi::entry_point!(main);

fn arg(si: &StartInfo, key: &str) -> Option<u64> {
    core::str::from_utf8(si.cmdline())
        .unwrap_or("")
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// A 4 KiB batch of lines being assembled.
struct Batch {
    buf: [u8; 4096],
    len: usize,
}

impl Write for Batch {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let dst = self
            .buf
            .get_mut(self.len..self.len + s.len())
            .ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

fn main(si: &StartInfo) -> i32 {
    let lines = arg(si, "lines").unwrap_or(300);
    let code = arg(si, "code").unwrap_or(0) as i32;
    let mut b = Batch {
        buf: [0; 4096],
        len: 0,
    };
    for k in 0..lines {
        // 61 bytes a line: 67 lines a batch.
        if b.len + 61 > b.buf.len() {
            if console::write_all(&b.buf[..b.len]).is_err() {
                return 1;
            }
            b.len = 0;
        }
        let _ = write!(b, "lastwords: {k:5} of {lines:5} ");
        while b.len % 61 != 60 {
            let _ = b.write_str(".");
        }
        let _ = b.write_str("\n");
    }
    if console::write_all(&b.buf[..b.len]).is_err() {
        return 1;
    }
    code
}
