//! A domain's arguments: its command line ([`StartInfo::cmdline`]) read as
//! whitespace-separated words, each `key=value` or a bare flag (the Xen
//! and Linux convention), e.g. `every_ms=500 note=web verbose`.
//!
//! ```
//! # let mut start = pvabi::StartInfo::zeroed();
//! # start.set_cmdline(b"every_ms=500 note=web verbose").ok();
//! assert_eq!(start.arg("note"), Some("web"));
//! assert!(start.flag("verbose"));
//! assert_eq!(start.arg_or("every_ms", 100u64), Ok(500));
//! assert_eq!(start.arg_or("count", 0u64), Ok(0)); // absent: the default
//! ```
//!
//! The command line comes from whoever created the domain (dom0's
//! configuration, a boot module's arguments), so nothing here trusts it:
//! bytes that are not UTF-8 make no words at all, and a value that does not
//! parse is an error naming the argument ([`BadArg`]), never a panic.

use core::fmt;
use core::str::FromStr;

use crate::StartInfo;

/// An argument whose value does not parse as the type asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadArg<'a> {
    /// The key, as asked for.
    pub key: &'a str,
    /// The value found on the command line.
    pub value: &'a str,
}

impl fmt::Display for BadArg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "argument {}={}: not a valid value for {}",
            self.key, self.value, self.key
        )
    }
}

impl StartInfo {
    /// The command line's words, in order, up to the first NUL byte if
    /// any (a length that overstates the text then reads no zeros); none
    /// when the command line is not valid UTF-8.
    pub fn args(&self) -> core::str::SplitWhitespace<'_> {
        let bytes = self.cmdline();
        let text = bytes.split(|&b| b == 0).next().unwrap_or(&[]);
        core::str::from_utf8(text).unwrap_or("").split_whitespace()
    }

    /// The value of the first `key=value` word (the text after the first
    /// `=`, possibly empty), or `None` when no word has that key.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }

    /// Whether the bare word `word` (no `=`) is on the command line.
    pub fn flag(&self, word: &str) -> bool {
        self.args().any(|w| w == word)
    }

    /// The value of `key` parsed as a `T` (e.g. `u64`, `i32`, `bool`), or
    /// `default` when the key is absent; [`BadArg`] when it is there but
    /// does not parse.
    pub fn arg_or<'a, T: FromStr>(&'a self, key: &'a str, default: T) -> Result<T, BadArg<'a>> {
        match self.arg(key) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|_| BadArg { key, value }),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::*;

    fn start(cmdline: &[u8]) -> StartInfo {
        let mut si = StartInfo::zeroed();
        assert!(si.set_cmdline(cmdline).is_ok());
        si
    }

    #[test]
    fn keys_values_and_flags() {
        let si = start(b"  every_ms=500\tnote=web verbose empty= a=b=c every_ms=7 ");
        assert_eq!(si.arg("every_ms"), Some("500"), "the first one counts");
        assert_eq!(si.arg("note"), Some("web"));
        assert_eq!(si.arg("empty"), Some(""));
        assert_eq!(si.arg("a"), Some("b=c"), "split at the first '='");
        assert_eq!(si.arg("verbose"), None, "a flag has no value");
        assert_eq!(si.arg("every"), None, "a key is a whole key, not a prefix");
        assert_eq!(si.arg("nosuch"), None);
        assert!(si.flag("verbose"));
        assert!(!si.flag("note"), "a key=value word is not a flag");
        assert_eq!(si.args().count(), 6);
    }

    #[test]
    fn typed_values_defaults_and_errors() {
        let si = start(b"every_ms=500 count=-3 on=true huge=99999999999999999999 x=12ab");
        assert_eq!(si.arg_or("every_ms", 100u64), Ok(500));
        assert_eq!(si.arg_or("missing", 100u64), Ok(100));
        assert_eq!(si.arg_or("count", 0i32), Ok(-3));
        assert_eq!(si.arg_or("on", false), Ok(true));
        assert_eq!(
            si.arg_or("count", 0u64),
            Err(BadArg {
                key: "count",
                value: "-3"
            })
        );
        assert!(si.arg_or("huge", 0u64).is_err(), "overflow is an error");
        assert_eq!(
            si.arg_or("x", 0u32).map_err(|e| e.to_string()),
            Err("argument x=12ab: not a valid value for x".to_string())
        );
    }

    #[test]
    fn hostile_command_lines() {
        // Not UTF-8: no words, no panic.
        let si = start(b"a=1 \xff\xfe b=2");
        assert_eq!(si.args().count(), 0);
        assert_eq!(si.arg("a"), None);
        // A corrupt length is clamped by cmdline(); all bytes are words.
        let mut si = start(b"k=v");
        si.cmdline_len = u32::MAX;
        assert_eq!(si.arg("k"), Some("v"));
        assert_eq!(start(b"").arg("k"), None);
    }
}
