//! Example and test guests for Kestrel. Each binary in `src/bin` is one
//! guest, written only against `pvabi`; the boot tests run them.
#![no_std]

use pvabi::StartInfo;

/// The value of `key=value` on the guest's command line.
pub fn arg<'a>(si: &'a StartInfo, key: &str) -> Option<&'a str> {
    core::str::from_utf8(si.cmdline())
        .unwrap_or("")
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Whether the bare word `word` is on the command line.
pub fn flag(si: &StartInfo, word: &str) -> bool {
    core::str::from_utf8(si.cmdline())
        .unwrap_or("")
        .split_whitespace()
        .any(|w| w == word)
}

/// The numeric value of `key=N` on the command line, or `default`.
pub fn num_arg(si: &StartInfo, key: &str, default: u64) -> u64 {
    arg(si, key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Event-channel conventions the `evping`/`evpong`/`evhostile` guests
/// share. A guest learns its peer's domain id from `peer=<id>` on its
/// command line; the port the `evpong` side offers is its first
/// allocation, so it is port [`PONG_PORT`] (ports are allocated lowest
/// first, from 1: `HC_EVTCHN_ALLOC_UNBOUND`).
pub const PONG_PORT: u32 = 1;
