//! A domain's last words (issue 12, bounded exits): when a domain ends
//! with console output still queued in the hypervisor (up to 4 KiB), that
//! output is no longer printed synchronously in the exit that ends it: it
//! and the lines about the domain's end go to a leftover list that exits
//! and idle CPUs drain through the transmit ring (`console/live.rs`).
//! These runs check that nothing is lost or reordered by that.
//!
//! One run per backend, one CPU: three `lastwords` guests that print
//! numbered lines as fast as their queues take them and end right after
//! the last write (`a`: 300 lines then exit 0, `b`: 300 lines then exit 3,
//! `c`: 40 lines, less than one write), beside a console `flood` that
//! keeps the transmit ring busy so that their output is still queued when
//! they end.
//!
//! | test | asserts |
//! |---|---|
//! | `lastwords_*_all_lines_in_order` | each guest's lines are exactly `0..N` in order, and its `domain ... exited with code` line and then its `domain-end:` line come after its last line |

use boot_tests::artifacts::{self, guest_module};
use boot_tests::bochs::{self, Pc};
use boot_tests::domains::{ReportOnPanic, said};
use boot_tests::guest_run::Shared;
use boot_tests::qemu::{BIOS_TIMEOUT_S, iso_vm, run_until};
use boot_tests::{Backend, Outcome};

/// (name, lines, exit code)
const GUESTS: [(&str, u64, i64); 3] = [
    ("lastwords-a", 300, 0),
    ("lastwords-b", 300, 3),
    ("lastwords-c", 40, 0),
];

fn the_run(b: Backend) -> &'static Outcome {
    static RUNS: Shared = Shared::new();
    RUNS.get(b, || {
        let mut modules: Vec<_> = GUESTS
            .iter()
            .map(|(name, lines, code)| {
                guest_module("lastwords", name, &format!("lines={lines} code={code}"))
            })
            .collect();
        modules.push(guest_module(
            "flood",
            "flood-console",
            "kind=console start_ms=0 ms=300",
        ));
        let iso = artifacts::shared_iso(
            &format!("lastwords-{}.iso", b.suffix()),
            &format!("{} shutdown loglevel=info", b.exit()),
            &modules,
        );
        let test = format!("lastwords_{}", b.suffix());
        let o = match b {
            Backend::Svm => run_until(&test, iso_vm(&iso, 1, "128M"), BIOS_TIMEOUT_S, None),
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
            assert!(
                o.all_ended().is_some(),
                "{}: no `domains: all ... ended` line",
                o.test
            );
        }
        o
    })
}

fn all_lines_in_order(b: Backend) {
    let o = the_run(b);
    let _report = ReportOnPanic(o);
    o.assert_domain("flood-console", "exited", 0);
    for (name, lines, code) in GUESTS {
        let d = o.assert_domain(name, "exited", code);
        let got = said(o, &d, "lastwords");
        let want: Vec<String> = (0..lines)
            .map(|k| {
                let mut l = format!("{k:5} of {lines:5} ");
                while l.len() < 60 - "lastwords: ".len() {
                    l.push('.');
                }
                l
            })
            .collect();
        assert_eq!(
            got.len(),
            want.len(),
            "{}: {name} printed {} of its {lines} lines",
            o.test,
            got.len()
        );
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{}: {name}'s line {k}", o.test);
        }
        let tag = format!("[dom{} {name}] ", d.id);
        let last = o
            .lines
            .iter()
            .rposition(|l| l.contains(&tag))
            .unwrap_or_else(|| panic!("{}: {name} printed nothing", o.test));
        let exited = o
            .lines
            .iter()
            .position(|l| l.contains(&format!("domain {} ({name}) exited with code {code}", d.id)))
            .unwrap_or_else(|| panic!("{}: no `exited` line for {name}", o.test));
        let end = o
            .lines
            .iter()
            .position(|l| l.contains(&format!("domain-end: id={} ", d.id)))
            .unwrap_or_else(|| panic!("{}: no domain-end line for {name}", o.test));
        println!(
            "{}: {name}: {lines} lines, last at line {last}, `exited` at {exited}, domain-end at {end}",
            o.test
        );
        assert!(
            last < exited && exited < end,
            "{}: {name}: its last console line ({last}), its `exited` line ({exited}) and its domain-end line ({end}) are out of order",
            o.test
        );
    }
}

#[test]
fn lastwords_amdv_all_lines_in_order() {
    all_lines_in_order(Backend::Svm);
}

#[test]
fn lastwords_vtx_all_lines_in_order() {
    all_lines_in_order(Backend::Vmx);
}
