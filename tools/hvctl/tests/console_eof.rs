//! `hvctl console` when its stdin ends (issue 13): it detaches by itself
//! and exits 0 after showing what the domain answered, instead of staying
//! attached until killed (`hvctl console d < /dev/null`, `echo ls |
//! hvctl console d`). Against the fake dom0, whose `web` echoes input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake::{Mode, start};

/// `hvctl console web` with `input` on stdin, then stdin closed: exit
/// code (None: still attached after `limit`, killed), stdout, stderr.
fn console_with(
    path: &std::path::Path,
    input: &[u8],
    limit: Duration,
) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hvctl"))
        .arg("--socket")
        .arg(path)
        .args(["console", "web"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let end = Instant::now() + limit;
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if Instant::now() > end {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    (
        code,
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn stdin_at_its_end_detaches_after_the_answer() {
    let s = start("console-eof", Mode::Good);
    let (code, out, err) = console_with(&s.path, b"hello\n", Duration::from_secs(30));
    assert_eq!(
        code,
        Some(0),
        "still attached 30 s after stdin ended: {out:?} {err:?}"
    );
    assert_eq!(out, "Welcome to web\necho: hello\n", "{err}");
    assert!(err.contains("stdin ended: detached from domain 3"), "{err}");
}

#[test]
fn empty_stdin_detaches() {
    let s = start("console-null", Mode::Good);
    let (code, out, err) = console_with(&s.path, b"", Duration::from_secs(30));
    assert_eq!(code, Some(0), "{out:?} {err:?}");
    assert_eq!(out, "Welcome to web\n", "{err}");
    assert!(err.contains("stdin ended: detached from domain 3"), "{err}");
    // The session is gone: the next client is answered at once.
    let r = fake::hvctl(&s.path, &["list"], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
}
