//! The result of one emulator run and the checks the tests make on it.
//!
//! While an [`Outcome`] is alive, a failing assertion (any panic on the
//! test's thread) prints the run's command, exit, serial log and emulator
//! messages, so every failure explains itself.

use std::path::PathBuf;
use std::time::Duration;

use xtask::qemu::{self, STATUS_FAILURE, STATUS_SUCCESS};
use xtask::reset::TripleFault;
use xtask::runner::Ended;
use xtask::serial::{Stats, parse_number};

use crate::artifacts::Expected;

/// One finished (or killed) emulator run.
#[derive(Debug)]
pub struct Outcome {
    /// The test's name.
    pub test: String,
    /// The command line that ran.
    pub command: String,
    /// How the emulator ended.
    pub ended: Ended,
    /// How long it ran.
    pub took: Duration,
    /// The serial log, one entry per line, `\r` removed.
    pub lines: Vec<String>,
    /// Where the serial log is.
    pub serial_path: PathBuf,
    /// The emulator's own output (QEMU's stderr, the tail of Bochs' log;
    /// after a triple fault of the machine, QEMU's dump of it).
    pub emulator_log: String,
    /// QEMU's record of a triple fault of the machine (the hypervisor
    /// itself, issue 13), if it logged one.
    pub triple_fault: Option<TripleFault>,
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.report());
        }
    }
}

impl Outcome {
    /// Everything about the run, for a person reading a failure. After a
    /// triple fault of the machine it ends with a line per CPU (CI keeps
    /// only the last few KiB of a failure).
    pub fn report(&self) -> String {
        let fault = match &self.triple_fault {
            Some(t) => format!(
                "\n----- {}: {}; each CPU at the fault:\n{}",
                self.test,
                Self::triple_faulted(t),
                t.summary.join("\n")
            ),
            None => String::new(),
        };
        format!(
            "===== {}: {} after {:.1} s\n----- command\n{}\n----- serial log ({}, {} lines)\n{}\n----- emulator output\n{}{fault}\n=====",
            self.test,
            self.ended,
            self.took.as_secs_f64(),
            self.command,
            self.serial_path.display(),
            self.lines.len(),
            self.lines.join("\n"),
            self.emulator_log.trim_end()
        )
    }

    /// `the hypervisor triple-faulted (QEMU reset), CPU n at RIP ...`.
    fn triple_faulted(t: &TripleFault) -> String {
        format!(
            "the hypervisor triple-faulted (QEMU reset), {}",
            t.headline()
        )
    }

    /// Fails the test, saying so first, when the machine triple-faulted
    /// (every check of a run's end starts here: a dead machine explains
    /// any missing line).
    pub fn assert_no_triple_fault(&self) {
        if let Some(t) = &self.triple_fault {
            panic!("{}: {}", self.test, Self::triple_faulted(t));
        }
    }

    /// The first line containing `needle`.
    pub fn line(&self, needle: &str) -> Option<&str> {
        self.lines
            .iter()
            .map(String::as_str)
            .find(|l| l.contains(needle))
    }

    /// The first line containing `needle`; fails the test if there is none.
    pub fn expect_line(&self, needle: &str) -> &str {
        match self.line(needle) {
            Some(l) => l,
            None => {
                self.assert_no_triple_fault();
                panic!("{}: no serial line contains `{needle}`", self.test)
            }
        }
    }

    /// Checks that lines containing each needle appear, in this order.
    pub fn assert_in_order(&self, needles: &[&str]) {
        let mut from = 0;
        for n in needles {
            match self.lines[from..].iter().position(|l| l.contains(n)) {
                Some(i) => from += i + 1,
                None if self.triple_fault.is_some() => self.assert_no_triple_fault(),
                None => panic!(
                    "{}: expected a line containing `{n}` after line {from} (in order {needles:?})",
                    self.test
                ),
            }
        }
    }

    /// Lines starting with `FATAL: ` (after any log prefix the console adds).
    pub fn fatal_lines(&self) -> Vec<&str> {
        self.lines
            .iter()
            .map(String::as_str)
            .filter(|l| l.contains("FATAL: "))
            .collect()
    }

    /// Lines reporting a panic.
    pub fn panic_lines(&self) -> Vec<&str> {
        self.lines
            .iter()
            .map(String::as_str)
            .filter(|l| l.contains("PANIC on cpu"))
            .collect()
    }

    /// Checks QEMU's exit status.
    pub fn assert_status(&self, want: i32) {
        self.assert_no_triple_fault();
        assert_eq!(
            self.ended.code(),
            Some(want),
            "{}: QEMU ended with {} ({}), expected status {want} ({})",
            self.test,
            self.ended,
            qemu::describe_status(self.ended.code()),
            qemu::describe_status(Some(want))
        );
    }

