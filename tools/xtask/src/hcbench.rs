//! The hypercall round trip for each backend, counted in instructions by
//! the `hcbench` guest (guests/src/bin/hcbench.rs) with the TSC:
//!
//! - AMD-V: QEMU TCG with `-icount shift=0`, where the TSC advances one per
//!   instruction the machine executes (guest and hypervisor; an
//!   intercepted VMMCALL and the #VMEXIT count 0, VMRUN 1).
//! - VT-x: Bochs with one CPU and `clock: sync=none`, where the TSC is
//!   Bochs' tick counter: one per instruction (the VMCALL that exits
//!   counts 1, VMRESUME 1).
//!
//! Both counts were checked by single-stepping one round trip (QEMU's gdb
//! stub, Bochs' debugger with `trace on`): see docs/benchmarks.md.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use xtask::bail;
use xtask::bochs::{self, Pc};
use xtask::error::{Context, Result};
use xtask::iso::{IsoSpec, Module};
use xtask::qemu::{self, Accel, Boot, Vm};
use xtask::runner;
use xtask::serial::{self, DomainEnd};
use xtask::{paths, tools};

use crate::bench::ICOUNT_ARGS;

/// Runs per backend; their figures must be identical.
const RUNS: usize = 2;
/// The Intel model the VT-x figure is taken on.
pub const BOCHS_MODEL: &str = "corei7_haswell_4770";

/// One `hcbench: loop=... calls=N tsc_delta=D per_call=P min_batch=M
/// batch=B wrong=W` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loop {
    /// Calls made.
    pub calls: u64,
    /// TSC ticks over all calls, timer interrupts included.
    pub tsc_delta: u64,
    /// The smallest batch's ticks.
    pub min_batch: u64,
    /// Calls per batch.
    pub batch: u64,
    /// Calls that did not return ENOSYS.
    pub wrong: u64,
}

impl Loop {
    fn parse(lines: &[String], kind: &str) -> Result<Self> {
        let tag = format!("hcbench: loop={kind} ");
        let Some(line) = lines.iter().find(|l| l.contains(&tag)) else {
            bail!("no `{tag}...` line in the serial log")
        };
        let at = line.find(&tag).unwrap_or(0) + tag.len();
        let get = |k: &str| -> Result<u64> {
            line[at..]
                .split_whitespace()
                .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
                .and_then(serial::parse_number)
                .ok_or_else(|| xtask::error::Error::new(format!("`{k}=` missing in `{line}`")))
        };
        Ok(Self {
            calls: get("calls")?,
            tsc_delta: get("tsc_delta")?,
            min_batch: get("min_batch")?,
            batch: get("batch")?,
            wrong: get("wrong")?,
        })
    }
}

/// Both loops of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The loop without the hypercall instruction.
    pub baseline: Loop,
    /// The hypercall loop.
    pub hypercall: Loop,
}

impl Sample {
    pub(crate) fn parse(lines: &[String]) -> Result<Self> {
        let s = Self {
            baseline: Loop::parse(lines, "baseline")?,
            hypercall: Loop::parse(lines, "hypercall")?,
        };
        if s.baseline.wrong != 0 || s.hypercall.wrong != 0 {
            bail!("hcbench saw wrong return values: {s:?}");
        }
        Ok(s)
    }

    /// TSC ticks per round trip, from the smallest batches (no timer tick
    /// in them): the hypercall loop's extra ticks per call, plus the one
    /// instruction (`mov rax, -38`) the baseline has in its place. That is
    /// every instruction counted from the hypercall instruction up to the
    /// guest's next one.
    pub fn ticks_per_round_trip(&self) -> f64 {
        let b = self.hypercall.batch.max(1) as f64;
        (self.hypercall.min_batch as f64 - self.baseline.min_batch as f64) / b + 1.0
    }

    /// The same from the totals: timer interrupts (and what the scheduler
    /// does on them) spread over the calls.
    pub fn ticks_all_in(&self) -> f64 {
        let n = self.hypercall.calls.max(1) as f64;
        (self.hypercall.tsc_delta as f64 - self.baseline.tsc_delta as f64) / n + 1.0
    }
}

/// One backend's figures.
#[derive(Debug)]
pub struct Row {
    /// "AMD-V (SVM)" or "VT-x (VMX)".
    pub backend: &'static str,
    /// Emulator and CPU.
    pub machine: String,
    /// How many of the counted ticks are the guest's hypercall instruction
    /// itself (0 for QEMU's VMMCALL, 1 for Bochs' VMCALL).
    pub insn_ticks: u64,
    /// Every run's figures.
    pub runs: Vec<Sample>,
    /// One run's command.
    pub command: String,
}

impl Row {
    /// Whether every run gave the same figures.
    pub fn deterministic(&self) -> bool {
        self.runs.windows(2).all(|w| w[0] == w[1])
    }
}

fn check_domain(lines: &[String], what: &str, log: &Path) -> Result<()> {
    let ends = DomainEnd::all(lines)?;
    match ends.as_slice() {
        [d] if d.result == "exited" && d.code == 0 => Ok(()),
        _ => bail!(
            "{what}: hcbench did not exit cleanly ({ends:?}); serial log {}:\n{}",
            log.display(),
            lines.join("\n")
        ),
    }
}

/// AMD-V under QEMU TCG `-icount`, PVH boot with hcbench as the module.
pub fn svm(kernel: &Path, hcbench: &Path, out_dir: &Path) -> Result<Row> {
    svm_with(kernel, hcbench, out_dir, "", "svm")
}

