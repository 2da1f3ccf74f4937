//! Running Bochs for a test: Intel VT-x with EPT, which QEMU's TCG lacks.
//!
//! Headless recipe (docs/testing.md): the Debian build has no `nogui`, so the
//! `rfb` display waits for no client (`timeout=0`); its built-in debugger
//! stops before the first instruction, so `-rc` feeds it `c` and `quit`;
//! COM1 goes to a file. Bochs exits 1 whatever the guest did, so the test
//! is judged by the serial log alone.

use std::fmt::Write as _;
use std::fs::File;
use std::path::Path;
use std::process::Command;

use xtask::{runner, serial, tools};

use crate::{Outcome, artifacts, scaled};

/// Deadline (normally under 10 s: BIOS, GRUB and boot, all emulated).
pub const TIMEOUT_S: u64 = 240;

/// An emulated PC.
#[derive(Debug, Clone)]
pub struct Pc {
    /// Bochs CPU model, e.g. `corei7_haswell_4770`.
    pub model: &'static str,
    /// CPUs.
    pub cpus: u32,
    /// RAM in MiB.
    pub megs: u32,
}

/// The `bochsrc` for booting `iso` on `pc`, logging into `dir`.
pub fn bochsrc(pc: &Pc, iso: &Path, dir: &Path) -> String {
    let mut rc = String::new();
    // Ignoring write! results: writing to a String cannot fail.
    let _ = writeln!(rc, "memory: guest={0}, host={0}", pc.megs);
    // `ips` is how many instructions make one emulated second. Firmware and
    // GRUB wait in emulated time (busy loops), so 10M instead of the usual
    // 100M makes a boot 5x faster (2.5 s instead of 14 s, measured with one
    // CPU). reset_on_triple_fault=0 ends the run on a triple fault instead
    // of rebooting forever.
    let _ = writeln!(
        rc,
        "cpu: model={}, count={}, ips=10000000, reset_on_triple_fault=0",
        pc.model, pc.cpus
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
    let _ = writeln!(rc, "clock: sync=none, time0=1577836800");
    let _ = writeln!(rc, "mouse: enabled=0");
    let _ = writeln!(rc, "log: {}", dir.join("bochs.log").display());
    let _ = writeln!(rc, "panic: action=fatal");
    let _ = writeln!(rc, "error: action=report");
    let _ = writeln!(rc, "info: action=ignore");
    let _ = writeln!(rc, "debug: action=ignore");
    rc
}

/// Boots the Bochs test ISO on `pc`.
pub fn run(test: &str, pc: &Pc) -> Outcome {
    for t in [tools::BOCHS_BIOS, tools::BOCHS_VGABIOS, tools::BOCHS_RFB] {
        t.require().unwrap_or_else(|e| panic!("{test}: {e}"));
    }
    let bochs = tools::BOCHS
        .require()
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    let iso = artifacts::bochs_iso();
    let dir = artifacts::test_dir(test);
    let rc_path = dir.join("bochsrc");
    let cmds = dir.join("debugger-commands");
    let out_path = dir.join("bochs.out");
    std::fs::write(&rc_path, bochsrc(pc, iso, &dir)).unwrap_or_else(|e| panic!("{e}"));
    // Continue at the debugger's first prompt; quit at the one after shutdown.
    std::fs::write(&cmds, "c\nquit\n").unwrap_or_else(|e| panic!("{e}"));
    let out = File::create(&out_path).unwrap_or_else(|e| panic!("{e}"));
    let out2 = out.try_clone().unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(bochs);
    cmd.arg("-q")
        .arg("-f")
        .arg(&rc_path)
        .arg("-rc")
        .arg(&cmds)
        .current_dir(&dir)
        .stdout(out)
        .stderr(out2);
    let command = format!(
        "cd {} && bochs -q -f bochsrc -rc debugger-commands",
        dir.display()
    );
    let (ended, took) = runner::run_with_timeout(&mut cmd, scaled(TIMEOUT_S))
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    let serial_path = dir.join("serial.log");
    let lines = serial::lines(&std::fs::read(&serial_path).unwrap_or_default());
    let tail = |p: &Path, n: usize| {
        let s = std::fs::read_to_string(p).unwrap_or_default();
        let v: Vec<&str> = s.lines().collect();
        v[v.len().saturating_sub(n)..].join("\n")
    };
    let emulator_log = format!(
        "--- bochs.out (tail)\n{}\n--- bochs.log (tail)\n{}",
        tail(&out_path, 30),
        tail(&dir.join("bochs.log"), 40)
    );
    let o = Outcome {
        test: test.into(),
        command,
        ended,
        took,
        lines,
        serial_path,
        emulator_log,
    };
    println!("{test}: {} after {:.2} s", o.ended, o.took.as_secs_f64());
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rc_is_headless_and_logs_serial_to_a_file() {
        let pc = Pc {
            model: "corei7_haswell_4770",
            cpus: 2,
            megs: 256,
        };
        let rc = bochsrc(&pc, Path::new("/x.iso"), Path::new("/d"));
        assert!(rc.contains("cpu: model=corei7_haswell_4770, count=2,"));
        assert!(rc.contains("reset_on_triple_fault=0"));
        assert!(rc.contains("display_library: rfb, options=\"timeout=0\""));
        assert!(rc.contains("com1: enabled=1, mode=file, dev=/d/serial.log"));
        assert!(rc.contains("path=/x.iso, status=inserted"));
        assert!(rc.contains("clock: sync=none"));
    }
}
