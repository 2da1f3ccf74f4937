//! `hvctl console`: console events to stdout, stdin to the console, Ctrl-]
//! detaches (as in `xl console` and `virsh console`).
//!
//! When stdin ends (`< /dev/null`, a pipe whose writer is done) hvctl
//! detaches by itself, exit 0: first it lingers while the domain answers
//! (until the console has been quiet for [`LINGER_QUIET`], at most
//! [`LINGER_MAX`] after the end), so `echo ls | hvctl console d` shows
//! the answer. Before, it stayed attached until killed.

use std::io::{IsTerminal, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kestrel_toolstack::proto::{DomainRef, Event, Op, Reply, ServerLine};

use crate::client::{Client, reply_for};
use crate::error::Error;

/// Ctrl-]
pub const DETACH: u8 = 0x1d;

/// After stdin ends: detach once nothing came from dom0 for this long...
pub const LINGER_QUIET: Duration = Duration::from_secs(2);
/// ...or this long after the end, whichever is first (a chatty console).
pub const LINGER_MAX: Duration = Duration::from_secs(10);

enum Input {
    Stdin(Vec<u8>),
    StdinEnd,
    /// Boxed: a reply with a domain report is far larger than the rest.
    Server(Box<Result<ServerLine, Error>>),
}

/// The terminal in raw mode (no line editing or echo, so keys reach the
/// domain at once and Ctrl-] is seen) until dropped.
struct RawTerminal {
    saved: Option<String>,
}

impl RawTerminal {
    fn enter() -> Self {
        if !std::io::stdin().is_terminal() {
            return Self { saved: None };
        }
        let saved = Command::new("stty")
            .arg("-g")
            .stdin(Stdio::inherit())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string());
        if saved.is_some() {
            let _ = Command::new("stty")
                .args(["raw", "-echo"])
                .stdin(Stdio::inherit())
                .status();
        }
        Self { saved }
    }

    fn raw(&self) -> bool {
        self.saved.is_some()
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(s) = &self.saved {
            let _ = Command::new("stty").arg(s).stdin(Stdio::inherit()).status();
        }
    }
}

/// Splits stdin bytes at Ctrl-]: what to send, and whether to detach.
pub fn split_detach(bytes: &[u8]) -> (&[u8], bool) {
    match bytes.iter().position(|&b| b == DETACH) {
        Some(i) => (&bytes[..i], true),
        None => (bytes, false),
    }
}

pub fn run(mut client: Client, domain: DomainRef) -> Result<(), Error> {
    let Reply::Attached { domain: id, name } = client.call(Op::ConsoleAttach { domain })? else {
        return Err(Error::Protocol(
            "console_attach did not answer \"attached\"".into(),
        ));
    };
    eprintln!("hvctl: attached to domain {id} ({name}); Ctrl-] detaches");
    // Output comes when the guest writes: no time limit from here on.
    client.no_timeout()?;
    let target = DomainRef::Id(id);
    let term = RawTerminal::enter();
    let (tx, rx) = mpsc::channel();
    let server_tx = tx.clone();
    let mut lines = client.lines;
    std::thread::spawn(move || {
        loop {
            let msg = lines.next();
            let end = msg.is_err();
            if server_tx.send(Input::Server(Box::new(msg))).is_err() || end {
                return;
            }
        }
    });
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 1024];
        loop {
            let msg = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => Input::StdinEnd,
                Ok(n) => Input::Stdin(buf.get(..n).unwrap_or_default().to_vec()),
            };
            let end = matches!(msg, Input::StdinEnd);
            if tx.send(msg).is_err() || end {
                return;
            }
        }
    });
    let mut sender = client.sender;
    let mut detach_id = None;
    // When stdin ended, and when dom0 last said something.
    let mut ended: Option<(Instant, Instant)> = None;
    let mut stdout = std::io::stdout();
    loop {
        let msg = match ended {
            Some((at, heard)) if detach_id.is_none() => {
                let until = (heard + LINGER_QUIET).min(at + LINGER_MAX);
                match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                    Ok(m) => m,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        let domain = target.clone();
                        detach_id = Some(sender.send(Op::ConsoleDetach { domain })?);
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            _ => match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            },
        };
        if let (Some((_, heard)), Input::Server(_)) = (ended.as_mut(), &msg) {
            *heard = Instant::now();
        }
        match msg {
            Input::Stdin(bytes) if detach_id.is_none() => {
                let (data, detach) = split_detach(&bytes);
                if !data.is_empty() {
                    let data = String::from_utf8_lossy(data).into_owned();
                    let domain = target.clone();
                    sender.send(Op::ConsoleInput { domain, data })?;
                }
                if detach {
                    let domain = target.clone();
                    detach_id = Some(sender.send(Op::ConsoleDetach { domain })?);
                }
            }
            Input::StdinEnd if ended.is_none() && detach_id.is_none() => {
                let now = Instant::now();
                ended = Some((now, now));
            }
            Input::Stdin(_) | Input::StdinEnd => {}
            Input::Server(line) => match (*line)? {
                ServerLine::Event(Event::Console { data, .. }) => {
                    let data = if term.raw() {
                        data.replace('\n', "\r\n")
                    } else {
                        data
                    };
                    let _ = stdout
                        .write_all(data.as_bytes())
                        .and_then(|()| stdout.flush());
                }
                // Domain events go to subscribers only; not this session.
                ServerLine::Event(Event::Domain(_)) => {}
                ServerLine::Event(Event::ConsoleClosed { reason, .. }) => {
                    drop(term);
                    eprintln!("\nhvctl: console of domain {id} closed: {reason}");
                    return Ok(());
                }
                ServerLine::Response(resp) => {
                    let rid = resp.id;
                    if rid.is_some() && rid == detach_id {
                        reply_for(rid.unwrap_or_default(), resp)?;
                        drop(term);
                        if ended.is_some() {
                            eprintln!("\nhvctl: stdin ended: detached from domain {id}");
                        } else {
                            eprintln!("\nhvctl: detached from domain {id}");
                        }
                        return Ok(());
                    }
                    // An answer to console input: only errors matter.
                    reply_for(rid.unwrap_or_default(), resp)?;
                }
            },
        }
    }
    Err(Error::Connection("console stream ended".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_right_bracket_detaches() {
        assert_eq!(split_detach(b"ls\r"), (&b"ls\r"[..], false));
        assert_eq!(split_detach(b"ls\r\x1dmore"), (&b"ls\r"[..], true));
        assert_eq!(split_detach(b"\x1d"), (&b""[..], true));
    }
}
