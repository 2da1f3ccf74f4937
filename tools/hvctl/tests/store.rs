//! `hvctl volume` (the real binary) against the in-test server
//! (`fake/mod.rs`): what is sent, what is printed. (`hvctl image`, which
//! lists the store's images with the others, is tests/upload.rs'.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake;

use fake::{Mode, hvctl, start};

#[test]
fn volume_commands() {
    let s = start("store", Mode::Good);
    let r = hvctl(&s.path, &["volume", "create", "data", "64M"], b"");
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "created volume data (64 MiB)\n", "")
    );
    let r = hvctl(&s.path, &["volume", "list"], b"");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "no volumes in the store\n")
    );
    let r = hvctl(&s.path, &["volume", "delete", "data"], b"");
    assert_eq!((r.code, r.stdout.as_str()), (0, "deleted volume data\n"));
    let r = hvctl(&s.path, &["volume", "delete", "nope"], b"");
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr, "hvctl: dom0 refused: no volume named \"nope\"\n");
    let r = hvctl(&s.path, &["volume", "create", "data", "lots"], b"");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("\"lots\" is not a size"), "{}", r.stderr);
    let r = hvctl(&s.path, &["--json", "volume", "create", "v2", "1M"], b"");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["kind"], "volumes");
    assert_eq!(v["volumes"][0]["size_bytes"], 1 << 20);
}
