//! Booting a GRUB ISO for a benchmark on either backend, where a TSC tick
//! is a fixed number of instructions:
//!
//! - AMD-V: QEMU TCG through SeaBIOS and GRUB with `-icount shift=7`
//!   ([`ICOUNT7_ARGS`]): each instruction advances the virtual clock, and
//!   with it the TSC, by 2^7 = 128 ns. Smaller shifts stall in GRUB (nothing
//!   on the serial line past GRUB's screen in minutes at shift 0 to 3,
//!   cause not analysed); at 7 it boots in about a second, and the
//!   hypercall round trip it gives, TSC delta / 128, is the one PVH boot
//!   gives at shift 0 (checked, see docs/benchmarks.md). Timers fire 128
//!   times as often per instruction as at shift 0 (the 100 Hz tick is
//!   every 78,125 instructions).
//! - VT-x: Bochs with one CPU and `clock: sync=none`, one tick per
//!   instruction (see `crate::hcbench`); `ips` = 10 million, so the 100 Hz
//!   tick is every 100,000 instructions.
//!
//! Both count busy waits and idle time in ticks too (QEMU's `sleep=off`
//! warps the clock to the next timer when the CPU halts): the benchmarks
//! that use this measure paths in which the one CPU never idles.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use xtask::bail;
use xtask::bochs::{self, Pc};
use xtask::error::{Context, Result};
use xtask::iso::{IsoSpec, Module};
use xtask::qemu::{self, Accel, Boot, Vm};
use xtask::serial;
use xtask::{paths, runner, tools};

use crate::hcbench::BOCHS_MODEL;

/// `log2` of the ticks per instruction under QEMU with an ISO.
pub const ICOUNT_SHIFT: u32 = 7;

/// QEMU's deterministic settings for ISO boots (see the module comment;
/// the rest as in `crate::bench::ICOUNT_ARGS`).
pub const ICOUNT7_ARGS: &[&str] = &[
    "-icount",
    "shift=7,align=off,sleep=off",
    "-rtc",
    "base=2020-01-01T00:00:00,clock=vm",
    "-seed",
    "1",
];

/// Which machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// QEMU TCG `-cpu qemu64,+svm,+npt` (AMD-V with nested paging),
    /// `-icount shift=7`, one CPU.
    Svm,
    /// Bochs `corei7_haswell_4770` (VT-x with EPT), one CPU.
    Vmx,
}

impl Backend {
    /// "AMD-V (SVM)" or "VT-x (VMX)".
    pub fn name(self) -> &'static str {
        match self {
            Self::Svm => "AMD-V (SVM)",
            Self::Vmx => "VT-x (VMX)",
        }
    }

    /// For file names.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Svm => "svm",
            Self::Vmx => "vmx",
        }
    }

    /// TSC ticks per instruction.
    pub fn ticks_per_insn(self) -> u64 {
        match self {
            Self::Svm => 1 << ICOUNT_SHIFT,
            Self::Vmx => 1,
        }
    }

    /// Nanoseconds of the guest's clock per instruction: QEMU's
    /// `-icount` shift, Bochs's `ips` (`xtask::bochs::TEST_IPS`).
    pub fn ns_per_insn(self) -> u64 {
        match self {
            Self::Svm => 1 << ICOUNT_SHIFT,
            Self::Vmx => 1_000_000_000 / bochs::TEST_IPS,
        }
    }

    /// The emulator and CPU, for tables.
    pub fn machine(self) -> String {
        match self {
            Self::Svm => format!(
                "QEMU TCG `-cpu {}`, 1 CPU, `-icount shift={ICOUNT_SHIFT}`",
                qemu::TCG_CPU
            ),
            Self::Vmx => format!("Bochs 2.7 `{BOCHS_MODEL}`, 1 CPU, `clock: sync=none`"),
        }
    }

    /// A TSC difference in instructions; an error when it is not a whole
    /// number of them (then the tick is not what this module assumes).
    pub fn insns(self, ticks: u64) -> Result<u64> {
        let t = self.ticks_per_insn();
        if !ticks.is_multiple_of(t) {
            bail!(
                "{}: {ticks} TSC ticks is not a multiple of {t}: not an instruction count",
                self.name()
            );
        }
        Ok(ticks / t)
    }
}

/// What a boot printed and how to repeat it.
pub struct Booted {
    /// The serial log's lines.
    pub lines: Vec<String>,
    /// The command that ran it (paths relative to the repository).
    pub command: String,
}

/// How a benchmark machine is set up beyond the image.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// CPUs (0 is taken as 1).
    pub cpus: u32,
    /// QEMU only: the `-plugin` argument that counts instructions per CPU
    /// (`crate::insncount`); ignored on Bochs.
    pub plugin: Option<String>,
    /// QEMU only: more arguments (a second `-serial`, ...).
    pub extra: Vec<String>,
    /// QEMU only: without [`ICOUNT7_ARGS`]' `-icount` (QEMU's own clock,
    /// multi-threaded TCG; the RTC and seed stay): for counts taken by the
    /// plugin instead of the TSC (`crate::linuxcount`). Not deterministic.
    pub free_running: bool,
}

