//! `sink=<port>` on dom0's command line (`cargo xtask bench --only
//! upload`, issue 14): dom0 also listens on `<port>`, reads and drops
//! whatever a connection sends (a discard port, the "scp-like" raw stream
//! the image upload is compared with), and meters both that port and the
//! management connections. For each connection that received data it
//! prints, once the connection has ended,
//!
//! `dom0: meter: <what> bytes=B span_ns=S exits=E`
//!
//! with `<what>` = `sink` or `session <id>`: B bytes received, S the
//! system time from the first received byte to the last, E dom0's own
//! exits from the first received byte to the connection's end (read by
//! `DOMCTL_INFO` twice per connection only: each read is an exit itself,
//! so it is not taken per segment). Off unless asked: without `sink=`
//! nothing is metered and nothing printed.
//!
//! The discard socket has the management sockets' buffers (8 KiB
//! receive window) and their immediate ACKs, so the two differ only in
//! what dom0 does with the bytes (the authenticated channel, the
//! protocol, the image kept), not in TCP's window.

use alloc::format;
use alloc::vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use pvabi::guest::domctl;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;

use super::NetService;
use crate::say;

/// Whether metering is on (`sink=` given); dom0 is one thread, the
/// atomics only avoid `static mut`.
static ON: AtomicBool = AtomicBool::new(false);
/// dom0's domain id, for its exit count.
static ME: AtomicU32 = AtomicU32::new(0);

fn exits() -> u64 {
    domctl::info(ME.load(Ordering::Relaxed)).map_or(0, |i| i.exits)
}

/// What one connection received and when.
#[derive(Default)]
pub struct Meter {
    bytes: u64,
    first_ns: u64,
    last_ns: u64,
    first_exits: u64,
}

impl Meter {
    /// `n` bytes received at `now_ns`.
    pub fn note(&mut self, n: usize, now_ns: u64) {
        if !ON.load(Ordering::Relaxed) || n == 0 {
            return;
        }
        if self.bytes == 0 {
            self.first_ns = now_ns;
            self.first_exits = exits();
        }
        self.bytes = self
            .bytes
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        self.last_ns = now_ns;
    }

    /// The connection ended: prints what it received (if anything) and
    /// starts over.
    pub fn end(&mut self, what: &str) {
        if ON.load(Ordering::Relaxed) && self.bytes > 0 {
            let e = exits().saturating_sub(self.first_exits);
            say(&format!(
                "meter: {what} bytes={} span_ns={} exits={e}",
                self.bytes,
                self.last_ns.saturating_sub(self.first_ns)
            ));
        }
        *self = Self::default();
    }
}

/// The discard port.
pub struct Sink {
    handle: SocketHandle,
    port: u16,
    meter: Meter,
}

impl Sink {
    fn listen(s: &mut tcp::Socket<'_>, port: u16) -> bool {
        s.listen(port).is_ok()
    }

    /// One poll's work: drop what came, and once the client has closed
    /// (CloseWait) or the connection is gone, report and listen again.
    fn step(&mut self, sockets: &mut SocketSet<'_>, now_ns: u64) -> bool {
        let s = sockets.get_mut::<tcp::Socket>(self.handle);
        let mut busy = false;
        while s.can_recv() {
            let n = s.recv(|b| (b.len(), b.len())).unwrap_or(0);
            if n == 0 {
                break;
            }
            self.meter.note(n, now_ns);
            busy = true;
        }
        let state = s.state();
        if state == tcp::State::CloseWait || (!s.is_active() && state != tcp::State::Listen) {
            self.meter.end("sink");
            s.abort();
            let _ = Self::listen(s, self.port);
            busy = true;
        }
        busy
    }
}

impl NetService {
    /// `sink=<port>`: opens the discard port and turns metering on, or
    /// says why not.
    pub fn open_sink(&mut self, port: &str, me: u32) {
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 && p != self.port => p,
            _ => {
                say(&format!(
                    "sink={port}: not a port number other than 0 and the management port {}: \
                     no sink",
                    self.port
                ));
                return;
            }
        };
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 8192]),
            tcp::SocketBuffer::new(vec![0; 1024]),
        );
        s.set_ack_delay(None);
        if !Sink::listen(&mut s, port) {
            say(&format!("sink: cannot listen on port {port}: no sink"));
            return;
        }
        ME.store(me, Ordering::Relaxed);
        ON.store(true, Ordering::Relaxed);
        self.sink = Some(Sink {
            handle: self.sockets.add(s),
            port,
            meter: Meter::default(),
        });
        say(&format!(
            "sink: discarding TCP port {port}; connections metered"
        ));
    }

    /// The sink's share of [`NetService::poll`]: whether it did work.
    pub(super) fn sink_step(&mut self, now_ns: u64) -> bool {
        match self.sink.as_mut() {
            Some(k) => k.step(&mut self.sockets, now_ns),
            None => false,
        }
    }
}
