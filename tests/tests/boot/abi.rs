//! pvabi 1.0 from inside guests, on both backends: AMD-V with nested paging
//! under QEMU TCG (`-cpu max`) and VT-x with EPT under Bochs
//! (`corei7_haswell_4770`). The guests (`guests/src/bin/`) check the ABI
//! themselves and print one line per check; these tests judge their
//! serial output and how their domains ended.
//!
//! Two runs per backend, shared by the tests that read them:
//!
//! - the ABI suite (GRUB ISO, 2 CPUs): `abi` (every hypercall with valid
//!   and hostile arguments), `balloon` and `balloon2m` (release and
//!   re-populate, the second across a 2 MiB boundary),
//!   `multicall` (batches of 64 ops) and `singlecalls` (the same binary
//!   doing the same ops one hypercall at a time); under QEMU also `clock`
//!   with `waits=0`: four vCPUs reading the clock truly in parallel (QEMU's
//!   multi-threaded TCG), without the timed waits, whose latency there
//!   would be the host's scheduling;
//! - `clock` alone, on emulated time so that its wake-up latencies are the
//!   hypervisor's: Bochs (its clock counts instructions) with the GRUB ISO;
//!   QEMU with `-icount shift=0,align=off,sleep=off` (one nanosecond per
//!   instruction; GRUB does not boot that way, so a PVH direct boot with the
//!   guest as the one module, named `module0`, with the guest's default
//!   arguments). Alone, because under Bochs the serial port runs at its
//!   baud rate in emulated time: a domain printing 64 lines in one
//!   multicall keeps a CPU for ~0.2 s.
//!
//! | test | asserts |
//! |---|---|
//! | `abi_*_hypercalls` | `abi` printed `abi: <N> checks, 0 failed` with N >= [`MIN_ABI_CHECKS`], no `FAILED` line, and exited 0 |
//! | `abi_*_balloon` | `balloon` and `balloon2m` (its pages across a 2 MiB boundary: `cross2m`, page 16 on it) printed `balloon: <N> checks, 0 failed` and exited 0; after every domain ended, the hypervisor's free memory equals what it was at ready (no frame leaked through release/populate) |
//! | `abi_*_multicall` | both batch domains printed their 64 lines in order, their result line and `bye`, never `NOT REACHED` (a shutdown inside a batch ends the domain), exited 0; and `singlecalls` took at least `63 * R - (R - 1)` more exits than `multicall` for R rounds of 64 ops: one exit per batch, with room for a few timer-interrupt exits |
//! | `abi_*_clock` | `clock` printed `clock: <N> checks, 0 failed` (monotonic on and across 4 vCPUs; CPU time within the PV clock; block and timer wake-ups within `[deadline, deadline + 2 ticks + 10 ms]`) and exited 0; under QEMU also the parallel `clock` of the suite |

use std::path::PathBuf;

use boot_tests::Outcome;
use boot_tests::artifacts::guest;
use boot_tests::artifacts::{guest_module, shared_iso};
use boot_tests::bochs::{self, Pc};
use boot_tests::qemu::{BIOS_TIMEOUT_S, PVH_TIMEOUT_S, iso_vm, pvh_vm, run};
use boot_tests::shared::Once;
use xtask::iso::Module;

/// The `abi` guest makes about 200 checks; fewer means some were skipped.
const MIN_ABI_CHECKS: u64 = 190;
/// Rounds of 64 ops the batch domains make.
const ROUNDS: u64 = 4;
/// How long the clock's vCPUs read the clock, in milliseconds.
const CLOCK_LOOP_MS: u64 = 300;

use boot_tests::Backend;
use boot_tests::domains::{ReportOnPanic, said};

fn iso(b: Backend, what: &str, modules: &[Module]) -> PathBuf {
    shared_iso(
        &format!("abi-{what}-{}.iso", b.suffix()),
        &format!("{} shutdown loglevel=info", b.exit()),
        modules,
    )
}

fn suite_modules(b: Backend) -> Vec<Module> {
    let mut m = vec![
        guest_module("abi", "abi", ""),
        guest_module("balloon", "balloon", ""),
        guest_module("balloon", "balloon2m", "cross2m"),
        guest_module("multicall", "multicall", &format!("rounds={ROUNDS}")),
        guest_module(
            "multicall",
            "singlecalls",
            &format!("mode=single rounds={ROUNDS}"),
        ),
    ];
    if b == Backend::Svm {
        m.push(guest_module(
            "clock",
            "clock",
            &format!("ms={CLOCK_LOOP_MS} waits=0"),
        ));
    }
    m
}

fn boot(b: Backend, test: &str, iso: PathBuf, cpus: u32) -> Outcome {
    match b {
        Backend::Svm => {
            let mut vm = iso_vm(&iso, cpus, "128M");
            vm.cpu = "max".into();
            run(test, vm, BIOS_TIMEOUT_S)
        }
        Backend::Vmx => bochs::run_iso(
            test,
            &Pc::new("corei7_haswell_4770", cpus, 128),
            &iso,
            None,
            bochs::TIMEOUT_S,
        ),
    }
}

