//! What the image store's boot tests share (`store.rs`, `store_log.rs`,
//! `upload_store.rs`): a QEMU machine with dom0's store disk behind the
//! IOMMU, one boot of it with a session once dom0 is ready, `hvctl` calls
//! that must succeed, and the store's images as dom0 lists them.

use std::panic::UnwindSafe;
use std::path::{Path, PathBuf};

use xtask::iso::Module;

use crate::Outcome;
use crate::artifacts::guest_module;
use crate::domains::ReportOnPanic;
use crate::mgmt::{config_module, hvctl_cmd, mgmt_vm_sized};
use crate::session::{END_LINE, Machine, assert_survived, dom0_ready};

/// A 1-CPU, 256 MiB management machine ([`mgmt_vm_sized`]) booting dom0,
/// `hello` (the `end` domain's image), `config` as dom0's configuration
/// and then `extra`, with an Intel IOMMU and the raw image `disk` as a
/// modern virtio-blk disk (serial `kestrel-store0`, slot 3) behind it:
/// the machine, the management socket and the serial log.
pub fn store_vm(
    test: &str,
    disk: &Path,
    config: &str,
    extra: &[Module],
) -> (xtask::qemu::Vm, PathBuf, PathBuf) {
    let mut modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        config_module(test, config),
    ];
    modules.extend_from_slice(extra);
    let (mut vm, sock, log) = mgmt_vm_sized(test, &modules, 1, "256M");
    vm.extra.extend(
        [
            "-device".to_string(),
            "intel-iommu".into(),
            "-drive".into(),
            format!("if=none,id=store,format=raw,file={}", disk.display()),
            "-device".into(),
            // QEMU refuses iommu_platform on a transitional device.
            "virtio-blk-pci,drive=store,addr=0x3,disable-legacy=on,iommu_platform=on,serial=kestrel-store0"
                .into(),
        ]
        .into_iter()
        .map(Into::into),
    );
    (vm, sock, log)
}

/// Boots `vm` (with its socket `sock` and serial log `log`) as `test` for
/// at most `timeout_s` (scaled) seconds; once dom0 is ready runs
/// `session`, then ends the run through the `end` domain (QEMU is killed
/// at its line: no orderly shutdown). Checks that the run stopped there
/// and the hypervisor lived, naming the boot `what`.
pub fn store_boot(
    test: &str,
    (vm, sock, log): (xtask::qemu::Vm, PathBuf, PathBuf),
    timeout_s: u64,
    what: &str,
    session: impl FnOnce(&Path, &Path) + UnwindSafe,
) -> Outcome {
    let (o, ()) = Machine::qemu(test, vm, timeout_s, END_LINE).session(&sock, test, || {
        dom0_ready(test, &log, 120);
        session(&sock, &log);
    });
    {
        let _report = ReportOnPanic(&o);
        assert_survived(&o, what);
    }
    o
}

/// Runs `hvctl args`; its stdout (exit 0 asserted).
pub fn hvctl_ok(sock: &Path, args: &[&str]) -> String {
    let (code, out, err) = hvctl_cmd(sock, args);
    assert_eq!(code, 0, "hvctl {args:?}: {err}");
    out
}

/// The store's images (`hvctl --json image list`, source `store`), in
/// its order: name, size, SHA-256.
pub fn store_images(sock: &Path) -> Vec<(String, u64, String)> {
    let out = hvctl_ok(sock, &["--json", "image", "list"]);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("image list: {e}: {out}"));
    v["images"]
        .as_array()
        .unwrap_or_else(|| panic!("image list: no images array: {out}"))
        .iter()
        .filter(|i| i["source"] == "store")
        .map(|i| {
            (
                i["name"].as_str().unwrap_or_default().to_string(),
                i["size"].as_u64().unwrap_or_default(),
                i["sha256"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}
