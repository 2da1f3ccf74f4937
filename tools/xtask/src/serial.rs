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
    fn lines_drop_carriage_returns() {
        let l = lines(b"a\r\nb\n\xffc\r");
        assert_eq!(l, vec!["a", "b", "\u{fffd}c"]);
        assert!(Stats::find(&l).is_err());
        let l = lines(format!("x\n{LINE}\r\nKestrel ready\n").as_bytes());
        assert_eq!(Stats::find(&l).unwrap().cpus, 4);
    }
}
