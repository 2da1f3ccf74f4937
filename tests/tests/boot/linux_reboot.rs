//! Linux `reboot` (issues 13 and 15): the patched kernel's restart path
//! ends the domain with the shutdown hypercall's `SHUTDOWN_REBOOT` reason
//! (patch 0001), and dom0 applies the domain's `on_reboot` policy:
//! `restart` (xl's default) builds the same configuration again, under a
//! new id with the same UUID; `destroy` leaves it ended `rebooted`.
//! Before patch 0001 used the reason, a Linux `reboot` ended the domain
//! `exited` with code 1 and nothing was restarted.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `linux_reboot_qemu` | QEMU TCG (AMD-V), 2 CPUs, 256 MiB, COM2 a socket for `hvctl` | `lx-once` (`kestrel.end=reboot`, `on_reboot = "destroy"`): `/init` runs `reboot -f`, the domain ends `result=rebooted code=0`, `hvctl info` says `ended`/`rebooted`, it boots once only; `lx-rb` (`kestrel.shell=1`, default `on_reboot`): `reboot` typed through `hvctl console` ends it `rebooted code=0`, dom0 says it restarted it (restart 1 of at most 3), `/init` reaches its shell a second time, and `hvctl info lx-rb` shows a new id with the same (generated) UUID, running; no bad kernel line |
//! | `linux_reboot_bochs` | Bochs Haswell (VT-x), `dom0` option, 2 CPUs, 256 MiB | `lx` (`kestrel.end=reboot`, `on_reboot = "destroy"`) from the boot configuration: `/init`'s `reboot -f` ends it `result=rebooted code=0` |

use std::path::Path;

use boot_tests::artifacts::guest_module;
use boot_tests::domains::ReportOnPanic;
use boot_tests::hvconsole::ConsoleSession;
use boot_tests::linux_dom::{assert_clean, linux_domain, vmx_dom0_linux};
use boot_tests::mgmt::{config_module, hvctl_cmd, hvctl_info, linux_modules, mgmt_vm_sized};
use boot_tests::scaled;
use boot_tests::session::{Machine, create_end_with};

/// A 48 MiB, 1-vCPU Linux domain's TOML; `extra` is added as TOML lines.
fn linux_toml(name: &str, args: &str, extra: &str) -> String {
    linux_domain(name, 48, &format!("quiet {args}"), extra)
}

/// Waits for the `n`th line holding all `needles` or panics naming `what`.
fn expect_nth(log: &Path, needles: &[&str], n: usize, secs: u64, what: &str) -> String {
    boot_tests::session::expect_nth("linux_reboot", log, needles, n, secs, what)
}

fn expect(log: &Path, needle: &str, secs: u64, what: &str) -> String {
    expect_nth(log, &[needle], 1, secs, what)
}

/// `(id, uuid, state)` of `dom` as `hvctl info` gives them.
fn who(sock: &Path, dom: &str) -> (u64, String, String) {
    let i = hvctl_info(sock, dom);
    (
        i["id"].as_u64().unwrap_or(0),
        i["uuid"].as_str().unwrap_or("").to_string(),
        i["state"].as_str().unwrap_or("?").to_string(),
    )
}

const TEST: &str = "linux_reboot_qemu";

/// `lx-once`: `/init` reboots, `on_reboot = "destroy"` keeps it ended.
fn reboot_destroyed(sock: &Path, log: &Path) {
    expect(
        log,
        "[lx-once] kestrel-linux: reboot -f (kestrel.end=reboot)",
        180,
        "lx-once's /init did not reboot",
    );
    expect(
        log,
        "name=lx-once result=rebooted code=0",
        60,
        "lx-once did not end rebooted",
    );
    let i = hvctl_info(sock, "lx-once");
    assert_eq!(
        (i["state"].as_str(), i["reason"].as_str()),
        (Some("ended"), Some("rebooted")),
        "{TEST}: lx-once: {i}"
    );
}

