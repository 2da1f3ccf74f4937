//! `dom0_qemu_events`: ready for a fleet engine (issue 15), QEMU only
//! (COM2 is a QEMU chardev socket).
//!
//! | asserts |
//! |---|
//! | `hvctl events` (subscribed: it says so on stderr) sees, for a domain another client creates, pauses, unpauses and destroys, exactly `created`, `started`, `paused`, `unpaused`, `ended` (reason `destroyed`), in that order, each with the same generated version 4 UUID; the configured domain lists the UUID its configuration gave (in lower case) and `hvctl info <UUID>` finds it; a domain restarted by its `on_reboot` policy keeps its UUID (every `list` entry of that name, live and ended, has the same one) |

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use boot_tests::artifacts::{guest_module, hvctl};
use boot_tests::domains::ReportOnPanic;
use boot_tests::mgmt::{hvctl_info, hvctl_list, input_file};
use boot_tests::qemu::{BIOS_TIMEOUT_S, run_until};
use boot_tests::scaled;

use super::{config_module, hvctl_cmd, mgmt_vm, wait_for_line};

const TEST: &str = "dom0_qemu_events";
const GIVEN: &str = "123e4567-e89b-42d3-a456-426614174000";
const CONFIG: &str = "[[domain]]\nname = \"given\"\nimage = \"echo\"\nmemory = 4\n\
uuid = \"123E4567-E89B-42D3-A456-426614174000\"\n";
const EV: &str = "[[domain]]\nname = \"ev\"\nimage = \"echo\"\nmemory = 4\n";
/// Asks to be rebooted after one tick; `on_reboot` is `restart` by default.
const RB: &str = "[[domain]]\nname = \"rb\"\nimage = \"ticker\"\nmemory = 4\n\
cmdline = \"every_ms=300 count=1 end=reboot\"\n";
const END: &str = "[[domain]]\nname = \"end\"\nimage = \"echo\"\nmemory = 4\n";

fn is_v4(u: &str) -> bool {
    u.len() == 36
        && u.as_bytes().get(14) == Some(&b'4')
        && matches!(u.as_bytes().get(19), Some(b'8' | b'9' | b'a' | b'b'))
        && u.chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
}

fn events_of_a_domain(sock: &std::path::Path) {
    let mut child = Command::new(hvctl())
        .arg("--socket")
        .arg(sock)
        .arg("events")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("hvctl events: {e}"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let (tx, rx) = mpsc::channel();
    let said = tx.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = said.send(format!("stderr: {l}"));
        }
    });
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let first = rx.recv_timeout(scaled(30));
    assert!(
        first
            .as_deref()
            .is_ok_and(|l| l.starts_with("stderr: hvctl: subscribed")),
        "hvctl events: {first:?}"
    );
    let f = input_file(TEST, "ev.toml", EV);
    for args in [
        vec!["create", f.to_str().unwrap_or("")],
        vec!["pause", "ev"],
        vec!["unpause", "ev"],
        vec!["destroy", "ev"],
    ] {
        let (code, out, err) = hvctl_cmd(sock, &args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    }
    let mut seen: Vec<serde_json::Value> = Vec::new();
    let end = Instant::now() + scaled(30);
    while Instant::now() < end {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["event"], "domain", "{line}");
        if v["name"] == "ev" {
            let ended = v["change"] == "ended";
            seen.push(v);
            if ended {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let changes: Vec<&str> = seen.iter().filter_map(|v| v["change"].as_str()).collect();
    assert_eq!(
        changes,
        ["created", "started", "paused", "unpaused", "ended"],
        "{seen:#?}"
    );
    let uuid = seen[0]["uuid"].as_str().unwrap_or("");
    assert!(is_v4(uuid), "generated: {uuid:?}");
    assert!(seen.iter().all(|v| v["uuid"] == uuid), "{seen:#?}");
    assert_eq!(seen[4]["reason"], "destroyed", "{seen:#?}");
}

fn uuids(sock: &std::path::Path, log: &std::path::Path) {
    let given = hvctl_info(sock, GIVEN);
    assert_eq!(
        (given["name"].as_str(), given["uuid"].as_str()),
        (Some("given"), Some(GIVEN))
    );
    let f = input_file(TEST, "rb.toml", RB);
    let (code, out, err) = hvctl_cmd(sock, &["create", f.to_str().unwrap_or("")]);
    assert_eq!(code, 0, "create rb: {out}{err}");
    assert!(
        wait_for_line(log, "(rb) asked to reboot: restarted as domain", scaled(60)).is_some(),
        "rb was never restarted"
    );
    let rb: Vec<serde_json::Value> = hvctl_list(sock)
        .into_iter()
        .filter(|d| d["name"] == "rb")
        .collect();
    assert!(rb.len() >= 2, "a live rb and an ended one: {rb:#?}");
    let uuid = rb[0]["uuid"].as_str().unwrap_or("");
    assert!(is_v4(uuid) && uuid != GIVEN, "{rb:#?}");
    assert!(
        rb.iter().all(|d| d["uuid"] == uuid),
        "the same across restarts: {rb:#?}"
    );
}

#[test]
fn dom0_qemu_events() {
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("echo", "echo", ""),
        guest_module("ticker", "ticker", ""),
        config_module(TEST, CONFIG),
    ];
    let (vm, sock, log) = mgmt_vm(TEST, &modules);
    let qemu = std::thread::spawn(move || {
        run_until(TEST, vm, BIOS_TIMEOUT_S * 3, Some(&["[end] echo: ready"]))
    });
    let session = std::panic::catch_unwind(|| {
        wait_for_line(&log, "[given] echo: ready", scaled(90))
            .unwrap_or_else(|| panic!("{TEST}: the echo guest never became ready"));
        events_of_a_domain(&sock);
        uuids(&sock, &log);
    });
    let end = input_file(TEST, "end.toml", END);
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
