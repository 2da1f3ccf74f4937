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

/// How many times a run is started when Bochs dies before the hypervisor
/// printed anything ([`died_before_kestrel`]).
const START_ATTEMPTS: u32 = 2;

/// Whether Bochs was ended by a signal (not by the guest, not by us)
/// before the hypervisor's banner reached the serial line: an emulator
/// failure at start, with nothing of Kestrel run yet. Any run that got as
/// far as `Kestrel ` is judged as it is, however it ended.
fn died_before_kestrel(ended: runner::Ended, serial: &[u8]) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let by_signal = matches!(ended, runner::Ended::Exited(s) if s.signal().is_some());
    by_signal && !serial.windows(8).any(|w| w == b"Kestrel ")
}

/// Boots the standard Bochs test ISO on `pc`.
pub fn run(test: &str, pc: &Pc) -> Outcome {
    run_iso(test, pc, artifacts::bochs_iso(), None, TIMEOUT_S)
}

/// Boots `iso` on `pc` for at most `timeout_s` (scaled) seconds; with
/// `stop`, ends the run as soon as a complete serial line contains every
/// one of those needles.
pub fn run_iso(test: &str, pc: &Pc, iso: &Path, stop: Option<&[&str]>, timeout_s: u64) -> Outcome {
    let dir = artifacts::test_dir(test);
    let timeout = scaled(timeout_s);
    let mut attempt = 1;
    let (r, ended, took, serial_bytes) = loop {
        let mut r = xtask::bochs::prepare(pc, iso, &dir).unwrap_or_else(|e| panic!("{test}: {e}"));
        // Held for the run only; the deadline starts once it is ours.
        let slot = crate::slots::take();
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
        drop(slot);
        let serial_bytes = std::fs::read(&r.serial).unwrap_or_default();
        if attempt < START_ATTEMPTS && died_before_kestrel(ended, &serial_bytes) {
            // Bochs itself died before the hypervisor printed its first
            // line: nothing under test ran (CI saw a SIGABRT 0.22 s after
            // start, once in ~200 runs). Said, kept, and tried once more.
            let kept = dir.join(format!("bochs.out.attempt{attempt}"));
            let _ = std::fs::copy(&r.out, &kept);
            println!(
                "{test}: Bochs died at start ({ended}) before Kestrel printed anything; \
                 its output kept in {}; starting it again",
                kept.display()
            );
            attempt += 1;
            continue;
        }
        break (r, ended, took, serial_bytes);
    };
    let lines = serial::lines(&serial_bytes);
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
        triple_fault: None,
    };
    println!("{test}: {} after {:.2} s", o.ended, o.took.as_secs_f64());
    o
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::died_before_kestrel;
    use xtask::runner::Ended;

    #[test]
    fn only_a_signal_before_the_banner_is_a_start_failure() {
        let abort = Ended::Exited(ExitStatus::from_raw(6)); // SIGABRT
        let exit1 = Ended::Exited(ExitStatus::from_raw(1 << 8));
        assert!(died_before_kestrel(abort, b""));
        assert!(died_before_kestrel(abort, b"\x1b[H  Booting `Kestrel'\n"));
        assert!(!died_before_kestrel(
            abort,
            b"Kestrel 0.1.0 booting via multiboot2\n"
        ));
        assert!(
            !died_before_kestrel(exit1, b""),
            "Bochs' own exit is judged"
        );
        assert!(!died_before_kestrel(Ended::TimedOut, b""));
        assert!(!died_before_kestrel(Ended::Stopped, b""));
    }
}
