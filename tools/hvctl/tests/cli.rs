//! Runs the real `hvctl` binary against an in-test server speaking the
//! management protocol on a unix socket, as dom0 does on its line (session
//! tags of `hvctl relay` included): a stand-in holding domains in memory
//! (`fake/mod.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake;

use std::process::Command;

use fake::{Mode, hvctl, start, tmpdir};

#[test]
fn list_info_pause_unpause_destroy() {
    let s = start("life", Mode::Good);
    let r = hvctl(&s.path, &["list"], b"");
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(
        r.stdout,
        "\
ID  NAME   STATE    MEMORY  VCPUS  WEIGHT  CAP  CPU TIME
 1  hello  running  16 MiB      1     256    -     1.5 s
 3  web    paused   64 MiB      2     256    -     1.5 s
"
    );
    let r = hvctl(&s.path, &["info", "3"], b"");
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.starts_with(
            "id:        3\nname:      web\nstate:     paused\nmemory:    64 MiB (67108864 bytes)\n"
        ),
        "{}",
        r.stdout
    );
    let r = hvctl(&s.path, &["unpause", "web"], b"");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "unpaused domain 3 (web): running\n")
    );
    let r = hvctl(&s.path, &["pause", "web"], b"");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "paused domain 3 (web): paused\n")
    );
    // Pausing again: dom0 refuses, exit 1, its message on stderr.
    let r = hvctl(&s.path, &["pause", "web"], b"");
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr, "hvctl: dom0 refused: domain web is paused\n");
    let r = hvctl(&s.path, &["destroy", "hello"], b"");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "destroyed domain 1 (hello)\n")
    );
    let r = hvctl(&s.path, &["--json", "list"], b"");
    assert_eq!(r.code, 0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["kind"], "domains");
    assert_eq!(v["domains"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["domains"][0]["name"], "web");
    assert_eq!(v["domains"][0]["memory_bytes"], 64u64 << 20);
}

#[test]
fn unknown_domain() {
    let s = start("unknown", Mode::Good);
    for cmd in ["info", "pause", "unpause", "destroy", "console"] {
        let r = hvctl(&s.path, &[cmd, "nosuch"], b"");
        assert_eq!(r.code, 1, "{cmd}: {}", r.stderr);
        assert_eq!(
            r.stderr, "hvctl: dom0 refused: no domain \"nosuch\"\n",
            "{cmd}"
        );
    }
    let r = hvctl(&s.path, &["--json", "info", "42"], b"");
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stdout,
        "{\"error\":{\"code\":\"no_such_domain\",\"message\":\"no domain \\\"42\\\"\"}}\n"
    );
}

#[test]
fn create_checks_locally_then_remotely() {
    let s = start("create", Mode::Good);
    let good = s.dir.join("good.toml");
    std::fs::write(&good, "[[domain]]\nname = \"db\"\nimage = \"hello\"\nmemory = 32\n\n[[domain]]\nname = \"later\"\nimage = \"hello\"\nmemory = 8\nautostart = false\n").unwrap();
    let r = hvctl(&s.path, &["create", good.to_str().unwrap()], b"");
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(
        r.stdout,
        "created domain 4 (db): running\ncreated domain 5 (later): created\n"
    );
    assert!(hvctl(&s.path, &["list"], b"").stdout.contains(" 4  db "));

    // A local error: named by file, line and field; nothing sent (exit 2).
    let bad = s.dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[domain]]\nname = \"x\"\nimage = \"hello\"\nmemory = \"lots\"\n",
    )
    .unwrap();
    let r = hvctl(&s.path, &["create", bad.to_str().unwrap()], b"");
    assert_eq!(r.code, 2);
    let want = format!(
        "{}:4:10: domain \"x\": field \"memory\": expected an integer number of MiB, found \"lots\"\n",
        bad.display()
    );
    assert!(r.stderr.ends_with(&want), "{}", r.stderr);
    assert!(!hvctl(&s.path, &["list"], b"").stdout.contains(" x "));

    // dom0's own check (the image is not one of its boot modules): exit 1.
    let remote = s.dir.join("remote.toml");
    std::fs::write(
        &remote,
        "[[domain]]\nname = \"y\"\nimage = \"nginx.elf\"\nmemory = 8\n",
    )
    .unwrap();
    let r = hvctl(&s.path, &["create", remote.to_str().unwrap()], b"");
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains(":3:9: domain \"y\": field \"image\": \"nginx.elf\" is not a boot module (modules: hello, web.elf)\n"), "{}", r.stderr);
    // The error code is for scripts (--json), not appended to the message.
    assert!(!r.stderr.contains("(bad_config)"), "{}", r.stderr);

    // A file with no domain in it is an error (exit 2), not a silent success.
    for (name, text) in [("empty.toml", ""), ("none.toml", "# no domains\n")] {
        let f = s.dir.join(name);
        std::fs::write(&f, text).unwrap();
        let r = hvctl(&s.path, &["create", f.to_str().unwrap()], b"");
        assert_eq!(r.code, 2, "{name}");
        assert_eq!(
            r.stderr,
            format!(
                "hvctl: {}: no [[domain]] in it: nothing to create\n",
                f.display()
            )
        );
    }

    let r = hvctl(&s.path, &["create", "/nonexistent/x.toml"], b"");
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .starts_with("hvctl: cannot read /nonexistent/x.toml: "),
        "{}",
        r.stderr
    );
}

