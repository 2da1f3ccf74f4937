//! Store objects' bytes over the authenticated TCP channel (issue 14;
//! docs/store.md, `server/volume_xfer.rs`, hvctl `xfer.rs`): the machine of
//! `upload_tcp.rs` (q35, `intel-iommu`, virtio-net on QEMU's user network
//! with a host forward to dom0's port 4444, one key) with the store's disk
//! of `store.rs` (virtio-blk, serial `kestrel-store0`, formatted at boot).
//! QEMU only (AMD-V under TCG): Bochs has no IOMMU, so dom0 gets no disk
//! and no NIC there (`store_bochs_no_disk` covers VT-x).
//!
//! | test | asserts |
//! |---|---|
//! | `xfer_qemu_tcp` | over `hvctl --host --key-file`: a qcow2 made by `qemu-img`/`qemu-io` (8 MiB, 3 written ranges) is imported as a volume with only its data sent; exported as qcow2 it passes `qemu-img check` and `qemu-img compare` finds it identical to the original; exported as raw, `qemu-img compare` again; a qcow2 with its L1 table offset past the end is refused (exit 2) naming the L1 table, and `volume list` shows only the first volume; `image import` of a raw file lists it with source `store` and the file's SHA-256 |

use std::path::{Path, PathBuf};
use std::process::Command;

use boot_tests::artifacts::{guest_module, hvctl, test_dir};
use boot_tests::domains::ReportOnPanic;
use boot_tests::mgmt::{config_module, input_file, mgmt_vm_sized, wait_for_line};
use boot_tests::qemu::{BIOS_TIMEOUT_S, run_until};
use boot_tests::scaled;
use xtask::iso::Module;

const TEST: &str = "xfer_qemu_tcp";
const CONFIG: &str = "[network]\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\n\
                      key_files = [\"ops.key\"]\n\n\
                      [store]\ndisk = \"kestrel-store0\"\nformat = true\n";
const END: &str =
    "[[domain]]\nname = \"end\"\nimage = \"hello\"\nmemory = 4\ncmdline = \"kestrel-test-end\"\n";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (Debian's qemu-utils: tools/setup.sh)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?}: {text}");
    text
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or("")
}

/// `hvctl --host ADDR --key-file KEY ARGS...`: exit status, stdout, stderr.
fn over_tcp(addr: &str, key: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(hvctl())
        .args(["--host", addr, "--key-file"])
        .arg(key)
        .args(["--timeout", "120"])
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

fn checks(addr: &str, key: &Path, dir: &Path) {
    let ok = |args: &[&str]| {
        let (code, out, err) = over_tcp(addr, key, args);
        assert_eq!(code, 0, "hvctl {args:?}: {out}{err}");
        out
    };
    let q = dir.join("src.qcow2");
    let _ = std::fs::remove_file(&q);
    run("qemu-img", &["create", "-q", "-f", "qcow2", s(&q), "8M"]);
    run(
        "qemu-io",
        &[
            "-c",
            "write -P 0xab 0 64k",
            "-c",
            "write -P 0x5c 3M 100k",
            "-c",
            "write -P 0x11 8160k 32k",
            s(&q),
        ],
    );
    let out = ok(&["volume", "import", "vol1", s(&q)]);
    assert!(
        out.contains("(qcow2, 8 MiB) as volume vol1: 224 KiB sent"),
        "{out}"
    );
    let back = dir.join("back.qcow2");
    let out = ok(&["volume", "export", "vol1", s(&back)]);
    assert!(out.contains("224 KiB received"), "{out}");
    run("qemu-img", &["check", s(&back)]);
    let same = run("qemu-img", &["compare", s(&q), s(&back)]);
    assert!(same.contains("Images are identical"), "{same}");
    let raw = dir.join("back.img");
    ok(&["volume", "export", "vol1", s(&raw), "--format", "raw"]);
    let same = run(
        "qemu-img",
        &["compare", "-f", "qcow2", "-F", "raw", s(&q), s(&raw)],
    );
    assert!(same.contains("Images are identical"), "{same}");
    // A corrupt qcow2: refused, named, nothing made.
    let mut bytes = std::fs::read(&q).unwrap_or_else(|e| panic!("{e}"));
    bytes[40..48].copy_from_slice(&(64u64 << 20).to_be_bytes());
    let bad = dir.join("bad.qcow2");
    std::fs::write(&bad, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let (code, out, err) = over_tcp(addr, key, &["volume", "import", "vol2", s(&bad)]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("L1 table at offset 0x4000000"), "{err}");
    let list = ok(&["volume", "list"]);
    let want = format!(
        "{:<4}  {:>10}\n{:<4}  {:>10}\n",
        "NAME", "SIZE", "vol1", "8 MiB"
    );
    assert_eq!(list, want);
    // An image from a raw file.
    let img = dir.join("blob.bin");
    let blob: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&img, &blob).unwrap_or_else(|e| panic!("{e}"));
    ok(&["image", "import", "blob", s(&img)]);
    let list = ok(&["image", "list"]);
    let sha =
        kestrel_toolstack::server::upload::hex(&kestrel_toolstack::server::upload::sha256(&blob));
    let row = list
        .lines()
        .find(|l| l.starts_with("blob "))
        .unwrap_or_else(|| panic!("no blob in {list}"));
    assert!(row.contains(" store ") && row.ends_with(&sha), "{row}");
}

fn keygen(dir: &Path) -> PathBuf {
    let p = dir.join("ops.key");
    let _ = std::fs::remove_file(&p);
    let out = Command::new(hvctl())
        .arg("keygen")
        .arg(&p)
        .output()
        .unwrap_or_else(|e| panic!("hvctl keygen: {e}"));
    assert!(out.status.success(), "hvctl keygen: {out:?}");
    p
}

#[test]
fn xfer_qemu_tcp() {
    let dir = test_dir(&format!("{TEST}.files"));
    let key = keygen(&dir);
    let disk = dir.join("store.img");
    std::fs::write(&disk, vec![0u8; 64 << 20]).unwrap_or_else(|e| panic!("{e}"));
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        config_module(TEST, CONFIG),
        Module::named(&key, "ops.key", "").unwrap_or_else(|e| panic!("{e}")),
    ];
    let (mut vm, _sock, log) = mgmt_vm_sized(TEST, &modules, 1, "256M");
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
    let qemu = std::thread::spawn(move || {
        run_until(
            TEST,
            vm,
            BIOS_TIMEOUT_S,
            Some(&["[end] hello from", "kestrel-test-end"]),
        )
    });
    let addr = format!("127.0.0.1:{port}");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for_line(&log, "dom0: ready: ", scaled(120))
            .unwrap_or_else(|| panic!("{TEST}: dom0 never became ready"));
        checks(&addr, &key, &dir);
    }));
    let end = input_file(TEST, "end.toml", END);
    let _ = over_tcp(&addr, &key, &["create", s(&end)]);
    let o = qemu
        .join()
        .unwrap_or_else(|_| panic!("{TEST}: qemu thread"));
    let _report = ReportOnPanic(&o);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert!(
        o.fatal_lines().is_empty() && o.panic_lines().is_empty(),
        "{TEST}: died"
    );
}
