//! An uploaded Linux image lives in dom0's store and domains are built
//! from it (issue 14's "done means"): uploads go straight into the store
//! (`dom0/toolstack/src/server/upload_store.rs`) and domains are built by
//! streaming store images into hypervisor stages
//! (`dom0/src/images_store.rs`, `DOMCTL_CREATE_STAGED`). QEMU only (q35,
//! TCG, AMD-V, `intel-iommu`; Bochs has no IOMMU, so no disk or NIC).
//!
//! One disk file across two boots (a new QEMU on the same disk is the
//! reboot):
//!
//! | boot | what happens | asserts |
//! |---|---|---|
//! | 1 | blank disk, `[store] format = true`; over the serial line, an upload with a wrong SHA-256 and one that ends early; then `hvctl --host` (TCP, key) `create` of a configuration whose `kernel` and `initrd` are local paths of the real `vmlinux` and initramfs | both bad uploads are refused and the store lists no image; the create uploads both files into the store (listed with source `store` and the host's SHA-256) and the Linux domain runs `/init` (`kestrel-linux: init reached`, its `cpus` check) and powers off `exited code=0` |
//! | 2 | the same disk, no Linux boot modules; `hvctl --host create` of the same configuration (local paths) and of one naming the store images by name | the store still lists both images with the same SHA-256 and nothing is uploaded (the list is unchanged); each domain reaches `/init` and powers off `exited code=0`; no `WARNING:`/`BUG:` in any Linux console |

use std::path::{Path, PathBuf};

use boot_tests::artifacts;
use boot_tests::domains::ReportOnPanic;
use boot_tests::mgmt::{input_file, linux_images, wait_for_line};
use boot_tests::qemu::BIOS_TIMEOUT_S;
use boot_tests::relay::{raw, upload_chunk};
use boot_tests::scaled;
use boot_tests::store_vm::{store_boot, store_vm};
use boot_tests::tcp::{forwarded_nic, free_port, keygen};
use xtask::iso::Module;

const TEST: &str = "upload_store_qemu_linux";
const BAD: [&str; 2] = ["WARNING:", "BUG:"];

fn config(format: bool) -> String {
    format!(
        "[network]\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\n\
         key_files = [\"ops.key\"]\n\
         [store]\ndisk = \"kestrel-store0\"\nformat = {format}\n"
    )
}

fn linux_toml(name: &str, kernel: &str, initrd: &str) -> String {
    format!(
        "[[domain]]\nname = \"{name}\"\nkernel = \"{kernel}\"\ninitrd = \"{initrd}\"\n\
         memory = 48\nvcpus = 1\ncmdline = \"console=hvc0 kestrel.checks=cpus\"\n"
    )
}

fn sha(bytes: &[u8]) -> String {
    kestrel_toolstack::server::upload::hex(&kestrel_toolstack::server::upload::sha256(bytes))
}

/// `hvctl --host ADDR --key-file KEY ARGS...` (exit 0 asserted): stdout.
fn over_tcp(addr: &str, key: &Path, args: &[&str]) -> String {
    let (code, o, e) = boot_tests::tcp::over_tcp(addr, key, args);
    assert_eq!(code, 0, "hvctl --host {args:?}: {o}{e}");
    o
}

/// The store's images ([`boot_tests::store_vm::store_images`]), smallest
/// first.
fn store_images(sock: &Path) -> Vec<(String, u64, String)> {
    let mut l = boot_tests::store_vm::store_images(sock);
    l.sort_by_key(|a| a.1);
    l
}

/// An upload named `bad` through the relay, announcing `bytes` with the
/// SHA-256 `sha` but sending `sent` in one chunk, then ending it: the four
/// replies (hello, begin, chunk, end).
fn bad_upload(sock: &Path, bytes: &[u8], sha: &str, sent: &[u8]) -> Vec<String> {
    raw(
        sock,
        &[
            r#"{"id":0,"op":"hello","version":1,"client":"t"}"#.to_string(),
            format!(
                r#"{{"id":1,"op":"upload_begin","name":"bad","size":{},"sha256":"{sha}"}}"#,
                bytes.len(),
            ),
            upload_chunk("bad", 0, sent),
            r#"{"id":4,"op":"upload_end","name":"bad"}"#.to_string(),
        ],
        4,
        scaled(30),
    )
}

