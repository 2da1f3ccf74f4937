//! Linux domains made by dom0 (issue 13, what a user sees): the real
//! `vmlinux` and busybox initramfs (`xtask::linux`) as boot modules
//! `vmlinux` and `initramfs.cpio`, domains described by dom0's TOML
//! (`kernel`, `initrd`, `cmdline`) and driven by the real `hvctl`.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `linux_dom0_qemu_hvctl` | QEMU TCG (AMD-V), 2 CPUs, 256 MiB, COM2 a socket for `hvctl` | `lx-off` (boot config) runs `/init`'s `cpus` check and powers off: `result=exited code=0`; `hvctl create` of `lx-panic` (`kestrel.end=panic`: `/init` exits): `result=crashed` and `Kernel panic - not syncing: Attempted to kill init!` on its console; `lx-shell` (`kestrel.shell=1`): `list`/`info` show it, `pause`/`unpause` change its state, `destroy` ends it `result=destroyed` and the host's free memory is what it was before the create; `lx-con`: through `hvctl console`, `echo $((6*7))` prints `42`, Backspace and cursor-left editing work, Ctrl-C during `sleep 100` gives the prompt back within seconds with `$?` = 130 (SIGINT reached the child, the shell lives on), `poweroff` ends it `result=exited code=0`; no `WARNING:`, `BUG:`, `unchecked MSR access`, `general protection` in any Linux console |
//! | `linux_dom0_qemu_20` | QEMU TCG (AMD-V), 2 CPUs, 256 MiB | create → `/init`'s shell marker → destroy (+ `forget`) of a 32 MiB Linux domain 20 times on one boot; each round's marker is its own (the nth line), and the host's free memory is back to the byte after each destroy |
//! | `linux_dom0_qemu_isolation` | QEMU TCG (AMD-V), 2 CPUs, 256 MiB | two Linux domains (`kestrel.checks=cpus,sleep`) and `oob` (writes outside its memory) from one boot configuration: `oob` is killed (`outside its memory`) after both Linux domains were created and before either ended; `lx-poke` (a third Linux domain, 32 MiB, `kestrel.poke=0x2001000`: busybox `devmem` writes outside its memory through `/dev/mem`) is killed naming that address, its write never completes; both others ran their checks and ended `exited code=0` |
//! | `linux_dom0_toml_bochs` | Bochs Haswell (VT-x), `dom0` option, 2 CPUs, 256 MiB | dom0 starts `lx` from its boot configuration (`kestrel.checks=cpus kestrel.end=panic`): `/init` ran its check, then exited: `result=crashed code=1` with the panic text on its console; no bad kernel line (one domain: a run stops at one line, and the crash is the later end) |
//! | `linux_dom0_poke_bochs` | Bochs Haswell (VT-x), `dom0` option, 2 CPUs, 256 MiB | `lx-poke` from the boot configuration writes guest-physical 0x2001000 (outside its 32 MiB) through `/dev/mem`: EPT stops it, the domain is killed naming that address |

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use boot_tests::artifacts::guest_module;
use boot_tests::domains::ReportOnPanic;
use boot_tests::hvconsole::ConsoleSession;
use boot_tests::linux_dom::{assert_clean, linux_domain, vmx_dom0_linux};
use boot_tests::mgmt::{
    config_module, hvctl_cmd, hvctl_free_bytes, hvctl_info, hvctl_list, input_file, linux_modules,
    mgmt_vm_sized, wait_for_nth_line,
};
use boot_tests::scaled;
use boot_tests::session::Machine;

/// A Linux domain's TOML: `name`, `memory` MiB, 1 vCPU, `args` after
/// `console=hvc0`.
fn linux_toml(name: &str, memory: u32, args: &str) -> String {
    linux_domain(name, memory, args, "")
}

fn off() -> String {
    linux_toml("lx-off", 48, "kestrel.checks=cpus")
}

fn panics() -> String {
    linux_toml("lx-panic", 48, "kestrel.end=panic")
}

/// Waits for a line holding `needle` or panics naming `what`.
fn expect(log: &Path, needle: &str, secs: u64, what: &str) -> String {
    expect_nth(log, &[needle], 1, secs, what)
}

