//! `hvctl mem-set <domain> <size>` (as `xl mem-set`): a live domain's
//! memory target; and how `list`, `info` and `top` show memory once a
//! domain's target or holding differs from its maximum.
//!
//! The target is a request: a cooperating guest balloons toward it
//! (`pvabi::guest::memtarget`), one that ignores it keeps its memory, and
//! `info` then shows the target beside what it holds.

use kestrel_toolstack::proto::{DomainInfo, DomainRef, Op, Reply};

use crate::client::Client;
use crate::error::Error;
use crate::output::{self, bytes};

const PAGE: u64 = 4096;

/// A size as typed: a number, in MiB unless a unit follows (`B`, `K`/
/// `KiB`, `M`/`MiB`, `G`/`GiB`, or `p`/`pages` of 4 KiB), e.g. `16`,
/// `16M`, `4096p`, `1G`. Decimal powers are not offered: every unit is a
/// power of two, as the rest of hvctl prints them.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (a number, then B, K, M, G or pages)"))?;
    let mul = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => 1 << 20,
        "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "g" | "gb" | "gib" => 1 << 30,
        "p" | "page" | "pages" => PAGE,
        u => {
            return Err(format!(
                "{s:?}: unknown unit {u:?} (B, K, M, G or pages; none means MiB)"
            ));
        }
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// The memory a domain holds as one cell: its maximum while it holds all
/// of it and has no other target; else `held of max`, and `→ target` when
/// the target is not what it holds (a guest still ballooning, or one that
/// ignores the target).
pub fn memory_cell(d: &DomainInfo) -> String {
    let held = d.current_bytes.unwrap_or(d.memory_bytes);
    let target = d.target_bytes.unwrap_or(held);
    let mut s = if held == d.memory_bytes {
        bytes(held)
    } else {
        format!("{} of {}", bytes(held), bytes(d.memory_bytes))
    };
    if target != held {
        s.push_str(&format!(" → {}", bytes(target)));
    }
    s
}

/// `info`'s lines for what the domain holds and its target (none when
/// dom0 does not report them).
pub fn details(d: &DomainInfo) -> String {
    let mut out = String::new();
    if let Some(c) = d.current_bytes {
        out.push_str(&format!("holds:     {} ({c} bytes)\n", bytes(c)));
    }
    if let Some(t) = d.target_bytes {
        out.push_str(&format!("target:    {} ({t} bytes)\n", bytes(t)));
    }
    out
}

/// Runs `mem-set`; what to print.
pub fn run(client: &mut Client, domain: DomainRef, size: u64, json: bool) -> Result<String, Error> {
    let reply = client.call(Op::MemSet {
        domain,
        target_bytes: size,
    })?;
    if json {
        return Ok(output::json(&reply));
    }
    let Reply::Domain { domain: d } = reply else {
        return Err(Error::Protocol(format!("unexpected reply {reply:?}")));
    };
    Ok(format!(
        "domain {} ({}): memory target {}, holds {}\n",
        d.id,
        d.name,
        bytes(d.target_bytes.unwrap_or(size)),
        bytes(d.current_bytes.unwrap_or(d.memory_bytes))
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use kestrel_toolstack::proto::DomainState;

    #[test]
    fn sizes_are_mib_unless_a_unit_says_otherwise() {
        assert_eq!(parse_size("16"), Ok(16 << 20));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4096p"), Ok(16 << 20));
        assert_eq!(parse_size("4096 pages"), Ok(16 << 20));
        assert_eq!(parse_size("65536K"), Ok(64 << 20));
        assert_eq!(parse_size("12345b"), Ok(12345));
        assert!(parse_size("").unwrap_err().contains("not a size"));
        assert!(parse_size("M").unwrap_err().contains("not a size"));
        assert!(
            parse_size("16T")
                .unwrap_err()
                .contains("unknown unit \"t\"")
        );
        assert!(
            parse_size("99999999999999999G")
                .unwrap_err()
                .contains("too large")
        );
    }

    fn dom(max: u64, held: Option<u64>, target: Option<u64>) -> DomainInfo {
        let mut d: DomainInfo = serde_json::from_value(serde_json::json!({
            "id": 3, "name": "b", "state": "running", "memory_bytes": max,
            "vcpus": 1, "weight": 256, "cap": 0, "cpu_time_ns": 0,
        }))
        .unwrap();
        assert_eq!(d.state, DomainState::Running);
        d.current_bytes = held;
        d.target_bytes = target;
        d
    }

    #[test]
    fn memory_shows_held_and_target_only_when_they_differ() {
        let m = 1 << 20;
        assert_eq!(memory_cell(&dom(32 * m, None, None)), "32 MiB");
        assert_eq!(
            memory_cell(&dom(32 * m, Some(32 * m), Some(32 * m))),
            "32 MiB"
        );
        assert_eq!(
            memory_cell(&dom(32 * m, Some(16 * m), Some(16 * m))),
            "16 MiB of 32 MiB"
        );
        assert_eq!(
            memory_cell(&dom(32 * m, Some(32 * m), Some(16 * m))),
            "32 MiB → 16 MiB"
        );
        assert_eq!(details(&dom(32 * m, None, None)), "");
        assert_eq!(
            details(&dom(32 * m, Some(32 * m), Some(16 * m))),
            "holds:     32 MiB (33554432 bytes)\ntarget:    16 MiB (16777216 bytes)\n"
        );
    }
}
