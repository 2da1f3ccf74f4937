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

use std::path::Path;

use boot_tests::artifacts::guest_module;
use boot_tests::domains::ReportOnPanic;
use boot_tests::linux_dom::{BochsMgmt, linux_domain};
use boot_tests::mgmt::{config_module, hvctl_cmd, hvctl_info, linux_modules, mgmt_vm_sized};
use boot_tests::session::{END_LINE, Machine, create_end, expect_nth};

use super::linux_console_bochs::bridge;

const NAME: &str = "lx-sh";

/// Waits for a line holding all `needles` or panics naming `what`.
fn expect(test: &str, log: &Path, needles: &[&str], secs: u64, what: &str) {
    expect_nth(test, log, needles, 1, secs, what);
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

/// [`boot_tests::linux_dom::assert_clean`], and dom0 forced no domain.
fn assert_clean(o: &boot_tests::Outcome) {
    boot_tests::linux_dom::assert_clean(o);
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
        // A 48 MiB Linux domain in the demo's shell mode.
        config_module(test, &linux_domain(NAME, 48, "quiet kestrel.shell=1", "")),
    ]
}

#[test]
fn linux_shell_shutdown_qemu() {
    let test = "linux_shell_shutdown_qemu";
    let (vm, sock, log) = mgmt_vm_sized(test, &modules(test), 2, "256M");
    let qemu = Machine::qemu(test, vm, 600, END_LINE);
    let session = std::panic::catch_unwind(|| shutdown_at_the_prompt(test, &sock, &log));
    let _ = hvctl_cmd(&sock, &["destroy", NAME]);
    create_end(&sock, test);
    let (o, ()) = qemu.join(session);
    let _report = ReportOnPanic(&o);
    assert_eq!(o.ended, xtask::runner::Ended::Stopped, "{test}");
    assert_clean(&o);
}

/// VT-x: the same, the request through VMCALL.
#[test]
fn linux_shell_shutdown_bochs() {
    let test = "linux_shell_shutdown_bochs";
    let o = BochsMgmt::new(test, &modules(test)).run(test, bridge, |sock, log| {
        shutdown_at_the_prompt(test, sock, log)
    });
    let _report = ReportOnPanic(&o);
    o.expect_line(" name=lx-sh result=exited code=0 ");
    assert_clean(&o);
}
