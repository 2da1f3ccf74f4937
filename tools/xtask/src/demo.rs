//! `cargo xtask qemu --dom0` (what `./qemu-run.sh` boots): the hypervisor
//! with dom0 as module 0, the `hello` and `ticker` guest images, the Linux
//! guest (`vmlinux` and `initramfs.cpio`, from `cargo xtask linux`'s cache
//! or built now) and the boot configuration `dom0/demo.toml`; dom0's management line (COM2) is a
//! Unix socket `hvctl` connects to.

use std::ffi::OsString;
use std::path::PathBuf;

use xtask::error::Result;
use xtask::iso::Module;
use xtask::paths::{self, Profile};
use xtask::server;

/// The demo's boot modules (built by `cargo xtask build`): the server
/// image's, from `dom0/demo.toml` (dom0, `hello`, `ticker`, `vmlinux`,
/// `initramfs.cpio`, the file).
pub fn modules(profile: Profile) -> Result<Vec<Module>> {
    server::modules(profile, &server::demo_config())
}

/// Where the management socket is.
pub fn socket() -> PathBuf {
    paths::build_dir().join("kestrel-mgmt.sock")
}

/// QEMU arguments that make COM2 a server socket at [`socket`].
pub fn qemu_args() -> Vec<OsString> {
    let sock = socket();
    let _ = std::fs::remove_file(&sock);
    vec![
        "-chardev".into(),
        format!("socket,id=mgmt,path={},server=on,wait=off", sock.display()).into(),
        "-serial".into(),
        "chardev:mgmt".into(),
    ]
}

/// How to reach dom0, printed before QEMU starts.
pub fn banner() -> String {
    let hvctl = paths::target_dir().join("release").join("hvctl");
    format!(
        "kestrel: dom0 demo: domains from dom0/demo.toml; manage them from another terminal:\n\
         kestrel:   {} --socket {} list\n\
         kestrel:   (also: info, create <config.toml>, pause, unpause, destroy, console <dom>)\n\
         kestrel: a Linux shell (domain `linux`; Ctrl-] detaches, `poweroff` ends it):\n\
         kestrel:   {} --socket {} console linux",
        hvctl.display(),
        socket().display(),
        hvctl.display(),
        socket().display()
    )
}