/// Waits for the `n`th line holding all `needles` or panics naming `what`.
fn expect_nth(log: &Path, needles: &[&str], n: usize, secs: u64, what: &str) -> String {
    boot_tests::session::expect_nth("linux_dom0", log, needles, n, secs, what)
}

/// [`expect`] while QEMU runs: fails at once, naming the machine's end,
/// when QEMU has exited (`ended` is set by the thread that runs it)
/// rather than waiting out `secs` for a line that can no longer come.
/// Without it a machine that died (a triple fault of the hypervisor, in
/// the run that quarantined `linux_dom0_qemu_isolation`) read as three
/// Linux domains that hung for 180 s.
fn expect_while(ended: &AtomicBool, log: &Path, needle: &str, secs: u64, what: &str) -> String {
    let until = Instant::now() + scaled(secs);
    loop {
        let gone = ended.load(Ordering::Acquire);
        if let Some(l) = wait_for_nth_line(log, &[needle], 1, Duration::from_millis(500)) {
            return l;
        }
        if gone {
            panic!(
                "linux_dom0: {what}: QEMU ended before a line with {needle:?} (its report follows)"
            );
        }
        if Instant::now() >= until {
            panic!("linux_dom0: {what}: no line with {needle:?} in {secs} s (scaled)");
        }
    }
}

/// The line whose `end` domain's `/init` stops a QEMU run.
const LINUX_END: &[&str] = &["[end] kestrel-linux: init reached"];

/// The panic `/init`'s exit causes, after the printk time.
const PANIC: &str = "Kernel panic - not syncing: Attempted to kill init!";

fn create(sock: &Path, test: &str, name: &str, toml: &str) {
    let f = input_file(test, &format!("{name}.toml"), toml);
    let (code, out, err) = hvctl_cmd(sock, &["create", f.to_str().unwrap_or("")]);
    assert_eq!(code, 0, "hvctl create {name}: {out}{err}");
}

