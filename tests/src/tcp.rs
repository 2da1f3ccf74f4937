//! What the boot tests that manage dom0 over TCP share: a free host port
//! for QEMU's `hostfwd` (or Bochs' COM2 socket), a key made by `hvctl
//! keygen`, and one `hvctl --host` call.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::artifacts::hvctl;

/// A TCP port nobody listens on now on 127.0.0.1 (the emulator binds it a
/// moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// QEMU's user network with host port `port` on 127.0.0.1 forwarded to
/// dom0's management port 4444, through a modern virtio-net at slot 4
/// behind the IOMMU.
pub fn forwarded_nic(port: u16) -> Vec<OsString> {
    vec![
        "-netdev".into(),
        format!("user,id=n,hostfwd=tcp:127.0.0.1:{port}-:4444").into(),
        "-device".into(),
        // QEMU refuses iommu_platform on a transitional device; without it
        // the device would bypass the IOMMU (dev/virtio.rs).
        "virtio-net-pci,netdev=n,addr=0x4,disable-legacy=on,iommu_platform=on".into(),
    ]
}

/// `hvctl keygen` into `dir/name`; the key file's path.
pub fn keygen(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let out = Command::new(hvctl())
        .arg("keygen")
        .arg(&p)
        .output()
        .unwrap_or_else(|e| panic!("hvctl keygen: {e}"));
    assert!(out.status.success(), "hvctl keygen: {out:?}");
    p
}

/// `hvctl --host ADDR --key-file KEY ARGS...` with no connection taken from
/// the environment: exit status, stdout, stderr.
pub fn over_tcp(addr: &str, key: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(hvctl())
        .args(["--host", addr, "--key-file"])
        .arg(key)
        .args(args)
        .env_remove("KESTREL_HOST")
        .env_remove("KESTREL_SOCKET")
        .output()
        .unwrap_or_else(|e| panic!("running hvctl: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
