//! `hvctl relay`: many clients on dom0's one management line.
//!
//! A serial line (and QEMU's `-chardev socket,server=on`, which takes one
//! connection at a time) has room for one client. The relay holds the line
//! and listens on a unix socket next to it (`<line>.mux`); each client
//! connection is a session: every whole line the client sends goes to the
//! line as `@<session> <line>`, and dom0's lines tagged `@<session> ` go back
//! to that client, untagged. A line is forwarded only once its newline has
//! arrived, so a client killed mid-request leaves nothing on the line; when
//! its connection closes the relay sends `@<session> {"op":"bye"}` and dom0
//! detaches its consoles. Session numbers are never reused.
//!
//! `hvctl --socket PATH` starts a relay for PATH by itself (see
//! [`connect`]); it ends when the line closes (QEMU exits). A serial
//! device (`--serial DEVICE`, `serial.rs`) is relayed the same way.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kestrel_toolstack::proto::{self, ErrorCode, LineBuffer, ProtoError, Response};

use crate::error::Error;

/// What dom0 says on the line.
type LineIn = Box<dyn Read + Send>;
/// Where the relay writes to the line.
type LineOut = Box<dyn Write + Send>;

/// dom0's management line: a unix socket (QEMU's chardev) or a serial
/// device.
#[derive(Clone, Copy)]
pub enum Line<'a> {
    Socket(&'a Path),
    Serial(&'a Path),
}

impl Line<'_> {
    fn flag(self) -> &'static str {
        match self {
            Self::Socket(_) => "--socket",
            Self::Serial(_) => "--serial",
        }
    }

    fn at(&self) -> &Path {
        match self {
            Self::Socket(p) | Self::Serial(p) => p,
        }
    }

    /// The line, opened: what dom0 says, and where to write to it.
    fn open(self) -> Result<(LineIn, LineOut), Error> {
        let dup = |e: std::io::Error| Error::Connection(e.to_string());
        match self {
            Self::Socket(p) => {
                let up = UnixStream::connect(p).map_err(|e| {
                    Error::Connection(format!("cannot reach dom0 at {}: {e}", p.display()))
                })?;
                Ok((Box::new(up.try_clone().map_err(dup)?), Box::new(up)))
            }
            Self::Serial(p) => {
                let dev = crate::serial::open(p)?;
                Ok((Box::new(dev.try_clone().map_err(dup)?), Box::new(dev)))
            }
        }
    }
}

/// The relay's socket for `line`.
pub fn mux_path(line: Line<'_>) -> PathBuf {
    match line {
        Line::Socket(p) => {
            let mut p = p.as_os_str().to_owned();
            p.push(".mux");
            PathBuf::from(p)
        }
        Line::Serial(p) => crate::serial::mux_path(p),
    }
}

/// Where a relay started by hvctl writes why it stopped.
fn log_path(line: Line<'_>) -> PathBuf {
    let mut p = mux_path(line).into_os_string();
    p.push(".log");
    PathBuf::from(p)
}

/// How long hvctl waits for a relay it started to listen.
const START_WAIT: Duration = Duration::from_secs(10);

