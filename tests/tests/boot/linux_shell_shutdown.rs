//! `hvctl shutdown` of a Linux domain sitting at its shell prompt
//! (`kestrel.shell=1`, the demo's mode) ends it `exited` (issue 13).
//! Before, the shell was PID 1: busybox ash at its prompt ran no trap, so
//! the SIGUSR2 that `/sbin/poweroff` (run by the kernel's
//! `orderly_poweroff()`, patch 0006) sends PID 1 did nothing and dom0
//! destroyed the domain at the timeout: `hvctl shutdown` exited 5
//! (`forced`). Now `/init` hands PID 1 to busybox init, which runs the
//! shell and powers off on SIGUSR2.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `linux_shell_shutdown_qemu` | QEMU TCG (AMD-V), 2 CPUs, 256 MiB, COM2 a socket for `hvctl` | `lx-sh` (`kestrel.shell=1`): once init has started the shell, `hvctl shutdown` exits 0 with `ended: exited with code 0` (not `forced`), busybox init said `The system is going down NOW!` and `Requesting system poweroff`, the kernel said `reboot: Power down`, `info` says `ended`/`exited`; no bad kernel line |
//! | `linux_shell_shutdown_bochs` | Bochs Haswell (VT-x), `dom0` option, 2 CPUs, 256 MiB, COM2 bridged as in `linux_console_bochs` | the same for `lx-sh` |

use std::path::{Path, PathBuf};

use boot_tests::artifacts::{guest_module, root, shared_iso};
use boot_tests::bochs::{Pc, TIMEOUT_S, run_iso};
use boot_tests::domains::ReportOnPanic;
use boot_tests::mgmt::{
    config_module, hvctl_cmd, hvctl_info, input_file, linux_modules, mgmt_vm_sized,
    wait_for_nth_line,
};
use boot_tests::qemu::run_until;
use boot_tests::scaled;

use super::linux_console_bochs::{bridge, free_port};

/// What no console line may say.
const BAD: [&str; 4] = [
    "WARNING:",
    "BUG:",
    "unchecked MSR access",
    "general protection",
];

const NAME: &str = "lx-sh";

/// A 48 MiB, 1-vCPU Linux domain in the demo's shell mode.
const LINUX: &str = "[[domain]]\nname = \"lx-sh\"\nkernel = \"vmlinux\"\n\
     initrd = \"initramfs.cpio\"\nmemory = 48\nvcpus = 1\n\
     cmdline = \"console=hvc0 quiet kestrel.shell=1\"\n";

/// The domain whose greeting stops the run once the session is over.
const END: &str =
    "[[domain]]\nname = \"end\"\nimage = \"hello\"\nmemory = 4\ncmdline = \"kestrel-test-end\"\n";
const END_LINE: &[&str] = &["[end] hello from", "kestrel-test-end"];

/// Waits for a line holding all `needles` or panics naming `what`.
fn expect(test: &str, log: &Path, needles: &[&str], secs: u64, what: &str) {
    if wait_for_nth_line(log, needles, 1, scaled(secs)).is_none() {
        panic!("{test}: {what}: no line with {needles:?} in {secs} s (scaled)");
    }
}

