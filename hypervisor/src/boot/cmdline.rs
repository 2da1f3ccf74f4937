//! The hypervisor's own command line.
//!
//! Words are separated by ASCII whitespace; each is `key=value` or a bare
//! flag. Parsing is tolerant: every word that can be understood is applied
//! and only the first problem is reported, so that a typo in one option does
//! not also lose, say, `exit=qemu` and leave a test run hanging instead of
//! exiting with a failure code. When an option is given twice the last one
//! wins, so a boot entry can append overrides.
#![forbid(unsafe_code)]

use arrayvec::ArrayString;
use core::fmt;
use log::LevelFilter;

/// Longest piece of a command-line word kept in an error message; longer
/// words are cut and marked with `...`.
pub const MAX_ERROR_WORD: usize = 32;

/// A word (or part of one) copied out of the command line for an error
/// message, so errors do not borrow the command line.
pub type ErrorWord = ArrayString<{ MAX_ERROR_WORD + 3 }>;

/// The option names, in the order the error message lists them.
const KNOWN: &str =
    "loglevel, exit, shutdown, console, selftest, dom0, spec-ctrl, iommu, pci-hide, console-stamp";

/// How the hypervisor ends, after a fatal error or on a requested shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExitMethod {
    /// Stop all CPUs and wait forever (real hardware: the message stays on
    /// the console).
    #[default]
    Halt,
    /// Write to QEMU's `isa-debug-exit` device at I/O port 0xf4, which makes
    /// QEMU exit with status `(value << 1) | 1`.
    Qemu,
    /// Write `Shutdown` to the Bochs shutdown port 0x8900.
    Bochs,
}

impl ExitMethod {
    /// The spelling used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Halt => "halt",
            Self::Qemu => "qemu",
            Self::Bochs => "bochs",
        }
    }
}

impl fmt::Display for ExitMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where log output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Console {
    /// The first legacy serial port.
    #[default]
    Com1,
    /// The second legacy serial port.
    Com2,
    /// No console output at all.
    None,
}

impl Console {
    /// The spelling used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Com1 => "com1",
            Self::Com2 => "com2",
            Self::None => "none",
        }
    }

    /// The UART's I/O port base, or `None` for no console. These are the
    /// conventional PC addresses; the BIOS data area is not consulted
    /// because UEFI machines do not fill it in.
    pub fn io_port(self) -> Option<u16> {
        match self {
            Self::Com1 => Some(0x3f8),
            Self::Com2 => Some(0x2f8),
            Self::None => None,
        }
    }
}

impl fmt::Display for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The parsed command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// `loglevel=`: the most verbose level printed (default `info`).
    pub log_level: LevelFilter,
    /// `exit=`: how the hypervisor ends (default `halt`).
    pub exit: ExitMethod,
    /// `shutdown`: end successfully as soon as boot is complete (test mode).
    pub shutdown: bool,
    /// `console=`: where logs go (default `com1`).
    pub console: Console,
    /// `selftest=`: deliberately break something once boot is complete, to
    /// prove the failure paths (tests only).
    pub selftest: SelfTest,
    /// `dom0`: only boot module 0 starts, as the privileged control domain
    /// that creates the others; without it every ELF module starts as an
    /// unprivileged domain (development and tests).
    pub dom0: bool,
    /// `spec-ctrl=`: which speculative-execution mitigations may run
    /// (`boot/spec.rs`; default all, each where the CPU needs it).
    pub spec_ctrl: super::spec::SpecOpts,
    /// `iommu=`: `on` (default) or `off-unsafe` (assign devices without a
    /// DMA fence; `boot/pciopts.rs`).
    pub iommu: super::pciopts::IommuMode,
    /// `pci-hide=`: PCI functions the hypervisor keeps from every domain.
    pub pci_hide: super::pciopts::PciHide,
    /// `console-stamp`: guest console lines carry the time since their
    /// domain's creation and its exits (`console/stamp.rs`; measuring).
    pub console_stamp: bool,
}

