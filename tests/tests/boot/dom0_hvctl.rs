//! `dom0_qemu_hvctl`: the real `hvctl` against dom0's management service
//! on COM2, a QEMU chardev socket (QEMU only: see docs/testing.md).

use std::time::Duration;

use boot_tests::artifacts::guest_module;
use boot_tests::domains::ReportOnPanic;
use boot_tests::mgmt::{hvctl_list, input_file};
use boot_tests::qemu::BIOS_TIMEOUT_S;
use boot_tests::scaled;
use boot_tests::session::{END_LINE, Machine, expect};

use super::{config_module, hvctl_cmd, mgmt_vm, wait_for_line};

const TEST: &str = "dom0_qemu_hvctl";

const THREE: &str = r#"[[domain]]
name = "tick-a"
image = "ticker"
memory = 4

[[domain]]
name = "tick-b"
image = "ticker"
memory = 4

[[domain]]
name = "tick-c"
image = "ticker"
memory = 4
"#;

const FOURTH: &str =
    "[[domain]]\nname = \"tick-d\"\nimage = \"ticker\"\nmemory = 8\ncmdline = \"note=fourth\"\n";
/// The second domain cannot fit in 128 MiB: the first must go again.
const TOO_BIG: &str = "[[domain]]\nname = \"fits\"\nimage = \"ticker\"\nmemory = 4\n\n[[domain]]\nname = \"huge\"\nimage = \"ticker\"\nmemory = 1024\n";
/// `(name, state)` of every domain `hvctl --json list` shows.
fn list(sock: &std::path::Path) -> Vec<(String, String)> {
    hvctl_list(sock)
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or("?").to_string(),
                d["state"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

fn free_bytes(line: &str, key: &str) -> u64 {
    line.split(key)
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

fn last_tick(log: &std::path::Path, name: &str) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let prefix = format!("[{name}] ticker: tick ");
    text.lines()
        .filter_map(|l| l.trim_end().strip_prefix(prefix.as_str())?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// Speaks to the service through the relay hvctl started (`<sock>.mux`):
/// bad lines get errors, then good ones are answered.
fn raw_session(sock: &std::path::Path) {
    use std::io::{BufRead, BufReader, Write};
    let mut mux = sock.as_os_str().to_owned();
    mux.push(".mux");
    let mut s = std::os::unix::net::UnixStream::connect(&mux)
        .unwrap_or_else(|e| panic!("connecting {}.mux: {e}", sock.display()));
    s.set_read_timeout(Some(scaled(10)))
        .unwrap_or_else(|e| panic!("{e}"));
    let sent = "nonsense\n{\"id\":5,\"op\":\"fly\"}\n{\"id\":6,\"op\":\"list\"}\n\
                {\"id\":7,\"op\":\"hello\",\"version\":1,\"client\":\"raw\"}\n\
                {\"id\":8,\"op\":\"destroy\",\"domain\":1}\n";
    s.write_all(sent.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut r = BufReader::new(s);
    let mut got = Vec::new();
    for _ in 0..5 {
        let mut line = String::new();
        r.read_line(&mut line)
            .unwrap_or_else(|e| panic!("reading a reply: {e} ({got:?})"));
        got.push(line.trim_end().to_string());
    }
    let want = [
        ("\"id\":null", "bad_request"),
        ("\"id\":5", "bad_request"),
        // Each session needs its own hello.
        ("\"id\":6", "version_mismatch"),
        ("\"id\":7", "\"kind\":\"hello\""),
        ("\"id\":8", "bad_state"),
    ];
    for (line, (id, what)) in got.iter().zip(want) {
        assert!(
            line.contains(id) && line.contains(what),
            "{line:?} should hold {id} and {what}"
        );
    }
}

#[test]
fn dom0_qemu_hvctl() {
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        guest_module("ticker", "ticker", ""),
        config_module(TEST, THREE),
    ];
    let (vm, sock, log) = mgmt_vm(TEST, &modules);
    let qemu = Machine::qemu(TEST, vm, BIOS_TIMEOUT_S, END_LINE);
    let (o, ()) = qemu.session(&sock, TEST, || {
        let ready = expect(TEST, &log, "dom0: ready: ", 90, "dom0 never became ready");
        assert!(ready.contains("management on COM2"), "{ready}");
        let names = |l: &[(String, String)]| {
            l.iter()
                .map(|(n, s)| format!("{n}:{s}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&list(&sock)),
            [
                "dom0:running",
                "tick-a:running",
                "tick-b:running",
                "tick-c:running"
            ]
        );

        // Lines that are not requests get protocol errors; the line stays usable.
        raw_session(&sock);

        // A fourth domain at run time.
        let fourth = input_file(TEST, "fourth.toml", FOURTH);
        let (code, out, err) = hvctl_cmd(&sock, &["create", fourth.to_str().unwrap_or("")]);
        assert_eq!(code, 0, "create: {out}{err}");
        assert!(out.contains("tick-d"), "create: {out}");
        let created = wait_for_line(&log, "fourth.toml: done; free_bytes", scaled(10))
            .unwrap_or_else(|| panic!("no create line"));
        let before = free_bytes(&created, "before=");
        // Its 8 MiB and its nested page tables.
        let used = before - free_bytes(&created, "after=");
        assert!((8 << 20..9 << 20).contains(&used), "{created}");
        assert!(
            wait_for_line(
                &log,
                "[tick-d] ticker: started, domain 5, fourth",
                scaled(10)
            )
            .is_some()
        );

        // All or nothing: the second domain does not fit, the first goes.
        let big = input_file(TEST, "too-big.toml", TOO_BIG);
        let (code, out, err) = hvctl_cmd(&sock, &["create", big.to_str().unwrap_or("")]);
        assert_eq!(code, 1, "too big: {out}{err}");
        assert!(
            err.contains(
                "too-big.toml:6: domain \"huge\": not enough free memory: 1024 MiB asked, "
            ) && err.contains(" MiB free; nothing from ")
                && err.contains("(the domain built before it was destroyed again)")
                && !err.contains("(no_resources)"),
            "too big: {err}"
        );
        // The code is for scripts: in --json output, not after the message.
        let (code, out, _) = hvctl_cmd(&sock, &["--json", "create", big.to_str().unwrap_or("")]);
        assert!(
            code == 1 && out.contains("\"code\":\"no_resources\""),
            "too big, --json: {out}"
        );
        assert_eq!(list(&sock).len(), 5, "nothing of too-big.toml is left");

        // Pause, info, unpause.
        let (code, out, err) = hvctl_cmd(&sock, &["pause", "tick-c"]);
        assert_eq!(code, 0, "pause: {out}{err}");
        let (_, out, _) = hvctl_cmd(&sock, &["--json", "info", "tick-c"]);
        assert!(out.contains("\"state\":\"paused\""), "info: {out}");
        // Its hypervisor heap budget and use (issue 12): the default
        // budget of a domain is never 0, and its records are charged.
        assert!(
            out.contains("\"heap_budget_bytes\":") && !out.contains("\"heap_budget_bytes\":0,"),
            "info: {out}"
        );
        assert!(!out.contains("\"heap_used_bytes\":0,"), "info: {out}");
        let (code, out, _) = hvctl_cmd(&sock, &["pause", "tick-c"]);
        assert_eq!(code, 1, "pausing a paused domain: {out}");
        let (code, out, err) = hvctl_cmd(&sock, &["unpause", "tick-c"]);
        assert_eq!(code, 0, "unpause: {out}{err}");
        let (code, _, err) = hvctl_cmd(&sock, &["info", "nosuch"]);
        assert_eq!(
            (code, err.as_str()),
            (1, "hvctl: dom0 refused: no domain \"nosuch\"\n")
        );

        // The console of tick-b streams (stdin closed: hvctl ends at its EOF
        // or is stopped here after a moment).
        let mut console = std::process::Command::new(boot_tests::artifacts::hvctl())
            .arg("--socket")
            .arg(&sock)
            .args(["console", "tick-b"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("hvctl console: {e}"));
        std::thread::sleep(scaled(2));
        let _ = console.kill();
        let out = console.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        let streamed = String::from_utf8_lossy(&out.stdout);
        assert!(
            streamed.contains("ticker: tick "),
            "console streamed: {streamed:?}"
        );

        // Destroy the fourth: its memory comes back, the others go on.
        let ticks = ["tick-a", "tick-b", "tick-c"].map(|n| last_tick(&log, n));
        let (code, out, err) = hvctl_cmd(&sock, &["destroy", "tick-d"]);
        assert_eq!(
            (code, out.as_str()),
            (0, "destroyed domain 5 (tick-d)\n"),
            "destroy: {err}"
        );
        let destroyed = wait_for_line(&log, "dom0: destroyed domain 5 (tick-d); ", scaled(10))
            .unwrap_or_else(|| panic!("no destroy line"));
        assert_eq!(
            free_bytes(&destroyed, "after="),
            before,
            "{destroyed}: memory back"
        );
        std::thread::sleep(Duration::from_millis(1500));
        for (n, t) in ["tick-a", "tick-b", "tick-c"].iter().zip(ticks) {
            assert!(
                last_tick(&log, n) > t,
                "{n} stopped ticking after the destroy"
            );
        }
        assert_eq!(
            names(&list(&sock)),
            [
                "dom0:running",
                "tick-a:running",
                "tick-b:running",
                "tick-c:running",
                // Destroyed, still listed (issue 15): until `hvctl forget`.
                "tick-d:ended"
            ]
        );
    });
    let _report = ReportOnPanic(&o);
    assert_eq!(o.ended, xtask::runner::Ended::Stopped, "{TEST}");
    let ends = o.domain_ends();
    let d = ends
        .iter()
        .find(|d| d.name == "tick-d")
        .unwrap_or_else(|| panic!("no domain-end for tick-d"));
    assert_eq!(d.result, "destroyed");
    let fits = ends.iter().find(|d| d.name == "fits");
    assert_eq!(
        fits.map(|d| d.result.as_str()),
        Some("destroyed"),
        "the rolled-back domain"
    );
    assert!(
        !ends
            .iter()
            .any(|d| d.name.starts_with("tick-") && d.name != "tick-d")
    );
}
