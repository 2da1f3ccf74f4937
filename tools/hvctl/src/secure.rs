//! `--host`: dom0's network management service over the authenticated
//! channel (`kestrel_toolstack::secure`, docs/threat-model.md). The
//! handshake is made here; then a reader and a writer carry the same JSON
//! lines as the serial line does, sealed in records.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kestrel_toolstack::secure::{ChannelError, ClientChannel, Key};

use crate::error::Error;

/// Random bytes from the OS (`/dev/urandom`, which never blocks once the
/// kernel's pool is seeded at boot).
pub fn os_random(buf: &mut [u8]) -> bool {
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_ok()
}

/// Reads a key file.
pub fn read_key(path: &Path) -> Result<Key, Error> {
    let text = std::fs::read(path)
        .map_err(|e| Error::Config(format!("cannot read the key file {}: {e}", path.display())))?;
    Key::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// `hvctl keygen [FILE]`: a new key to FILE (mode 0600, never over an
/// existing file) or to stdout.
pub fn keygen(file: Option<&Path>) -> Result<String, Error> {
    let key =
        Key::generate(os_random).map_err(|e| Error::Config(format!("cannot make a key: {e}")))?;
    let text = key.to_file_text();
    let Some(path) = file else {
        return Ok(text);
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| Error::Config(format!("cannot write the key file {}: {e}", path.display())))?;
    Ok(format!("wrote a new key to {}\n", path.display()))
}

type Shared = Arc<Mutex<ClientChannel>>;

fn lock(c: &Shared) -> std::sync::MutexGuard<'_, ClientChannel> {
    c.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a failed handshake means to the operator.
fn handshake_error(e: ChannelError, addr: &str, key_file: &Path) -> Error {
    match e {
        ChannelError::Refused(why) if why == "authentication failed" => Error::Connection(format!(
            "authentication failed: dom0 refused the key (at {addr}, key file {}): dom0's \
             configuration names other keys",
            key_file.display()
        )),
        ChannelError::Refused(why) => Error::Connection(format!("dom0 at {addr} refused: {why}")),
        ChannelError::BadKey => Error::Connection(format!(
            "authentication failed: the service at {addr} does not hold the key in {} (not \
             dom0, or someone in between)",
            key_file.display()
        )),
        e => Error::Connection(format!("handshake with {addr} failed: {e}")),
    }
}

/// Connects to `addr`, makes the handshake with the key in `key_file`
/// within `timeout`, and gives the plaintext reader and writer and the
/// stream (for time limits).
pub fn connect(
    addr: &str,
    key_file: &Path,
    timeout: Duration,
) -> Result<(SecureReader, SecureWriter, TcpStream), Error> {
    let key = read_key(key_file)?;
    let mut stream = TcpStream::connect(addr)
        .map_err(|e| Error::Connection(format!("cannot reach dom0 at {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| Error::Connection(e.to_string()))?;
    let mut chan = ClientChannel::new(&key, os_random)
        .map_err(|e| Error::Connection(format!("cannot start the handshake: {e}")))?;
    stream
        .write_all(&chan.take_output())
        .map_err(|e| Error::Connection(format!("writing to dom0 at {addr}: {e}")))?;
    let mut buf = [0u8; 4096];
    while !chan.is_open() {
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                return Err(Error::Connection(format!(
                    "{addr} closed the connection during the handshake (is it dom0's management \
                     port? --tcp reaches the serial line instead)"
                )));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Error::Timeout(format!(
                    "no handshake answer from {addr} within {} s",
                    timeout.as_secs_f64()
                )));
            }
            Err(e) => return Err(Error::Connection(format!("reading from {addr}: {e}"))),
        };
        // Nothing but the handshake can come before the channel opens.
        chan.receive(buf.get(..n).unwrap_or_default())
            .map_err(|e| handshake_error(e, addr, key_file))?;
    }
    let clone = || {
        stream
            .try_clone()
            .map_err(|e| Error::Connection(e.to_string()))
    };
    let shared: Shared = Arc::new(Mutex::new(chan));
    let reader = SecureReader {
        stream: clone()?,
        chan: shared.clone(),
        plain: VecDeque::new(),
    };
    let writer = SecureWriter {
        stream: clone()?,
        chan: shared,
    };
    Ok((reader, writer, stream))
}

/// The server's lines, opened from its records (each with its newline).
pub struct SecureReader {
    stream: TcpStream,
    chan: Shared,
    plain: VecDeque<u8>,
}

impl Read for SecureReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.plain.is_empty() {
            let mut buf = [0u8; 16384];
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                return Ok(0);
            }
            let lines = lock(&self.chan)
                .receive(buf.get(..n).unwrap_or_default())
                .map_err(|e| io::Error::other(format!("secure channel: {e}")))?;
            for l in lines {
                let l = l.map_err(|e| io::Error::other(e.message))?;
                self.plain.extend(l);
                self.plain.push_back(b'\n');
            }
        }
        let n = out.len().min(self.plain.len());
        for (o, b) in out.iter_mut().zip(self.plain.drain(..n)) {
            *o = b;
        }
        Ok(n)
    }
}

/// Seals what is written into records for the server.
pub struct SecureWriter {
    stream: TcpStream,
    chan: Shared,
}

impl Write for SecureWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let out = {
            let mut c = lock(&self.chan);
            c.send(data)
                .map_err(|e| io::Error::other(format!("secure channel: {e}")))?;
            c.take_output()
        };
        self.stream.write_all(&out)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}