/// Boots on `disk` with a NIC (the user network, dom0's TCP port
/// forwarded to a free host port); runs `session(sock, log, tcp address)`
/// once dom0 is ready ([`store_boot`]); no Linux console may say one of
/// [`BAD`].
fn boot(
    n: u32,
    disk: &Path,
    key: &Path,
    format: bool,
    session: impl FnOnce(&Path, &Path, &str) + std::panic::UnwindSafe,
) -> boot_tests::Outcome {
    let test = format!("{TEST}_{n}");
    let key_module = Module::named(key, "ops.key", "").unwrap_or_else(|e| panic!("{e}"));
    let (mut vm, sock, log) = store_vm(&test, disk, &config(format), &[key_module]);
    let port = free_port();
    vm.extra.extend(forwarded_nic(port));
    let addr = format!("127.0.0.1:{port}");
    let o = store_boot(
        &test,
        (vm, sock, log),
        BIOS_TIMEOUT_S * 4,
        &format!("boot {n}"),
        |sock, log| session(sock, log, &addr),
    );
    {
        let _report = ReportOnPanic(&o);
        for bad in BAD {
            assert!(
                o.line(bad).is_none(),
                "boot {n}: a Linux console says {bad}"
            );
        }
    }
    o
}

/// Creates `toml` (as file `file`, beside the Linux files) over TCP and
/// waits for its domain `name` to reach `/init` and power off.
fn create_linux(
    test: &str,
    addr: &str,
    key: &Path,
    log: &Path,
    file: &str,
    name: &str,
    toml: &str,
) {
    let cfg = input_file(test, file, toml);
    let dir = cfg.parent().unwrap_or(Path::new("."));
    let img = linux_images();
    for (from, to) in [
        (&img.vmlinux, "vmlinux"),
        (&img.initramfs, "initramfs.cpio"),
    ] {
        std::fs::copy(from, dir.join(to)).unwrap_or_else(|e| panic!("{e}"));
    }
    over_tcp(addr, key, &["create", cfg.to_str().unwrap_or("")]);
    wait_for_line(
        log,
        &format!("[{name}] kestrel-linux: init reached"),
        scaled(180),
    )
    .unwrap_or_else(|| panic!("{test}: {name} never reached /init"));
    wait_for_line(
        log,
        &format!("name={name} result=exited code=0"),
        scaled(120),
    )
    .unwrap_or_else(|| panic!("{test}: {name} did not power off"));
}

#[test]
fn upload_store_qemu_linux() {
    let dir = artifacts::test_dir(&format!("{TEST}.files"));
    let disk: PathBuf = dir.join("store.img");
    std::fs::write(&disk, vec![0u8; 96 << 20]).unwrap_or_else(|e| panic!("{e}"));
    let key = keygen(&dir, "ops.key");
    let img = linux_images();
    let vmlinux = std::fs::read(&img.vmlinux).unwrap_or_else(|e| panic!("{e}"));
    let initramfs = std::fs::read(&img.initramfs).unwrap_or_else(|e| panic!("{e}"));
    let mut want = vec![
        (vmlinux.len() as u64, sha(&vmlinux)),
        (initramfs.len() as u64, sha(&initramfs)),
    ];
    want.sort();
    let local = linux_toml("lx-up", "./vmlinux", "./initramfs.cpio");

    // Boot 1: bad uploads leave nothing; a create with local paths
    // uploads both into the store and runs.
    let t1 = format!("{TEST}_1");
    let (k1, want1, local1) = (key.clone(), want.clone(), local.clone());
    boot(1, &disk, &key, true, move |sock, log, addr| {
        // (hvctl starts the relay `raw` speaks through.)
        assert_eq!(store_images(sock), [], "a new store");
        let bytes = b"not the image that was announced".repeat(100);
        let wrong = bad_upload(sock, &bytes, &sha(b"other"), &bytes);
        assert!(wrong[3].contains("nothing kept"), "wrong hash: {wrong:?}");
        let short = bad_upload(sock, &bytes, &sha(&bytes), &bytes[..100]);
        assert!(short[3].contains("truncated"), "truncated: {short:?}");
        assert_eq!(store_images(sock), [], "a bad upload left an image");
        create_linux(&t1, addr, &k1, log, "lx.toml", "lx-up", &local1);
        let got: Vec<(u64, String)> = store_images(sock)
            .into_iter()
            .map(|(_, s, h)| (s, h))
            .collect();
        assert_eq!(got, want1, "the store after the upload");
    });

    // Boot 2 (a reboot: the same disk): built from the store, nothing sent.
    let t2 = format!("{TEST}_2");
    let (k2, want2) = (key.clone(), want.clone());
    boot(2, &disk, &key, false, move |sock, log, addr| {
        let before = store_images(sock);
        let got: Vec<(u64, String)> = before.iter().map(|(_, s, h)| (*s, h.clone())).collect();
        assert_eq!(got, want2, "the store after the reboot");
        create_linux(&t2, addr, &k2, log, "lx.toml", "lx-up", &local);
        assert_eq!(store_images(sock), before, "something was uploaded again");
        let (initrd, kernel) = (&before[0].0, &before[1].0);
        create_linux(
            &t2,
            addr,
            &k2,
            log,
            "byname.toml",
            "lx-name",
            &linux_toml("lx-name", kernel, initrd),
        );
        assert_eq!(store_images(sock), before);
    });
}