    /// A successful boot: the `Kestrel ready` line, no FATAL or PANIC line,
    /// and (under QEMU) the success status 33.
    pub fn assert_booted(&self, via: &str) {
        self.assert_no_triple_fault();
        assert!(
            self.panic_lines().is_empty(),
            "{}: the hypervisor panicked",
            self.test
        );
        assert!(
            self.fatal_lines().is_empty(),
            "{}: the hypervisor reported a fatal error",
            self.test
        );
        self.assert_in_order(&[&format!("booting via {via}"), "stats:", "Kestrel ready:"]);
        let banner = self.expect_line("booting via");
        assert!(
            banner.contains("Kestrel "),
            "{}: banner `{banner}` does not name Kestrel",
            self.test
        );
    }

    /// [`Self::assert_booted`] plus QEMU's success status.
    pub fn assert_qemu_success(&self, via: &str) {
        self.assert_status(STATUS_SUCCESS);
        self.assert_booted(via);
    }

    /// A clean refusal: exactly one `FATAL:` line containing every needle
    /// (case-insensitively), no panic, never ready, status 65.
    pub fn assert_fatal(&self, needles: &[&str]) {
        self.assert_status(STATUS_FAILURE);
        let fatal = self.fatal_lines();
        assert_eq!(
            fatal.len(),
            1,
            "{}: expected exactly one FATAL line, got {fatal:?}",
            self.test
        );
        let lower = fatal[0].to_lowercase();
        for n in needles {
            assert!(
                lower.contains(&n.to_lowercase()),
                "{}: FATAL line `{}` does not mention `{n}`",
                self.test,
                fatal[0]
            );
        }
        assert!(
            self.panic_lines().is_empty(),
            "{}: a panic is not a clean refusal",
            self.test
        );
        assert!(
            self.line("Kestrel ready").is_none(),
            "{}: reported ready despite the error",
            self.test
        );
    }

    /// The `stats:` line.
    pub fn stats(&self) -> Stats {
        Stats::find(&self.lines).unwrap_or_else(|e| panic!("{}: {e}", self.test))
    }

    /// Checks CPU counts and RAM against what the machine was given:
    /// `cpus == cpus_madt == smp`, and `ram_bytes` no more than `mem` and at
    /// most `slack` below it (firmware keeps some RAM; see docs/testing.md).
    pub fn assert_machine(&self, smp: u64, mem: u64, slack: u64) -> Stats {
        let s = self.stats();
        assert_eq!(
            s.cpus_madt, smp,
            "{}: MADT lists {} CPUs, the machine has {smp}",
            self.test, s.cpus_madt
        );
        assert_eq!(
            s.cpus, smp,
            "{}: {} CPUs online, expected {smp}",
            self.test, s.cpus
        );
        assert!(
            s.ram_bytes <= mem && s.ram_bytes >= mem - slack,
            "{}: ram_bytes={} ({} MiB short of the {} MiB given; allowed {} MiB)",
            self.test,
            s.ram_bytes,
            (mem as i128 - s.ram_bytes as i128) as f64 / 1048576.0,
            mem >> 20,
            slack >> 20
        );
        assert!(
            s.free_bytes < s.ram_bytes,
            "{}: more free than RAM",
            self.test
        );
        assert!(
            s.hv_bytes > 0 && s.hv_bytes < s.ram_bytes,
            "{}: hv_bytes={} is implausible",
            self.test,
            s.hv_bytes
        );
        assert!(s.boot_tsc > 0, "{}: boot_tsc is 0", self.test);
        assert!(
            s.free_bytes + s.hv_bytes <= s.ram_bytes,
            "{}: free_bytes + hv_bytes exceed ram_bytes",
            self.test
        );
        self.assert_ready_line(&s);
        s
    }

    /// Checks that `Kestrel ready: <N> CPUs online, <F> MiB free of <T> MiB
    /// RAM` agrees with the `stats:` line (MiB figures within 1 of it, as
    /// they are rounded).
    pub fn assert_ready_line(&self, s: &Stats) {
        let line = self.expect_line("Kestrel ready:");
        let words: Vec<&str> = line[line.find("Kestrel ready:").unwrap_or(0)..]
            .split_whitespace()
            .collect();
        let num = |i: usize| {
            words
                .get(i)
                .and_then(|w| w.trim_end_matches(',').parse::<u64>().ok())
        };
        // Kestrel ready: <N> CPUs online, <F> MiB free of <T> MiB RAM
        let fixed = [
            (3, "CPUs"),
            (4, "online,"),
            (6, "MiB"),
            (7, "free"),
            (8, "of"),
            (10, "MiB"),
            (11, "RAM"),
        ];
        let shape = fixed.iter().all(|&(i, w)| words.get(i) == Some(&w));
        assert!(shape, "{}: unexpected ready line `{line}`", self.test);
        let (cpus, free, total) = (num(2), num(5), num(9));
        assert_eq!(
            cpus,
            Some(s.cpus),
            "{}: CPUs in `{line}` vs stats",
            self.test
        );
        let near = |mib: Option<u64>, bytes: u64| mib.is_some_and(|m| m.abs_diff(bytes >> 20) <= 1);
        assert!(
            near(free, s.free_bytes),
            "{}: free MiB in `{line}` vs free_bytes={}",
            self.test,
            s.free_bytes
        );
        assert!(
            near(total, s.ram_bytes),
            "{}: RAM MiB in `{line}` vs ram_bytes={}",
            self.test,
            s.ram_bytes
        );
    }