#[test]
fn console_streams_and_detaches() {
    let s = start("console", Mode::Good);
    let r = hvctl(&s.path, &["console", "web"], b"hello\n\x1dignored");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "Welcome to web\necho: hello\n");
    assert!(
        r.stderr
            .contains("attached to domain 3 (web); Ctrl-] detaches"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("detached from domain 3"), "{}", r.stderr);
}

#[test]
fn connection_and_protocol_errors() {
    let dir = tmpdir("unreachable");
    let r = hvctl(&dir.join("nobody.sock"), &["list"], b"");
    assert_eq!(r.code, 3);
    assert!(
        r.stderr.starts_with("hvctl: cannot reach dom0 at "),
        "{}",
        r.stderr
    );
    let _ = std::fs::remove_dir_all(dir);

    let s = start("old", Mode::OldVersion);
    let r = hvctl(&s.path, &["list"], b"");
    assert_eq!(r.code, 4);
    assert_eq!(
        r.stderr,
        "hvctl: protocol error: fake-dom0 speaks protocol version 0, hvctl speaks 1\n"
    );

    let s = start("garbage", Mode::Garbage);
    let r = hvctl(&s.path, &["list"], b"");
    assert_eq!(r.code, 4);
    assert!(
        r.stderr
            .starts_with("hvctl: protocol error: undecodable line from dom0: "),
        "{}",
        r.stderr
    );

    // Usage errors are exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_hvctl"))
        .arg("list")
        .env_remove("KESTREL_SOCKET")
        .env_remove("KESTREL_HOST")
        .env("KESTREL_CONFIG", "/nonexistent/hvctl.toml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--socket PATH or --tcp HOST:PORT"));
    let out = Command::new(env!("CARGO_BIN_EXE_hvctl"))
        .arg("bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn log_history_and_top() {
    let s = start("logtop", Mode::Good);
    let r = hvctl(&s.path, &["log"], b"");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "(3 older lines dropped)\nkestrel-dom0 0.1.0\nready\n")
    );
    let r = hvctl(&s.path, &["console", "--history", "web"], b"");
    assert_eq!((r.code, r.stdout.as_str()), (0, "Welcome to web\n"));
    let r = hvctl(&s.path, &["host"], b"");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (
            0,
            "cpus:        2\nmemory:      128 MiB total, 100 MiB free\ndomains:     2 (0 ended listed)\ndom0:        fake-dom0\npvabi:       1.4 (dom0), 1.4 (hypervisor)\nuptime:      5.0 s\npci:         0000:00:03.0 1af4:1001 virtio-blk\n             0000:00:05.0 1b36:0010 nvme\ndisks:       0000:00:05.0 nvme 16 MiB, 512-byte blocks, model \"QEMU NVMe Ctrl\"\n"
        )
    );
    let r = hvctl(&s.path, &["top", "--every", "0.05"], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut lines = r.stdout.lines();
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("2 domains, 80 MiB assigned, over 0.")),
        "{}",
        r.stdout
    );
    assert!(
        lines.next().is_some_and(|l| l.contains("CPU%")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("  1  hello             running      0.0     16 MiB"),
        "{}",
        r.stdout
    );
}

#[test]
fn shutdown_waits_and_says_how_it_ended_forced_is_exit_5() {
    let s = start("shutdown", Mode::Good);
    let r = hvctl(&s.path, &["shutdown", "hello"], b"");
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "domain 1 (hello) ended: exited with code 0\n", "")
    );
    // web is paused in the fake: it cannot honour it and is forced.
    let r = hvctl(&s.path, &["shutdown", "web", "--timeout", "2"], b"");
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "hvctl: domain 3 (web) did not end within 2.0 s of the shutdown request: dom0 destroyed \
         it (forced)\n"
    );
    let r = hvctl(&s.path, &["shutdown", "web"], b"");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "hvctl: dom0 refused: domain 3 (web) has already ended\n")
    );
}

#[test]
fn sched_shows_and_changes_weight_and_cap() {
    let s = start("sched", Mode::Good);
    let r = hvctl(&s.path, &["sched", "web"], b"");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "domain 3 (web): weight 256, cap none\n")
    );
    let r = hvctl(
        &s.path,
        &["sched", "web", "--weight", "512", "--cap", "50"],
        b"",
    );
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "domain 3 (web): weight 512, cap 50%\n")
    );
    let r = hvctl(&s.path, &["list"], b"");
    assert!(
        r.stdout
            .contains(" 3  web    paused   64 MiB      2     512  50%"),
        "{}",
        r.stdout
    );
    let r = hvctl(&s.path, &["sched", "web", "--weight", "0"], b"");
    assert_eq!(r.code, 2, "a usage error: {}", r.stderr);
}
