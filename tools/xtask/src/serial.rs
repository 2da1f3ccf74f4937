//! Reading the hypervisor's serial log: the lines the tests and the
//! benchmark rely on (see the README's "Serial output" section).

use std::collections::BTreeMap;

use crate::bail;
use crate::error::Result;

/// Splits raw serial output into lines: invalid UTF-8 is replaced, `\r` is
/// dropped (the console may end lines with `\r\n`, GRUB draws with it).
pub fn lines(raw: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(raw)
        .split('\n')
        .map(|l| l.replace('\r', ""))
        .collect()
}

/// The machine-readable `stats:` line printed when boot is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// CPUs online.
    pub cpus: u64,
    /// CPUs listed in the ACPI MADT.
    pub cpus_madt: u64,
    /// RAM in the boot memory map, bytes.
    pub ram_bytes: u64,
    /// Free memory after boot, bytes.
    pub free_bytes: u64,
    /// Memory the hypervisor keeps for itself, bytes.
    pub hv_bytes: u64,
    /// TSC ticks from entry to ready.
    pub boot_tsc: u64,
}

impl Stats {
    /// Parses the text from `stats:` on (anything before it is ignored, as
    /// are keys this version does not know).
    pub fn parse(line: &str) -> Result<Self> {
        let Some(at) = line.find("stats:") else {
            bail!("no `stats:` in `{line}`")
        };
        let mut kv = BTreeMap::new();
        for word in line[at + "stats:".len()..].split_whitespace() {
            let Some((k, v)) = word.split_once('=') else {
                bail!("`{word}` is not key=value in `{line}`")
            };
            let n = parse_number(v)
                .ok_or_else(|| crate::error::Error::new(format!("`{word}`: not a number")))?;
            kv.insert(k, n);
        }
        let get = |k: &str| match kv.get(k) {
            Some(&v) => Ok(v),
            None => Err(crate::error::Error::new(format!(
                "`{k}=` missing from `{line}`"
            ))),
        };
        Ok(Self {
            cpus: get("cpus")?,
            cpus_madt: get("cpus_madt")?,
            ram_bytes: get("ram_bytes")?,
            free_bytes: get("free_bytes")?,
            hv_bytes: get("hv_bytes")?,
            boot_tsc: get("boot_tsc")?,
        })
    }

    /// The last `stats:` line of a log.
    pub fn find(lines: &[String]) -> Result<Self> {
        match lines.iter().rev().find(|l| l.contains("stats:")) {
            Some(l) => Self::parse(l),
            None => bail!("the log has no `stats:` line"),
        }
    }
}

/// The words after `prefix` in `line` as `key=value` pairs (other words
/// are skipped).
fn fields<'a>(line: &'a str, prefix: &str) -> Option<BTreeMap<&'a str, &'a str>> {
    let at = line.find(prefix)?;
    Some(
        line[at + prefix.len()..]
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .collect(),
    )
}

/// How a domain ended, from its `domain-end:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainEnd {
    /// Domain id (`[dom<id> ...]` on its console lines).
    pub id: u64,
    /// Its name (the boot module's name).
    pub name: String,
    /// `exited`, `crashed` or `killed`.
    pub result: String,
    /// Exit code (-1 when killed).
    pub code: i64,
    /// VM exits it took.
    pub exits: u64,
    /// Nested-page-table frames returned to the allocator.
    pub freed_table_frames: u64,
}

impl DomainEnd {
    /// Parses `domain-end: id=N name=NAME result=R code=C exits=E
    /// freed_table_frames=F` (anything before `domain-end:` is ignored).
    pub fn parse(line: &str) -> Result<Self> {
        let Some(kv) = fields(line, "domain-end:") else {
            bail!("no `domain-end:` in `{line}`")
        };
        let get = |k: &str| match kv.get(k) {
            Some(v) => Ok(*v),
            None => Err(crate::error::Error::new(format!(
                "`{k}=` missing from `{line}`"
            ))),
        };
        let num = |k: &str| {
            let v = get(k)?;
            parse_number(v)
                .ok_or_else(|| crate::error::Error::new(format!("`{k}={v}`: not a number")))
        };
        let code = get("code")?;
        Ok(Self {
            id: num("id")?,
            name: get("name")?.to_string(),
            result: get("result")?.to_string(),
            code: code
                .parse()
                .map_err(|_| crate::error::Error::new(format!("`code={code}`: not a number")))?,
            exits: num("exits")?,
            freed_table_frames: num("freed_table_frames")?,
        })
    }

    /// Every `domain-end:` line of a log ([`lines`]), in order. The last
    /// element is a line cut off when the log does not end with a newline
    /// (the harness stopped the emulator at an awaited line while the
    /// next one was being written): it is skipped if it does not parse.
    pub fn all(lines: &[String]) -> Result<Vec<Self>> {
        let last = lines.len().saturating_sub(1);
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains("domain-end:"))
            .filter_map(|(i, l)| match Self::parse(l) {
                Err(_) if i == last => None,
                r => Some(r),
            })
            .collect()
    }
}

/// The line printed once every domain has ended: `domains: all N ended (X
/// exited cleanly, Y did not); max_concurrent=M free_bytes=B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllEnded {
    /// Domains created.
    pub domains: u64,
    /// Those that exited with code 0.
    pub clean: u64,
    /// The others (crashed, killed, non-zero code).
    pub unclean: u64,
    /// The most domains ever running at the same moment.
    pub max_concurrent: u64,
    /// Free memory after every domain ended, bytes.
    pub free_bytes: u64,
}