    /// Every `module <i>: ...` line, in log order.
    pub fn modules(&self) -> Vec<ModuleLine> {
        self.lines
            .iter()
            .filter_map(|l| ModuleLine::parse(l))
            .collect()
    }

    /// Checks that module `index` is reported with `want`'s size and CRC-32,
    /// with `want`'s name when `named` (PVH modules have no name), and with
    /// exactly the arguments `args`.
    pub fn assert_module(
        &self,
        index: usize,
        want: &Expected,
        named: bool,
        args: &str,
    ) -> ModuleLine {
        let mods = self.modules();
        let Some(m) = mods.iter().find(|m| m.index == index) else {
            panic!(
                "{}: no `module {index}:` line (modules seen: {mods:?})",
                self.test
            )
        };
        if named {
            assert_eq!(
                m.name, want.name,
                "{}: module {index} name in `{}`",
                self.test, m.line
            );
        }
        assert_eq!(
            m.size,
            Some(want.size),
            "{}: module {index} size in `{}`",
            self.test,
            m.line
        );
        assert_eq!(
            m.crc32,
            Some(want.crc32),
            "{}: module {index} crc32 in `{}`, expected 0x{:08x}",
            self.test,
            m.line,
            want.crc32
        );
        assert_eq!(
            m.args.as_deref(),
            Some(args),
            "{}: module {index} arguments in `{}`",
            self.test,
            m.line
        );
        m.clone()
    }
}

/// A `module <i>: <name> ... size=<n> crc32=0x<hex>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleLine {
    /// `<i>`.
    pub index: usize,
    /// The word after the colon.
    pub name: String,
    /// `size=`, if present and numeric.
    pub size: Option<u64>,
    /// `crc32=`, if present and numeric.
    pub crc32: Option<u32>,
    /// `args="..."`, if present.
    pub args: Option<String>,
    /// The whole line.
    pub line: String,
}

