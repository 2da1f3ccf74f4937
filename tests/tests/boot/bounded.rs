//! Bounded exits (issue 12, defect 5): no guest holds a CPU much past a
//! scheduler slice inside one exit, whatever it asks for.
//!
//! One run per backend, one CPU (all five domains share it), GRUB ISO:
//! four `flood` domains, each
//! making its exits as long as the ABI lets it (`kind=console`: 4 KiB
//! console writes; `multicall`: 64 of them per call, 256 KiB; `mem`: 64
//! memory ops of 512 pages per call, 32,768 pages; `grant`: 64 grant
//! accesses and 64 revokes per call), and a `victim` that sleeps 50 ms
//! twenty times from the start and reports its worst wake-up lateness by
//! its own PV clock. The floods start 130 ms in, when the victim is
//! asleep (before the fix one flood call outlasted a flood's whole 2.5 s:
//! a victim that was not asleep then would not notice it), and not at one
//! of its 50 ms deadlines: four floods waking from their own first sleep
//! at the victim's deadline are boosted like it and may each run a piece
//! first (21.8 ms seen on Bochs with 100 ms), which is scheduling, not
//! the length of an exit this test bounds. Before the fix a victim woke up seconds late (the issue saw
//! 3.7 s); now the lateness must stay within **two scheduler slices**, the
//! slice being what the hypervisor reports at boot (`sched: ...
//! slice_us=`).
//!
//! Time is deterministic on both backends, so host load cannot make the
//! victim late: AMD-V under QEMU TCG with `-icount shift=7,align=off,
//! sleep=off` (128 ns per instruction, as the benchmarks boot ISOs:
//! smaller shifts stall in GRUB; a slice is 78,125 instructions), VT-x
//! under Bochs (`clock: sync=none`, 10 M instructions per emulated second,
//! a slice 100,000 of them, and a 16550 that sends at the programmed
//! 115,200 baud, like hardware). Both are slower than hardware per
//! instruction, so the bound is stricter here than on a real machine.
//!
//! | test | asserts |
//! |---|---|
//! | `bounded_*_victim_on_time` | the victim exited 0, slept 20 times, worst lateness <= 2 slices |
//! | `bounded_*_uart_never_waited` | the `serial:` line: no console operation after domains started found the UART busy (`max_wait_polls=0`) or gave it more than its 16-byte FIFO (`max_burst_bytes<=16`) |
//! | `bounded_*_floods_ran` | each flood exited 0 having made at least one call of its kind, and no `[domN flood...]` line follows its `domain-end:` line |

use boot_tests::artifacts::{self, guest_module};
use boot_tests::bochs::{self, Pc};
use boot_tests::domains::{ReportOnPanic, said};
use boot_tests::guest_run::Shared;
use boot_tests::qemu::{BIOS_TIMEOUT_S, iso_vm, run_until};
use boot_tests::{Backend, Outcome};

const KINDS: [&str; 4] = ["console", "multicall", "mem", "grant"];

fn the_run(b: Backend) -> &'static Outcome {
    static RUNS: Shared = Shared::new();
    RUNS.get(b, || {
        let mut modules: Vec<_> = KINDS
            .iter()
            .map(|k| {
                guest_module(
                    "flood",
                    &format!("flood-{k}"),
                    &format!("kind={k} start_ms=130 ms=2500"),
                )
            })
            .collect();
        modules.push(guest_module("victim", "victim", "delay_ms=0 ms=50 n=20"));
        let iso = artifacts::shared_iso(
            &format!("bounded-{}.iso", b.suffix()),
            &format!("{} shutdown loglevel=info", b.exit()),
            &modules,
        );
        let test = format!("bounded_{}", b.suffix());
        let o = match b {
            Backend::Svm => {
                let mut vm = iso_vm(&iso, 1, "128M");
                vm.cpu = "max".into();
                vm.extra.extend(
                    ["-icount", "shift=7,align=off,sleep=off", "-rtc", "clock=vm"]
                        .map(std::ffi::OsString::from),
                );
                run_until(&test, vm, BIOS_TIMEOUT_S, None)
            }
            Backend::Vmx => bochs::run_iso(
                &test,
                &Pc::new("corei7_haswell_4770", 1, 128),
                &iso,
                None,
                bochs::TIMEOUT_S,
            ),
        };
        {
            let _report = ReportOnPanic(&o);
            if b == Backend::Svm {
                o.assert_status(xtask::qemu::STATUS_SUCCESS);
            }
            o.assert_booted("multiboot2");
            assert!(
                o.all_ended().is_some(),
                "{}: no `domains: all ... ended` line",
                o.test
            );
            println!("{}: run took {:.1} s", o.test, o.took.as_secs_f64());
        }
        o
    })
}

