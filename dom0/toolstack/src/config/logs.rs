//! The sizes of the logs dom0 keeps in its store (`[store]` keys; issue
//! 15, docs/store.md "Logs"): dom0's own log and each domain's console
//! history are bounded on-disk rings of 4 KiB blocks.
//!
//! ```toml
//! [store]
//! log_kib = 128          # dom0's log ring, KiB; 8 ..= 16384; default 128
//! console_kib = 32       # each domain's console ring, KiB; 8 ..= 4096; default 32
//! console_domains = 32   # console rings kept (least recently written go
//!                        # first); 0 ..= 256 (0: none); default 32
//! ```
//!
//! Sizes are rounded up to whole 4 KiB blocks. A ring already on the disk
//! keeps the size it was made with (dom0 says so when they differ).

use super::error::Sink;
use super::parse::{Value, integer};

/// The checked log sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSizes {
    pub log_kib: u64,
    pub console_kib: u64,
    pub console_domains: u64,
}

impl Default for LogSizes {
    fn default() -> Self {
        LogSizes {
            log_kib: 128,
            console_kib: 32,
            console_domains: 32,
        }
    }
}

/// The keys this file reads.
pub const KEYS: &[&str] = &["log_kib", "console_kib", "console_domains"];

/// Reads key `key` (one of [`KEYS`]) into `sizes`; errors go to `sink`.
pub(super) fn read(sink: &mut Sink<'_>, key: &str, v: &Value<'_>, sizes: &mut LogSizes) {
    let (field, min, max) = match key {
        "log_kib" => (&mut sizes.log_kib, 8, 16384),
        "console_kib" => (&mut sizes.console_kib, 8, 4096),
        _ => (&mut sizes.console_domains, 0, 256),
    };
    let what = if key == "console_domains" {
        "an integer number of domains"
    } else {
        "an integer number of KiB"
    };
    if let Some(n) = integer(sink, "store", key, v, what, min, max) {
        *field = n;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::{Images, Limits, parse};
    use alloc::string::ToString;

    #[test]
    fn log_sizes_default_and_are_checked() {
        let p = |t: &str| parse("t.toml", t, &Limits::default(), Images::Any);
        let c = p("[store]\ndisk = \"d\"\n").unwrap().store.unwrap();
        assert_eq!(c.logs, super::LogSizes::default());
        let c = p("[store]\ndisk = \"d\"\nlog_kib = 64\nconsole_kib = 16\nconsole_domains = 4\n")
            .unwrap()
            .store
            .unwrap();
        assert_eq!(
            (c.logs.log_kib, c.logs.console_kib, c.logs.console_domains),
            (64, 16, 4)
        );
        let e = p("[store]\ndisk = \"d\"\nlog_kib = 4\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("store: field \"log_kib\": 4 is out of range 8 ..= 16384"),
            "{e}"
        );
    }
}