/// `lx-rb`: `reboot` through the console; the default `on_reboot`
/// builds it again with the same UUID.
fn reboot_restarted(sock: &Path, log: &Path) {
    expect(
        log,
        "[lx-rb] kestrel-linux: shell on hvc0",
        180,
        "lx-rb's first shell",
    );
    let (id, uuid, state) = who(sock, "lx-rb");
    assert_eq!(state, "running", "{TEST}: lx-rb before the reboot");
    assert_eq!(uuid.len(), 36, "{TEST}: lx-rb has no UUID: {uuid:?}");
    let mut con = ConsoleSession::attach(sock, "lx-rb");
    con.send(b"\n");
    con.wait_for("kestrel# ", scaled(30))
        .unwrap_or_else(|| panic!("{TEST}: no prompt; console: {:?}", con.text()));
    con.send(b"reboot\n");
    expect(
        log,
        &format!("domain-end: id={id} name=lx-rb result=rebooted code=0 "),
        60,
        "lx-rb did not end rebooted",
    );
    let note = expect(
        log,
        &format!("dom0: domain {id} (lx-rb) asked to reboot: restarted as domain "),
        30,
        "dom0 did not restart lx-rb",
    );
    assert!(
        note.contains("on_reboot = \"restart\", restart 1 of at most "),
        "{TEST}: restart note: {note}"
    );
    // The second boot: /init's banner and shell again.
    expect_nth(
        log,
        &["[lx-rb] kestrel-linux: init reached"],
        2,
        180,
        "lx-rb did not boot again",
    );
    expect_nth(
        log,
        &["[lx-rb] kestrel-linux: shell on hvc0"],
        2,
        60,
        "lx-rb's second shell",
    );
    let (new, new_uuid, state) = who(sock, "lx-rb");
    assert_ne!(new, id, "{TEST}: the restarted lx-rb kept its id");
    assert!(
        note.contains(&format!("restarted as domain {new} ")),
        "{TEST}: the note names another domain than info ({new}): {note}"
    );
    assert_eq!(new_uuid, uuid, "{TEST}: the restarted lx-rb's UUID");
    assert_eq!(state, "running", "{TEST}: the restarted lx-rb");
    let _ = con.close(scaled(10));
    let (code, out, err) = hvctl_cmd(sock, &["destroy", "lx-rb"]);
    assert_eq!(code, 0, "destroy lx-rb: {out}{err}");
    expect(
        log,
        &format!("domain-end: id={new} name=lx-rb result=destroyed"),
        30,
        "the restarted lx-rb destroyed",
    );
}

#[test]
fn linux_reboot_qemu() {
    let [vmlinux, initramfs] = linux_modules();
    let config = format!(
        "{}{}",
        linux_toml("lx-once", "kestrel.end=reboot", "on_reboot = \"destroy\"\n"),
        linux_toml("lx-rb", "kestrel.shell=1", ""),
    );
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        vmlinux,
        initramfs,
        config_module(TEST, &config),
    ];
    let (vm, sock, log) = mgmt_vm_sized(TEST, &modules, 2, "256M");
    let qemu = Machine::qemu(TEST, vm, 600, &["[end] kestrel-linux: init reached"]);
    let session = std::panic::catch_unwind(|| {
        reboot_destroyed(&sock, &log);
        reboot_restarted(&sock, &log);
    });
    let _ = hvctl_cmd(&sock, &["destroy", "lx-rb"]);
    create_end_with(&sock, TEST, &linux_toml("end", "", ""));
    let (o, ()) = qemu.join(session);
    let _report = ReportOnPanic(&o);
    assert_eq!(o.ended, xtask::runner::Ended::Stopped, "{TEST}");
    let boots = |name: &str| {
        o.lines
            .iter()
            .filter(|l| l.starts_with(&format!("[{name}] kestrel-linux: init reached")))
            .count()
    };
    assert_eq!(boots("lx-once"), 1, "{TEST}: lx-once was restarted");
    assert_eq!(boots("lx-rb"), 2, "{TEST}: lx-rb's boots");
    assert_clean(&o);
}

/// VT-x: the same restart path through VMCALL.
#[test]
fn linux_reboot_bochs() {
    let test = "linux_reboot";
    let o = vmx_dom0_linux(
        test,
        &linux_toml("lx", "kestrel.end=reboot", "on_reboot = \"destroy\"\n"),
        "lx",
    );
    let _report = ReportOnPanic(&o);
    o.expect_line("[lx] kestrel-linux: reboot -f (kestrel.end=reboot)");
    o.expect_line(" name=lx result=rebooted code=0 ");
    assert_clean(&o);
}