/// A deliberate failure, run after boot to prove that the hypervisor
/// reports it and stops cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SelfTest {
    /// No self-test (the default).
    #[default]
    None,
    /// `panic!` on the boot CPU.
    Panic,
    /// Read through a null pointer (page 0 is never mapped).
    NullDeref,
    /// Recurse until the boot stack runs into its guard page.
    StackOverflow,
    /// `stack-overflow-run`: the same on the stack the boot CPU runs guests
    /// on (`arch::bootcpu::run_on_own_stack`), as deep hypercalls would.
    StackOverflowRun,
    /// Write to the hypervisor's own text (mapped read+execute only).
    WriteText,
    /// Jump into the hypervisor's data (mapped no-execute).
    ExecData,
    /// `triple-fault`: load an empty IDT and raise #UD, so the CPU
    /// shuts down (a triple fault of the machine): proves that the test
    /// runner keeps QEMU's register dump of such a fault (issue 13).
    TripleFault,
    /// `iommu-dma`: program QEMU's `edu` device to DMA where it must not
    /// and where it may, and report what the IOMMU let through
    /// (`iommu/selftest.rs`); ends with success only if every check held.
    IommuDma,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            log_level: LevelFilter::Info,
            exit: ExitMethod::Halt,
            shutdown: false,
            console: Console::Com1,
            selftest: SelfTest::None,
            dom0: false,
            spec_ctrl: super::spec::SpecOpts::ALL,
            iommu: super::pciopts::IommuMode::On,
            pci_hide: super::pciopts::PciHide::default(),
            console_stamp: false,
        }
    }
}

/// What was wrong with the command line. Each variant carries the option
/// and the offending text, so the message is enough to fix the boot entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdlineError {
    /// A word that names no option; carries the whole word.
    Unknown {
        /// The word as written.
        word: ErrorWord,
    },
    /// A bare flag written with `=value`.
    UnexpectedValue {
        /// The flag.
        option: &'static str,
        /// The value it was given.
        value: ErrorWord,
    },
    /// An option that needs a value written without one (or with `key=`).
    MissingValue {
        /// The option.
        option: &'static str,
    },
    /// A value the option does not accept.
    BadValue {
        /// The option.
        option: &'static str,
        /// The value as written.
        value: ErrorWord,
        /// The accepted values, for the message.
        expected: &'static str,
    },
    /// `console=com2` with `dom0`: COM2 is dom0's management line, and
    /// log lines written into it would corrupt the protocol (and the
    /// operator would see protocol lines on the console).
    ConsoleOnManagementLine,
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown { word } => {
                write!(f, "unknown command-line option \"{word}\" (known: {KNOWN})")
            }
            Self::UnexpectedValue { option, value } => {
                write!(
                    f,
                    "command-line option \"{option}\" takes no value, but was given \"{value}\""
                )
            }
            Self::MissingValue { option } => {
                write!(
                    f,
                    "command-line option \"{option}\" needs a value (\"{option}=...\")"
                )
            }
            Self::BadValue {
                option,
                value,
                expected,
            } => write!(
                f,
                "bad value \"{value}\" for command-line option \"{option}\" (expected {expected})"
            ),
            Self::ConsoleOnManagementLine => f.write_str(
                "console=com2 and dom0 on one command line: with dom0, COM2 is dom0's management \
                 line, so the console cannot be there too; use console=com1 (or console=none) and \
                 reach management through COM2 (hvctl --socket, or hvctl relay on the serial device)",
            ),
        }
    }
}

/// Copies `s` for an error message, cutting it at a character boundary if it
/// is longer than [`MAX_ERROR_WORD`] bytes.
fn error_word(s: &str) -> ErrorWord {
    let mut out = ErrorWord::new();
    let mut cut = false;
    for c in s.chars() {
        if out.len() + c.len_utf8() > MAX_ERROR_WORD {
            cut = true;
            break;
        }
        out.push(c);
    }
    if cut {
        // Cannot fail: the capacity reserves three bytes for the marker.
        let _ = out.try_push_str("...");
    }
    out
}

