//! A connection to dom0's management service: hello, then one request at a
//! time, each answered in order, each within a time limit.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use kestrel_toolstack::proto::{
    self, LineBuffer, Op, Outcome, Reply, Request, Response, ServerLine,
};

use crate::cli::Target;
use crate::error::Error;
use crate::relay::Line;

pub type Reader = Box<dyn Read + Send>;
pub type Writer = Box<dyn Write + Send>;

/// Reads server lines from a byte stream.
pub struct Lines {
    reader: Reader,
    buf: LineBuffer,
    ready: VecDeque<Vec<u8>>,
}

impl Lines {
    pub fn new(reader: Reader) -> Self {
        Self {
            reader,
            buf: LineBuffer::new(),
            ready: VecDeque::new(),
        }
    }

    /// The next message; end of stream is a connection error, and so is a
    /// read that times out ([`Error::Timeout`]).
    pub fn next(&mut self) -> Result<ServerLine, Error> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return proto::decode_server_line(&line).map_err(|e| {
                    Error::Protocol(format!("undecodable line from dom0: {}", e.message))
                });
            }
            let mut chunk = [0u8; 4096];
            let n = match self.reader.read(&mut chunk) {
                Ok(0) => return Err(Error::Connection("dom0 closed the connection".into())),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(Error::Timeout(String::new()));
                }
                Err(e) => return Err(Error::Connection(format!("reading from dom0: {e}"))),
            };
            for line in self.buf.extend(chunk.get(..n).unwrap_or_default()) {
                let line = line.map_err(|e| Error::Protocol(e.message))?;
                self.ready.push_back(line);
            }
        }
    }
}

/// Writes requests, numbering them.
pub struct Sender {
    writer: Writer,
    next_id: u64,
}

impl Sender {
    /// Sends a request without waiting; returns its id.
    pub fn send(&mut self, op: Op) -> Result<u64, Error> {
        let id = self.next_id;
        self.next_id += 1;
        let line = proto::encode_request(&Request { id, op })
            .map_err(|e| Error::Usage(format!("request too large: {}", e.message)))?;
        self.writer
            .write_all(line.as_bytes())
            .and_then(|()| self.writer.flush())
            .map_err(|e| Error::Connection(format!("writing to dom0: {e}")))?;
        Ok(id)
    }
}

/// Sets or clears the connection's read time limit.
type SetTimeout = Box<dyn Fn(Option<Duration>) -> std::io::Result<()> + Send>;

pub struct Client {
    pub lines: Lines,
    pub sender: Sender,
    /// The time limit for each reply.
    timeout: Duration,
    set_timeout: SetTimeout,
    /// Where dom0 is, for messages.
    pub target: Target,
}

/// The first request id of this process: its pid in the high half, so a
/// late reply meant for another (killed) client never matches.
fn first_id() -> u64 {
    (u64::from(std::process::id()) << 32) | 1
}

