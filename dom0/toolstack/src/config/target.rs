//! A domain's initial memory target: `target` in its `[[domain]]` table
//! (issue 15). `memory` stays what it always was, the most the domain may
//! hold (xl's `maxmem`); `target` is what it is asked to hold from the
//! start (xl's `memory`), as `hvctl mem-set` asks later. dom0 sets it with
//! `HC_DOMCTL_MEM_TARGET` right after the domain is built, before it runs
//! (`server::create_all`); a cooperating guest balloons down to it at
//! start (`guests/src/bin/balloond.rs`), one that ignores it keeps
//! `memory`.
//!
//! ```toml
//! memory = 64       # MiB: the maximum
//! target = "16M"    # or 16 (MiB, as `memory`), "4096p" (pages), "16384K"
//! ```
//!
//! Checked here as `mem_set` checks it at run time: whole 4 KiB pages, at
//! least `pvabi::MEM_TARGET_MIN_PAGES` pages (4 MiB), at most `memory`.

use alloc::format;
use alloc::string::String;

use super::error::Sink;
use super::parse::{Value, found};
use toml::de::DeValue;

const MIB: u64 = 1 << 20;
const PAGE: u64 = pvabi::PAGE_SIZE;

/// `n` bytes as an operator reads them (MiB when whole, else KiB).
fn show(n: u64) -> String {
    if n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// A size as `hvctl mem-set` takes it: a number, in MiB unless a unit
/// follows (`B`, `K`, `M`, `G`, or `p` for 4 KiB pages).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (a number, then B, K, M, G or p for pages)"))?;
    let mul = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => MIB,
        "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "g" | "gb" | "gib" => 1 << 30,
        "p" | "page" | "pages" => PAGE,
        u => {
            return Err(format!(
                "{s:?}: unknown unit {u:?} (B, K, M, G or p for pages; none means MiB)"
            ));
        }
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Checks `target` (`v`) against the domain's `memory` (MiB; `None` when
/// that was itself wrong: then only the target's own form is checked).
/// `Some(bytes)`, or `None` with the error in `sink`.
pub(super) fn target(
    sink: &mut Sink<'_>,
    label: &str,
    v: &Value<'_>,
    memory_mib: Option<u64>,
) -> Option<u64> {
    let at = v.span().start;
    let mut fail = |msg: String| {
        sink.push(at, Some(label), Some("target"), msg);
        None
    };
    let bytes = match v.get_ref() {
        DeValue::Integer(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => match n.checked_mul(MIB) {
                Some(b) => b,
                None => return fail(format!("{n} MiB is too large")),
            },
            Err(_) => return fail(format!("{} is not a size in MiB", i.as_str())),
        },
        DeValue::String(s) => match parse_size(s) {
            Ok(b) => b,
            Err(e) => return fail(e),
        },
        other => {
            return fail(format!(
                "expected a size (MiB, or a string such as \"16M\" or \"4096p\"), found {}",
                found(other)
            ));
        }
    };
    let asked = show(bytes);
    if !bytes.is_multiple_of(PAGE) {
        return fail(format!("{asked} is not a whole number of 4 KiB pages"));
    }
    let floor = pvabi::MEM_TARGET_MIN_PAGES * PAGE;
    if bytes < floor {
        return fail(format!(
            "{asked} is below the smallest target, {}",
            show(floor)
        ));
    }
    if let Some(m) = memory_mib {
        let max = m.saturating_mul(MIB);
        if bytes > max {
            return fail(format!(
                "{asked} is more than the domain's memory (its maximum), {}",
                show(max)
            ));
        }
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use crate::config::{Images, Limits, parse};

    fn one(extra: &str) -> Result<Option<u64>, String> {
        let text = format!("[[domain]]\nname = \"web\"\nimage = \"web.elf\"\nmemory = 32\n{extra}");
        parse("guests.toml", &text, &Limits::default(), Images::Any)
            .map(|c| c.domains[0].target_bytes)
            .map_err(|e| {
                let v: alloc::vec::Vec<String> =
                    e.errors().iter().map(|e| format!("{e}")).collect();
                v.join("\n")
            })
    }
    use alloc::format;
    use alloc::string::String;

    #[test]
    fn target_forms_and_limits() {
        assert_eq!(one(""), Ok(None));
        assert_eq!(one("target = 16\n"), Ok(Some(16 << 20)));
        assert_eq!(one("target = \"16M\"\n"), Ok(Some(16 << 20)));
        assert_eq!(one("target = \"4096p\"\n"), Ok(Some(16 << 20)));
        assert_eq!(one("target = \"32M\"\n"), Ok(Some(32 << 20)));
        assert_eq!(one("target = \"4M\"\n"), Ok(Some(4 << 20)));
        assert_eq!(
            one("target = 64\n"),
            Err(r#"guests.toml:5:10: domain "web": field "target": 64 MiB is more than the domain's memory (its maximum), 32 MiB"#.into())
        );
        assert_eq!(
            one("target = \"3M\"\n"),
            Err(r#"guests.toml:5:10: domain "web": field "target": 3 MiB is below the smallest target, 4 MiB"#.into())
        );
        assert_eq!(
            one("target = \"10000B\"\n"),
            Err(r#"guests.toml:5:10: domain "web": field "target": 10000 bytes is not a whole number of 4 KiB pages"#.into())
        );
        assert_eq!(
            one("target = \"16Q\"\n"),
            Err(r#"guests.toml:5:10: domain "web": field "target": "16Q": unknown unit "q" (B, K, M, G or p for pages; none means MiB)"#.into())
        );
        assert_eq!(
            one("target = true\n"),
            Err(r#"guests.toml:5:10: domain "web": field "target": expected a size (MiB, or a string such as "16M" or "4096p"), found the boolean true"#.into())
        );
        assert!(one("target = -4\n").is_err());
        assert!(one("target = 99999999999999999\n").is_err());
    }
}
