//! Lifecycle control (issue 15): graceful shutdown and reboot with a
//! forced end after a timeout, end policies with a restart-loop guard,
//! and run-time scheduler changes, through the real dom0 and `hvctl`.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `dom0_{qemu,bochs}_policies` | 2 CPUs, 128 MiB; `crashy` (ticker, `end=crash`, `on_crash = "restart"`) and `reboots` (ticker, `end=reboot`, `on_reboot` default `restart`) | each is restarted exactly 3 times under the same name with new ids (`RESTART_LIMIT`), then dom0 says it is not restarted again and preserves it; the hypervisor ended each run `crashed` / `rebooted` (`SHUTDOWN_REBOOT`) |
//! | `dom0_qemu_lifecycle` | QEMU (COM2 is a socket for `hvctl`), `polite`, `stubborn` (`ignore_shutdown`) and `rebooter`, tickers | `hvctl sched polite --weight 512 --cap 50` changes what `hvctl info` shows and the hypervisor logs it; `hvctl shutdown polite` returns 0 once the guest, woken by `VIRQ_SHUTDOWN`, powered itself off (`result=exited`); `hvctl shutdown stubborn --timeout 1` exits 5 (`forced`) after dom0 destroyed the guest that ignored the request, and `info` reports reason `forced`; `hvctl reboot rebooter` returns once it ended `rebooted` and names the domain that replaced it |

use boot_tests::Backend;
use boot_tests::artifacts::guest_module;
use boot_tests::domains::ReportOnPanic;
use boot_tests::mgmt::{config_module, hvctl_cmd, hvctl_info, mgmt_vm, wait_for_line};
use boot_tests::qemu::BIOS_TIMEOUT_S;
use boot_tests::scaled;
use boot_tests::session::{END_LINE, Machine, assert_survived};

use super::boot;

/// `crashy` crashes after one short tick, every time; `reboots` asks to
/// be rebooted after three ticks (slower, so `crashy` reaches its limit
/// first and the run can stop at `reboots`' limit).
const LOOPING: &str = "[[domain]]\nname = \"crashy\"\nimage = \"ticker\"\nmemory = 4\n\
cmdline = \"every_ms=10 count=1 end=crash code=9\"\non_crash = \"restart\"\n\n\
[[domain]]\nname = \"reboots\"\nimage = \"ticker\"\nmemory = 4\n\
cmdline = \"every_ms=100 count=3 end=reboot\"\n";

fn policies(b: Backend) {
    let test = format!("dom0_{}_policies", b.suffix());
    let o = boot(
        &test,
        b,
        LOOPING,
        &["dom0: domain ", "(reboots) asked to reboot: not restarted"],
    );
    let _report = ReportOnPanic(&o);
    for (name, how, result, code) in [
        ("crashy", "crashed", "crashed", 9),
        ("reboots", "asked to reboot", "rebooted", 0),
    ] {
        let restarts: Vec<&String> = o
            .lines
            .iter()
            .filter(|l| {
                l.starts_with("dom0: domain ")
                    && l.contains(&format!("({name}) {how}: restarted as domain "))
            })
            .collect();
        assert_eq!(restarts.len(), 3, "{test}: {name} restarts: {restarts:#?}");
        let guard = o
            .lines
            .iter()
            .find(|l| l.contains(&format!("({name}) {how}: not restarted: it was restarted 3 times in the last 60.0 s (the limit); preserved")));
        assert!(guard.is_some(), "{test}: no restart-limit line for {name}");
        // Four runs, each with a new id, each ended by the guest itself.
        let ends: Vec<&String> = o
            .lines
            .iter()
            .filter(|l| l.starts_with("domain-end: ") && l.contains(&format!(" name={name} ")))
            .collect();
        assert_eq!(ends.len(), 4, "{test}: {name} ends: {ends:#?}");
        for e in &ends {
            assert!(
                e.contains(&format!(" result={result} code={code} ")),
                "{test}: {e}"
            );
        }
        let mut ids: Vec<&str> = ends
            .iter()
            .filter_map(|e| e.split(" id=").nth(1)?.split(' ').next())
            .collect();
        ids.dedup();
        assert_eq!(ids.len(), 4, "{test}: {name} ids {ids:?}");
    }
}

#[test]
fn dom0_qemu_policies() {
    policies(Backend::Svm);
}

#[test]
fn dom0_bochs_policies() {
    policies(Backend::Vmx);
}

