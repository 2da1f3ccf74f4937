//! What ended is not forgotten (issue 15). `dom0_{qemu,bochs}_ended`: dom0
//! reports each domain that ends with how it ended, read back from the
//! hypervisor after the domain was freed (`HC_DOMCTL_INFO` with
//! `DOMCTL_INFO_ENDED`). `dom0_qemu_history`: `hvctl list` keeps ended
//! domains (state `ended`, exit code, reason) until `hvctl forget`.

use boot_tests::Backend;
use boot_tests::artifacts::guest_module;
use boot_tests::domains::ReportOnPanic;
use boot_tests::qemu::{BIOS_TIMEOUT_S, run_until};
use boot_tests::scaled;

use super::{boot, config_module, hvctl_cmd, mgmt_vm, wait_for_line};

/// `hello-a` exits 0 at once; `t7` ticks twice, then exits with code 7.
const ENDING: &str = "[[domain]]\nname = \"hello-a\"\nimage = \"hello\"\nmemory = 4\n\n\
[[domain]]\nname = \"t7\"\nimage = \"ticker\"\nmemory = 4\ncmdline = \"every_ms=50 count=2 code=7\"\n";

fn ended(b: Backend) {
    let test = format!("dom0_{}_ended", b.suffix());
    let o = boot(&test, b, ENDING, &["dom0: domain 3 (t7) ended: "]);
    let _report = ReportOnPanic(&o);
    o.assert_domain("hello-a", "exited", 0);
    o.assert_domain("t7", "exited", 7);
    let line = |prefix: &str| {
        o.lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix).map(str::to_string))
            .unwrap_or_else(|| panic!("{test}: no line {prefix:?}"))
    };
    let hello = line("dom0: domain 2 (hello-a) ended: ");
    assert!(hello.starts_with("exited with code 0 after "), "{hello}");
    let t7 = line("dom0: domain 3 (t7) ended: ");
    assert!(t7.starts_with("exited with code 7 after "), "{t7}");
    // Two ticks of 50 ms: at least 0.1 s, counted from when dom0 created
    // it (it used to count from dom0's first listing, and a domain that
    // had already ended got 0.0 s: issue 15's race).
    let secs: f64 = t7
        .split(" after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no uptime in {t7}"));
    assert!(secs >= 0.1, "{test}: uptime {secs} s: {t7}");
}

#[test]
fn dom0_qemu_ended() {
    ended(Backend::Svm);
}

#[test]
fn dom0_bochs_ended() {
    ended(Backend::Vmx);
}

const TEST: &str = "dom0_qemu_history";
const END: &str =
    "[[domain]]\nname = \"end\"\nimage = \"hello\"\nmemory = 4\ncmdline = \"kestrel-test-end\"\n";

/// `(name, state, exit_code, reason)` of every domain `hvctl --json list` shows.
fn list(sock: &std::path::Path) -> Vec<(String, String, Option<i64>, String)> {
    boot_tests::mgmt::hvctl_list(sock)
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or("?").to_string(),
                d["state"].as_str().unwrap_or("?").to_string(),
                d["exit_code"].as_i64(),
                d["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn dom0_qemu_history() {
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        guest_module("ticker", "ticker", ""),
        config_module(TEST, ENDING),
    ];
    let (vm, sock, log) = mgmt_vm(TEST, &modules);
    let qemu = std::thread::spawn(move || {
        run_until(
            TEST,
            vm,
            BIOS_TIMEOUT_S,
            Some(&["[end] hello from", "kestrel-test-end"]),
        )
    });
    let session = std::panic::catch_unwind(|| {
        wait_for_line(&log, "dom0: domain 3 (t7) ended: ", scaled(90))
            .unwrap_or_else(|| panic!("{TEST}: t7 never ended"));
        let want = |l: &[(String, String, Option<i64>, String)], name: &str| {
            l.iter()
                .find(|d| d.0 == name)
                .map(|d| (d.1.clone(), d.2, d.3.clone()))
        };
        let l = list(&sock);
        assert_eq!(
            want(&l, "t7"),
            Some(("ended".into(), Some(7), "exited".into())),
            "{l:?}"
        );
        assert_eq!(
            want(&l, "hello-a"),
            Some(("ended".into(), Some(0), "exited".into())),
            "{l:?}"
        );
        let (code, out, err) = hvctl_cmd(&sock, &["info", "t7"]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("state:     ended\n") && out.contains("exit code: 7\n"),
            "{out}"
        );
        let (code, out, _) = hvctl_cmd(&sock, &["list"]);
        assert!(code == 0 && out.contains("ended (exited 7)"), "{out}");
        // dom0's log and t7's console, kept in dom0's memory after it ended.
        let (code, out, err) = hvctl_cmd(&sock, &["log"]);
        assert!(
            code == 0
                && out.contains("domain 3 (t7) started from guests.toml\n")
                && out.contains("domain 3 (t7) ended: exited with code 7 after "),
            "log: {out}{err}"
        );
        let (code, out, err) = hvctl_cmd(&sock, &["console", "--history", "t7"]);
        assert!(
            code == 0
                && out.starts_with("ticker: started, domain 3")
                && out.contains("ticker: tick 2\nticker: 2 ticks in "),
            "console history: {out}{err}"
        );
        let (code, out, err) = hvctl_cmd(&sock, &["host"]);
        let v = format!(
            "{}.{}",
            pvabi::version_major(pvabi::PVABI_VERSION),
            pvabi::version_minor(pvabi::PVABI_VERSION)
        );
        assert!(
            code == 0
                && out.starts_with("cpus:        2\n")
                && out.contains("(2 ended listed)")
                && out.contains(&format!("pvabi:       {v} (dom0), {v} (hypervisor)")),
            "host: {out}{err}"
        );
        let (code, out, err) = hvctl_cmd(&sock, &["top", "--every", "0.2"]);
        assert!(
            code == 0 && out.lines().any(|l| l.starts_with("  1  dom0 ")),
            "top: {out}{err}"
        );
        let (code, out, err) = hvctl_cmd(&sock, &["forget", "t7"]);
        assert_eq!((code, out.as_str()), (0, "forgot domain t7\n"), "{err}");
        let l = list(&sock);
        assert_eq!(want(&l, "t7"), None, "forgotten: {l:?}");
        assert!(want(&l, "hello-a").is_some(), "{l:?}");
        let (code, _, err) = hvctl_cmd(&sock, &["forget", "dom0"]);
        assert!(code == 1 && err.contains("has not ended"), "{err}");
    });
    let end = boot_tests::mgmt::input_file(TEST, "end.toml", END);
    let _ = hvctl_cmd(&sock, &["create", end.to_str().unwrap_or("")]);
    let o = qemu
        .join()
        .unwrap_or_else(|_| panic!("the QEMU thread panicked"));
    let _report = ReportOnPanic(&o);
    if let Err(e) = session {
        std::panic::resume_unwind(e);
    }
    assert_eq!(o.ended, xtask::runner::Ended::Stopped, "{TEST}");
}
