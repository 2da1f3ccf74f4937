//! Running Bochs for a test: Intel VT-x with EPT, which QEMU's TCG lacks.
//! The machine and its headless configuration come from `xtask::bochs`;
//! Bochs exits 1 whatever the guest did, so the test is judged by the
//! serial log alone.

use std::path::Path;

use xtask::runner::{self, StopLine};
use xtask::serial;

pub use xtask::bochs::Pc;

use crate::{Outcome, artifacts, scaled};

/// Deadline (normally under 10 s: BIOS, GRUB and boot, all emulated; a
/// guest suite with the 1,000,000-hypercall guest about 30 s).
pub const TIMEOUT_S: u64 = 240;

/// Boots the standard Bochs test ISO on `pc`.
pub fn run(test: &str, pc: &Pc) -> Outcome {
    run_iso(test, pc, artifacts::bochs_iso(), None, TIMEOUT_S)
}

/// Boots `iso` on `pc` for at most `timeout_s` (scaled) seconds; with
/// `stop`, ends the run as soon as a complete serial line contains every
/// one of those needles.
pub fn run_iso(test: &str, pc: &Pc, iso: &Path, stop: Option<&[&str]>, timeout_s: u64) -> Outcome {
    let dir = artifacts::test_dir(test);
    let mut r = xtask::bochs::prepare(pc, iso, &dir).unwrap_or_else(|e| panic!("{test}: {e}"));
    let timeout = scaled(timeout_s);
    let (ended, took) = match stop {
        Some(needles) => {
            let line = StopLine {
                log: &r.serial,
                needles,
            };
            runner::run_until_line(&mut r.command, timeout, &line)
        }
        None => runner::run_with_timeout(&mut r.command, timeout),
    }
    .unwrap_or_else(|e| panic!("{test}: {e}"));
    let lines = serial::lines(&std::fs::read(&r.serial).unwrap_or_default());
    let emulator_log = format!(
        "--- bochs.out (tail)\n{}\n--- bochs.log (tail)\n{}",
        xtask::bochs::tail(&r.out, 30),
        xtask::bochs::tail(&r.log, 40)
    );
    let o = Outcome {
        test: test.into(),
        command: r.display,
        ended,
        took,
        lines,
        serial_path: r.serial,
        emulator_log,
    };
    println!("{test}: {} after {:.2} s", o.ended, o.took.as_secs_f64());
    o
}