impl Client {
    /// Connects and says hello; every reply must come within `timeout`.
    pub fn connect(target: &Target, timeout: Duration) -> Result<Self, Error> {
        let (reader, mut writer, set_timeout): (Reader, Writer, SetTimeout) = match target {
            Target::Unix(p) | Target::Serial(p) => {
                let s = crate::relay::connect(if matches!(target, Target::Serial(_)) {
                    Line::Serial(p)
                } else {
                    Line::Socket(p)
                })?;
                let r = s
                    .try_clone()
                    .map_err(|e| Error::Connection(e.to_string()))?;
                let c = s
                    .try_clone()
                    .map_err(|e| Error::Connection(e.to_string()))?;
                (
                    Box::new(r),
                    Box::new(s),
                    Box::new(move |t| c.set_read_timeout(t)),
                )
            }
            Target::Secure { addr, key_file } => {
                let (r, w, c) = crate::secure::connect(addr, key_file, timeout)?;
                (
                    Box::new(r),
                    Box::new(w),
                    Box::new(move |t| c.set_read_timeout(t)),
                )
            }
            Target::Tcp(addr) => {
                let s = TcpStream::connect(addr)
                    .map_err(|e| Error::Connection(format!("cannot reach dom0 at {addr}: {e}")))?;
                let r = s
                    .try_clone()
                    .map_err(|e| Error::Connection(e.to_string()))?;
                let c = s
                    .try_clone()
                    .map_err(|e| Error::Connection(e.to_string()))?;
                (
                    Box::new(r),
                    Box::new(s),
                    Box::new(move |t| c.set_read_timeout(t)),
                )
            }
        };
        set_timeout(Some(timeout)).map_err(|e| Error::Connection(e.to_string()))?;
        // An empty line first: it ends whatever a client killed mid-line
        // left on a line it had to itself (dom0 skips empty lines).
        writer
            .write_all(b"\n")
            .map_err(|e| Error::Connection(format!("writing to dom0: {e}")))?;
        let mut client = Self {
            lines: Lines::new(reader),
            sender: Sender {
                writer,
                next_id: first_id(),
            },
            timeout,
            set_timeout,
            target: target.clone(),
        };
        let hello = Op::Hello {
            version: proto::VERSION,
            client: format!("hvctl {}", env!("CARGO_PKG_VERSION")),
        };
        match client.call(hello)? {
            Reply::Hello { version, .. } if version == proto::VERSION => Ok(client),
            Reply::Hello { version, server } => Err(Error::Protocol(format!(
                "{server} speaks protocol version {version}, hvctl speaks {}",
                proto::VERSION
            ))),
            other => Err(Error::Protocol(format!(
                "unexpected reply to hello: {other:?}"
            ))),
        }
    }

    /// No time limit from now on (a console waits for output forever).
    pub fn no_timeout(&self) -> Result<(), Error> {
        (self.set_timeout)(None).map_err(|e| Error::Connection(e.to_string()))
    }

    /// Sends a request and waits (at most the time limit) for its reply;
    /// events meanwhile are dropped, and so are replies to requests this
    /// process did not send (meant for a client killed before they came).
    pub fn call(&mut self, op: Op) -> Result<Reply, Error> {
        let what = op_name(&op);
        let first = self.sender.next_id == first_id();
        let id = self.sender.send(op)?;
        self.wait(id, &what, first)
    }

    /// The reply to request `id` (`what`, for the timeout's message),
    /// skipping events and replies to other requests (a pipeline's that
    /// were not waited for). `first`: the connection's first request,
    /// whose reply may come untagged.
    pub fn wait(&mut self, id: u64, what: &str, first: bool) -> Result<Reply, Error> {
        loop {
            let line = self.lines.next().map_err(|e| match e {
                Error::Timeout(_) => Error::Timeout(format!(
                    "no reply from dom0 to `{what}` within {} s (at {}): is dom0 running? \
                     (--timeout SECONDS waits longer)",
                    self.timeout.as_secs_f64(),
                    self.target
                )),
                e => e,
            })?;
            match line {
                ServerLine::Response(resp) if resp.id.is_some_and(|r| r != id) => {}
                // The answer to a line a dead client left unfinished.
                ServerLine::Response(resp) if first && resp.id.is_none() => {}
                ServerLine::Response(resp) => return reply_for(id, resp),
                ServerLine::Event(_) => {}
            }
        }
    }
}

/// The op's name, for messages.
pub fn op_name(op: &Op) -> String {
    serde_json::to_value(op)
        .ok()
        .and_then(|v| v.get("op").and_then(|o| o.as_str()).map(str::to_string))
        .unwrap_or_else(|| "request".into())
}

/// The reply in `resp`, which must answer request `id`.
pub fn reply_for(id: u64, resp: Response) -> Result<Reply, Error> {
    match (resp.id, resp.result) {
        (Some(got), Outcome::Ok(r)) if got == id => Ok(r),
        (Some(got), Outcome::Error(e)) if got == id => Err(Error::Refused(e)),
        (None, Outcome::Error(e)) => Err(Error::Protocol(format!(
            "dom0 could not read request {id}: {}",
            e.message
        ))),
        (got, _) => Err(Error::Protocol(format!(
            "reply for request {got:?} while waiting for {id}"
        ))),
    }
}
