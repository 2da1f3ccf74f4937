//! Linux honours `hvctl shutdown` and `hvctl reboot` (issue 15). dom0
//! records the request and raises `VIRQ_SHUTDOWN`; patch 0006 binds it
//! and hands the request to user space (`orderly_poweroff()` /
//! `orderly_reboot()` run `/sbin/poweroff` / `/sbin/reboot`), busybox
//! signals PID 1, the test `/init` (`kestrel.end=wait`) stops and ends
//! the kernel, and the kernel's `machine_power_off()` /
//! `machine_restart()` end the domain `exited` / `rebooted`. Before patch
//! 0006 Linux ignored the virq and dom0 destroyed it after the timeout:
//! `hvctl shutdown` exited 5 (`forced`).
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `linux_shutdown_qemu` | QEMU TCG (AMD-V), 2 CPUs, 256 MiB, COM2 a socket for `hvctl` | `lx-off`: `hvctl shutdown` exits 0 with `ended: exited with code 0` (not `forced`), `/init` got SIGUSR2 from `poweroff`, the kernel said `reboot: Power down`, `info` says `ended`/`exited`; `lx-rb` (default `on_reboot = "restart"`): `hvctl reboot` exits 0 naming the domain that replaced it, `/init` got SIGTERM from `reboot`, the kernel said `reboot: Restarting system`, the new Linux boots to `/init` again, and `hvctl shutdown` ends that one `exited` too; no bad kernel line |
//! | `linux_shutdown_bochs` | Bochs Haswell (VT-x), `dom0` option, 2 CPUs, 256 MiB, COM2 bridged as in `linux_console_bochs` | `lx`: `hvctl shutdown` exits 0, `exited with code 0`, after SIGUSR2 and `reboot: Power down` |

use std::path::Path;

use boot_tests::artifacts::guest_module;
use boot_tests::domains::ReportOnPanic;
use boot_tests::linux_dom::{BochsMgmt, assert_clean, linux_domain};
use boot_tests::mgmt::{config_module, hvctl_cmd, hvctl_info, linux_modules, mgmt_vm_sized};
use boot_tests::session::{END_LINE, Machine, create_end};

use super::linux_console_bochs::bridge;

/// A 48 MiB, 1-vCPU Linux domain whose `/init` waits for a request.
fn linux_toml(name: &str) -> String {
    linux_domain(name, 48, "quiet kestrel.end=wait", "")
}

/// Waits for the `n`th line holding all `needles` or panics naming `what`.
fn expect_nth(log: &Path, needles: &[&str], n: usize, secs: u64, what: &str) -> String {
    boot_tests::session::expect_nth("linux_shutdown", log, needles, n, secs, what)
}

/// `name`'s `n`th `/init` is up and waiting for a request.
fn waiting(log: &Path, name: &str, n: usize, secs: u64) {
    expect_nth(
        log,
        &[&format!(
            "[{name}] kestrel-linux: waiting for a shutdown request"
        )],
        n,
        secs,
        &format!("{name}'s /init never waited"),
    );
}

