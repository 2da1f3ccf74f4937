//! `hvctl volume import|export` and `hvctl image import` (the real binary)
//! against the in-test server, whose `import_*`/`export_*` answers come
//! from dom0's real service over a real in-memory store (fake/xfer.rs).
//! qcow2 files are made and checked by QEMU's own tools (`qemu-img`,
//! `qemu-io`: Debian's qemu-utils, which tools/setup.sh installs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use fake::{Mode, hvctl, start};
use kestrel_store::Kind;

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (install Debian's qemu-utils: tools/setup.sh)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed: {text}");
    text
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A 4 MiB qcow2 QEMU wrote: 64 KiB of 0xab at 0, 100 KiB of 0x5c at 3 MiB,
/// the rest unallocated; and the raw bytes `qemu-img convert` makes of it.
fn qcow2_made_by_qemu(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let q = dir.join("src.qcow2");
    run("qemu-img", &["create", "-q", "-f", "qcow2", s(&q), "4M"]);
    run(
        "qemu-io",
        &[
            "-c",
            "write -P 0xab 0 64k",
            "-c",
            "write -P 0x5c 3M 100k",
            s(&q),
        ],
    );
    let raw = dir.join("src.raw");
    run("qemu-img", &["convert", "-O", "raw", s(&q), s(&raw)]);
    (q, std::fs::read(&raw).unwrap())
}

#[test]
fn a_qcow2_from_qemu_goes_in_and_comes_back_out_as_qcow2_and_raw() {
    let srv = start("xfer", Mode::Good);
    let (q, raw) = qcow2_made_by_qemu(&srv.dir);
    let r = hvctl(&srv.path, &["volume", "import", "disk", s(&q)], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    // 164 KiB of data went over the connection, not 4 MiB.
    assert_eq!(
        r.stdout,
        format!(
            "imported {} (qcow2, 4 MiB) as volume disk: 192 KiB sent, 3.8 MiB of zeros not sent\n",
            q.display()
        )
    );
    {
        let mut x = srv.xfer.lock().unwrap();
        let mut back = vec![0u8; raw.len()];
        x.hv.store.read(Kind::Volume, "disk", 0, &mut back).unwrap();
        assert!(back == raw, "the volume holds what qemu-img convert gives");
    }
    // Out as qcow2: QEMU checks it and finds it identical to the original.
    let out = srv.dir.join("out.qcow2");
    let r = hvctl(&srv.path, &["volume", "export", "disk", s(&out)], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("(qcow2, 4 MiB): 192 KiB received"),
        "{}",
        r.stdout
    );
    run("qemu-img", &["check", s(&out)]);
    let same = run("qemu-img", &["compare", s(&q), s(&out)]);
    assert!(same.contains("Images are identical"), "{same}");
    // Out as raw: the same bytes, the zeros left as holes.
    let out = srv.dir.join("out.img");
    let r = hvctl(
        &srv.path,
        &["volume", "export", "disk", s(&out), "--format", "raw"],
        b"",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::read(&out).unwrap() == raw);
    let m = std::fs::metadata(&out).unwrap();
    assert!(
        m.blocks() * 512 < m.len(),
        "not sparse: {} blocks",
        m.blocks()
    );
    let same = run(
        "qemu-img",
        &["compare", "-f", "qcow2", "-F", "raw", s(&q), s(&out)],
    );
    assert!(same.contains("Images are identical"), "{same}");
    // No part files stay.
    let left: Vec<_> = std::fs::read_dir(&srv.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_corrupt_qcow2_is_refused_by_name_and_nothing_is_left() {
    let srv = start("xfer-bad", Mode::Good);
    let (q, _) = qcow2_made_by_qemu(&srv.dir);
    let mut bytes = std::fs::read(&q).unwrap();
    // The L1 table's offset (header bytes 40..48, big-endian) past the end.
    bytes[40..48].copy_from_slice(&(64u64 << 20).to_be_bytes());
    let bad = srv.dir.join("bad.qcow2");
    std::fs::write(&bad, &bytes).unwrap();
    let r = hvctl(&srv.path, &["volume", "import", "disk", s(&bad)], b"");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("not imported, nothing sent")
            && r.stderr.contains("L1 table at offset 0x4000000")
            && r.stderr.contains("extends past the end of the file"),
        "{}",
        r.stderr
    );
    assert!(srv.xfer.lock().unwrap().hv.store.objects().is_empty());
    // A raw file named qcow2: refused, said why.
    let plain = srv.dir.join("plain.bin");
    std::fs::write(&plain, b"just bytes").unwrap();
    let r = hvctl(
        &srv.path,
        &["image", "import", "k", s(&plain), "--format", "qcow2"],
        b"",
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not a qcow2 file"), "{}", r.stderr);
    // A volume that is not there: refused, no file made.
    let out = srv.dir.join("none.qcow2");
    let r = hvctl(&srv.path, &["volume", "export", "nope", s(&out)], b"");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("no volume named \"nope\""),
        "{}",
        r.stderr
    );
    assert!(!out.exists() && !srv.dir.join("none.qcow2.part").exists());
    assert!(srv.xfer.lock().unwrap().hv.store.objects().is_empty());
}

#[test]
fn an_image_imports_from_a_raw_file() {
    let srv = start("xfer-img", Mode::Good);
    let f = srv.dir.join("kernel.elf");
    let mut bytes = b"\x7fELF".to_vec();
    bytes.resize(100_000, 7);
    std::fs::write(&f, &bytes).unwrap();
    let r = hvctl(&srv.path, &["--json", "image", "import", "k1", s(&f)], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["kind"], "image");
    assert_eq!(v["image"]["source"], "store");
    assert_eq!(v["image"]["elf"], true);
    assert_eq!(v["image"]["size"], 100_000);
    let want =
        kestrel_toolstack::server::upload::hex(&kestrel_toolstack::server::upload::sha256(&bytes));
    assert_eq!(v["image"]["sha256"], want.as_str());
    // Out again, raw and qcow2: the same bytes (checked against the
    // store's recorded SHA-256 on the way).
    let out = srv.dir.join("k1.out");
    let r = hvctl(&srv.path, &["image", "export", "k1", s(&out)], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::read(&out).unwrap() == bytes);
    let q = srv.dir.join("k1.qcow2");
    let r = hvctl(&srv.path, &["image", "export", "k1", s(&q)], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("padded with zeros to 100352"),
        "{}",
        r.stdout
    );
    run("qemu-img", &["check", s(&q)]);
    // QEMU reads a qcow2 in 512-byte sectors (100,000 bytes show as
    // 100,352): what it converts back is the image, then zeros.
    let back = srv.dir.join("k1.back");
    run("qemu-img", &["convert", "-O", "raw", s(&q), s(&back)]);
    let back = std::fs::read(&back).unwrap();
    assert!(back[..bytes.len()] == bytes[..] && back[bytes.len()..].iter().all(|&b| b == 0));
    // The same name again: refused by dom0, nothing changes.
    let r = hvctl(&srv.path, &["image", "import", "k1", s(&f)], b"");
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("exists already"), "{}", r.stderr);
    assert_eq!(srv.xfer.lock().unwrap().hv.store.objects().len(), 1);
}
