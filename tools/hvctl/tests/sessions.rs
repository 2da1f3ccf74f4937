//! Many clients on one management line (`hvctl relay`, started by hvctl
//! itself): three at once, clients killed at every point of a request,
//! and the reply time limit. Counts, not wall-clock: each loop runs a
//! fixed number of requests, and every one must be answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use fake::{Mode, hvctl, start};

fn mux(sock: &std::path::Path) -> std::path::PathBuf {
    let mut p = sock.as_os_str().to_owned();
    p.push(".mux");
    p.into()
}

#[test]
fn three_clients_at_once() {
    let s = start("three", Mode::Good);
    assert_eq!(hvctl(&s.path, &["list"], b"").code, 0);
    // A console stays attached the whole time (its stdin open).
    let mut console = Command::new(env!("CARGO_BIN_EXE_hvctl"))
        .arg("--socket")
        .arg(&s.path)
        .args(["console", "web"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = console.stdout.take().unwrap();
    let mut first = [0u8; 15];
    out.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"Welcome to web\n", "the console is attached");
    let sock = s.path.clone();
    let lister = std::thread::spawn(move || {
        for i in 0..40 {
            let r = hvctl(&sock, &["--timeout", "30", "list"], b"");
            assert_eq!(r.code, 0, "list {i}: {}", r.stderr);
            assert!(r.stdout.contains(" 3  web "), "list {i}: {}", r.stdout);
        }
    });
    let sock = s.path.clone();
    let dir = s.dir.clone();
    let creator = std::thread::spawn(move || {
        for i in 0..20 {
            let f = dir.join(format!("c{i}.toml"));
            let text = format!("[[domain]]\nname = \"c{i}\"\nimage = \"hello\"\nmemory = 4\n");
            std::fs::write(&f, text).unwrap();
            let r = hvctl(
                &sock,
                &["--timeout", "30", "create", f.to_str().unwrap()],
                b"",
            );
            assert_eq!(r.code, 0, "create {i}: {}", r.stderr);
            let name = format!("c{i}");
            let r = hvctl(&sock, &["--timeout", "30", "destroy", &name], b"");
            assert_eq!(r.code, 0, "destroy {i}: {}", r.stderr);
        }
    });
    lister.join().unwrap();
    creator.join().unwrap();
    // The console was never blocked: input still echoes, Ctrl-] detaches.
    let mut stdin = console.stdin.take().unwrap();
    stdin.write_all(b"still here\n\x1d").unwrap();
    drop(stdin);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = console.wait().unwrap();
    assert!(status.success(), "console: {status}");
    assert_eq!(rest, "echo: still here\n");
}

#[test]
fn a_client_killed_anywhere_never_breaks_the_next() {
    let s = start("killed", Mode::Good);
    assert_eq!(hvctl(&s.path, &["list"], b"").code, 0);
    let req = "{\"id\":1,\"op\":\"hello\",\"version\":1,\"client\":\"k\"}\n\
               {\"id\":2,\"op\":\"create\",\"file\":\"k.toml\",\"config\":\"[[domain]]\\nname = \\\"k\\\"\\nimage = \\\"hello\\\"\\nmemory = 4\\nautostart = false\\n\"}\n\
               {\"id\":3,\"op\":\"destroy\",\"domain\":\"k\"}\n";
    // 100 clients, each cut off at another byte of the exchange (every
    // point of it, spread evenly), some with the reply left unread.
    for k in 0..100 {
        let cut = k * req.len() / 99;
        let mut c = UnixStream::connect(mux(&s.path)).unwrap();
        c.write_all(&req.as_bytes()[..cut]).unwrap();
        drop(c);
    }
    // And real hvctl processes killed before they finish.
    for _ in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hvctl"))
            .arg("--socket")
            .arg(&s.path)
            .arg("list")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let r = hvctl(&s.path, &["list"], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(" 3  web "), "{}", r.stdout);
    let f = s.dir.join("after.toml");
    std::fs::write(
        &f,
        "[[domain]]\nname = \"after\"\nimage = \"hello\"\nmemory = 4\n",
    )
    .unwrap();
    let r = hvctl(&s.path, &["create", f.to_str().unwrap()], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("(after): running"), "{}", r.stdout);
}

#[test]
fn a_silent_dom0_is_a_timeout_with_a_message() {
    let s = start("silent", Mode::Silent);
    let r = hvctl(&s.path, &["--timeout", "0.5", "list"], b"");
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        format!(
            "hvctl: no reply from dom0 to `hello` within 0.5 s (at {}): is dom0 running? \
             (--timeout SECONDS waits longer)\n",
            s.path.display()
        )
    );
}
