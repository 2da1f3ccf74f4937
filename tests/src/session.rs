//! The frame of a boot test that talks to dom0 while its machine runs
//! (the scaffolding that had been copied into a dozen `tests/boot/*.rs`):
//! the machine on a thread of its own ([`Machine`]), the session beside
//! it under `catch_unwind`, the `end` domain whose greeting stops the run
//! ([`END`], [`create_end`]), the session's failure raised again after the
//! machine's report, and the checks on how the run ended
//! ([`assert_survived`]). Waiting for a line with a named failure:
//! [`expect_nth`].

use std::panic::UnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::Outcome;
use crate::domains::ReportOnPanic;
use crate::mgmt::{hvctl_cmd, input_file, wait_for_nth_line};
use crate::qemu::run_until;
use crate::scaled;

/// The domain whose greeting stops the run once the session is over (a
/// `hello`: the run's modules must have one).
pub const END: &str =
    "[[domain]]\nname = \"end\"\nimage = \"hello\"\nmemory = 4\ncmdline = \"kestrel-test-end\"\n";

/// The line [`END`] prints: the stop line of a run that ends with it.
pub const END_LINE: &[&str] = &["[end] hello from", "kestrel-test-end"];

/// `hvctl create` of `toml` (the file `end.toml` in `test`'s input
/// directory), its result ignored: what ends a run whose stop line that
/// domain prints. A failed session still ends its run this way.
pub fn create_end_with(sock: &Path, test: &str, toml: &str) {
    let end = input_file(test, "end.toml", toml);
    let _ = hvctl_cmd(sock, &["create", end.to_str().unwrap_or("")]);
}

/// [`create_end_with`] of [`END`].
pub fn create_end(sock: &Path, test: &str) {
    create_end_with(sock, test, END);
}

/// An emulator running on a thread of its own while the test talks to
/// the machine.
pub struct Machine {
    /// The emulator, for the message when its thread panics.
    what: &'static str,
    ended: Arc<AtomicBool>,
    thread: JoinHandle<Outcome>,
}

impl Machine {
    /// Runs `run` (an emulator run to its [`Outcome`]) on a thread;
    /// `what` names the emulator.
    pub fn spawn(what: &'static str, run: impl FnOnce() -> Outcome + Send + 'static) -> Self {
        let ended = Arc::new(AtomicBool::new(false));
        let flag = ended.clone();
        let thread = std::thread::spawn(move || {
            let o = run();
            flag.store(true, Ordering::Release);
            o
        });
        Self {
            what,
            ended,
            thread,
        }
    }

    /// QEMU running `vm` as `test` for at most `timeout_s` (scaled)
    /// seconds, until a line holding every one of `stop`
    /// ([`run_until`]).
    pub fn qemu(
        test: &str,
        vm: xtask::qemu::Vm,
        timeout_s: u64,
        stop: &'static [&'static str],
    ) -> Self {
        let test = test.to_string();
        Self::spawn("QEMU", move || run_until(&test, vm, timeout_s, Some(stop)))
    }

    /// Set once the emulator has ended (a session can stop waiting for
    /// lines that can no longer come).
    pub fn ended(&self) -> Arc<AtomicBool> {
        self.ended.clone()
    }

    /// Waits for the run to end; `session`'s panic, if it panicked, is
    /// raised again after the run's report is printed. The run and what
    /// the session returned.
    pub fn join<T>(self, session: std::thread::Result<T>) -> (Outcome, T) {
        let o = self
            .thread
            .join()
            .unwrap_or_else(|_| panic!("the {} thread panicked", self.what));
        let value = {
            let _report = ReportOnPanic(&o);
            session.unwrap_or_else(|e| std::panic::resume_unwind(e))
        };
        (o, value)
    }

    /// Runs `session` beside the machine, then [`create_end`] through
    /// `sock` (whether the session passed or not), and [`Self::join`]s.
    pub fn session<T>(
        self,
        sock: &Path,
        test: &str,
        session: impl FnOnce() -> T + UnwindSafe,
    ) -> (Outcome, T) {
        let result = std::panic::catch_unwind(session);
        create_end(sock, test);
        self.join(result)
    }
}

/// The run ended at its stop line (`Stopped`), and the hypervisor neither
/// died nor panicked; `what` names the run in the failure.
pub fn assert_survived(o: &Outcome, what: &str) {
    assert_eq!(o.ended, xtask::runner::Ended::Stopped, "{what}");
    assert!(
        o.fatal_lines().is_empty() && o.panic_lines().is_empty(),
        "{what}: the hypervisor died"
    );
}

/// The `n`th (from 1) line of `log` holding all `needles`, waiting up to
/// `secs` (scaled) seconds; else panics naming `who` and `what`.
pub fn expect_nth(
    who: &str,
    log: &Path,
    needles: &[&str],
    n: usize,
    secs: u64,
    what: &str,
) -> String {
    wait_for_nth_line(log, needles, n, scaled(secs)).unwrap_or_else(|| {
        panic!("{who}: {what}: no line {n} with {needles:?} in {secs} s (scaled)")
    })
}

/// [`expect_nth`] of the first line holding `needle`.
pub fn expect(who: &str, log: &Path, needle: &str, secs: u64, what: &str) -> String {
    expect_nth(who, log, &[needle], 1, secs, what)
}

/// dom0 said it is ready within `secs` (scaled) seconds.
pub fn dom0_ready(who: &str, log: &Path, secs: u64) {
    expect(who, log, "dom0: ready: ", secs, "dom0 never became ready");
}
