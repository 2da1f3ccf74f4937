//! `hvctl image list|upload|delete` and `hvctl create` with local files,
//! the real binary against the stand-in (`fake/`), which runs dom0's own
//! upload state machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake;

use fake::{Mode, hvctl, start};
use kestrel_toolstack::server::upload::{hex, sha256};

/// An ELF-looking file of `n` bytes (over one chunk when `n` > 32 KiB).
fn elf(n: usize) -> Vec<u8> {
    let mut b: Vec<u8> = (0..n).map(|i| (i * 31 + 7) as u8).collect();
    b[..4].copy_from_slice(b"\x7fELF");
    b
}

#[test]
fn upload_list_send_once_delete() {
    let s = start("imgup", Mode::Good);
    let bytes = elf(100_000);
    let file = s.dir.join("guest.elf");
    std::fs::write(&file, &bytes).unwrap();
    let sha = hex(&sha256(&bytes));
    let name = format!("guest.elf-{}", &sha[..12]);
    let r = hvctl(&s.path, &["image", "upload", file.to_str().unwrap()], b"");
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{}", r.stdout);
    assert_eq!(
        r.stdout,
        format!(
            "uploaded {} as {name} (100000 bytes, sha256 {sha})\n",
            file.display()
        )
    );
    // The same content again: nothing sent.
    let r = hvctl(&s.path, &["image", "upload", file.to_str().unwrap()], b"");
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("nothing sent"), "{}", r.stdout);
    let r = hvctl(&s.path, &["image", "list"], b"");
    assert_eq!(r.code, 0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(lines[0].starts_with("NAME"));
    assert!(lines[1].starts_with("hello ") && lines[1].contains(" module "));
    assert!(
        lines[2].starts_with(&name)
            && lines[2].contains(" 100000 upload  yes  ")
            && lines[2].ends_with(&sha),
        "{}",
        lines[2]
    );
    let r = hvctl(&s.path, &["--json", "image", "list"], b"");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["images"][1]["sha256"], sha.as_str());
    let r = hvctl(&s.path, &["image", "delete", &name], b"");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, format!("deleted image {name}\n").as_str())
    );
    let r = hvctl(&s.path, &["image", "delete", &name], b"");
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no uploaded image"), "{}", r.stderr);
    let r = hvctl(&s.path, &["image", "list"], b"");
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
}

#[test]
fn create_uploads_the_files_it_names_by_path() {
    let s = start("imgcreate", Mode::Good);
    std::fs::create_dir_all(s.dir.join("g")).unwrap();
    let bytes = elf(40_000);
    std::fs::write(s.dir.join("g/mine"), &bytes).unwrap();
    let sha = hex(&sha256(&bytes));
    let cfg = s.dir.join("up.toml");
    std::fs::write(
        &cfg,
        "[[domain]]\nname = \"up\"\nimage = \"./g/mine\"\nmemory = 8\n",
    )
    .unwrap();
    let r = hvctl(&s.path, &["create", cfg.to_str().unwrap()], b"");
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{}", r.stdout);
    assert_eq!(r.stdout, "created domain 4 (up): running\n");
    let r = hvctl(&s.path, &["image", "list"], b"");
    assert!(
        r.stdout.contains(&format!("mine-{}", &sha[..12])),
        "{}",
        r.stdout
    );
    // A path that is not a file: refused here, nothing sent.
    std::fs::write(
        &cfg,
        "[[domain]]\nname = \"up2\"\nimage = \"./g/absent\"\nmemory = 8\n",
    )
    .unwrap();
    let r = hvctl(&s.path, &["create", cfg.to_str().unwrap()], b"");
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("g/absent is not a file here"),
        "{}",
        r.stderr
    );
}
