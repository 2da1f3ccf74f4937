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

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use boot_tests::artifacts::{self, guest_module, hvctl};
use boot_tests::domains::ReportOnPanic;
use boot_tests::mgmt::{
    config_module, hvctl_cmd, input_file, linux_images, mgmt_vm_sized, wait_for_line,
};
use boot_tests::qemu::{BIOS_TIMEOUT_S, run_until};
use boot_tests::scaled;
use xtask::iso::Module;

const TEST: &str = "upload_store_qemu_linux";
const END: &str =
    "[[domain]]\nname = \"end\"\nimage = \"hello\"\nmemory = 4\ncmdline = \"kestrel-test-end\"\n";
const END_LINES: &[&str] = &["[end] hello from", "kestrel-test-end"];
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn sha(bytes: &[u8]) -> String {
    kestrel_toolstack::server::upload::hex(&kestrel_toolstack::server::upload::sha256(bytes))
}

/// `hvctl --host ADDR --key-file KEY ARGS...` (exit 0 asserted): stdout.
fn over_tcp(addr: &str, key: &Path, args: &[&str]) -> String {
    let out = Command::new(hvctl())
        .args(["--host", addr, "--key-file"])
        .arg(key)
        .args(args)
        .env_remove("KESTREL_HOST")
        .env_remove("KESTREL_SOCKET")
        .output()
        .unwrap_or_else(|e| panic!("running hvctl: {e}"));
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "hvctl --host {args:?}: {o}{e}");
    o
}

/// A session of its own through the relay (`<sock>.mux`): sends `lines`,
/// returns the first `answers` lines it gets back.
fn raw(sock: &Path, lines: &[String], answers: usize) -> Vec<String> {
    let mut mux = sock.as_os_str().to_owned();
    mux.push(".mux");
    let mut s = std::os::unix::net::UnixStream::connect(&mux)
        .unwrap_or_else(|e| panic!("connecting {}.mux: {e}", sock.display()));
    s.set_read_timeout(Some(scaled(30)))
        .unwrap_or_else(|e| panic!("{e}"));
    for l in lines {
        s.write_all(format!("{l}\n").as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut r = BufReader::new(s);
    (0..answers)
        .map(|_| {
            let mut line = String::new();
            r.read_line(&mut line)
                .unwrap_or_else(|e| panic!("reading a reply: {e}"));
            line.trim_end().to_string()
        })
        .collect()
}

fn chunk(name: &str, offset: usize, bytes: &[u8]) -> String {
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!(r#"{{"id":3,"op":"upload_chunk","name":"{name}","offset":{offset},"data":"{data}"}}"#)
}

/// The store's images (`hvctl --json image list`, source `store`): name,
/// size, SHA-256.
fn store_images(sock: &Path) -> Vec<(String, u64, String)> {
    let (code, out, err) = hvctl_cmd(sock, &["--json", "image", "list"]);
    assert_eq!(code, 0, "image list: {out}{err}");
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("image list: {e}: {out}"));
    let mut l: Vec<(String, u64, String)> = v["images"]
        .as_array()
        .unwrap_or_else(|| panic!("image list: {out}"))
        .iter()
        .filter(|i| i["source"] == "store")
        .map(|i| {
            (
                i["name"].as_str().unwrap_or_default().to_string(),
                i["size"].as_u64().unwrap_or_default(),
                i["sha256"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    l.sort_by_key(|a| a.1);
    l
}

/// Boots on `disk`; runs `session(sock, log, tcp address)` once dom0 is
/// ready; ends the run through the `end` domain.
fn boot(
    n: u32,
    disk: &Path,
    key: &Path,
    format: bool,
    session: impl FnOnce(&Path, &Path, &str) + std::panic::UnwindSafe,
) -> boot_tests::Outcome {
    let test = format!("{TEST}_{n}");
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        config_module(&test, &config(format)),
        Module::named(key, "ops.key", "").unwrap_or_else(|e| panic!("{e}")),
    ];
    let (mut vm, sock, log) = mgmt_vm_sized(&test, &modules, 1, "256M");
    let port = free_port();
    vm.extra.extend(
        [
            "-device".to_string(),
            "intel-iommu".into(),
            "-drive".into(),
            format!("if=none,id=store,format=raw,file={}", disk.display()),
            "-device".into(),
            "virtio-blk-pci,drive=store,addr=0x3,disable-legacy=on,iommu_platform=on,serial=kestrel-store0"
                .into(),
            "-netdev".into(),
            format!("user,id=n,hostfwd=tcp:127.0.0.1:{port}-:4444"),
            "-device".into(),
            "virtio-net-pci,netdev=n,addr=0x4,disable-legacy=on,iommu_platform=on".into(),
        ]
        .map(Into::into),
    );
    let t = test.clone();
    let qemu = std::thread::spawn(move || run_until(&t, vm, BIOS_TIMEOUT_S * 4, Some(END_LINES)));
    let ready = wait_for_line(&log, "dom0: ready: ", scaled(120));
    let (sock2, log2) = (sock.clone(), log.clone());
    let addr = format!("127.0.0.1:{port}");
    let result = std::panic::catch_unwind(move || {
        ready.unwrap_or_else(|| panic!("{test}: dom0 never became ready"));
        session(&sock2, &log2, &addr);
    });
    let end = input_file(&format!("{TEST}_{n}"), "end.toml", END);
    let _ = hvctl_cmd(&sock, &["create", end.to_str().unwrap_or("")]);
    let o = qemu
        .join()
        .unwrap_or_else(|_| panic!("the QEMU thread panicked"));
    {
        let _report = ReportOnPanic(&o);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
        assert_eq!(o.ended, xtask::runner::Ended::Stopped, "boot {n}");
        assert!(
            o.fatal_lines().is_empty() && o.panic_lines().is_empty(),
            "boot {n}: died"
        );
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
    let key = dir.join("ops.key");
    let out = Command::new(hvctl())
        .arg("keygen")
        .arg(&key)
        .output()
        .unwrap_or_else(|e| panic!("hvctl keygen: {e}"));
    assert!(out.status.success(), "hvctl keygen: {out:?}");
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
        let wrong = raw(
            sock,
            &[
                r#"{"id":0,"op":"hello","version":1,"client":"t"}"#.to_string(),
                format!(
                    r#"{{"id":1,"op":"upload_begin","name":"bad","size":{},"sha256":"{}"}}"#,
                    bytes.len(),
                    sha(b"other")
                ),
                chunk("bad", 0, &bytes),
                r#"{"id":4,"op":"upload_end","name":"bad"}"#.to_string(),
            ],
            4,
        );
        assert!(wrong[3].contains("nothing kept"), "wrong hash: {wrong:?}");
        let short = raw(
            sock,
            &[
                r#"{"id":0,"op":"hello","version":1,"client":"t"}"#.to_string(),
                format!(
                    r#"{{"id":1,"op":"upload_begin","name":"bad","size":{},"sha256":"{}"}}"#,
                    bytes.len(),
                    sha(&bytes)
                ),
                chunk("bad", 0, &bytes[..100]),
                r#"{"id":4,"op":"upload_end","name":"bad"}"#.to_string(),
            ],
            4,
        );
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
