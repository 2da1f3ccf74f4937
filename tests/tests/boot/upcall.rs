//! Event-channel upcalls (ABI 1.3) on both backends: one run per backend
//! (GRUB ISO, 2 CPUs, 128 MiB) with four guests, domain ids in module
//! order:
//!
//! | id | guest | command line |
//! |---|---|---|
//! | 1 | `evupong` | `peer=2 rounds=`[`ROUNDS`]` flood=4` |
//! | 2 | `evuping` | `peer=1 rounds=`[`ROUNDS`] |
//! | 3 | `evupcall` | (none) |
//! | 4 | `evuhostile` | `peer=1` |
//!
//! | test | checks |
//! |---|---|
//! | `upcall_*_pingpong` | evupong answered exactly [`ROUNDS`] pings in its upcall handler and evuping counted [`ROUNDS`] replies to [`ROUNDS`] sends, every next ping sent from its handler; both took at least one upcall and never polled; both exited 0 while evuhostile flooded evupong's second port |
//! | `upcall_*_functional` | evupcall: VIRQ_TIMER as an upcall, ipis between its two vCPUs both ways as upcalls, STATUS of each port kind, a send while masked (shared mask bit) handled on unmask, bind-vcpu moving a port to vCPU 1: `<N> checks, 0 failed`, exited 0 |
//! | `upcall_*_hostile` | evuhostile: bad virq / vCPU / port, INIT_CONTROL with bad vectors, unaligned, outside, released and granted pages, twice; releasing and granting its pinned pages; scribbling over its own area; flooding evupong: `<N> checks, 0 failed`, exited 0 |
//!
//! For the whole run: no FATAL/PANIC, all domains ended, free memory back
//! to its value at ready.

use boot_tests::artifacts::guest_module;
use boot_tests::domains::{ReportOnPanic, said};
use boot_tests::guest_run::{GuestRun, Shared};
use boot_tests::{Backend, Outcome};
use xtask::serial::DomainEnd;

/// Upcall-driven round trips (the issue asks for 10,000).
const ROUNDS: u64 = 10_000;
/// Fewest checks each self-checking guest must make.
const MIN_FUNCTIONAL_CHECKS: u64 = 25;
const MIN_HOSTILE_CHECKS: u64 = 30;

fn the_run(b: Backend) -> &'static Outcome {
    static RUNS: Shared = Shared::new();
    RUNS.get(b, || {
        let o = GuestRun {
            name: "upcall",
            options: "",
            modules: vec![
                guest_module(
                    "evupong",
                    "evupong",
                    &format!("peer=2 rounds={ROUNDS} flood=4"),
                ),
                guest_module("evuping", "evuping", &format!("peer=1 rounds={ROUNDS}")),
                guest_module("evupcall", "evupcall", ""),
                guest_module("evuhostile", "evuhostile", "peer=1"),
            ],
            cpus: 2,
            memory_mib: 128,
            stop: None,
        }
        .boot(b);
        {
            let _report = ReportOnPanic(&o);
            o.assert_all_ended(4, 4);
        }
        o
    })
}

fn said_by<'a>(o: &'a Outcome, d: &DomainEnd) -> Vec<&'a str> {
    said(o, d, &d.name)
}

fn no_failures(o: &Outcome, d: &DomainEnd) {
    o.assert_no_failed_check(d, &d.name);
}

/// The number in `line` right after `before` (e.g. "(" in "(12 upcalls").
fn number_after(line: &str, before: &str) -> Option<u64> {
    let rest = &line[line.find(before)? + before.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn pingpong(b: Backend) {
    let o = the_run(b);
    let _report = ReportOnPanic(o);
    let pong = o.assert_domain("evupong", "exited", 0);
    let ping = o.assert_domain("evuping", "exited", 0);
    no_failures(o, &pong);
    no_failures(o, &ping);
    let pong_out = said_by(o, &pong);
    let answered = format!("{ROUNDS} pings answered in upcalls (");
    let line = pong_out
        .iter()
        .find(|l| l.starts_with(&answered))
        .unwrap_or_else(|| panic!("{}: evupong said {pong_out:?}", o.test));
    let upcalls = number_after(line, "(").unwrap_or(0);
    assert!(upcalls >= 1, "{}: evupong took no upcall: {line}", o.test);
    let ping_out = said_by(o, &ping);
    let replies = format!("{ROUNDS} replies to {ROUNDS} sends, all in upcalls (");
    let pline = ping_out
        .iter()
        .find(|l| l.starts_with(&replies))
        .unwrap_or_else(|| panic!("{}: evuping said {ping_out:?}", o.test));
    assert!(number_after(pline, "(").unwrap_or(0) >= 1);
    println!("{}: evupong: {line}; evuping: {pline}", o.test);
}

fn summary(o: &Outcome, name: &str, min: u64) {
    let d = o.assert_domain(name, "exited", 0);
    let n = o.assert_checks_passed(&d, name, min);
    println!("{}: {name} made {n} checks, all passed", o.test);
}

#[test]
fn upcall_amdv_qemu_pingpong() {
    pingpong(Backend::Svm);
}

#[test]
fn upcall_amdv_qemu_functional() {
    summary(the_run(Backend::Svm), "evupcall", MIN_FUNCTIONAL_CHECKS);
}

#[test]
fn upcall_amdv_qemu_hostile() {
    summary(the_run(Backend::Svm), "evuhostile", MIN_HOSTILE_CHECKS);
}

#[test]
fn upcall_vtx_bochs_pingpong() {
    pingpong(Backend::Vmx);
}

#[test]
fn upcall_vtx_bochs_functional() {
    summary(the_run(Backend::Vmx), "evupcall", MIN_FUNCTIONAL_CHECKS);
}

#[test]
fn upcall_vtx_bochs_hostile() {
    summary(the_run(Backend::Vmx), "evuhostile", MIN_HOSTILE_CHECKS);
}