/// The shell is up under init (init's signal handlers are installed
/// before it starts the shell), then `hvctl shutdown` ends the domain by
/// itself.
fn shutdown_at_the_prompt(test: &str, sock: &Path, log: &Path) {
    expect(
        test,
        log,
        &["[lx-sh] kestrel-linux: shell on hvc0"],
        240,
        "/init never reached its shell",
    );
    expect(
        test,
        log,
        &["[lx-sh] kestrel-linux: shell started by init (PID 1: /bin/busybox init"],
        60,
        "busybox init did not start the shell",
    );
    let id = hvctl_info(sock, NAME)["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("{test}: no id for {NAME}"));
    let (code, out, err) = hvctl_cmd(sock, &["shutdown", NAME, "--timeout", "120"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            format!("domain {id} ({NAME}) ended: exited with code 0\n").as_str()
        ),
        "{test}: hvctl shutdown {NAME} (5 = forced: nobody at PID 1 acted on poweroff's signal): {err}"
    );
    let end_line = format!("domain-end: id={id} name={NAME} result=exited code=0 ");
    for (needles, what) in [
        (
            &["[lx-sh] ", "The system is going down NOW!"][..],
            "init did not stop the processes",
        ),
        (
            &["[lx-sh] ", "Requesting system poweroff"][..],
            "init did not power off",
        ),
        (
            &["[lx-sh] ", "reboot: Power down"][..],
            "the kernel did not power down",
        ),
        (&[end_line.as_str()][..], "the hypervisor's end line"),
    ] {
        expect(test, log, needles, 10, what);
    }
    let i = hvctl_info(sock, &id.to_string());
    assert_eq!(
        (i["state"].as_str(), i["reason"].as_str()),
        (Some("ended"), Some("exited")),
        "{test}: hvctl info {id}: {i}"
    );
}

/// No console line and no hypervisor line says something broke.
fn assert_clean(o: &boot_tests::Outcome) {
    let bad: Vec<&String> = o
        .lines
        .iter()
        .filter(|l| BAD.iter().any(|b| l.contains(b)))
        .collect();
    assert!(bad.is_empty(), "{}: {bad:#?}", o.test);
    assert!(
        o.fatal_lines().is_empty() && o.panic_lines().is_empty(),
        "{}: the hypervisor died",
        o.test
    );
    assert!(
        !o.lines.iter().any(|l| l.contains("(forced)")),
        "{}: dom0 forced a domain",
        o.test
    );
}

fn modules(test: &str) -> Vec<xtask::iso::Module> {
    let [vmlinux, initramfs] = linux_modules();
    vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        vmlinux,
        initramfs,
        config_module(test, LINUX),
    ]
}

#[test]
fn linux_shell_shutdown_qemu() {
    let test = "linux_shell_shutdown_qemu";
    let (vm, sock, log) = mgmt_vm_sized(test, &modules(test), 2, "256M");
    let qemu = std::thread::spawn(move || run_until(test, vm, 600, Some(END_LINE)));
    let session = std::panic::catch_unwind(|| shutdown_at_the_prompt(test, &sock, &log));
    let _ = hvctl_cmd(&sock, &["destroy", NAME]);
    let end = input_file(test, "end.toml", END);
    let _ = hvctl_cmd(&sock, &["create", end.to_str().unwrap_or("")]);
    let o = qemu
        .join()
        .unwrap_or_else(|_| panic!("the QEMU thread panicked"));
    let _report = ReportOnPanic(&o);
    if let Err(e) = session {
        std::panic::resume_unwind(e);
    }
    assert_eq!(o.ended, xtask::runner::Ended::Stopped, "{test}");
    assert_clean(&o);
}

/// VT-x: the same, the request through VMCALL.
#[test]
fn linux_shell_shutdown_bochs() {
    let test = "linux_shell_shutdown_bochs";
    let iso = shared_iso(
        &format!("{test}.iso"),
        "exit=bochs shutdown dom0 loglevel=info",
        &modules(test),
    );
    let port = free_port();
    let mut pc = Pc::new("corei7_haswell_4770", 2, 256);
    let com2: &'static str = Box::leak(
        format!("com2: enabled=1, mode=socket-server, dev=localhost:{port}").into_boxed_str(),
    );
    pc.extra.push(com2);
    let run_dir = root().join("runs").join(test);
    let _ = std::fs::remove_dir_all(&run_dir);
    let log = run_dir.join("serial.log");
    // Not in the run's directory: the run empties that when it starts.
    let sock: PathBuf = root().join("runs").join(format!("{test}.mgmt.sock"));
    let bochs = std::thread::spawn(move || run_iso(test, &pc, &iso, Some(END_LINE), TIMEOUT_S));
    let session = std::panic::catch_unwind(|| {
        bridge(port, &sock);
        shutdown_at_the_prompt(test, &sock, &log);
    });
    let end = input_file(test, "end.toml", END);
    let _ = hvctl_cmd(&sock, &["create", end.to_str().unwrap_or("")]);
    let o = bochs
        .join()
        .unwrap_or_else(|_| panic!("the Bochs thread panicked"));
    let _report = ReportOnPanic(&o);
    if let Err(e) = session {
        std::panic::resume_unwind(e);
    }
    o.expect_line(" name=lx-sh result=exited code=0 ");
    assert_clean(&o);
}
