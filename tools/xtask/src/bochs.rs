//! Bochs machines: Intel VT-x with EPT, which QEMU's TCG lacks. Shared by
//! the boot tests and `cargo xtask bench`.
//!
//! Headless recipe (docs/testing.md): the Debian build has no `nogui`, so the
//! `rfb` display waits for no client (`timeout=0`); its built-in debugger
//! stops before the first instruction, so `-rc` feeds it `c` and `quit`;
//! COM1 goes to a file. Bochs exits 1 whatever the guest did, so a run is
//! judged by the serial log alone.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Context, Result};
use crate::tools;

/// Instructions per emulated second the tests use. Firmware and GRUB wait
/// in emulated time (busy loops), so 10M instead of the usual 100M makes a
/// boot 5x faster (2.5 s instead of 14 s, measured with one CPU). The
/// hypervisor then measures a ~9 MHz TSC.
pub const TEST_IPS: u64 = 10_000_000;

/// An emulated PC.
#[derive(Debug, Clone)]
pub struct Pc {
    /// Bochs CPU model, e.g. `corei7_haswell_4770`.
    pub model: &'static str,
    /// CPUs.
    pub cpus: u32,
    /// RAM in MiB.
    pub megs: u32,
    /// Instructions per emulated second ([`TEST_IPS`]).
    pub ips: u64,
    /// Extra `bochsrc` lines (devices a test adds, e.g. `pci: ... slot1=pcivga`).
    pub extra: Vec<&'static str>,
}

impl Pc {
    /// A PC with `model`, `cpus` and `megs`, at [`TEST_IPS`].
    pub fn new(model: &'static str, cpus: u32, megs: u32) -> Self {
        Self {
            model,
            cpus,
            megs,
            ips: TEST_IPS,
            extra: Vec::new(),
        }
    }
}

/// The `bochsrc` for booting `iso` on `pc`, logging into `dir`.
pub fn bochsrc(pc: &Pc, iso: &Path, dir: &Path) -> String {
    let mut rc = String::new();
    // Ignoring write! results: writing to a String cannot fail.
    let _ = writeln!(rc, "memory: guest={0}, host={0}", pc.megs);
    // reset_on_triple_fault=0 ends the run on a triple fault instead of
    // rebooting forever.
    let _ = writeln!(
        rc,
        "cpu: model={}, count={}, ips={}, reset_on_triple_fault=0",
        pc.model, pc.cpus, pc.ips
    );
    let _ = writeln!(rc, "romimage: file={}", tools::BOCHS_BIOS.path);
    let _ = writeln!(rc, "vgaromimage: file={}", tools::BOCHS_VGABIOS.path);
    let _ = writeln!(rc, "display_library: rfb, options=\"timeout=0\"");
    let _ = writeln!(rc, "pci: enabled=1, chipset=i440fx");
    let _ = writeln!(
        rc,
        "ata0-master: type=cdrom, path={}, status=inserted",
        iso.display()
    );
    let _ = writeln!(rc, "boot: cdrom");
    let _ = writeln!(
        rc,
        "com1: enabled=1, mode=file, dev={}",
        dir.join("serial.log").display()
    );
    // sync=none: emulated time follows the instruction count only, never
    // the host clock, so a run with one CPU is repeatable to the tick.
    let _ = writeln!(rc, "clock: sync=none, time0=1577836800");
    let _ = writeln!(rc, "mouse: enabled=0");
    // No sound: Bochs' default sound driver opens ALSA while it reads this
    // file, which fails on every machine without a sound card (a page of
    // ALSA errors in bochs.out) — start-up work nothing here needs. The
    // dummy drivers open nothing; the PC speaker is off too.
    let _ = writeln!(
        rc,
        "sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy"
    );
    let _ = writeln!(rc, "speaker: enabled=0");
    let _ = writeln!(rc, "log: {}", dir.join("bochs.log").display());
    let _ = writeln!(rc, "panic: action=fatal");
    let _ = writeln!(rc, "error: action=report");
    let _ = writeln!(rc, "info: action=ignore");
    let _ = writeln!(rc, "debug: action=ignore");
    for l in &pc.extra {
        let _ = writeln!(rc, "{l}");
    }
    rc
}

/// A Bochs run prepared in a directory: its command, and where its serial
/// log and own output go.
#[derive(Debug)]
pub struct Run {
    /// `bochs -q -f bochsrc -rc debugger-commands`, run in `dir`, standard
    /// output and error to `out`.
    pub command: Command,
    /// The same for people (logs, failure reports).
    pub display: String,
    /// COM1.
    pub serial: PathBuf,
    /// Bochs' standard output and error.
    pub out: PathBuf,
    /// Bochs' log file.
    pub log: PathBuf,
}

/// Writes the configuration for booting `iso` on `pc` into `dir` (which
/// must exist) and returns the command that runs it. Fails with the package
/// to install when Bochs or its firmware is missing.
pub fn prepare(pc: &Pc, iso: &Path, dir: &Path) -> Result<Run> {
    for t in [tools::BOCHS_BIOS, tools::BOCHS_VGABIOS, tools::BOCHS_RFB] {
        t.require()?;
    }
    let bochs = tools::BOCHS.require()?;
    let rc_path = dir.join("bochsrc");
    let cmds = dir.join("debugger-commands");
    let out = dir.join("bochs.out");
    let serial = dir.join("serial.log");
    // A stale log from an earlier run must not be judged.
    let _ = std::fs::remove_file(&serial);
    std::fs::write(&rc_path, bochsrc(pc, iso, dir))
        .context(|| format!("writing {}", rc_path.display()))?;
    // Continue at the debugger's first prompt; quit at the one after shutdown.
    std::fs::write(&cmds, "c\nquit\n").context(|| format!("writing {}", cmds.display()))?;
    let file = File::create(&out).context(|| format!("creating {}", out.display()))?;
    let file2 = file
        .try_clone()
        .context(|| format!("opening {}", out.display()))?;
    let mut command = Command::new(bochs);
    command
        .arg("-q")
        .arg("-f")
        .arg(&rc_path)
        .arg("-rc")
        .arg(&cmds)
        .current_dir(dir)
        .stdout(file)
        .stderr(file2);
    Ok(Run {
        command,
        display: format!(
            "cd {} && bochs -q -f bochsrc -rc debugger-commands",
            dir.display()
        ),
        serial,
        out,
        log: dir.join("bochs.log"),
    })
}

/// The last `n` lines of a text file (empty if it cannot be read).
pub fn tail(p: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rc_is_headless_and_logs_serial_to_a_file() {
        let pc = Pc::new("corei7_haswell_4770", 2, 256);
        let rc = bochsrc(&pc, Path::new("/x.iso"), Path::new("/d"));
        assert!(rc.contains("cpu: model=corei7_haswell_4770, count=2, ips=10000000,"));
        assert!(rc.contains("reset_on_triple_fault=0"));
        assert!(rc.contains("display_library: rfb, options=\"timeout=0\""));
        assert!(rc.contains("com1: enabled=1, mode=file, dev=/d/serial.log"));
        assert!(rc.contains("path=/x.iso, status=inserted"));
        assert!(rc.contains("clock: sync=none"));
    }
}