/// A connection to the line at `line` through its relay, started here
/// (in the background, its own process group) if none listens yet.
pub fn connect(line: Line<'_>) -> Result<UnixStream, Error> {
    let mux = mux_path(line);
    if let Line::Serial(_) = line {
        crate::serial::private_dir(&mux)?;
    }
    if let Ok(s) = UnixStream::connect(&mux) {
        return Ok(s);
    }
    // Nothing to relay: say so as a direct connection would.
    if let Err(e) = std::fs::metadata(line.at()) {
        return Err(Error::Connection(format!(
            "cannot reach dom0 at {}: {e}",
            line.at().display()
        )));
    }
    let log = log_path(line);
    let exe = std::env::current_exe()
        .map_err(|e| Error::Connection(format!("cannot start a relay: {e}")))?;
    let stderr = File::create(&log).map(Stdio::from).unwrap_or(Stdio::null());
    let mut cmd = Command::new(exe);
    cmd.arg(line.flag())
        .arg(line.at())
        .arg("relay")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Connection(format!("cannot start a relay: {e}")))?;
    let end = Instant::now() + START_WAIT;
    loop {
        match UnixStream::connect(&mux) {
            Ok(s) => {
                // It runs on; reap it in the background if it ends first.
                std::thread::spawn(move || child.wait());
                return Ok(s);
            }
            Err(e) if Instant::now() >= end => {
                let _ = child.kill();
                let why = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(Error::Connection(format!(
                    "cannot reach dom0 at {}: the relay did not listen at {} within {} s ({e}){}",
                    line.at().display(),
                    mux.display(),
                    START_WAIT.as_secs(),
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", why.trim())
                    }
                )));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// How long a client may leave its replies unread before it is dropped.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

type Clients = Arc<Mutex<HashMap<u64, UnixStream>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the relay for the line at `line` until the line closes. Returns
/// at once (success) when another relay for it is running or starting.
pub fn serve(line: Line<'_>) -> Result<(), Error> {
    let mux = mux_path(line);
    if let Line::Serial(_) = line {
        crate::serial::private_dir(&mux)?;
    }
    let mut lock_name = mux.clone().into_os_string();
    lock_name.push(".lock");
    let lock_file = File::create(&lock_name)
        .map_err(|e| Error::Connection(format!("{}: {e}", PathBuf::from(&lock_name).display())))?;
    if lock_file.try_lock().is_err() {
        return Ok(());
    }
    let (up, line_out) = line.open()?;
    let line_out = Arc::new(Mutex::new(line_out));
    // End whatever a dead client left unfinished, and end every session a
    // relay before this one left in dom0 (an untagged hello does that).
    {
        let hello = "\n{\"id\":0,\"op\":\"hello\",\"version\":1,\"client\":\"hvctl relay\"}\n";
        lock(&line_out)
            .write_all(hello.as_bytes())
            .map_err(|e| Error::Connection(format!("writing to dom0: {e}")))?;
    }
    let _ = std::fs::remove_file(&mux);
    let listener = UnixListener::bind(&mux)
        .map_err(|e| Error::Connection(format!("cannot listen at {}: {e}", mux.display())))?;
    let clients: Clients = Arc::default();
    {
        let clients = clients.clone();
        let mux = mux.clone();
        std::thread::spawn(move || {
            downstream(up, &clients);
            // The line closed (QEMU exited): nothing left to relay.
            let _ = std::fs::remove_file(&mux);
            eprintln!("hvctl relay: the management line closed");
            std::process::exit(0);
        });
    }
    for (session, conn) in (1u64..).zip(listener.incoming()) {
        let Ok(conn) = conn else { continue };
        let Ok(writer) = conn.try_clone() else {
            continue;
        };
        // A client that stops reading is dropped, not waited for: the
        // others must go on.
        let _ = writer.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
        lock(&clients).insert(session, writer);
        let clients = clients.clone();
        let line_out = line_out.clone();
        std::thread::spawn(move || upstream(session, conn, &line_out, &clients));
    }
    drop(lock_file);
    Ok(())
}

/// dom0's lines to the clients they are tagged for; untagged lines (the
/// answer to the relay's own hello) are dropped.
fn downstream(mut up: LineIn, clients: &Clients) {
    let mut lines = LineBuffer::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match up.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for line in lines.extend(buf.get(..n).unwrap_or_default()) {
            let Ok(line) = line else { continue };
            let Ok((Some(session), body)) = proto::split_session(&line) else {
                continue;
            };
            let mut map = lock(clients);
            if let Some(c) = map.get_mut(&session) {
                let mut out = body.to_vec();
                out.push(b'\n');
                if c.write_all(&out).is_err() {
                    map.remove(&session);
                }
            }
        }
    }
}

/// One client's whole lines to the line, tagged; `bye` when it goes.
fn upstream(session: u64, mut conn: UnixStream, line_out: &Mutex<LineOut>, clients: &Clients) {
    let mut lines = LineBuffer::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for line in lines.extend(buf.get(..n).unwrap_or_default()) {
            match line {
                Ok(l) => {
                    let mut out = format!("@{session} ").into_bytes();
                    out.extend_from_slice(&l);
                    out.push(b'\n');
                    if lock(line_out).write_all(&out).is_err() {
                        return;
                    }
                }
                // Never forwarded (dom0 holds no more than the limit
                // either): answered here, as dom0 would.
                Err(e) => answer_locally(&mut conn, e),
            }
        }
    }
    lock(clients).remove(&session);
    let bye = format!("@{session} {{\"id\":0,\"op\":\"bye\"}}\n");
    let _ = lock(line_out).write_all(bye.as_bytes());
}

fn answer_locally(conn: &mut UnixStream, e: ProtoError) {
    let resp = Response {
        id: None,
        result: proto::Outcome::Error(ProtoError::new(ErrorCode::LineTooLong, e.message)),
    };
    let _ = conn.write_all(proto::encode_response(&resp).as_bytes());
}