fn state(sock: &Path, dom: &str) -> String {
    hvctl_info(sock, dom)["state"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

/// `lx-shell`: list, info, pause, unpause, destroy; every frame back.
fn shell_lifecycle(sock: &Path, log: &Path, test: &str) {
    let free_before = hvctl_free_bytes(sock);
    create(
        sock,
        test,
        "lx-shell",
        &linux_toml("lx-shell", 48, "kestrel.shell=1"),
    );
    expect(
        log,
        "[lx-shell] kestrel-linux: shell on hvc0",
        120,
        "lx-shell",
    );
    let free_running = hvctl_free_bytes(sock);
    assert!(
        free_before - free_running >= 48 << 20,
        "{test}: a running 48 MiB Linux domain took only {} bytes",
        free_before - free_running
    );
    assert!(
        hvctl_list(sock)
            .iter()
            .any(|d| d["name"] == "lx-shell" && d["state"] == "running"),
        "{test}: list lacks a running lx-shell"
    );
    let (code, out, err) = hvctl_cmd(sock, &["pause", "lx-shell"]);
    assert_eq!(code, 0, "pause: {out}{err}");
    assert_eq!(state(sock, "lx-shell"), "paused", "{test}");
    let (code, out, err) = hvctl_cmd(sock, &["unpause", "lx-shell"]);
    assert_eq!(code, 0, "unpause: {out}{err}");
    assert_eq!(state(sock, "lx-shell"), "running", "{test}");
    let id = hvctl_info(sock, "lx-shell")["id"].as_u64().unwrap_or(0);
    let (code, out, err) = hvctl_cmd(sock, &["destroy", "lx-shell"]);
    assert_eq!(code, 0, "destroy: {out}{err}");
    expect(
        log,
        &format!("domain-end: id={id} name=lx-shell result=destroyed"),
        30,
        "lx-shell destroyed",
    );
    assert_eq!(
        hvctl_free_bytes(sock),
        free_before,
        "{test}: free memory after destroying a running Linux domain"
    );
}

/// `lx-con`: a shell through `hvctl console`.
fn console_shell(sock: &Path, log: &Path, test: &str) {
    create(
        sock,
        test,
        "lx-con",
        &linux_toml("lx-con", 48, "quiet kestrel.shell=1"),
    );
    expect(log, "[lx-con] kestrel-linux: shell on hvc0", 120, "lx-con");
    let mut con = ConsoleSession::attach(sock, "lx-con");
    // Waits for `needle` on the console or fails saying `what`.
    let until = |con: &mut ConsoleSession, needle: &str, what: &str| {
        con.wait_for(needle, scaled(30))
            .unwrap_or_else(|| panic!("{test}: {what}; console: {:?}", con.text()));
    };
    // The prompt may have gone out before the attach: ask for a fresh one.
    con.send(b"\n");
    until(&mut con, "kestrel# ", "no prompt");
    con.send(b"echo $((6*7))\n");
    until(&mut con, "\n42\n", "no 42");
    // Line editing (busybox's, on the tty): Backspace, and the cursor
    // moved left (ESC [ D) to insert in the middle of the line.
    con.send(b"echo abx\x7fc\n");
    until(&mut con, "\nabc\n", "backspace");
    con.send(b"echo xz\x1b[Dy\n");
    until(&mut con, "\nxyz\n", "cursor left");
    // The subshell prints its mark, then becomes `sleep`: the Ctrl-C goes
    // to the foreground process group, the shell's child.
    con.send(b"(echo sleeping; exec sleep 100)\n");
    until(&mut con, "\nsleeping\n", "sleep did not start");
    let sent = Instant::now();
    con.send(&[0x03]);
    until(&mut con, "kestrel# ", "no prompt after Ctrl-C");
    let back = sent.elapsed();
    assert!(
        back < Duration::from_secs(30),
        "{test}: the prompt came back after {back:?}"
    );
    con.send(b"echo rc=$?\n");
    until(&mut con, "\nrc=130\n", "sleep did not die of SIGINT");
    eprintln!("{test}: prompt back {back:?} after Ctrl-C");
    con.send(b"poweroff\n");
    expect(
        log,
        "name=lx-con result=exited code=0",
        60,
        "lx-con powered off",
    );
    let _ = con.close(scaled(10));
}

#[test]
fn linux_dom0_qemu_hvctl() {
    let test = "linux_dom0_qemu_hvctl";
    let [vmlinux, initramfs] = linux_modules();
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        vmlinux,
        initramfs,
        config_module(test, &off()),
    ];
    let (vm, sock, log) = mgmt_vm_sized(test, &modules, 2, "256M");
    let qemu = Machine::qemu(test, vm, 600, LINUX_END);
    let session = std::panic::catch_unwind(|| {
        expect(&log, "[lx-off] kestrel-check: cpus=1", 180, "lx-off");
        expect(&log, "name=lx-off result=exited code=0", 60, "lx-off end");
        create(&sock, test, "lx-panic", &panics());
        expect_nth(&log, &["[lx-panic] ", PANIC], 1, 120, "lx-panic");
        expect(&log, "name=lx-panic result=crashed", 30, "lx-panic end");
        shell_lifecycle(&sock, &log, test);
        console_shell(&sock, &log, test);
    });
    // Ends the run either way: a domain whose first line stops QEMU.
    let _ = hvctl_cmd(&sock, &["destroy", "lx-shell"]);
    let _ = hvctl_cmd(&sock, &["destroy", "lx-con"]);
    create(&sock, test, "end", &linux_toml("end", 48, "quiet"));
    let (o, ()) = qemu.join(session);
    let _report = ReportOnPanic(&o);
    assert_eq!(o.ended, xtask::runner::Ended::Stopped, "{test}");
    assert_clean(&o);
}

#[test]
fn linux_dom0_toml_bochs() {
    let test = "linux_dom0_toml";
    let o = vmx_dom0_linux(
        test,
        &linux_toml("lx", 48, "kestrel.checks=cpus kestrel.end=panic"),
        "lx",
    );
    let _report = ReportOnPanic(&o);
    o.expect_line("[lx] kestrel-check: cpus=1");
    assert!(
        o.lines
            .iter()
            .any(|l| l.starts_with("[lx] ") && l.contains(PANIC)),
        "{test}: no panic text on lx's console"
    );
    o.expect_line(" name=lx result=crashed code=1 ");
    assert_clean(&o);
}

/// How many create → shell → destroy rounds `linux_dom0_qemu_20` makes.
const ROUNDS: usize = 20;

/// Create → shell marker → destroy, [`ROUNDS`] times on one boot, the
/// host's free memory back to the same byte after every destroy.
#[test]
fn linux_dom0_qemu_20() {
    let test = "linux_dom0_qemu_20";
    let [vmlinux, initramfs] = linux_modules();
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        vmlinux,
        initramfs,
        config_module(test, &linux_toml("lx-first", 32, "quiet kestrel.shell=1")),
    ];
    let (vm, sock, log) = mgmt_vm_sized(test, &modules, 2, "256M");
    let qemu = Machine::qemu(test, vm, 900, LINUX_END);
    let session = std::panic::catch_unwind(|| {
        // The boot configuration's domain first: the baseline is taken
        // with no Linux domain alive.
        expect(
            &log,
            "[lx-first] kestrel-linux: shell on hvc0",
            180,
            "lx-first",
        );
        let (code, out, err) = hvctl_cmd(&sock, &["destroy", "lx-first"]);
        assert_eq!(code, 0, "destroy lx-first: {out}{err}");
        expect(&log, "name=lx-first result=destroyed", 30, "lx-first end");
        let free = hvctl_free_bytes(&sock);
        let toml = linux_toml("lx", 32, "quiet kestrel.shell=1");
        let start = Instant::now();
        for round in 1..=ROUNDS {
            create(&sock, test, "lx", &toml);
            let id = hvctl_info(&sock, "lx")["id"].as_u64().unwrap_or(0);
            // The round-th marker: this round's domain's.
            expect_nth(
                &log,
                &["[lx] kestrel-linux: shell on hvc0"],
                round,
                120,
                &format!("round {round}"),
            );
            let (code, out, err) = hvctl_cmd(&sock, &["destroy", "lx"]);
            assert_eq!(code, 0, "round {round}: destroy: {out}{err}");
            expect(
                &log,
                &format!("domain-end: id={id} name=lx result=destroyed"),
                30,
                &format!("round {round} end"),
            );
            let (code, out, err) = hvctl_cmd(&sock, &["forget", "lx"]);
            assert_eq!(code, 0, "round {round}: forget: {out}{err}");
            assert_eq!(
                hvctl_free_bytes(&sock),
                free,
                "{test}: round {round}: free memory after destroy"
            );
        }
        eprintln!("{test}: {ROUNDS} rounds in {:?}", start.elapsed());
    });
    create(&sock, test, "end", &linux_toml("end", 32, "quiet"));
    let (o, ()) = qemu.join(session);
    let _report = ReportOnPanic(&o);
    assert_eq!(o.ended, xtask::runner::Ended::Stopped, "{test}");
    let shells = o
        .lines
        .iter()
        .filter(|l| l.starts_with("[lx] kestrel-linux: shell on hvc0"))
        .count();
    assert_eq!(shells, ROUNDS, "{test}: shell markers");
    assert_clean(&o);
    // Creating a Linux domain is the hypervisor's deepest stack use.
    boot_tests::stacks::assert_margin(&o);
}