const TEST: &str = "dom0_qemu_lifecycle";
const THREE: &str = "[[domain]]\nname = \"polite\"\nimage = \"ticker\"\nmemory = 4\ncmdline = \"every_ms=100\"\n\n\
[[domain]]\nname = \"stubborn\"\nimage = \"ticker\"\nmemory = 4\ncmdline = \"every_ms=100 ignore_shutdown\"\n\n\
[[domain]]\nname = \"rebooter\"\nimage = \"ticker\"\nmemory = 4\ncmdline = \"every_ms=100\"\n";
fn id_of(sock: &std::path::Path, name: &str) -> u64 {
    hvctl_info(sock, name)["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("{TEST}: no id for {name}"))
}

fn session(sock: &std::path::Path, log: &std::path::Path) {
    wait_for_line(log, "dom0: ready:", scaled(90))
        .unwrap_or_else(|| panic!("{TEST}: dom0 never ready"));
    for n in ["polite", "stubborn", "rebooter"] {
        wait_for_line(log, &format!("[{n}] ticker: tick 1"), scaled(60))
            .unwrap_or_else(|| panic!("{TEST}: {n} never ticked"));
    }
    // sched: the new values reach the hypervisor and `info`.
    let polite = id_of(sock, "polite");
    let (code, out, err) = hvctl_cmd(sock, &["sched", "polite", "--weight", "512", "--cap", "50"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            format!("domain {polite} (polite): weight 512, cap 50%\n").as_str()
        ),
        "{err}"
    );
    let (code, out, _) = hvctl_cmd(sock, &["info", "polite"]);
    assert!(
        code == 0
            && out.contains("weight:    512\n")
            && out.contains("cap:       50% of one CPU\n"),
        "{out}"
    );
    wait_for_line(
        log,
        &format!("domain {polite} (polite): weight=512 cap=50"),
        scaled(10),
    )
    .unwrap_or_else(|| panic!("{TEST}: the hypervisor did not log the change"));

    // A guest that honours the request ends by itself: exit 0.
    let (code, out, err) = hvctl_cmd(sock, &["shutdown", "polite", "--timeout", "30"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            format!("domain {polite} (polite) ended: exited with code 0\n").as_str()
        ),
        "{err}"
    );
    wait_for_line(
        log,
        "[polite] ticker: poweroff requested after ",
        scaled(10),
    )
    .unwrap_or_else(|| panic!("{TEST}: polite did not see the request"));
    wait_for_line(
        log,
        &format!("domain-end: id={polite} name=polite result=exited code=0 "),
        scaled(10),
    )
    .unwrap_or_else(|| panic!("{TEST}: polite did not power off"));

    // A guest that ignores it is destroyed when the timeout passes: exit 5.
    let stubborn = id_of(sock, "stubborn");
    let (code, out, err) = hvctl_cmd(sock, &["shutdown", "stubborn", "--timeout", "1"]);
    assert_eq!(code, 5, "{out}{err}");
    assert_eq!(
        err,
        format!(
            "hvctl: domain {stubborn} (stubborn) did not end within 1.0 s of the shutdown request: \
             dom0 destroyed it (forced)\n"
        )
    );
    wait_for_line(
        log,
        "[stubborn] ticker: ignoring the poweroff request",
        scaled(5),
    )
    .unwrap_or_else(|| panic!("{TEST}: stubborn did not see the request"));
    wait_for_line(
        log,
        &format!("dom0: domain {stubborn} (stubborn) did not end within 1.0 s of the poweroff request: destroyed (forced)"),
        scaled(5),
    )
    .unwrap_or_else(|| panic!("{TEST}: dom0 did not say it forced stubborn"));
    let info = hvctl_info(sock, &stubborn.to_string());
    assert_eq!(
        (info["state"].as_str(), info["reason"].as_str()),
        (Some("ended"), Some("forced")),
        "{info}"
    );

    // reboot: the guest ends itself with SHUTDOWN_REBOOT, on_reboot
    // (restart, the default) builds it again under a new id.
    let rebooter = id_of(sock, "rebooter");
    let (code, out, err) = hvctl_cmd(sock, &["reboot", "rebooter"]);
    assert_eq!(code, 0, "{out}{err}");
    let new = id_of(sock, "rebooter");
    assert_ne!(new, rebooter, "{out}");
    assert_eq!(
        out,
        format!(
            "domain {rebooter} (rebooter) ended: rebooted with code 0\nrestarted as domain {new} (rebooter)\n"
        )
    );
    wait_for_line(
        log,
        &format!("domain-end: id={rebooter} name=rebooter result=rebooted code=0 "),
        scaled(5),
    )
    .unwrap_or_else(|| panic!("{TEST}: rebooter did not end rebooted"));
    wait_for_line(
        log,
        &format!("[rebooter] ticker: started, domain {new},"),
        scaled(30),
    )
    .unwrap_or_else(|| panic!("{TEST}: the restarted rebooter never started"));
}

#[test]
fn dom0_qemu_lifecycle() {
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        guest_module("ticker", "ticker", ""),
        config_module(TEST, THREE),
    ];
    let (vm, sock, log) = mgmt_vm(TEST, &modules);
    let qemu = Machine::qemu(TEST, vm, BIOS_TIMEOUT_S, END_LINE);
    let (o, ()) = qemu.session(&sock, TEST, || session(&sock, &log));
    let _report = ReportOnPanic(&o);
    assert_survived(&o, TEST);
}
