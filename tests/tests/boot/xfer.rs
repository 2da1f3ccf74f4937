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

use std::path::Path;
use std::process::Command;

use boot_tests::artifacts::test_dir;
use boot_tests::qemu::BIOS_TIMEOUT_S;
use boot_tests::store_vm::{store_boot, store_vm};
use boot_tests::tcp::{forwarded_nic, free_port, keygen};
use xtask::iso::Module;

const TEST: &str = "xfer_qemu_tcp";
const CONFIG: &str = "[network]\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\n\
                      key_files = [\"ops.key\"]\n\n\
                      [store]\ndisk = \"kestrel-store0\"\nformat = true\n";

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

/// [`boot_tests::tcp::over_tcp`] with a 120 s reply timeout (an import
/// or export is many requests).
fn over_tcp(addr: &str, key: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--timeout", "120"];
    all.extend_from_slice(args);
    boot_tests::tcp::over_tcp(addr, key, &all)
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

#[test]
fn xfer_qemu_tcp() {
    let dir = test_dir(&format!("{TEST}.files"));
    let key = keygen(&dir, "ops.key");
    let disk = dir.join("store.img");
    std::fs::write(&disk, vec![0u8; 64 << 20]).unwrap_or_else(|e| panic!("{e}"));
    let key_module = Module::named(&key, "ops.key", "").unwrap_or_else(|e| panic!("{e}"));
    let (mut vm, sock, log) = store_vm(TEST, &disk, CONFIG, &[key_module]);
    let port = free_port();
    vm.extra.extend(forwarded_nic(port));
    let addr = format!("127.0.0.1:{port}");
    store_boot(TEST, (vm, sock, log), BIOS_TIMEOUT_S, TEST, |_, _| {
        checks(&addr, &key, &dir)
    });
}