impl ModuleLine {
    /// Parses a line containing `module <digits>: <name>`.
    pub fn parse(line: &str) -> Option<Self> {
        let mut search = line;
        while let Some(at) = search.find("module ") {
            let rest = &search[at + "module ".len()..];
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits > 0 && rest[digits..].starts_with(':') {
                let index = rest[..digits].parse().ok()?;
                let after = &rest[digits + 1..];
                let name = after.split_whitespace().next()?.to_string();
                let field = |k: &str| {
                    after
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix(k))
                        .and_then(parse_number)
                };
                return Some(Self {
                    index,
                    name,
                    size: field("size="),
                    crc32: field("crc32=").and_then(|v| u32::try_from(v).ok()),
                    args: after
                        .split_once("args=\"")
                        .and_then(|(_, a)| a.split_once('"'))
                        .map(|(a, _)| a.to_string()),
                    line: line.to_string(),
                });
            }
            search = &search[at + 1..];
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn module_lines() {
        let m = ModuleLine::parse(
            "[info] module 1: guests.toml args=\"a b\" size=97 crc32=0x0badcafe at 0x200000",
        )
        .unwrap();
        assert_eq!(
            (m.index, m.name.as_str(), m.size, m.crc32),
            (1, "guests.toml", Some(97), Some(0x0bad_cafe))
        );
        assert!(ModuleLine::parse("modules: 2").is_none());
        assert!(ModuleLine::parse("loading module dom0").is_none());
        assert_eq!(m.args.as_deref(), Some("a b"));
        let m = ModuleLine::parse("module 0: /boot/dom0.elf").unwrap();
        assert_eq!((m.size, m.crc32, m.args), (None, None, None));
    }

    fn outcome(lines: &[&str], code: i32) -> Outcome {
        use std::os::unix::process::ExitStatusExt;
        Outcome {
            test: "unit".into(),
            command: "qemu".into(),
            ended: Ended::Exited(std::process::ExitStatus::from_raw(code << 8)),
            took: Duration::ZERO,
            lines: lines.iter().map(|s| s.to_string()).collect(),
            serial_path: PathBuf::new(),
            emulator_log: String::new(),
            triple_fault: None,
        }
    }

    const GOOD: &[&str] = &[
        "Kestrel 0.1.0 booting via pvh (AuthenticAMD)",
        "module 0: dom0.elf args=\"\" at 0x1000-0x100a size=10 crc32=0x00000001 data",
        "stats: cpus=2 cpus_madt=2 ram_bytes=134086656 free_bytes=120000000 hv_bytes=5000000 boot_tsc=99",
        "Kestrel ready: 2 CPUs online, 114 MiB free of 127 MiB RAM",
    ];

    #[test]
    fn judges_a_good_boot() {
        let o = outcome(GOOD, 33);
        o.assert_qemu_success("pvh");
        let s = o.assert_machine(2, 128 << 20, 4 << 20);
        assert_eq!(s.boot_tsc, 99);
        let want = Expected {
            name: "dom0.elf".into(),
            size: 10,
            crc32: 1,
        };
        o.assert_module(0, &want, true, "");
    }

    #[test]
    #[should_panic(expected = "expected status 33")]
    fn wrong_status_fails() {
        outcome(GOOD, 65).assert_qemu_success("pvh");
    }

    #[test]
    #[should_panic(expected = "MiB short")]
    fn too_little_ram_fails() {
        outcome(GOOD, 33).assert_machine(2, 256 << 20, 4 << 20);
    }

    #[test]
    #[should_panic(expected = "crc32")]
    fn wrong_crc_fails() {
        let want = Expected {
            name: "dom0.elf".into(),
            size: 10,
            crc32: 2,
        };
        outcome(GOOD, 33).assert_module(0, &want, true, "");
    }

    /// A run that triple-faulted: QEMU's dump read at the paused fault,
    /// CPU 1 unable to read its #DF gate.
    fn faulted() -> Outcome {
        let log = format!(
            "Triple fault\n{h}0)\nRIP=0000000000401000 RSP=0000000000402000\n\
             GDT=     0000000000002000 0000002f\nIDT=     0000000000003000 00000fff\n\
             CR0=80050033 CR2=0000000000005000 CR3=0000000000101000\n\
             {h}1)\nRIP=ffffffff80105b3a RSP=ffff800000f0ff80\n\
             GDT=     ffffffff80200000 0000002f\nIDT=     ffffffff80300000 00000fff\n\
             CR0=80050033 CR2=ffffffff80300080 CR3=0000000000101000\n{}",
            "Mappings of CPU 0's page tables (...):\n0000000000000000-0000000000400000 \n"
                .repeat(100),
            h = xtask::reset::FAULT_HEADER
        );
        let mut o = outcome(&GOOD[..2], 0);
        o.ended = Ended::Reset;
        let t = TripleFault::find(&log, 24_000).unwrap();
        o.emulator_log = t.dump.clone();
        o.triple_fault = Some(t);
        o
    }

    #[test]
    #[should_panic(
        expected = "unit: the hypervisor triple-faulted (QEMU reset), CPU 1 at RIP ffffffff80105b3a"
    )]
    fn a_triple_fault_is_said_first() {
        faulted().assert_booted("pvh");
    }

    #[test]
    #[should_panic(expected = "the hypervisor triple-faulted")]
    fn a_missing_line_after_a_triple_fault_says_so() {
        faulted().expect_line("Kestrel ready");
    }

    #[test]
    fn the_report_ends_with_each_cpu_at_a_triple_fault() {
        let o = faulted();
        let report = o.report();
        // CI keeps the tail: the headline and every CPU's registers are
        // in the last lines, after the long dump.
        let tail: Vec<&str> = report.lines().rev().take(4).collect();
        assert_eq!(tail[0], "=====");
        assert!(
            tail[1].starts_with("cpu 1: RIP=ffffffff80105b3a RSP="),
            "{report}"
        );
        assert!(
            tail[2].starts_with("cpu 0: RIP=0000000000401000 RSP="),
            "{report}"
        );
        assert!(
            tail[3].starts_with("----- unit: the hypervisor triple-faulted (QEMU reset), CPU 1 at"),
            "{report}"
        );
        assert!(report.find("Mappings of CPU 0").unwrap() < report.find("----- unit:").unwrap());
        // A run without one reports as before.
        assert!(
            outcome(GOOD, 33)
                .report()
                .ends_with("----- emulator output\n\n=====")
        );
        outcome(GOOD, 33).assert_no_triple_fault();
    }

    #[test]
    fn judges_a_refusal() {
        let o = outcome(
            &[
                "Kestrel 0.1.0 booting via pvh",
                "FATAL: unknown command-line option `bogus=1`",
            ],
            65,
        );
        o.assert_fatal(&["bogus"]);
    }

    #[test]
    #[should_panic(expected = "exactly one FATAL")]
    fn a_refusal_needs_its_line() {
        outcome(&["Kestrel 0.1.0 booting via pvh"], 65).assert_fatal(&["bogus"]);
    }
}
