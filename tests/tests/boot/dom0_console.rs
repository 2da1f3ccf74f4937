//! `dom0_qemu_console`: console input through dom0 (pvabi 1.3). The real
//! `hvctl console` types into the `echo` guest started from dom0's boot
//! configuration; the guest waits on `VIRQ_CONSOLE` (blocked with no
//! deadline, so only the virq can wake it), echoes each line and ends on
//! `quit` (QEMU only: COM2 is a QEMU chardev socket, see docs/testing.md).

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use boot_tests::artifacts::{guest_module, hvctl, test_dir};
use boot_tests::domains::ReportOnPanic;
use boot_tests::qemu::{BIOS_TIMEOUT_S, run_until};
use boot_tests::scaled;

use super::{config_module, hvctl_cmd, mgmt_vm, wait_for_line};

const TEST: &str = "dom0_qemu_console";

const CONFIG: &str = "[[domain]]\nname = \"echo-a\"\nimage = \"echo\"\nmemory = 4\n";
/// Created at the end: its greeting stops the run (after every line of
/// `echo-a` is in the log, whatever order dom0 and the hypervisor wrote them).
const END: &str = "[[domain]]\nname = \"end\"\nimage = \"echo\"\nmemory = 4\n";

/// Waits (bounded) for `child` to exit; kills it at the deadline.
fn wait_exit(mut child: Child) -> (Option<i32>, String, String) {
    let end = Instant::now() + scaled(20);
    let mut code = None;
    while Instant::now() < end {
        if let Ok(Some(status)) = child.try_wait() {
            code = status.code();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if code.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    (
        code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dom0_qemu_console() {
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("echo", "echo", ""),
        config_module(TEST, CONFIG),
    ];
    let (vm, sock, log) = mgmt_vm(TEST, &modules);
    let qemu = std::thread::spawn(move || {
        run_until(TEST, vm, BIOS_TIMEOUT_S, Some(&["[end] echo: ready"]))
    });

    let session = std::panic::catch_unwind(|| {
        wait_for_line(&log, "[echo-a] echo: ready", scaled(90))
            .unwrap_or_else(|| panic!("{TEST}: the echo guest never became ready"));
        let mut console = Command::new(hvctl())
            .arg("--socket")
            .arg(&sock)
            .args(["console", "echo-a"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("hvctl console: {e}"));
        let mut stdin = console.stdin.take().unwrap_or_else(|| panic!("no stdin"));
        stdin
            .write_all(b"hello kestrel\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let echoed = wait_for_line(&log, "[echo-a] echo: hello kestrel", scaled(20));
        stdin.write_all(b"quit\n").unwrap_or_else(|e| panic!("{e}"));
        let (code, out, err) = wait_exit(console);
        drop(stdin);
        assert!(
            echoed.is_some(),
            "no echoed line on COM1; hvctl: {out}{err}"
        );
        assert!(
            out.contains("echo: hello kestrel\n") && out.contains("echo: bye after"),
            "hvctl console printed {out:?} (stderr {err:?})"
        );
        assert!(
            err.contains("attached to domain") && err.contains("closed: domain ended"),
            "hvctl console stderr {err:?}"
        );
        assert_eq!(code, Some(0), "hvctl console ends with the domain: {err}");
        for line in ["name=echo-a", "[echo-a] echo: bye after"] {
            assert!(wait_for_line(&log, line, scaled(10)).is_some(), "{line}");
        }
    });
    // Ends the run either way.
    let end = test_dir(&format!("{TEST}.in")).join("end.toml");
    std::fs::write(&end, END).unwrap_or_else(|e| panic!("{}: {e}", end.display()));
    let _ = hvctl_cmd(&sock, &["create", end.to_str().unwrap_or("")]);
    let o = qemu
        .join()
        .unwrap_or_else(|_| panic!("the QEMU thread panicked"));
    let _report = ReportOnPanic(&o);
    if let Err(e) = session {
        std::panic::resume_unwind(e);
    }
    assert_eq!(o.ended, xtask::runner::Ended::Stopped, "{TEST}");
    o.assert_domain("echo-a", "exited", 0);
    let text = o.lines.join("\n");
    // Woken by VIRQ_CONSOLE at least once per line it was sent.
    let wakeups: u64 = text
        .split("[echo-a] echo: bye after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{TEST}: no bye line"));
    assert!(wakeups >= 1, "{TEST}: {wakeups} wake-ups");
    assert!(!text.contains("echo: ERROR"), "{TEST}");
    assert!(!text.contains("echo: quit"), "{TEST}: quit is not echoed");
}