/// Two Linux domains, the hostile `oob` guest (it writes outside its
/// memory) and a third Linux domain whose userland does the same through
/// `/dev/mem`, at once: `oob` is killed while both run, `lx-poke` is
/// killed, and both others finish `/init`'s checks and power off.
///
/// Once quarantined (issue 13): in one of two full fresh-clone runs the
/// machine triple-faulted 5.4 s in. If QEMU ends early the test fails at
/// once and the harness keeps the pause-at-fault dump (each CPU's
/// registers and `info mem`, `qemu-reset.log`). Session 17 ran it 62 times
/// in a loop beside the other helpers' builds and emulators (load 11-20 on
/// 2 cores) without a fault, and it also asserts the stacks' margin.
#[test]
fn linux_dom0_qemu_isolation() {
    let test = "linux_dom0_qemu_isolation";
    let [vmlinux, initramfs] = linux_modules();
    // `oob` last: dom0 creates in order, so both Linux domains exist when
    // it runs.
    // lx-poke: 32 MiB = 0x200_0000; the page above the start-info page
    // (the last of its memory) is not its own.
    let config = format!(
        "{}{}{}[[domain]]\nname = \"oob\"\nimage = \"oob\"\nmemory = 4\n",
        linux_toml("lx-a", 48, "quiet kestrel.checks=cpus,sleep"),
        linux_toml("lx-b", 48, "quiet kestrel.checks=cpus,sleep"),
        linux_toml("lx-poke", 32, "quiet kestrel.poke=0x2001000"),
    );
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        vmlinux,
        initramfs,
        guest_module("oob", "oob", ""),
        config_module(test, &config),
    ];
    let (vm, sock, log) = mgmt_vm_sized(test, &modules, 2, "256M");
    let qemu = Machine::qemu(test, vm, 600, LINUX_END);
    let ended = qemu.ended();
    let session = std::panic::catch_unwind(|| {
        let e = &*ended;
        expect_while(e, &log, "name=oob result=killed", 180, "oob killed");
        expect_while(e, &log, "name=lx-poke result=killed", 180, "lx-poke killed");
        for lx in ["lx-a", "lx-b"] {
            let check = format!("[{lx}] kestrel-check: sleep1_cs=");
            expect_while(e, &log, &check, 120, lx);
            let end = format!("name={lx} result=exited code=0");
            expect_while(e, &log, &end, 60, &format!("{lx} end"));
        }
    });
    // A machine that already ended has no dom0 to ask (its report, below,
    // says how it ended).
    if !ended.load(Ordering::Acquire) {
        create(&sock, test, "end", &linux_toml("end", 32, "quiet"));
    }
    let (o, ()) = qemu.join(session);
    let _report = ReportOnPanic(&o);
    assert_eq!(o.ended, xtask::runner::Ended::Stopped, "{test}");
    o.assert_killed("oob", &["outside its memory"]);
    // Linux userland writing outside its domain (busybox devmem).
    o.assert_killed(
        "lx-poke",
        &["wrote guest-physical 0x2001000, outside its memory"],
    );
    o.expect_line("[lx-poke] kestrel-linux: writing guest-physical 0x2001000 through /dev/mem");
    assert!(
        !o.lines
            .iter()
            .any(|l| l.starts_with("[lx-poke] kestrel-linux: the write to")
                || l.starts_with("[lx-poke] kestrel-linux: devmem could not")),
        "{test}: lx-poke's write outside its memory went through"
    );
    // Through dom0, which drains a console after its domain ended too.
    o.expect_line("[oob] writing to guest-physical");
    // The kill came while both Linux domains were alive: after both were
    // created, before either ended.
    let at = |needle: &str| {
        o.lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{test}: no line with `{needle}`"))
    };
    let killed = at("name=oob result=killed");
    for lx in ["lx-a", "lx-b"] {
        assert!(
            at(&format!("({lx}) created by domain 1 (dom0)")) < killed
                && killed < at(&format!("name={lx} result=exited code=0")),
            "{test}: oob was not killed while {lx} ran"
        );
        o.assert_domain(lx, "exited", 0);
        assert!(
            o.lines
                .iter()
                .any(|l| l.starts_with(&format!("[{lx}] kestrel-check: cpus=1"))),
            "{test}: {lx} did not run its checks"
        );
    }
    assert_clean(&o);
    // Creating a Linux domain is the hypervisor's deepest stack use.
    boot_tests::stacks::assert_margin(&o);
}

/// VT-x: Linux userland writing outside its domain through `/dev/mem` is
/// killed by EPT (the QEMU isolation test checks it beside other domains).
#[test]
fn linux_dom0_poke_bochs() {
    let test = "linux_dom0_poke";
    let o = vmx_dom0_linux(
        test,
        &linux_toml("lx-poke", 32, "quiet kestrel.poke=0x2001000"),
        "lx-poke",
    );
    let _report = ReportOnPanic(&o);
    o.expect_line("[lx-poke] kestrel-linux: writing guest-physical 0x2001000 through /dev/mem");
    o.assert_killed(
        "lx-poke",
        &["wrote guest-physical 0x2001000, outside its memory"],
    );
    assert_clean(&o);
    // Creating a Linux domain is the hypervisor's deepest stack use.
    boot_tests::stacks::assert_margin(&o);
}