/// Builds a GRUB ISO of the hypervisor with `options` (after `exit=` and
/// `shutdown loglevel=info`) and `modules` in `dir`, boots it on `b` with
/// one CPU and 128 MiB, and returns the serial lines. Fails unless the
/// hypervisor reported success (all domains ended).
pub fn boot(
    b: Backend,
    kernel: &Path,
    options: &str,
    modules: Vec<Module>,
    dir: &Path,
) -> Result<Booted> {
    boot_on(b, &Machine::default(), kernel, options, modules, dir)
}

/// [`boot`] on `m`'s CPUs, with its instruction-counting plugin.
pub fn boot_on(
    b: Backend,
    m: &Machine,
    kernel: &Path,
    options: &str,
    modules: Vec<Module>,
    dir: &Path,
) -> Result<Booted> {
    let cpus = m.cpus.max(1);
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let exit = match b {
        Backend::Svm => "exit=qemu",
        Backend::Vmx => "exit=bochs",
    };
    let iso = dir.join("bench.iso");
    xtask::iso::build(&IsoSpec {
        kernel: kernel.to_path_buf(),
        cmdline: format!("{exit} shutdown loglevel=info {options}")
            .trim_end()
            .to_string(),
        modules,
        timeout_s: 0,
        output: iso.clone(),
    })?;
    let root = paths::repo_root().display().to_string();
    match b {
        Backend::Svm => {
            let log = dir.join("serial.log");
            let _ = std::fs::remove_file(&log);
            let mut vm = Vm::new(
                Accel::Tcg,
                cpus,
                "128M",
                Boot::Bios { iso },
                format!("file:{}", log.display()),
            );
            // Free running: the same RTC and seed, no `-icount`.
            let clock = if m.free_running {
                &ICOUNT7_ARGS[2..]
            } else {
                ICOUNT7_ARGS
            };
            vm.extra = clock.iter().map(Into::into).collect();
            if let Some(p) = &m.plugin {
                vm.extra.push("-plugin".into());
                vm.extra.push(p.into());
            }
            vm.extra.extend(m.extra.iter().map(Into::into));
            let qemu_log = dir.join("qemu.log");
            let f =
                File::create(&qemu_log).context(|| format!("creating {}", qemu_log.display()))?;
            let mut cmd = Command::new(tools::QEMU.program);
            cmd.args(vm.args())
                .stdout(f.try_clone().context(|| "qemu log".into())?)
                .stderr(f);
            let (ended, _) = runner::run_with_timeout(&mut cmd, Duration::from_secs(300))?;
            let lines = serial::lines(&std::fs::read(&log).unwrap_or_default());
            if ended.code() != Some(qemu::STATUS_SUCCESS) {
                bail!(
                    "{}: QEMU ended with {}; serial log {}:\n{}",
                    b.name(),
                    qemu::describe_status(ended.code()),
                    log.display(),
                    lines.join("\n")
                );
            }
            Ok(Booted {
                lines,
                command: vm.display().replace(&root, "."),
            })
        }
        Backend::Vmx => {
            let pc = Pc::new(BOCHS_MODEL, cpus, 128);
            let mut r = bochs::prepare(&pc, &iso, dir)?;
            runner::run_with_timeout(&mut r.command, Duration::from_secs(300))?;
            // Bochs exits 1 whatever happened: the callers judge the log.
            Ok(Booted {
                lines: serial::lines(&std::fs::read(&r.serial).unwrap_or_default()),
                command: r.display.replace(&root, "."),
            })
        }
    }
}

/// A release guest as a boot module called `name` with `args`.
pub fn module(guest: &str, name: &str, args: &str) -> Result<Module> {
    Module::named(paths::guest(paths::Profile::Release, guest), name, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_running_drops_exactly_the_icount_pair() {
        assert_eq!(
            &ICOUNT7_ARGS[..2],
            ["-icount", "shift=7,align=off,sleep=off"]
        );
        assert!(
            !ICOUNT7_ARGS[2..]
                .iter()
                .any(|a| a.contains("icount") || a.contains("shift"))
        );
    }

    #[test]
    fn ticks_to_instructions() {
        assert_eq!(Backend::Svm.insns(128 * 4805).ok(), Some(4805));
        assert!(Backend::Svm.insns(129).is_err());
        assert_eq!(Backend::Vmx.insns(337).ok(), Some(337));
        assert_eq!(
            (Backend::Svm.ns_per_insn(), Backend::Vmx.ns_per_insn()),
            (128, 100)
        );
    }
}
