//! The credit scheduler's weights and caps in a real boot, on both
//! backends: AMD-V under QEMU TCG and VT-x under Bochs
//! (`corei7_haswell_4770`), **one** CPU (so the domains compete), GRUB
//! ISO, hypervisor option `dom0`.
//!
//! Modules: `schedctl` (module 0, the control domain) and `burn` (the
//! CPU-bound image it makes domains from). `schedctl` runs two `burn`
//! domains with weights 1:3, then one capped at 25% beside an uncapped
//! hog, each for [`WINDOW_MS`] of system time, and prints their CPU time
//! over the window as the hypervisor accounts it (`HC_DOMCTL_INFO`).
//!
//! | test | asserts |
//! |---|---|
//! | `sched_*_weights` | heavy:light CPU time within 10% of 3 (parsed from `schedctl: weights ...`), the two burners had >= 90% of the window, schedctl's own checks `0 failed`, every burner exited 0 by itself and reported its own CPU time |
//! | `sched_*_cap` | the capped domain's CPU time <= 25% (+2%) of the window and >= 20%, capped + hog >= 90% |

use boot_tests::artifacts::guest_module;
use boot_tests::domains::{ReportOnPanic, said};
use boot_tests::guest_run::{GuestRun, Shared};
use boot_tests::{Backend, Outcome};

/// How long each phase measures (system time). The burners live half a
/// second longer, so a run is about 2 × (window + 0.5 s) of guest time.
const WINDOW_MS: u64 = 2000;

fn the_run(b: Backend) -> &'static Outcome {
    static RUNS: Shared = Shared::new();
    RUNS.get(b, || {
        GuestRun {
            name: "sched",
            options: "dom0",
            modules: vec![
                guest_module("schedctl", "schedctl", &format!("ms={WINDOW_MS}")),
                guest_module("burn", "burn", ""),
            ],
            cpus: 1,
            memory_mib: 128,
            stop: None,
        }
        .boot(b)
    })
}

fn figures(o: &Outcome, what: &str) -> Vec<(String, u64)> {
    let ctl = o.assert_domain("schedctl", "exited", 0);
    let lines = said(o, &ctl, "schedctl");
    let line = lines
        .iter()
        .find_map(|l| l.strip_prefix(what))
        .unwrap_or_else(|| panic!("{}: no `schedctl: {what}` line", o.test));
    println!("{}: {what}{line}", o.test);
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn get(f: &[(String, u64)], key: &str) -> u64 {
    f.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {key}= in {f:?}"))
}

fn common(o: &Outcome) {
    let ctl = o.assert_domain("schedctl", "exited", 0);
    assert_eq!(ctl.id, 1, "{}: schedctl is module 0, domain 1", o.test);
    o.assert_checks_passed(&ctl, "schedctl", 1);
    for name in ["light", "heavy", "capped", "hog"] {
        let d = o.assert_domain(name, "exited", 0);
        let own = said(o, &d, "burn");
        assert!(
            own.iter().any(|l| l.starts_with("cpu_ns=")),
            "{}: {name} did not report its CPU time: {own:?}",
            o.test
        );
    }
}

fn weights(b: Backend) {
    let o = the_run(b);
    let _report = ReportOnPanic(o);
    common(o);
    let f = figures(o, "weights ");
    let (l, h, wall) = (get(&f, "light_ns"), get(&f, "heavy_ns"), get(&f, "wall_ns"));
    assert!(l > 0, "{}: the light domain never ran", o.test);
    let ratio = h as f64 / l as f64;
    println!("{}: heavy:light = {ratio:.3} (want 3 +- 10%)", o.test);
    assert!(
        (2.7..=3.3).contains(&ratio),
        "{}: heavy:light = {ratio:.3}, not within 10% of 3",
        o.test
    );
    assert!(
        (l + h) as f64 >= 0.9 * wall as f64,
        "{}: the burners had only {l} + {h} of {wall} ns",
        o.test
    );
}

fn cap(b: Backend) {
    let o = the_run(b);
    let _report = ReportOnPanic(o);
    common(o);
    let f = figures(o, "cap ");
    let (c, h, wall) = (get(&f, "capped_ns"), get(&f, "hog_ns"), get(&f, "wall_ns"));
    let share = c as f64 / wall as f64;
    println!("{}: capped share = {:.1}% (cap 25%)", o.test, share * 100.0);
    assert!(
        share <= 0.27,
        "{}: capped domain used {:.1}% of the window, cap 25%",
        o.test,
        share * 100.0
    );
    assert!(
        share >= 0.20,
        "{}: capped domain got only {:.1}% beside the hog",
        o.test,
        share * 100.0
    );
    assert!(
        (c + h) as f64 >= 0.9 * wall as f64,
        "{}: capped + hog had only {c} + {h} of {wall} ns",
        o.test
    );
}

#[test]
fn sched_qemu_weights() {
    weights(Backend::Svm);
}

#[test]
fn sched_bochs_weights() {
    weights(Backend::Vmx);
}

#[test]
fn sched_qemu_cap() {
    cap(Backend::Svm);
}

#[test]
fn sched_bochs_cap() {
    cap(Backend::Vmx);
}
