//! `dom0_qemu_serial` (issue 15): `hvctl --serial DEVICE` for a server
//! whose only channel is a serial line (serial-over-LAN). dom0's
//! management line, COM2, is a pty here (QEMU `-chardev pty`): hvctl
//! opens the pty's slave as a serial device (raw, 115200 8N1), and its
//! relay multiplexes sessions on it as on a unix socket line.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `dom0_qemu_serial` | QEMU TCG (AMD-V), 2 CPUs, 128 MiB, COM2 a pty | `hvctl --serial PTY --json list` shows the configured `tick-s` running; two `list`s at once both answer (sessions on one device); `info tick-s` names it; `hvctl --serial PTY console tick-s` prints its ticks while a `list` beside it answers; `create` over the serial line starts the domain that ends the run |

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use boot_tests::artifacts::{guest_module, hvctl, root, shared_iso};
use boot_tests::domains::ReportOnPanic;
use boot_tests::hvconsole::ConsoleSession;
use boot_tests::mgmt::{config_module, input_file, wait_for_line};
use boot_tests::qemu::{BIOS_TIMEOUT_S, iso_vm, run_until};
use boot_tests::scaled;

const TEST: &str = "dom0_qemu_serial";

const CONFIG: &str = "[[domain]]\nname = \"tick-s\"\nimage = \"ticker\"\nmemory = 4\n";
const END: &str =
    "[[domain]]\nname = \"end\"\nimage = \"hello\"\nmemory = 4\ncmdline = \"kestrel-test-end\"\n";

/// Runs `hvctl --serial DEV ARGS...`: exit status, stdout, stderr.
fn hvctl_serial(dev: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(hvctl())
        .arg("--serial")
        .arg(dev)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running hvctl: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The pty QEMU made for COM2: its "char device redirected to /dev/pts/N
/// (label mgmt)" line in the run's QEMU log.
fn pty_of(qemu_log: &Path, timeout: Duration) -> PathBuf {
    let end = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(qemu_log).unwrap_or_default();
        if let Some(p) = text.lines().find_map(|l| {
            l.strip_prefix("char device redirected to ")?
                .strip_suffix(" (label mgmt)")
        }) {
            return PathBuf::from(p);
        }
        assert!(
            Instant::now() < end,
            "{TEST}: QEMU named no pty for COM2 in {}: {text}",
            qemu_log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn names(list_json: &str) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(list_json).unwrap_or_else(|e| panic!("{e}: {list_json}"));
    v["domains"]
        .as_array()
        .unwrap_or_else(|| panic!("no domains: {list_json}"))
        .iter()
        .map(|d| format!("{}:{}", d["name"].as_str().unwrap_or("?"), d["state"]))
        .collect()
}

fn session(pty: &Path, log: &Path) {
    wait_for_line(log, "[tick-s] ticker: tick ", scaled(90))
        .unwrap_or_else(|| panic!("{TEST}: tick-s never ticked"));
    let (code, out, err) = hvctl_serial(pty, &["--json", "list"]);
    assert_eq!(code, 0, "hvctl --serial list: {out}{err}");
    assert!(
        names(&out).contains(&"tick-s:\"running\"".to_string()),
        "{TEST}: {out}"
    );
    // Two clients at once on the one device: each its own session.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| hvctl_serial(pty, &["--json", "list"]));
        let b = s.spawn(|| hvctl_serial(pty, &["--json", "list"]));
        (
            a.join().unwrap_or_else(|_| panic!("list thread")),
            b.join().unwrap_or_else(|_| panic!("list thread")),
        )
    });
    assert_eq!((a.0, b.0), (0, 0), "{TEST}: {a:?} {b:?}");
    assert_eq!(names(&a.1), names(&b.1), "{TEST}");
    let (code, out, err) = hvctl_serial(pty, &["info", "tick-s"]);
    assert_eq!(code, 0, "hvctl --serial info: {out}{err}");
    assert!(out.contains("tick-s"), "{TEST}: {out}");
    // An attached console does not block a request beside it.
    let mut con = ConsoleSession::attach_with(&["--serial"], pty, "tick-s");
    con.wait_for("ticker: tick ", scaled(30))
        .unwrap_or_else(|| panic!("{TEST}: no tick on the console: {:?}", con.text()));
    let (code, out, err) = hvctl_serial(pty, &["--json", "list"]);
    assert_eq!(code, 0, "list beside a console: {out}{err}");
    let _ = con.close(scaled(10));
    let end = input_file(TEST, "end.toml", END);
    let (code, out, err) = hvctl_serial(pty, &["create", end.to_str().unwrap_or("")]);
    assert_eq!(code, 0, "hvctl --serial create: {out}{err}");
}

#[test]
fn dom0_qemu_serial() {
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        guest_module("ticker", "ticker", ""),
        config_module(TEST, CONFIG),
    ];
    let run_dir = root().join("runs").join(TEST);
    // A stale QEMU log must not name an old pty.
    let _ = std::fs::remove_dir_all(&run_dir);
    let iso = shared_iso(
        &format!("{TEST}.iso"),
        "exit=qemu dom0 loglevel=info",
        &modules,
    );
    let mut vm = iso_vm(&iso, 2, "128M");
    vm.cpu = "max".into();
    vm.extra.push("-chardev".into());
    vm.extra.push("pty,id=mgmt".into());
    vm.extra.push("-serial".into());
    vm.extra.push("chardev:mgmt".into());
    let qemu = std::thread::spawn(move || {
        run_until(
            TEST,
            vm,
            BIOS_TIMEOUT_S,
            Some(&["[end] hello from", "kestrel-test-end"]),
        )
    });
    let log = run_dir.join("serial.log");
    let result = std::panic::catch_unwind(|| {
        let pty = pty_of(&run_dir.join("qemu.log"), scaled(60));
        session(&pty, &log);
    });
    let o = qemu
        .join()
        .unwrap_or_else(|_| panic!("the QEMU thread panicked"));
    let _report = ReportOnPanic(&o);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert_eq!(o.ended, xtask::runner::Ended::Stopped, "{TEST}");
    o.expect_line("[end] hello from");
}