/// Picks the entry of `table` whose name matches `value` (ASCII
/// case-insensitively, so `EXIT=QEMU` from a shouting boot menu works).
fn lookup<T: Copy>(
    option: &'static str,
    value: &str,
    table: &[(&str, T)],
    expected: &'static str,
) -> Result<T, CmdlineError> {
    table
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(value))
        .map(|&(_, v)| v)
        .ok_or_else(|| CmdlineError::BadValue {
            option,
            value: error_word(value),
            expected,
        })
}

impl Options {
    /// Parses a command line, starting from the defaults.
    ///
    /// Returns the options from every word that parsed and the first error,
    /// if any: callers should apply the options (notably [`Options::exit`])
    /// and then report the error.
    pub fn parse(cmdline: &str) -> (Self, Option<CmdlineError>) {
        let mut opts = Self::default();
        let mut first_err = None;
        for word in cmdline.split_ascii_whitespace() {
            if let Err(e) = opts.apply(word) {
                first_err.get_or_insert(e);
            }
        }
        if opts.dom0 && opts.console == Console::Com2 {
            first_err.get_or_insert(CmdlineError::ConsoleOnManagementLine);
        }
        (opts, first_err)
    }

    /// Applies one word; on error `self` is unchanged.
    fn apply(&mut self, word: &str) -> Result<(), CmdlineError> {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        // Valued options: a missing or empty value is one error.
        let needs_value = |option: &'static str| match value {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(CmdlineError::MissingValue { option }),
        };
        match key {
            "loglevel" => {
                const LEVELS: [(&str, LevelFilter); 6] = [
                    ("off", LevelFilter::Off),
                    ("error", LevelFilter::Error),
                    ("warn", LevelFilter::Warn),
                    ("info", LevelFilter::Info),
                    ("debug", LevelFilter::Debug),
                    ("trace", LevelFilter::Trace),
                ];
                let v = needs_value("loglevel")?;
                self.log_level = lookup(
                    "loglevel",
                    v,
                    &LEVELS,
                    "off, error, warn, info, debug or trace",
                )?;
            }
            "exit" => {
                const METHODS: [(&str, ExitMethod); 3] = [
                    ("halt", ExitMethod::Halt),
                    ("qemu", ExitMethod::Qemu),
                    ("bochs", ExitMethod::Bochs),
                ];
                let v = needs_value("exit")?;
                self.exit = lookup("exit", v, &METHODS, "halt, qemu or bochs")?;
            }
            "console" => {
                const CONSOLES: [(&str, Console); 3] = [
                    ("com1", Console::Com1),
                    ("com2", Console::Com2),
                    ("none", Console::None),
                ];
                let v = needs_value("console")?;
                self.console = lookup("console", v, &CONSOLES, "com1, com2 or none")?;
            }
            "selftest" => {
                const TESTS: [(&str, SelfTest); 9] = [
                    ("none", SelfTest::None),
                    ("panic", SelfTest::Panic),
                    ("null-deref", SelfTest::NullDeref),
                    ("stack-overflow", SelfTest::StackOverflow),
                    ("stack-overflow-run", SelfTest::StackOverflowRun),
                    ("write-text", SelfTest::WriteText),
                    ("exec-data", SelfTest::ExecData),
                    ("iommu-dma", SelfTest::IommuDma),
                    ("triple-fault", SelfTest::TripleFault),
                ];
                let v = needs_value("selftest")?;
                self.selftest = lookup(
                    "selftest",
                    v,
                    &TESTS,
                    "none, panic, null-deref, stack-overflow, stack-overflow-run, write-text, exec-data, iommu-dma or triple-fault",
                )?;
            }
            "spec-ctrl" => {
                let v = needs_value("spec-ctrl")?;
                self.spec_ctrl =
                    super::spec::SpecOpts::parse(v).map_err(|item| CmdlineError::BadValue {
                        option: "spec-ctrl",
                        value: error_word(item),
                        expected: super::spec::SPEC_CTRL_VALUES,
                    })?;
            }
            "iommu" => {
                let v = needs_value("iommu")?;
                self.iommu =
                    super::pciopts::IommuMode::parse(v).ok_or_else(|| CmdlineError::BadValue {
                        option: "iommu",
                        value: error_word(v),
                        expected: super::pciopts::IOMMU_VALUES,
                    })?;
            }
            "pci-hide" => {
                let v = needs_value("pci-hide")?;
                self.pci_hide =
                    super::pciopts::PciHide::parse(v).map_err(|item| CmdlineError::BadValue {
                        option: "pci-hide",
                        value: error_word(item),
                        expected: super::pciopts::HIDE_FORMAT,
                    })?;
            }
            "console-stamp" => match value {
                None => self.console_stamp = true,
                Some(v) => {
                    return Err(CmdlineError::UnexpectedValue {
                        option: "console-stamp",
                        value: error_word(v),
                    });
                }
            },
            "shutdown" | "dom0" => match value {
                None if key == "shutdown" => self.shutdown = true,
                None => self.dom0 = true,
                Some(v) => {
                    return Err(CmdlineError::UnexpectedValue {
                        option: if key == "shutdown" {
                            "shutdown"
                        } else {
                            "dom0"
                        },
                        value: error_word(v),
                    });
                }
            },
            _ => {
                return Err(CmdlineError::Unknown {
                    word: error_word(word),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn ok(s: &str) -> Options {
        let (o, e) = Options::parse(s);
        assert_eq!(e, None, "{s:?}");
        o
    }

    fn err(s: &str) -> (Options, CmdlineError) {
        match Options::parse(s) {
            (o, Some(e)) => (o, e),
            (_, None) => panic!("{s:?} parsed without error"),
        }
    }

    fn word(s: &str) -> ErrorWord {
        error_word(s)
    }

    #[test]
    fn defaults() {
        for s in ["", "   ", "\t\n"] {
            let o = ok(s);
            assert_eq!(o, Options::default());
            assert_eq!(o.log_level, LevelFilter::Info);
            assert_eq!(o.exit, ExitMethod::Halt);
            assert!(!o.shutdown);
            assert_eq!(o.console, Console::Com1);
        }
    }

    #[test]
    fn pci_options() {
        use crate::boot::pciopts::IommuMode;
        assert_eq!(ok("").iommu, IommuMode::On);
        let o = ok("iommu=off-unsafe pci-hide=0000:00:03.0,0000:01");
        assert_eq!(o.iommu, IommuMode::OffUnsafe);
        assert!(o.pci_hide.hides(0, 0, 3, 0) && o.pci_hide.hides(0, 1, 9, 2));
        let (o, e) = err("iommu=maybe exit=qemu");
        assert_eq!(o.exit, ExitMethod::Qemu);
        assert_eq!(o.iommu, IommuMode::On);
        assert!(
            e.to_string()
                .contains("\"maybe\" for command-line option \"iommu\""),
            "{e}"
        );
        let (_, e) = err("pci-hide=0000:00:03.0,0000:00:40");
        assert!(e.to_string().contains("\"0000:00:40\""), "{e}");
        assert!(matches!(
            err("iommu").1,
            CmdlineError::MissingValue { option: "iommu" }
        ));
    }

    #[test]
    fn all_options() {
        let o = ok("  loglevel=trace\texit=qemu shutdown\nconsole=com2 ");
        assert_eq!(o.log_level, LevelFilter::Trace);
        assert_eq!(o.exit, ExitMethod::Qemu);
        assert!(o.shutdown);
        assert_eq!(o.console, Console::Com2);
        assert_eq!(o.console.io_port(), Some(0x2f8));
    }

    #[test]
    fn every_value() {
        for (v, l) in [
            ("off", LevelFilter::Off),
            ("error", LevelFilter::Error),
            ("warn", LevelFilter::Warn),
            ("info", LevelFilter::Info),
            ("debug", LevelFilter::Debug),
            ("trace", LevelFilter::Trace),
        ] {
            assert_eq!(ok(&std::format!("loglevel={v}")).log_level, l);
        }
        for m in [ExitMethod::Halt, ExitMethod::Qemu, ExitMethod::Bochs] {
            assert_eq!(ok(&std::format!("exit={m}")).exit, m);
        }
        for c in [Console::Com1, Console::Com2, Console::None] {
            assert_eq!(ok(&std::format!("console={c}")).console, c);
        }
        assert_eq!(Console::None.io_port(), None);
        assert_eq!(Console::Com1.io_port(), Some(0x3f8));
    }

    #[test]
    fn values_are_case_insensitive() {
        assert_eq!(ok("exit=QEMU").exit, ExitMethod::Qemu);
        assert_eq!(ok("loglevel=Debug").log_level, LevelFilter::Debug);
    }

    #[test]
    fn last_wins() {
        let o = ok("exit=qemu loglevel=debug exit=bochs loglevel=warn");
        assert_eq!(o.exit, ExitMethod::Bochs);
        assert_eq!(o.log_level, LevelFilter::Warn);
    }

    #[test]
    fn unknown_option_keeps_the_rest() {
        let (o, e) = err("foo=1 exit=qemu shutdown");
        assert_eq!(
            e,
            CmdlineError::Unknown {
                word: word("foo=1")
            }
        );
        assert_eq!(o.exit, ExitMethod::Qemu);
        assert!(o.shutdown);
        assert_eq!(
            e.to_string(),
            "unknown command-line option \"foo=1\" (known: loglevel, exit, shutdown, console, selftest, dom0, spec-ctrl, iommu, pci-hide, console-stamp)"
        );
    }

    #[test]
    fn first_error_is_reported() {
        let (o, e) = err("exit=qemu loglevel=loud bogus console=com3");
        assert_eq!(
            e,
            CmdlineError::BadValue {
                option: "loglevel",
                value: word("loud"),
                expected: "off, error, warn, info, debug or trace"
            }
        );
        // A bad value leaves the default in place.
        assert_eq!(o.log_level, LevelFilter::Info);
        assert_eq!(o.console, Console::Com1);
        assert_eq!(o.exit, ExitMethod::Qemu);
    }

    #[test]
    fn bad_value_keeps_earlier_setting() {
        let (o, _) = err("exit=bochs exit=poweroff");
        assert_eq!(o.exit, ExitMethod::Bochs);
    }

    #[test]
    fn flag_with_value() {
        let (o, e) = err("shutdown=yes");
        assert_eq!(
            e,
            CmdlineError::UnexpectedValue {
                option: "shutdown",
                value: word("yes")
            }
        );
        assert!(!o.shutdown);
        assert_eq!(
            e.to_string(),
            "command-line option \"shutdown\" takes no value, but was given \"yes\""
        );
        let (_, e) = err("shutdown=");
        assert_eq!(
            e,
            CmdlineError::UnexpectedValue {
                option: "shutdown",
                value: word("")
            }
        );
    }

    #[test]
    fn console_and_management_never_share_com2() {
        let (o, e) = err("dom0 console=com2");
        assert_eq!(e, CmdlineError::ConsoleOnManagementLine);
        assert!(
            o.dom0 && o.console == Console::Com2,
            "applied, then refused"
        );
        assert!(e.to_string().contains("COM2 is dom0's management line"));
        assert_eq!(
            err("console=com2 exit=qemu dom0").1,
            CmdlineError::ConsoleOnManagementLine
        );
        assert!(ok("dom0 console=com1").dom0);
        assert!(ok("dom0 console=none").dom0);
        assert_eq!(ok("console=com2").console, Console::Com2);
    }

    #[test]
    fn dom0_flag() {
        assert!(!ok("shutdown").dom0);
        let o = ok("exit=qemu dom0 shutdown");
        assert!(o.dom0 && o.shutdown);
        let (o, e) = err("dom0=1");
        assert!(!o.dom0);
        assert_eq!(
            e,
            CmdlineError::UnexpectedValue {
                option: "dom0",
                value: word("1")
            }
        );
    }

    #[test]
    fn console_stamp_flag() {
        assert!(!ok("shutdown").console_stamp);
        assert!(ok("exit=qemu console-stamp shutdown").console_stamp);
        let (o, e) = err("console-stamp=1");
        assert!(!o.console_stamp);
        assert_eq!(
            e,
            CmdlineError::UnexpectedValue {
                option: "console-stamp",
                value: word("1")
            }
        );
    }

    #[test]
    fn missing_value() {
        for s in ["exit", "exit=", "loglevel", "console="] {
            let (_, e) = err(s);
            assert!(matches!(e, CmdlineError::MissingValue { .. }), "{s}: {e:?}");
        }
        let (_, e) = err("exit");
        assert_eq!(
            e.to_string(),
            "command-line option \"exit\" needs a value (\"exit=...\")"
        );
    }

    #[test]
    fn bad_value_message() {
        let (_, e) = err("exit=reboot");
        assert_eq!(
            e.to_string(),
            "bad value \"reboot\" for command-line option \"exit\" (expected halt, qemu or bochs)"
        );
    }

    #[test]
    fn value_containing_equals() {
        let (_, e) = err("exit=qemu=1");
        assert_eq!(
            e,
            CmdlineError::BadValue {
                option: "exit",
                value: word("qemu=1"),
                expected: "halt, qemu or bochs"
            }
        );
    }

    #[test]
    fn long_words_are_truncated() {
        let long = "x".repeat(200);
        let (_, e) = err(&long);
        let CmdlineError::Unknown { word } = e else {
            panic!("{e:?}")
        };
        assert_eq!(word.len(), MAX_ERROR_WORD + 3);
        assert!(word.ends_with("..."));
        // Multi-byte characters are cut at a boundary.
        let wide = "é".repeat(40);
        let (_, e) = err(&std::format!("exit={wide}"));
        let CmdlineError::BadValue { value, .. } = e else {
            panic!("{e:?}")
        };
        assert_eq!(value.as_str(), std::format!("{}...", "é".repeat(16)));
        // Exactly at the limit: no marker.
        assert_eq!(
            error_word(&"y".repeat(MAX_ERROR_WORD)).as_str(),
            "y".repeat(MAX_ERROR_WORD)
        );
    }

    #[test]
    fn keys_are_exact() {
        let (_, e) = err("Exit=qemu");
        assert!(matches!(e, CmdlineError::Unknown { .. }));
        let (_, e) = err("=qemu");
        assert!(matches!(e, CmdlineError::Unknown { .. }));
    }

    #[test]
    fn spec_ctrl_values() {
        use crate::boot::spec::SpecOpts;
        assert_eq!(ok("").spec_ctrl, SpecOpts::ALL);
        assert_eq!(ok("spec-ctrl=off").spec_ctrl, SpecOpts::NONE);
        let o = ok("exit=qemu spec-ctrl=no-ibpb,no-verw");
        assert!(!o.spec_ctrl.ibpb && !o.spec_ctrl.verw);
        assert!(o.spec_ctrl.rsb && o.spec_ctrl.l1d_flush);
        // An unknown item names itself and leaves the rest applied.
        let (o, e) = err("spec-ctrl=no-ibpb,no-ibrs exit=qemu");
        assert_eq!(o.spec_ctrl, SpecOpts::ALL);
        assert_eq!(o.exit, ExitMethod::Qemu);
        assert_eq!(
            e.to_string(),
            "bad value \"no-ibrs\" for command-line option \"spec-ctrl\" (expected on, off, or a comma-separated list of ibpb, rsb, verw, l1d-flush, each optionally prefixed with no-)"
        );
        let (_, e) = err("spec-ctrl");
        assert_eq!(
            e,
            CmdlineError::MissingValue {
                option: "spec-ctrl"
            }
        );
    }

    #[test]
    fn selftest_values() {
        assert_eq!(
            ok("selftest=stack-overflow").selftest,
            SelfTest::StackOverflow
        );
        assert_eq!(
            ok("selftest=stack-overflow-run").selftest,
            SelfTest::StackOverflowRun
        );
        assert_eq!(ok("selftest=panic selftest=none").selftest, SelfTest::None);
        assert_eq!(ok("selftest=triple-fault").selftest, SelfTest::TripleFault);
        let (o, e) = err("selftest=explode");
        assert_eq!(o.selftest, SelfTest::None);
        assert!(std::format!("{}", e).contains("explode"));
    }
}
