//! `hvctl mem-set` against the in-test dom0 (`fake/mod.rs`, whose guests
//! balloon at once): the target set, shown by `info`, `list` and
//! `list --json`, and the refusals with their numbers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake;

use fake::{Mode, hvctl, start};

#[test]
fn mem_set_sets_the_target_and_every_view_shows_it() {
    let s = start("memset", Mode::Good);
    let r = hvctl(&s.path, &["mem-set", "web", "16"], b"");
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (
            0,
            "domain 3 (web): memory target 16 MiB, holds 16 MiB\n",
            ""
        )
    );
    let r = hvctl(&s.path, &["info", "web"], b"");
    assert!(
        r.stdout
            .contains("holds:     16 MiB (16777216 bytes)\ntarget:    16 MiB (16777216 bytes)\n"),
        "{}",
        r.stdout
    );
    let r = hvctl(&s.path, &["list"], b"");
    assert!(r.stdout.contains("16 MiB of 64 MiB"), "{}", r.stdout);
    let r = hvctl(&s.path, &["--json", "list"], b"");
    assert!(
        r.stdout
            .contains("\"current_bytes\":16777216,\"target_bytes\":16777216"),
        "{}",
        r.stdout
    );
    // Pages with a unit; back to all of it.
    let r = hvctl(&s.path, &["mem-set", "3", "16384p"], b"");
    assert_eq!(
        r.stdout,
        "domain 3 (web): memory target 64 MiB, holds 64 MiB\n"
    );
}

#[test]
fn mem_set_refusals_name_the_numbers() {
    let s = start("memset-bad", Mode::Good);
    let r = hvctl(&s.path, &["mem-set", "web", "300"], b"");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            1,
            "hvctl: dom0 refused: mem-set: 300 MiB asked, the domain's maximum is 64 MiB\n"
        )
    );
    let r = hvctl(&s.path, &["mem-set", "web", "16T"], b"");
    assert_eq!(r.code, 2, "a usage error: {}", r.stderr);
    assert!(r.stderr.contains("unknown unit"), "{}", r.stderr);
    let r = hvctl(&s.path, &["mem-set", "nosuch", "16"], b"");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "hvctl: dom0 refused: no domain \"nosuch\"\n")
    );
}
