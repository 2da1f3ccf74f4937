//! A connection to dom0's management service: hello, then one request at a
//! time, each answered in order.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;

use kestrel_toolstack::proto::{
    self, LineBuffer, Op, Outcome, Reply, Request, Response, ServerLine,
};

use crate::cli::Target;
use crate::error::Error;

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

    /// The next message; end of stream is a connection error.
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
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
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

pub struct Client {
    pub lines: Lines,
    pub sender: Sender,
}

impl Client {
    /// Connects and says hello.
    pub fn connect(target: &Target) -> Result<Self, Error> {
        let (reader, writer): (Reader, Writer) = match target {
            Target::Unix(path) => {
                let s = UnixStream::connect(path).map_err(|e| {
                    Error::Connection(format!("cannot reach dom0 at {}: {e}", path.display()))
                })?;
                let r = s
                    .try_clone()
                    .map_err(|e| Error::Connection(e.to_string()))?;
                (Box::new(r), Box::new(s))
            }
            Target::Tcp(addr) => {
                let s = TcpStream::connect(addr)
                    .map_err(|e| Error::Connection(format!("cannot reach dom0 at {addr}: {e}")))?;
                let r = s
                    .try_clone()
                    .map_err(|e| Error::Connection(e.to_string()))?;
                (Box::new(r), Box::new(s))
            }
        };
        let mut client = Self {
            lines: Lines::new(reader),
            sender: Sender { writer, next_id: 1 },
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

    /// Sends a request and waits for its reply; events meanwhile are dropped.
    pub fn call(&mut self, op: Op) -> Result<Reply, Error> {
        let id = self.sender.send(op)?;
        loop {
            if let ServerLine::Response(resp) = self.lines.next()? {
                return reply_for(id, resp);
            }
        }
    }
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
