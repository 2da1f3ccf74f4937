//! dom0 tells a crash from a kill (issue 15). `dom0_{qemu,bochs}_crash_or_kill`:
//! `crashy` (ticker, `end=crash code=9`: the guest says it crashed,
//! `HC_SHUTDOWN` with `SHUTDOWN_CRASH`) and `tri` (the `triple` guest: a
//! triple fault, so the hypervisor kills it).
//!
//! | asserts |
//! |---|
//! | dom0 logs `domain N (tri) ended: killed by the hypervisor: triple fault at RIP ...` (the reason the hypervisor gave, read with `DOMCTL_INFO_REASON`) and `domain M (crashy) ended: crashed (the guest said so) with code 9`; the hypervisor ended them `killed` and `crashed` |

use boot_tests::Backend;
use boot_tests::artifacts::guest_module;
use boot_tests::domains::ReportOnPanic;

use super::boot_with;

/// `tri` dies at once; `crashy` ticks once after 300 ms, then crashes, so
/// its end is the last line awaited.
const CONFIG: &str = "[[domain]]\nname = \"tri\"\nimage = \"triple\"\nmemory = 4\n\n\
[[domain]]\nname = \"crashy\"\nimage = \"ticker\"\nmemory = 4\n\
cmdline = \"every_ms=300 count=1 end=crash code=9\"\n";

fn crash_or_kill(b: Backend) {
    let test = format!("dom0_{}_crash_or_kill", b.suffix());
    let o = boot_with(
        &test,
        b,
        CONFIG,
        &["dom0: domain ", "(crashy) ended: "],
        &[guest_module("triple", "triple", "")],
    );
    let _report = ReportOnPanic(&o);
    let line = |name: &str| {
        o.lines
            .iter()
            .find_map(|l| {
                let rest = l.strip_prefix("dom0: domain ")?;
                rest.split_once(&format!("({name}) ended: "))
                    .map(|(_, how)| how.to_string())
            })
            .unwrap_or_else(|| panic!("{test}: dom0 never said how {name} ended"))
    };
    let tri = line("tri");
    assert!(
        tri.starts_with("killed by the hypervisor: triple fault at RIP 0x"),
        "{test}: {tri}"
    );
    let crashy = line("crashy");
    assert!(
        crashy.starts_with("crashed (the guest said so) with code 9 after "),
        "{test}: {crashy}"
    );
    for (name, result) in [("tri", "killed"), ("crashy", "crashed")] {
        assert!(
            o.lines.iter().any(|l| l.starts_with("domain-end: ")
                && l.contains(&format!(" name={name} result={result} "))),
            "{test}: no domain-end line for {name} with result={result}"
        );
    }
}

#[test]
fn dom0_qemu_crash_or_kill() {
    crash_or_kill(Backend::Svm);
}

#[test]
fn dom0_bochs_crash_or_kill() {
    crash_or_kill(Backend::Vmx);
}
