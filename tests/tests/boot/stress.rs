//! The event-channel stress test (issue 11): [`ROUNDS`] round trips
//! between two domains while two others burn CPU, on 2 and on 4 CPUs, in
//! poll mode (`evping`/`evpong`: block until `EVENT_CHANNEL`, then poll)
//! and in upcall mode (`evuping`/`evupong`: every answer sent from the
//! upcall handler), on AMD-V (QEMU TCG).
//!
//! | module | domain | command line |
//! |---|---|---|
//! | 1 | pong (`evpong` / `evupong`) | `peer=2 rounds=`[`ROUNDS`] |
//! | 2 | ping (`evping` / `evuping`) | `peer=1 rounds=`[`ROUNDS`] |
//! | 3, 4 | `burn-a`, `burn-b` | `ms=`[`BURN_MS`] |
//!
//! | test | asserts |
//! |---|---|
//! | `stress_amdv_qemu_{poll,upcall}_{2,4}cpu` | the ping side (domain 2) said it got exactly [`ROUNDS`] replies to [`ROUNDS`] pings; no `FAILED` line from either side (each waits at most 10 s for a message and says so when it times out: a stall); the hypervisor never logged a `lost wake-up` (its check for a blocked vCPU with events pending or a runnable one the scheduler does not hold), a scheduler disagreement or a vCPU picked while not runnable; both burners were started, and any that ended before the ping side finished (the run stops at its line) exited 0 |
//!
//! A lost wake-up shows as a 10 s wait, so a run with one ends with a
//! `FAILED ... 10 s` line; one that the idle CPUs' check caught shows as its
//! log line. The burners keep every CPU busy, so a woken vCPU waits in a
//! queue behind them (the path the lost wake-up hid in), and the sides
//! migrate between CPUs.

use boot_tests::artifacts::{self, guest_module};
use boot_tests::domains::ReportOnPanic;
use boot_tests::guest_run::Shared;
use boot_tests::qemu::{iso_vm, run_until};
use boot_tests::{Backend, Outcome};

/// Round trips per run (the issue asks for 100,000).
const ROUNDS: u64 = 100_000;
/// How long each burner spins: the first part of the run competes with
/// them for every CPU (a woken vCPU waits in a queue, or preempts one by
/// IPI), the rest runs on CPUs that halt between messages (a woken vCPU
/// is sent to an idle CPU by IPI). Both paths have hidden lost wake-ups.
const BURN_MS: u64 = 5_000;
/// The whole run's limit (scaled by `KESTREL_TEST_TIMEOUT_SCALE`): a
/// round trip between halted CPUs costs two host thread wake-ups under
/// TCG, slow on a loaded 2-core host.
const TIMEOUT_S: u64 = 600;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Poll,
    Upcall,
}

impl Mode {
    /// The run ends at the ping side's summary, printed after its last
    /// reply (so every round trip is done); a run that never prints it
    /// (a stall, a failure) runs into the boot timeout and fails.
    fn stop(self) -> &'static [&'static str] {
        match self {
            Mode::Poll => &["evping: 100000 round trips"],
            Mode::Upcall => &["evuping: 100000 replies to"],
        }
    }

    fn guests(self) -> (&'static str, &'static str) {
        match self {
            Mode::Poll => ("evpong", "evping"),
            Mode::Upcall => ("evupong", "evuping"),
        }
    }
}

fn boot(name: &'static str, mode: Mode, cpus: u32) -> Outcome {
    let (pong, ping) = mode.guests();
    let modules = vec![
        guest_module(pong, pong, &format!("peer=2 rounds={ROUNDS}")),
        guest_module(ping, ping, &format!("peer=1 rounds={ROUNDS}")),
        guest_module("burn", "burn-a", &format!("ms={BURN_MS}")),
        guest_module("burn", "burn-b", &format!("ms={BURN_MS}")),
    ];
    let iso = artifacts::shared_iso(
        &format!("{name}-{}.iso", Backend::Svm.suffix()),
        &format!("{} shutdown loglevel=info", Backend::Svm.exit()),
        &modules,
    );
    let mut vm = iso_vm(&iso, cpus, "128M");
    vm.cpu = "max".into();
    let o = run_until(&format!("{name}_qemu"), vm, TIMEOUT_S, Some(mode.stop()));
    o.assert_booted("multiboot2");
    o
}

/// What every stress run must show.
fn check(o: &Outcome, mode: Mode) {
    let _report = ReportOnPanic(o);
    for bad in [
        "lost wake-up",
        "scheduler:",
        "FAILED",
        "picked while not runnable",
    ] {
        let hits: Vec<&str> = o
            .lines
            .iter()
            .map(String::as_str)
            .filter(|l| l.contains(bad))
            .collect();
        assert!(hits.is_empty(), "{}: `{bad}` lines: {hits:?}", o.test);
    }
    // Domain 2 is the ping side: its summary counts the replies it got.
    let want = match mode {
        Mode::Poll => format!("[dom2 evping] evping: {ROUNDS} round trips, {ROUNDS} replies"),
        Mode::Upcall => {
            format!("[dom2 evuping] evuping: {ROUNDS} replies to {ROUNDS} sends, all in upcalls (")
        }
    };
    let line = o.expect_line(&want);
    for burner in ["burn-a", "burn-b"] {
        o.expect_line(&format!("({burner}): 8 MiB"));
        if let Some(end) = o.line(&format!("name={burner} ")) {
            assert!(
                end.contains("result=exited code=0"),
                "{}: {burner} ended badly: {end}",
                o.test
            );
        }
    }
    println!(
        "{}: {line} in {:.1} s (boot included) beside two burners",
        o.test,
        o.took.as_secs_f64()
    );
}

macro_rules! stress {
    ($test:ident, $name:literal, $mode:expr, $cpus:literal) => {
        #[test]
        fn $test() {
            static RUN: Shared = Shared::new();
            let o = RUN.get(Backend::Svm, || boot($name, $mode, $cpus));
            check(o, $mode);
        }
    };
}

stress!(stress_amdv_qemu_poll_2cpu, "stress-poll-2", Mode::Poll, 2);
stress!(stress_amdv_qemu_poll_4cpu, "stress-poll-4", Mode::Poll, 4);
stress!(
    stress_amdv_qemu_upcall_2cpu,
    "stress-upcall-2",
    Mode::Upcall,
    2
);
stress!(
    stress_amdv_qemu_upcall_4cpu,
    "stress-upcall-4",
    Mode::Upcall,
    4
);