/// [`svm`] with hypervisor `options` added to the command line; `tag`
/// names the serial logs.
pub fn svm_with(
    kernel: &Path,
    hcbench: &Path,
    out_dir: &Path,
    options: &str,
    tag: &str,
) -> Result<Row> {
    let mut runs = Vec::new();
    let mut command = String::new();
    for run in 0..RUNS {
        let log = out_dir.join(format!("serial-hcbench-{tag}-{run}.log"));
        let boot = Boot::Pvh {
            kernel: kernel.to_path_buf(),
            cmdline: format!("exit=qemu shutdown loglevel=info {options}")
                .trim_end()
                .into(),
            initrd: Some(hcbench.to_path_buf()),
        };
        let mut vm = Vm::new(
            Accel::Tcg,
            1,
            "128M",
            boot,
            format!("file:{}", log.display()),
        );
        vm.extra = ICOUNT_ARGS.iter().map(Into::into).collect();
        command = vm
            .display()
            .replace(&paths::repo_root().display().to_string(), ".");
        let qemu_log = out_dir.join("qemu-hcbench.log");
        let f = File::create(&qemu_log).context(|| format!("creating {}", qemu_log.display()))?;
        let mut cmd = Command::new(tools::QEMU.program);
        cmd.args(vm.args())
            .stdout(f.try_clone().context(|| "qemu log".into())?)
            .stderr(f);
        let (ended, took) = runner::run_with_timeout(&mut cmd, Duration::from_secs(180))?;
        let lines = serial::lines(&std::fs::read(&log).unwrap_or_default());
        if ended.code() != Some(qemu::STATUS_SUCCESS) {
            bail!(
                "hcbench under QEMU ended with {ended}, not 33; serial log {}:\n{}",
                log.display(),
                lines.join("\n")
            );
        }
        check_domain(&lines, "QEMU", &log)?;
        let s = Sample::parse(&lines).context(|| format!("serial log {}", log.display()))?;
        println!(
            "  AMD-V run {}: {:.2} ticks per round trip ({:.1} s host time)",
            run + 1,
            s.ticks_per_round_trip(),
            took.as_secs_f64()
        );
        runs.push(s);
    }
    Ok(Row {
        backend: "AMD-V (SVM)",
        machine: format!("QEMU TCG `-cpu {}`, 1 CPU, `-icount`", qemu::TCG_CPU),
        insn_ticks: 0,
        runs,
        command,
    })
}

/// VT-x under Bochs, one CPU, GRUB ISO with hcbench as the module.
pub fn vmx(kernel: &Path, hcbench: &Path, out_dir: &Path) -> Result<Row> {
    vmx_with(kernel, hcbench, out_dir, "", "bochs", BOCHS_MODEL)
}

/// [`vmx`] on Bochs CPU `model` with hypervisor `options` added to the
/// command line; `tag` names the ISO and the run directories.
pub fn vmx_with(
    kernel: &Path,
    hcbench: &Path,
    out_dir: &Path,
    options: &str,
    tag: &str,
    model: &'static str,
) -> Result<Row> {
    let iso = out_dir.join(format!("hcbench-{tag}.iso"));
    xtask::iso::build(&IsoSpec {
        kernel: kernel.to_path_buf(),
        cmdline: format!("exit=bochs shutdown loglevel=info {options}")
            .trim_end()
            .into(),
        modules: vec![Module::named(hcbench, "hcbench.elf", "")?],
        timeout_s: 0,
        output: iso.clone(),
    })?;
    let pc = Pc::new(model, 1, 128);
    let mut runs = Vec::new();
    let mut command = String::new();
    for run in 0..RUNS {
        let dir = if tag == "bochs" {
            out_dir.join(format!("bochs-hcbench-{run}"))
        } else {
            out_dir.join(format!("bochs-hcbench-{tag}-{run}"))
        };
        std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let mut r = bochs::prepare(&pc, &iso, &dir)?;
        let root = paths::repo_root().display().to_string();
        command = format!(
            "{}\n\n# bochsrc (written with absolute paths, shown relative to the repository)\n{}",
            r.display.replace(&root, "."),
            bochs::bochsrc(&pc, &iso, &dir)
                .replace(&root, ".")
                .trim_end()
        );
        let (_, took) = runner::run_with_timeout(&mut r.command, Duration::from_secs(240))?;
        let lines = serial::lines(&std::fs::read(&r.serial).unwrap_or_default());
        check_domain(&lines, "Bochs", &r.serial)?;
        let s = Sample::parse(&lines).context(|| format!("serial log {}", r.serial.display()))?;
        println!(
            "  VT-x run {}: {:.2} ticks per round trip ({:.1} s host time)",
            run + 1,
            s.ticks_per_round_trip(),
            took.as_secs_f64()
        );
        runs.push(s);
    }
    Ok(Row {
        backend: "VT-x (VMX)",
        machine: format!("Bochs 2.7 `{}`, 1 CPU, `clock: sync=none`", pc.model),
        insn_ticks: 1,
        runs,
        command,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn parses_and_computes() {
        let lines: Vec<String> = [
            "[dom1 module0] hcbench: loop=baseline calls=10000 tsc_delta=65000 per_call=6.50 min_batch=65 batch=10 wrong=0",
            "[dom1 module0] hcbench: loop=hypercall calls=10000 tsc_delta=2805170 per_call=280.52 min_batch=2805 batch=10 wrong=0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let s = Sample::parse(&lines).unwrap();
        assert_eq!(s.hypercall.min_batch, 2805);
        assert_eq!(s.ticks_per_round_trip(), 275.0);
        assert!((s.ticks_all_in() - 275.017).abs() < 1e-9);
        assert!(Sample::parse(&lines[..1]).is_err());
        let bad: Vec<String> = lines
            .iter()
            .map(|l| l.replace("wrong=0", "wrong=3"))
            .collect();
        assert!(Sample::parse(&bad).is_err());
    }
}