/// The slice the hypervisor reported, in microseconds.
fn slice_us(o: &Outcome) -> u64 {
    o.lines
        .iter()
        .find_map(|l| l.split_once("slice_us=").map(|(_, r)| r))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{}: no `sched: ... slice_us=` line", o.test))
}

fn victim_on_time(b: Backend) {
    let o = the_run(b);
    let _report = ReportOnPanic(o);
    let v = o.assert_domain("victim", "exited", 0);
    let lines = said(o, &v, "victim");
    let line = lines
        .iter()
        .find(|l| l.starts_with("sleeps="))
        .unwrap_or_else(|| panic!("{}: the victim did not report: {lines:?}", o.test));
    let get = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
            .unwrap_or_else(|| panic!("{}: no {k}= in `{line}`", o.test))
    };
    let (sleeps, worst, mean) = (get("sleeps"), get("worst_late_us"), get("mean_late_us"));
    let bound = 2 * slice_us(o);
    println!(
        "{}: victim worst wake-up lateness {worst} us (mean {mean} us), bound {bound} us",
        o.test
    );
    assert_eq!(sleeps, 20, "{}: the victim slept {sleeps} times", o.test);
    assert!(
        worst <= bound,
        "{}: the victim woke up {worst} us late under the floods, more than two slices ({bound} us)",
        o.test
    );
}

fn floods_ran(b: Backend) {
    let o = the_run(b);
    let _report = ReportOnPanic(o);
    for k in KINDS {
        let name = format!("flood-{k}");
        let d = o.assert_domain(&name, "exited", 0);
        let said = said(o, &d, "flood");
        let calls: u64 = said
            .iter()
            .find_map(|l| {
                l.strip_prefix(&format!("kind={k} calls="))?
                    .strip_suffix(" ok")?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| {
                let last: Vec<_> = said.iter().filter(|l| l.starts_with("kind=")).collect();
                panic!("{}: {name} did not report success: {last:?}", o.test)
            });
        println!("{}: {name} made {calls} calls", o.test);
        assert!(calls >= 1, "{}: {name} made no call", o.test);
        // Its queued output was flushed before its end was reported.
        let end_at = o
            .lines
            .iter()
            .position(|l| l.contains(&format!("domain-end: id={} ", d.id)))
            .unwrap_or_else(|| panic!("{}: no domain-end line for {name}", o.test));
        let tag = format!("[dom{} {name}]", d.id);
        assert!(
            !o.lines[end_at..].iter().any(|l| l.contains(&tag)),
            "{}: {name} printed after its domain-end line",
            o.test
        );
    }
}

/// The transmit buffer (`hypervisor/src/txbuf.rs`): nothing waits on the UART
/// once domains run; each push fills at most the FIFO. Before it, every
/// console line went to the UART byte by byte inside the exit that made
/// it (a flood's 64-byte lines: bursts of ~85 bytes, and under Bochs,
/// whose 16550 sends at the programmed rate, hundreds of busy polls).
fn uart_never_waited(b: Backend) {
    let o = the_run(b);
    let _report = ReportOnPanic(o);
    let line = o
        .lines
        .iter()
        .find(|l| l.starts_with("serial: "))
        .unwrap_or_else(|| panic!("{}: no `serial:` line", o.test));
    let get = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
            .unwrap_or_else(|| panic!("{}: no {k}= in `{line}`", o.test))
    };
    let (polls, burst) = (get("max_wait_polls"), get("max_burst_bytes"));
    println!("{}: {line}", o.test);
    assert_eq!(
        polls, 0,
        "{}: a console operation waited on the UART ({polls} busy LSR reads)",
        o.test
    );
    assert!(
        burst <= 16,
        "{}: one console operation sent {burst} bytes to the UART, more than its 16-byte FIFO",
        o.test
    );
}

#[test]
fn bounded_amdv_uart_never_waited() {
    uart_never_waited(Backend::Svm);
}

#[test]
fn bounded_vtx_uart_never_waited() {
    uart_never_waited(Backend::Vmx);
}

#[test]
fn bounded_amdv_victim_on_time() {
    victim_on_time(Backend::Svm);
}

#[test]
fn bounded_amdv_floods_ran() {
    floods_ran(Backend::Svm);
}

#[test]
fn bounded_vtx_victim_on_time() {
    victim_on_time(Backend::Vmx);
}

#[test]
fn bounded_vtx_floods_ran() {
    floods_ran(Backend::Vmx);
}
