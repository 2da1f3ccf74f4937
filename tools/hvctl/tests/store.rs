//! `hvctl image` and `hvctl volume` (the real binary) against the
//! in-test server (`fake/mod.rs`): what is sent, what is printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake;

use fake::{Mode, hvctl, start};

#[test]
fn image_and_volume_commands() {
    let s = start("store", Mode::Good);
    let r = hvctl(&s.path, &["image", "list"], b"");
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(
        r.stdout,
        "NAME        SIZE  SHA256\nweb          5 B  2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n"
    );
    let r = hvctl(&s.path, &["volume", "create", "data", "64M"], b"");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "created volume data (64 MiB)\n")
    );
    let r = hvctl(&s.path, &["volume", "list"], b"");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "no volumes in the store\n")
    );
    let r = hvctl(&s.path, &["image", "delete", "web"], b"");
    assert_eq!((r.code, r.stdout.as_str()), (0, "deleted image web\n"));
    let r = hvctl(&s.path, &["volume", "delete", "nope"], b"");
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr, "hvctl: dom0 refused: no object named \"nope\"\n");
    let r = hvctl(&s.path, &["volume", "create", "data", "lots"], b"");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("\"lots\" is not a size"), "{}", r.stderr);
    let r = hvctl(&s.path, &["--json", "image", "list"], b"");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["kind"], "images");
    assert_eq!(v["images"][0]["size_bytes"], 5);
}