/// The suite's run on `b`, made once however many tests read it; if it
/// fails (boot checks, timeout), every test reading it fails
/// ([`boot_tests::shared`]: CI once saw only the first reader fail).
fn suite(b: Backend) -> &'static Outcome {
    static SVM: Once<Outcome> = Once::new();
    static VMX: Once<Outcome> = Once::new();
    let cell = if b == Backend::Svm { &SVM } else { &VMX };
    cell.get(&format!("abi_suite_{}", b.suffix()), || {
        let iso = iso(b, "suite", &suite_modules(b));
        let o = boot(b, &format!("abi_suite_{}", b.suffix()), iso, 2);
        boot_checks(&o, b, "multiboot2");
        o
    })
}

/// The clock's own run on `b`, on emulated time.
fn clock_run(b: Backend) -> &'static Outcome {
    static SVM: Once<Outcome> = Once::new();
    static VMX: Once<Outcome> = Once::new();
    let cell = if b == Backend::Svm { &SVM } else { &VMX };
    cell.get(&format!("abi_clock_{}", b.suffix()), || {
        let test = format!("abi_clock_{}", b.suffix());
        match b {
            Backend::Svm => {
                let cmdline = format!("{} shutdown loglevel=info", b.exit());
                let mut vm = pvh_vm(4, "128M", &cmdline, Some(&guest("clock")));
                vm.cpu = "max".into();
                vm.extra = ["-icount", "shift=0,align=off,sleep=off"]
                    .into_iter()
                    .map(Into::into)
                    .collect();
                let o = run(&test, vm, PVH_TIMEOUT_S);
                boot_checks(&o, b, "pvh");
                o
            }
            Backend::Vmx => {
                let modules = [guest_module(
                    "clock",
                    "clock",
                    &format!("ms={CLOCK_LOOP_MS}"),
                )];
                let o = boot(b, &test, iso(b, "clock", &modules), 2);
                boot_checks(&o, b, "multiboot2");
                o
            }
        }
    })
}

/// The run itself went well: booted on the right backend, ended by the
/// hypervisor once every domain had ended.
fn boot_checks(o: &Outcome, b: Backend, via: &str) {
    let _report = ReportOnPanic(o);
    if b == Backend::Svm {
        o.assert_status(xtask::qemu::STATUS_SUCCESS);
    }
    o.assert_booted(via);
    o.expect_line(b.running_line());
    assert!(
        o.all_ended().is_some(),
        "{}: no `domains: all ... ended` line",
        o.test
    );
}

/// Checks a self-checking guest running as domain `name` and printing
/// `<prefix>: ...`: its `FAILED` lines (none), its summary `<N> checks, 0
/// failed` with at least `min` checks, its exit. Returns N.
fn assert_self_checked(o: &Outcome, name: &str, prefix: &str, min: u64) -> u64 {
    let Some(d) = o.domain_ends().into_iter().find(|d| d.name == name) else {
        panic!("{}: domain {name} never ended", o.test)
    };
    let out = said(o, &d, prefix);
    let failed: Vec<&str> = out
        .iter()
        .copied()
        .filter(|l| l.contains("FAILED"))
        .collect();
    let killed = o
        .line(&format!("domain {} ({name}) killed: ", d.id))
        .unwrap_or("");
    let summary = out
        .iter()
        .find_map(|l| l.strip_suffix(" failed")?.split_once(" checks, "));
    let counts = summary.and_then(|(n, m)| Some((n.parse::<u64>().ok()?, m.parse::<u64>().ok()?)));
    assert!(
        failed.is_empty()
            && counts.is_some_and(|(n, m)| n >= min && m == 0)
            && d.result == "exited"
            && d.code == 0,
        "{}: {name} (domain {}) ended `{}` with code {}{}; summary {summary:?} (want >= {min} checks, 0 failed); {} FAILED:\n  {}",
        o.test,
        d.id,
        d.result,
        d.code,
        if killed.is_empty() {
            String::new()
        } else {
            format!(" ({killed})")
        },
        failed.len(),
        failed.join("\n  ")
    );
    counts.map_or(0, |(n, _)| n)
}

fn hypercalls(b: Backend) {
    let o = suite(b);
    let _report = ReportOnPanic(o);
    let n = assert_self_checked(o, "abi", "abi", MIN_ABI_CHECKS);
    println!("{}: abi made {n} checks, all passed", o.test);
}