impl AllEnded {
    /// Parses the line (anything before `domains: all` is ignored).
    pub fn parse(line: &str) -> Result<Self> {
        let Some(at) = line.find("domains: all ") else {
            bail!("no `domains: all` in `{line}`")
        };
        let rest = &line[at + "domains: all ".len()..];
        let words: Vec<&str> = rest
            .split(|c: char| c.is_whitespace() || "();,".contains(c))
            .filter(|w| !w.is_empty())
            .collect();
        // N ended X exited cleanly Y did not
        let shape = [(1, "ended"), (3, "exited"), (4, "cleanly"), (6, "did")];
        if !shape.iter().all(|&(i, w)| words.get(i) == Some(&w)) {
            bail!("unexpected `domains: all` line `{line}`")
        }
        let num = |i: usize| words.get(i).and_then(|w| parse_number(w));
        let kv = fields(line, "domains: all ").unwrap_or_default();
        let key = |k: &str| kv.get(k).and_then(|v| parse_number(v));
        match (
            num(0),
            num(2),
            num(5),
            key("max_concurrent"),
            key("free_bytes"),
        ) {
            (Some(domains), Some(clean), Some(unclean), Some(max_concurrent), Some(free_bytes)) => {
                Ok(Self {
                    domains,
                    clean,
                    unclean,
                    max_concurrent,
                    free_bytes,
                })
            }
            _ => bail!("unexpected `domains: all` line `{line}`"),
        }
    }

    /// The line in a log, if there is one.
    pub fn find(lines: &[String]) -> Option<Result<Self>> {
        lines
            .iter()
            .find(|l| l.contains("domains: all "))
            .map(|l| Self::parse(l))
    }
}

/// The text a domain printed on its console, from `[dom<id> <name>]
/// <text>` lines, in order.
pub fn console<'a>(lines: &'a [String], id: u64, name: &str) -> Vec<&'a str> {
    let prefix = format!("[dom{id} {name}] ");
    lines
        .iter()
        .filter_map(|l| l.find(&prefix).map(|at| &l[at + prefix.len()..]))
        .collect()
}

/// Decimal or `0x` hexadecimal.
pub fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    const LINE: &str = "stats: cpus=4 cpus_madt=4 ram_bytes=133791744 free_bytes=120000000 \
                        hv_bytes=4096000 boot_tsc=123456";

    #[test]
    fn parses_the_stats_line() {
        let s = Stats::parse(LINE).unwrap();
        assert_eq!((s.cpus, s.cpus_madt, s.ram_bytes), (4, 4, 133_791_744));
        assert_eq!(
            (s.free_bytes, s.hv_bytes, s.boot_tsc),
            (120_000_000, 4_096_000, 123_456)
        );
        // A log prefix (level, CPU) and extra keys are fine.
        let s2 = Stats::parse(&format!("[ INFO cpu0] {LINE} future=0x10")).unwrap();
        assert_eq!(s, s2);
    }

    #[test]
    fn rejects_incomplete_lines() {
        assert!(Stats::parse("stats: cpus=4").is_err());
        assert!(Stats::parse("stats: cpus=four cpus_madt=4").is_err());
        assert!(Stats::parse("nothing here").is_err());
    }

    #[test]
    fn parses_domain_lines() {
        let d = DomainEnd::parse(
            "domain-end: id=3 name=oob.elf result=killed code=-1 exits=7 freed_table_frames=3",
        )
        .unwrap();
        assert_eq!(
            (d.id, d.name.as_str(), d.result.as_str()),
            (3, "oob.elf", "killed")
        );
        assert_eq!((d.code, d.exits, d.freed_table_frames), (-1, 7, 3));
        assert!(DomainEnd::parse("domain-end: id=3 name=x").is_err());
        assert!(DomainEnd::parse("domain 3 ended").is_err());

        let a = AllEnded::parse(
            "domains: all 7 ended (4 exited cleanly, 3 did not); max_concurrent=2 free_bytes=265986048",
        )
        .unwrap();
        assert_eq!(
            a,
            AllEnded {
                domains: 7,
                clean: 4,
                unclean: 3,
                max_concurrent: 2,
                free_bytes: 265_986_048
            }
        );
        assert!(AllEnded::parse("domains: all 7 ended").is_err());

        let log: Vec<String> = [
            "[dom1 hello.elf] hello from domain 1",
            "[cpu1 INFO ] domain 1 (hello.elf) exited with code 0",
            "[dom12 hello.elf] not domain 1",
            "[dom1 hello.elf] bye",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            console(&log, 1, "hello.elf"),
            ["hello from domain 1", "bye"]
        );
        assert!(AllEnded::find(&log).is_none());
        assert!(DomainEnd::all(&log).unwrap().is_empty());
    }

    #[test]
    fn a_domain_end_line_cut_off_at_the_end_is_skipped() {
        let full = "domain-end: id=3 name=x result=exited code=0 exits=1 freed_table_frames=3";
        let cut = lines(format!("{full}\r\ndomain-end: id=1").as_bytes());
        assert_eq!(DomainEnd::all(&cut).unwrap().len(), 1);
        // Not at the end (a complete log ends with a newline): an error.
        let bad = lines(b"domain-end: id=1\nmore\n");
        assert!(DomainEnd::all(&bad).is_err());
    }

    #[test]
    fn lines_drop_carriage_returns() {
        let l = lines(b"a\r\nb\n\xffc\r");
        assert_eq!(l, vec!["a", "b", "\u{fffd}c"]);
        assert!(Stats::find(&l).is_err());
        let l = lines(format!("x\n{LINE}\r\nKestrel ready\n").as_bytes());
        assert_eq!(Stats::find(&l).unwrap().cpus, 4);
    }
}
