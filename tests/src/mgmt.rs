//! What the dom0 boot tests share (issue 15: the scaffolding had been
//! copied across `dom0_*.rs`): a QEMU machine whose COM2 is a unix socket
//! for `hvctl`, the configuration module, running the real `hvctl`
//! binary, and waiting for a line in the serial log.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use xtask::iso::Module;

use crate::artifacts::{hvctl, root, shared_iso, test_dir};
use crate::qemu::iso_vm;

/// A QEMU (AMD-V) machine booting `modules` with `dom0` from a fresh run
/// directory, COM2 a unix socket there for `hvctl`: the machine, the
/// socket and the serial log (the hvctl and console sessions).
pub fn mgmt_vm(test: &str, modules: &[Module]) -> (xtask::qemu::Vm, PathBuf, PathBuf) {
    mgmt_vm_sized(test, modules, 2, "128M")
}

/// [`mgmt_vm`] with `cpus` CPUs and `memory` (QEMU's `-m`): Linux domains
/// need more than the 128 MiB the small guests' tests give.
pub fn mgmt_vm_sized(
    test: &str,
    modules: &[Module],
    cpus: u32,
    memory: &str,
) -> (xtask::qemu::Vm, PathBuf, PathBuf) {
    let run_dir = root().join("runs").join(test);
    let _ = std::fs::remove_dir_all(&run_dir);
    let iso = shared_iso(
        &format!("{test}.iso"),
        "exit=qemu dom0 loglevel=info",
        modules,
    );
    let sock = run_dir.join("mgmt.sock");
    let log = run_dir.join("serial.log");
    let mut vm = iso_vm(&iso, cpus, memory);
    vm.cpu = "max".into();
    vm.extra.push("-chardev".into());
    vm.extra
        .push(format!("socket,id=mgmt,path={},server=on,wait=off", sock.display()).into());
    vm.extra.push("-serial".into());
    vm.extra.push("chardev:mgmt".into());
    (vm, sock, log)
}

/// dom0's configuration `text` as the boot module `guests.toml`.
pub fn config_module(test: &str, text: &str) -> Module {
    // Not in the run's own directory: the run empties that when it starts.
    let path = test_dir(&format!("{test}.in")).join("guests.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Module::named(&path, "guests.toml", "").unwrap_or_else(|e| panic!("{e}"))
}

/// The first complete line of `log` holding `needle`, waiting for it up
/// to `timeout`.
pub fn wait_for_line(log: &Path, needle: &str, timeout: Duration) -> Option<String> {
    wait_for_nth_line(log, &[needle], 1, timeout)
}

/// The `n`th (from 1) complete line of `log` holding every one of
/// `needles`, waiting for it up to `timeout`: for a line that repeats (a
/// domain made again under the same name) or that has a part in between
/// (Linux's printk time after a `[name] ` prefix).
pub fn wait_for_nth_line(
    log: &Path,
    needles: &[&str],
    n: usize,
    timeout: Duration,
) -> Option<String> {
    let end = Instant::now() + timeout;
    loop {
        let text = std::fs::read(log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        // Only complete lines (ended by a newline).
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        if let Some(l) = complete
            .lines()
            .filter(|l| needles.iter().all(|s| l.contains(s)))
            .nth(n.saturating_sub(1))
        {
            return Some(l.trim_end_matches('\r').to_string());
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the real `hvctl --socket SOCKET ARGS...`: exit status, stdout,
/// stderr.
pub fn hvctl_cmd(socket: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(hvctl())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running hvctl: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `hvctl --json info DOM` as JSON (panics, naming the output, when it
/// fails).
pub fn hvctl_info(socket: &Path, dom: &str) -> serde_json::Value {
    let (code, out, err) = hvctl_cmd(socket, &["--json", "info", dom]);
    assert_eq!(code, 0, "hvctl info {dom}: {out}{err}");
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap_or_else(|e| panic!("{e}: {out}"))["domain"]
        .clone()
}

/// Every domain `hvctl --json list` shows, as JSON.
pub fn hvctl_list(socket: &Path) -> Vec<serde_json::Value> {
    let (code, out, err) = hvctl_cmd(socket, &["--json", "list"]);
    assert_eq!(code, 0, "hvctl list: {out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["domains"]
        .as_array()
        .unwrap_or_else(|| panic!("no domains: {out}"))
        .clone()
}

/// A file for `hvctl create` in the test's input directory.
pub fn input_file(test: &str, name: &str, text: &str) -> PathBuf {
    let p = test_dir(&format!("{test}.in")).join(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    p
}

/// The host's free memory in bytes, by `hvctl --json host`.
pub fn hvctl_free_bytes(socket: &Path) -> u64 {
    let v = hvctl_host(socket);
    v["memory_free_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("hvctl host: no memory_free_bytes in {v}"))
}

/// The Linux guest kernel and initramfs (`xtask::linux`: from the cache or
/// built now, so a fresh clone works), once per test process.
pub fn linux_images() -> &'static xtask::linux::LinuxImages {
    static IMAGES: std::sync::OnceLock<xtask::linux::LinuxImages> = std::sync::OnceLock::new();
    IMAGES.get_or_init(|| {
        xtask::linux::build().unwrap_or_else(|e| panic!("building the Linux guest: {e}"))
    })
}

/// The Linux kernel and initramfs as the boot modules `vmlinux` and
/// `initramfs.cpio`, the names `dom0/demo.toml` and the tests' TOML use.
pub fn linux_modules() -> [Module; 2] {
    let img = linux_images();
    [
        Module::named(&img.vmlinux, "vmlinux", "").unwrap_or_else(|e| panic!("{e}")),
        Module::named(&img.initramfs, "initramfs.cpio", "").unwrap_or_else(|e| panic!("{e}")),
    ]
}

/// `hvctl --json host` as JSON (panics, naming the output, when it fails).
pub fn hvctl_host(socket: &Path) -> serde_json::Value {
    let (code, out, err) = hvctl_cmd(socket, &["--json", "host"]);
    assert_eq!(code, 0, "hvctl host: {out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}