fn balloon(b: Backend) {
    let o = suite(b);
    let _report = ReportOnPanic(o);
    assert_self_checked(o, "balloon", "balloon", 40);
    // Its pages across a 2 MiB boundary (a large nested-paging mapping
    // split on both sides), wherever the image's size put the free region;
    // its 2 MiB block no longer fits, so fewer checks.
    assert_self_checked(o, "balloon2m", "balloon", 30);
    let d = o.domain_end("balloon2m");
    let area = said(o, &d, "balloon")
        .into_iter()
        .find_map(|l| l.strip_prefix("working area 0x")?.split_once(".."))
        .and_then(|(a, _)| u64::from_str_radix(a, 16).ok());
    assert!(
        area.is_some_and(|a| (a + 16 * 4096).is_multiple_of(2 << 20)),
        "{}: balloon2m's working area {area:x?} does not put a 2 MiB boundary at its page 16",
        o.test
    );
    // Released frames went back to the hypervisor and populated ones came
    // from it: once every domain has ended, all of them must be free again.
    let Some(all) = o.all_ended() else {
        panic!("{}: no `domains: all ... ended` line", o.test)
    };
    let at_ready = o.stats().free_bytes;
    assert_eq!(
        all.free_bytes, at_ready,
        "{}: {} bytes free after every domain ended, {at_ready} at ready",
        o.test, all.free_bytes
    );
}

fn multicall(b: Backend) {
    let o = suite(b);
    let _report = ReportOnPanic(o);
    let multi = o.assert_domain("multicall", "exited", 0);
    let single = o.assert_domain("singlecalls", "exited", 0);
    let lines: Vec<String> = (0..64).map(|i| format!("line {i:02}")).collect();
    for (d, done) in [
        (
            &multi,
            format!("{ROUNDS} rounds of 64 ops ok in {ROUNDS} multicalls"),
        ),
        (
            &single,
            format!("{ROUNDS} rounds of 64 ops ok in {} hypercalls", 64 * ROUNDS),
        ),
    ] {
        let out = said(o, d, "multicall");
        let mut want: Vec<&str> = lines.iter().map(String::as_str).collect();
        want.push(&done);
        want.push("bye");
        assert_eq!(
            out, want,
            "{}: {} printed something else than its 64 lines in order, `{done}` and `bye`",
            o.test, d.name
        );
    }
    // One exit per batch: the difference is 63 per round (64 hypercalls
    // against one multicall). A timer interrupt arriving while a vCPU is in
    // guest mode adds an exit to either domain now and then; allowing R - 1
    // of them still fails if a batch took 2 exits (62 * R).
    let saved = single.exits as i64 - multi.exits as i64;
    let want = 63 * ROUNDS as i64 - (ROUNDS as i64 - 1);
    println!(
        "{}: {ROUNDS} x 64 ops: multicall exits={}, singlecalls exits={}, saved {saved} (want >= {want}, ideal {})",
        o.test,
        multi.exits,
        single.exits,
        63 * ROUNDS
    );
    assert!(
        saved >= want,
        "{}: singlecalls took {} exits and multicall {}: {saved} saved, want at least {want} (63 per batch of 64)",
        o.test,
        single.exits,
        multi.exits
    );
}

fn clock(b: Backend) {
    let o = clock_run(b);
    let _report = ReportOnPanic(o);
    // PVH: the one module has no name of its own.
    let name = if b == Backend::Svm {
        "module0"
    } else {
        "clock"
    };
    let n = assert_self_checked(o, name, "clock", 40);
    print_clock_figures(o, name);
    println!("{}: clock made {n} checks, all passed", o.test);
    if b == Backend::Svm {
        let o = suite(b);
        let _report = ReportOnPanic(o);
        let n = assert_self_checked(o, "clock", "clock", 20);
        print_clock_figures(o, "clock");
        println!("{}: clock (waits=0) made {n} checks, all passed", o.test);
    }
}

fn print_clock_figures(o: &Outcome, name: &str) {
    let d = o.domain_end(name);
    for l in said(o, &d, "clock").into_iter().filter(|l| {
        l.starts_with("start:")
            || l.contains("reads from")
            || l.contains(" after the deadline (bound")
    }) {
        println!("{}: {l}", o.test);
    }
}

#[test]
fn abi_amdv_qemu_hypercalls() {
    hypercalls(Backend::Svm);
}

#[test]
fn abi_vtx_bochs_hypercalls() {
    hypercalls(Backend::Vmx);
}

#[test]
fn abi_amdv_qemu_balloon() {
    balloon(Backend::Svm);
}

#[test]
fn abi_vtx_bochs_balloon() {
    balloon(Backend::Vmx);
}

#[test]
fn abi_amdv_qemu_multicall() {
    multicall(Backend::Svm);
}

#[test]
fn abi_vtx_bochs_multicall() {
    multicall(Backend::Vmx);
}

#[test]
fn abi_amdv_qemu_clock() {
    clock(Backend::Svm);
}

#[test]
fn abi_vtx_bochs_clock() {
    clock(Backend::Vmx);
}