fn id_of(sock: &Path, name: &str) -> u64 {
    hvctl_info(sock, name)["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("linux_shutdown: no id for {name}"))
}

/// `hvctl shutdown name` ends the domain by itself: exit 0, `exited`,
/// after `/init` got busybox poweroff's signal and the kernel powered
/// down; `n` counts the domains of that name seen so far.
fn shutdown_honoured(sock: &Path, log: &Path, name: &str, n: usize) {
    let id = id_of(sock, name);
    let (code, out, err) = hvctl_cmd(sock, &["shutdown", name, "--timeout", "120"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            format!("domain {id} ({name}) ended: exited with code 0\n").as_str()
        ),
        "hvctl shutdown {name} (5 = forced: Linux ignored the request): {err}"
    );
    expect_nth(
        log,
        &[&format!(
            "[{name}] kestrel-linux: SIGUSR2 from poweroff: stopping processes, then poweroff -f"
        )],
        n,
        10,
        "/init did not get poweroff's signal",
    );
    expect_nth(
        log,
        &[&format!("[{name}] "), "reboot: Power down"],
        n,
        10,
        "the kernel did not power down",
    );
    expect_nth(
        log,
        &[&format!(
            "domain-end: id={id} name={name} result=exited code=0 "
        )],
        1,
        10,
        "the hypervisor's end line",
    );
    let i = hvctl_info(sock, &id.to_string());
    assert_eq!(
        (i["state"].as_str(), i["reason"].as_str()),
        (Some("ended"), Some("exited")),
        "hvctl info {id}: {i}"
    );
}

/// `hvctl reboot lx-rb`: Linux restarts itself, dom0 builds it again.
fn reboot_honoured(sock: &Path, log: &Path) {
    let id = id_of(sock, "lx-rb");
    let (code, out, err) = hvctl_cmd(sock, &["reboot", "lx-rb", "--timeout", "120"]);
    assert_eq!(code, 0, "hvctl reboot lx-rb (5 = forced): {out}{err}");
    let new = id_of(sock, "lx-rb");
    assert_ne!(new, id, "the restarted lx-rb kept its id: {out}");
    assert_eq!(
        out,
        format!(
            "domain {id} (lx-rb) ended: rebooted with code 0\nrestarted as domain {new} (lx-rb)\n"
        )
    );
    expect_nth(
        log,
        &["[lx-rb] kestrel-linux: SIGTERM from reboot: stopping processes, then reboot -f"],
        1,
        10,
        "/init did not get reboot's signal",
    );
    expect_nth(
        log,
        &["[lx-rb] ", "reboot: Restarting system"],
        1,
        10,
        "the kernel did not restart",
    );
    expect_nth(
        log,
        &[&format!(
            "domain-end: id={id} name=lx-rb result=rebooted code=0 "
        )],
        1,
        10,
        "the hypervisor's end line",
    );
    // The new Linux boots and honours a request in turn.
    waiting(log, "lx-rb", 2, 240);
    shutdown_honoured(sock, log, "lx-rb", 1);
}

const TEST: &str = "linux_shutdown_qemu";

#[test]
fn linux_shutdown_qemu() {
    let [vmlinux, initramfs] = linux_modules();
    let config = format!("{}{}", linux_toml("lx-off"), linux_toml("lx-rb"));
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        vmlinux,
        initramfs,
        config_module(TEST, &config),
    ];
    let (vm, sock, log) = mgmt_vm_sized(TEST, &modules, 2, "256M");
    let qemu = Machine::qemu(TEST, vm, 600, END_LINE);
    let session = std::panic::catch_unwind(|| {
        waiting(&log, "lx-off", 1, 240);
        waiting(&log, "lx-rb", 1, 240);
        shutdown_honoured(&sock, &log, "lx-off", 1);
        reboot_honoured(&sock, &log);
    });
    for n in ["lx-off", "lx-rb"] {
        let _ = hvctl_cmd(&sock, &["destroy", n]);
    }
    create_end(&sock, TEST);
    let (o, ()) = qemu.join(session);
    let _report = ReportOnPanic(&o);
    assert_eq!(o.ended, xtask::runner::Ended::Stopped, "{TEST}");
    assert!(
        !o.lines.iter().any(|l| l.contains("(forced)")),
        "{TEST}: dom0 forced a domain"
    );
    assert_clean(&o);
}

/// VT-x: the same power-off path, the request through VMCALL.
#[test]
fn linux_shutdown_bochs() {
    let test = "linux_shutdown_bochs";
    let [vmlinux, initramfs] = linux_modules();
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        vmlinux,
        initramfs,
        config_module(test, &linux_toml("lx")),
    ];
    let o = BochsMgmt::new(test, &modules).run(test, bridge, |sock, log| {
        waiting(log, "lx", 1, 240);
        shutdown_honoured(sock, log, "lx", 1);
    });
    let _report = ReportOnPanic(&o);
    o.expect_line(" name=lx result=exited code=0 ");
    assert_clean(&o);
}
