//! A live `hvctl console DOM` session for tests that type into a domain
//! (issue 13: a shell in a Linux domain): the real `hvctl` with piped
//! stdin and stdout, everything it prints collected by a reader thread, and
//! bounded waits for text to appear.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::artifacts::hvctl;

/// One attached console.
pub struct ConsoleSession {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
    /// How much of `out` earlier waits consumed.
    seen: usize,
}

impl ConsoleSession {
    /// Runs `hvctl --socket SOCKET console DOM`.
    pub fn attach(socket: &Path, dom: &str) -> Self {
        Self::attach_with(&["--socket"], socket, dom)
    }

    /// Runs `hvctl FLAGS... LINE console DOM` (`--serial DEVICE`).
    pub fn attach_with(flags: &[&str], line: &Path, dom: &str) -> Self {
        let mut child = Command::new(hvctl())
            .args(flags)
            .arg(line)
            .args(["console", dom])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("hvctl console {dom}: {e}"));
        let stdin = child.stdin.take();
        let mut stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("hvctl console: no stdout"));
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&out);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(buf.get(..n).unwrap_or(&[]));
            }
        });
        Self {
            child,
            stdin,
            out,
            seen: 0,
        }
    }

    /// Types `bytes` (no newline added).
    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("hvctl console: stdin closed"));
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("typing into hvctl console: {e}"));
    }

    /// Everything printed so far, carriage returns dropped.
    pub fn text(&self) -> String {
        let out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&out).replace('\r', "")
    }

    /// Waits up to `timeout` for `needle` in what was printed after the
    /// previous successful wait: how long it took when it came (and what
    /// was printed up to its end is consumed), `None` at the deadline.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let text = self.text();
            if let Some(at) = text.get(self.seen..).and_then(|t| t.find(needle)) {
                self.seen += at + needle.len();
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Closes stdin and waits (bounded) for `hvctl` to exit; kills it at
    /// the deadline. Its exit code, if it exited by itself.
    pub fn close(mut self, timeout: Duration) -> Option<i32> {
        drop(self.stdin.take());
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for ConsoleSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
