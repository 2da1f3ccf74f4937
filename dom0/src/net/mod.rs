//! dom0's management service on the network (issue 14): virtio-net
//! (`nic.rs`), smoltcp with the `[network]` table's static address or
//! DHCP, and a TCP listener on the management port whose connections speak
//! the authenticated channel (`kestrel_toolstack::secure`,
//! docs/threat-model.md "Management over the network"). Each connection is
//! one management session (ids from [`FIRST_SESSION`], apart from
//! `hvctl relay`'s on the serial line, which keeps working). ICMP echo
//! requests are answered by smoltcp itself.
//!
//! Woken by the NIC: its receive queue signals through MSI-X entry 0,
//! bound to an event port (`dev/irq.rs`), so dom0 blocks until a frame
//! comes or smoltcp's next timer ([`NetService::deadline`]: a
//! retransmission, DHCP, a handshake's time limit) instead of polling.
//! Where the binding fails (no MSI-X, the hypervisor refuses, the device
//! does not take the vector) or `wake=poll` / `net=poll` is on dom0's
//! command line, the NIC is polled every [`POLL_NS`], said once at start.

mod nic;
mod sink;

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use kestrel_toolstack::config::network::{Address, NetworkConfig};
use kestrel_toolstack::proto::ProtoError;
use kestrel_toolstack::secure::{Key, NamedKey, ServerChannel};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

use crate::dev::irq::{Common, Irq};
use crate::dev::virtio::Platform;
use crate::hv::Hv;
use crate::say;

/// virtio-net's first receive queue (virtio 1.2, 5.1.2): the only one
/// that interrupts (frames are sent synchronously, `nic.rs`).
const RX_QUEUE: u16 = 0;

/// How often the loop polls the NIC when it has no interrupt.
pub const POLL_NS: u64 = 2_000_000;
/// Connections served at once (one listening socket each).
pub const MAX_CONN: usize = 4;
/// Listening sockets beyond [`MAX_CONN`]: a connection that lands on one
/// while every session slot is taken gets a refusal line and is closed
/// (without them smoltcp answers the SYN with a reset, which a client
/// reports as "connection refused" with no reason).
const SPARE: usize = 2;
/// What a connection over [`MAX_CONN`] is told (the handshake's refusal
/// form, `secure::REFUSED`, so hvctl shows the reason).
const FULL: &str = "refused: all 4 management connections are in use; try again when one ends\n";
const _: () = assert!(MAX_CONN == 4, "FULL names the number");
/// Session ids of network connections start here (relay sessions count
/// from 1).
pub const FIRST_SESSION: u64 = 1 << 40;
/// A connection that has not finished the handshake by then is closed.
const HANDSHAKE_NS: u64 = 10_000_000_000;
/// Bytes queued for a client that does not read, before it is dropped:
/// all [`MAX_CONN`] at this bound must fit dom0's 2 MiB heap with room
/// for everything else (consoles, records being sealed).
const MAX_PENDING: usize = 128 << 10;
/// Longest key file.
const KEY_MAX: u64 = 256;

/// 64-bit RDRAND words into `buf`; false if the CPU has none or it fails.
fn rdrand_fill(buf: &mut [u8]) -> bool {
    for chunk in buf.chunks_mut(8) {
        let Some(r) = pvabi::guest::random::rdrand64() else {
            return false;
        };
        let bytes = r.to_le_bytes();
        chunk.copy_from_slice(bytes.get(..chunk.len()).unwrap_or_default());
    }
    true
}

struct Conn {
    handle: SocketHandle,
    chan: Option<ServerChannel>,
    session: u64,
    /// Sealed bytes the socket had no room for yet.
    pending: Vec<u8>,
    /// Close once `pending` is sent (a refusal, an error).
    closing: bool,
    /// Connected while every session slot was taken: told so, closed, no
    /// session.
    refusing: bool,
    since_ns: u64,
    open_said: bool,
    /// Bytes received, for `sink=` (sink.rs).
    meter: sink::Meter,
}

/// What one poll brought.
#[derive(Default)]
pub struct News {
    /// Plaintext lines, by session.
    pub lines: Vec<(u64, Result<Vec<u8>, ProtoError>)>,
    /// Sessions whose connection ended.
    pub ended: Vec<u64>,
    pub busy: bool,
}

pub struct NetService {
    nic: nic::Nic,
    iface: Interface,
    sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    conns: Vec<Conn>,
    keys: Arc<[NamedKey]>,
    port: u16,
    next_session: u64,
    /// The NIC's interrupt; `None`: polled every [`POLL_NS`].
    irq: Option<Irq>,
    /// When the stack must run again with no frame (system time).
    deadline_ns: Option<u64>,
    /// `sink=<port>`'s discard port (sink.rs).
    sink: Option<sink::Sink>,
}

fn now(ns: u64) -> Instant {
    Instant::from_micros(i64::try_from(ns / 1000).unwrap_or(i64::MAX))
}

fn ip(a: [u8; 4]) -> Ipv4Address {
    Ipv4Address::new(a[0], a[1], a[2], a[3])
}

/// Starts the network service `cfg` describes, or says why not (the serial
/// line serves alone then).
/// `poll`: poll the NIC even if it could interrupt, and the option that
/// said so (dom0's `wake=poll`, `net=poll`).
pub fn start(hv: &Hv, cfg: &NetworkConfig, poll: Option<&str>) -> Option<NetService> {
    match try_start(hv, cfg, poll) {
        Ok(n) => Some(n),
        Err(why) => {
            say(&format!("net: no network management: {why}"));
            None
        }
    }
}

fn read_keys(hv: &Hv, cfg: &NetworkConfig) -> Result<Vec<NamedKey>, String> {
    let mut keys = Vec::new();
    for name in &cfg.key_files {
        let m = hv
            .modules
            .iter()
            .find(|m| !m.elf && &m.name == name)
            .ok_or_else(|| format!("key file {name}: no such data module"))?;
        let text = hv
            .read_module(m, KEY_MAX)
            .ok_or_else(|| format!("key file {name}: unreadable or over {KEY_MAX} bytes"))?;
        let key = Key::parse(&text).map_err(|e| format!("key file {name}: {e}"))?;
        keys.push(NamedKey {
            name: name.clone(),
            key,
        });
    }
    Ok(keys)
}

/// Binds `d`'s MSI-X entry 0 and has `t` route the receive queue to it.
fn bind_irq(d: &pvabi::PciDevice, t: &mut Platform) -> Result<(Irq, Common), String> {
    let irq = Irq::bind_msix(d, 0)?;
    match Common::find(d) {
        Ok(common) => {
            t.route(common, 1 << RX_QUEUE);
            Ok((irq, common))
        }
        Err(e) => {
            irq.unbind();
            Err(e)
        }
    }
}

fn try_start(hv: &Hv, cfg: &NetworkConfig, poll: Option<&str>) -> Result<NetService, String> {
    // Ephemeral keys need real randomness (threat model): no RDRAND, no
    // network service.
    let mut probe = [0u8; 8];
    if !rdrand_fill(&mut probe) {
        return Err(String::from(
            "the CPU has no working RDRAND (CPUID.01H:ECX bit 30), so no key-grade randomness \
             for the handshake; the serial line serves alone",
        ));
    }
    let keys = read_keys(hv, cfg)?;
    let dev = crate::pci::devices()
        .into_iter()
        .find(|d| crate::dev::claim(d) == Some(crate::dev::Driver::VirtioNet))
        .ok_or_else(|| String::from("no virtio-net device assigned to dom0"))?;
    let mut transport = Platform::open(&dev).map_err(|e| format!("{e}"))?;
    let irq = match poll {
        Some(why) => Err(format!("{why} on the command line")),
        None => bind_irq(&dev, &mut transport),
    };
    let raw = match nic::Raw::new(transport) {
        Ok(r) => r,
        Err(e) => {
            if let Ok((i, _)) = irq {
                i.unbind();
            }
            return Err(format!(
                "{}: virtio-net set-up failed: {e}",
                crate::pci::bdf(dev.sbdf)
            ));
        }
    };
    // The device reads back NO_VECTOR for a vector it could not take.
    let irq = irq.and_then(|(i, common)| match common.queue_vector(RX_QUEUE) {
        v if v == i.entry => Ok(i),
        v => {
            i.unbind();
            Err(format!(
                "the receive queue did not take MSI-X entry 0 (reads {v:#06x})"
            ))
        }
    });
    let wakes = match &irq {
        Ok(i) => format!("woken by MSI-X entry {} on port {}", i.entry, i.port),
        Err(why) => format!("polled every {} ms ({why})", POLL_NS / 1_000_000),
    };
    let mut nic = nic::Nic::new(raw);
    let mac = nic.mac();
    let t = now(pvabi::guest::time::now_ns());
    let mut icfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    icfg.random_seed = {
        let mut s = [0u8; 8];
        rdrand_fill(&mut s);
        u64::from_le_bytes(s)
    };
    let mut iface = Interface::new(icfg, &mut nic, t);
    let mut sockets = SocketSet::new(Vec::new());
    let dhcp = match cfg.address {
        Address::Static { ip: a, prefix } => {
            iface.update_ip_addrs(|addrs| {
                let _ = addrs.push(IpCidr::Ipv4(Ipv4Cidr::new(ip(a), prefix)));
            });
            if let Some(g) = cfg.gateway {
                let _ = iface.routes_mut().add_default_ipv4_route(ip(g));
            }
            None
        }
        Address::Dhcp => Some(sockets.add(dhcpv4::Socket::new())),
    };
    let mut conns = Vec::new();
    for _ in 0..MAX_CONN + SPARE {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 8192]),
            tcp::SocketBuffer::new(vec![0; 16384]),
        );
        // Every segment acknowledged at once: a client streaming a large
        // request (an image) into the 8 KiB receive window otherwise waits
        // out smoltcp's 10 ms delayed ACK per window, each one a timer
        // wake-up of dom0 (and longer where the scheduler's tick rounds
        // it up).
        s.set_ack_delay(None);
        s.listen(cfg.port)
            .map_err(|e| format!("cannot listen on port {}: {e:?}", cfg.port))?;
        conns.push(Conn {
            handle: sockets.add(s),
            chan: None,
            session: 0,
            pending: Vec::new(),
            closing: false,
            refusing: false,
            since_ns: 0,
            open_said: false,
            meter: sink::Meter::default(),
        });
    }
    let m = mac;
    say(&format!(
        "net: {} virtio-net {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, {}, management on TCP port {} \
         (authenticated, {} key(s)), {wakes}",
        crate::pci::bdf(dev.sbdf),
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[5],
        match cfg.address {
            Address::Dhcp => String::from("address by DHCP"),
            Address::Static { ip: a, prefix } =>
                format!("address {}.{}.{}.{}/{prefix}", a[0], a[1], a[2], a[3]),
        },
        cfg.port,
        keys.len(),
    ));
    Ok(NetService {
        nic,
        iface,
        sockets,
        dhcp,
        conns,
        keys: Arc::from(keys),
        port: cfg.port,
        next_session: FIRST_SESSION,
        irq: irq.ok(),
        deadline_ns: None,
        sink: None,
    })
}

impl NetService {
    /// Whether `session` is one of the network's.
    pub fn owns(&self, session: u64) -> bool {
        session >= FIRST_SESSION
    }

    /// Runs the stack: packets in and out, DHCP, connections opened,
    /// bytes through their channels.
    pub fn poll(&mut self, now_ns: u64) -> News {
        let mut news = News::default();
        let t = now(now_ns);
        self.iface.poll(t, &mut self.nic, &mut self.sockets);
        self.dhcp_news();
        for i in 0..self.conns.len() {
            let in_use = self.conns.iter().filter(|c| c.chan.is_some()).count();
            let Some(c) = self.conns.get_mut(i) else {
                break;
            };
            step(
                c,
                in_use,
                &mut self.sockets,
                &self.keys,
                self.port,
                &mut self.next_session,
                now_ns,
                &mut news,
            );
        }
        news.busy |= self.sink_step(now_ns);
        self.iface.poll(t, &mut self.nic, &mut self.sockets);
        // A frame the stack did not take (no transmit room): again at
        // once, since the device interrupts only for frames that come
        // after the last one taken.
        news.busy |= self.nic.rx_pending();
        self.deadline_ns = self.next_deadline(now_ns);
        news
    }

    /// When the stack must run again if no frame comes (system time):
    /// `None` waits for a frame alone.
    pub fn deadline(&self) -> Option<u64> {
        self.deadline_ns
    }

    /// smoltcp's next timer and the connections' time limits, or the
    /// next poll when the NIC has no interrupt.
    fn next_deadline(&mut self, now_ns: u64) -> Option<u64> {
        if self.irq.is_none() {
            return Some(now_ns.saturating_add(POLL_NS));
        }
        let stack = self
            .iface
            .poll_delay(now(now_ns), &self.sockets)
            .map(|d| now_ns.saturating_add(d.total_micros().saturating_mul(1000)));
        // One nanosecond past a limit, since `step` checks "over".
        let limits = self.conns.iter().filter_map(|c| {
            if c.refusing {
                return Some(c.since_ns.saturating_add(2 * HANDSHAKE_NS + 1));
            }
            let chan = c.chan.as_ref()?;
            let limit = if c.closing {
                2 * HANDSHAKE_NS
            } else if !chan.is_open() {
                HANDSHAKE_NS
            } else {
                return None;
            };
            Some(c.since_ns.saturating_add(limit + 1))
        });
        stack.into_iter().chain(limits).min()
    }

    /// Sends `line` (a whole protocol line) to `session`; false if it has
    /// no open connection.
    pub fn send(&mut self, session: u64, line: &str) -> bool {
        let Some(c) = self
            .conns
            .iter_mut()
            .find(|c| c.session == session && c.chan.as_ref().is_some_and(ServerChannel::is_open))
        else {
            return false;
        };
        let Some(chan) = c.chan.as_mut() else {
            return false;
        };
        if chan.send(line.as_bytes()).is_err() {
            c.closing = true;
            return false;
        }
        c.pending.extend(chan.take_output());
        if c.pending.len() > MAX_PENDING {
            say(&format!(
                "net: session {session}: client reads too slowly ({} bytes queued): closed",
                c.pending.len()
            ));
            c.pending.clear();
            c.closing = true;
        }
        let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
        flush(c.handle, &mut c.pending, s);
        true
    }

    /// Sends what [`Self::send`] queued.
    pub fn flush(&mut self, now_ns: u64) {
        self.iface
            .poll(now(now_ns), &mut self.nic, &mut self.sockets);
        self.deadline_ns = self.next_deadline(now_ns);
    }

    fn dhcp_news(&mut self) {
        let Some(h) = self.dhcp else { return };
        let event = self.sockets.get_mut::<dhcpv4::Socket>(h).poll();
        match event {
            None => {}
            Some(dhcpv4::Event::Configured(c)) => {
                let a = c.address;
                self.iface.update_ip_addrs(|addrs| {
                    addrs.clear();
                    let _ = addrs.push(IpCidr::Ipv4(a));
                });
                match c.router {
                    Some(r) => {
                        let _ = self.iface.routes_mut().add_default_ipv4_route(r);
                    }
                    None => {
                        let _ = self.iface.routes_mut().remove_default_ipv4_route();
                    }
                }
                say(&format!(
                    "net: DHCP address {a}{}",
                    c.router.map_or(String::new(), |r| format!(", gateway {r}"))
                ));
            }
            Some(dhcpv4::Event::Deconfigured) => {
                // smoltcp reports this once at the start too, before any
                // lease: only a lease that was held is news.
                let had = self
                    .iface
                    .ip_addrs()
                    .iter()
                    .any(|a| matches!(a, IpCidr::Ipv4(_)));
                self.iface.update_ip_addrs(|addrs| addrs.clear());
                let _ = self.iface.routes_mut().remove_default_ipv4_route();
                if had {
                    say("net: DHCP lease lost: no address");
                }
            }
        }
    }
}

/// Writes as much of `pending` as the socket takes.
fn flush(_h: SocketHandle, pending: &mut Vec<u8>, s: &mut tcp::Socket<'_>) {
    if pending.is_empty() || !s.can_send() {
        return;
    }
    if let Ok(n) = s.send_slice(pending) {
        pending.drain(..n);
    }
}

/// A refused connection's work: its input read and dropped, the refusal
/// sent, then closed; the socket listens again once the client has it
/// all (or after the handshake's time limit twice over).
fn refuse_step(c: &mut Conn, s: &mut tcp::Socket<'_>, port: u16, now_ns: u64, news: &mut News) {
    while s.can_recv() && matches!(s.recv(|b| (b.len(), b.len())), Ok(n) if n > 0) {}
    flush(c.handle, &mut c.pending, s);
    if c.pending.is_empty() && s.is_open() {
        s.close();
    }
    let state = s.state();
    if !s.is_active()
        || state == tcp::State::FinWait2
        || state == tcp::State::TimeWait
        || now_ns.saturating_sub(c.since_ns) > 2 * HANDSHAKE_NS
    {
        c.refusing = false;
        c.pending.clear();
        s.abort();
        let _ = s.listen(port);
        news.busy = true;
    }
}

/// One connection slot's work for one poll (`in_use`: session slots
/// taken, this one's included if it has a session).
#[allow(clippy::too_many_arguments)] // one slot's state and the service's, by field
fn step(
    c: &mut Conn,
    in_use: usize,
    sockets: &mut SocketSet<'_>,
    keys: &Arc<[NamedKey]>,
    port: u16,
    next_session: &mut u64,
    now_ns: u64,
    news: &mut News,
) {
    let s = sockets.get_mut::<tcp::Socket>(c.handle);
    if c.refusing {
        refuse_step(c, s, port, now_ns, news);
        return;
    }
    if c.chan.is_none() {
        if !s.is_active() {
            if s.state() != tcp::State::Listen {
                s.abort();
                let _ = s.listen(port);
            }
            return;
        }
        if in_use >= MAX_CONN {
            let from = s
                .remote_endpoint()
                .map_or(String::from("?"), |e| format!("{e}"));
            say(&format!(
                "net: connection from {from} refused: all {MAX_CONN} slots in use"
            ));
            c.refusing = true;
            c.since_ns = now_ns;
            c.pending.clear();
            c.pending.extend_from_slice(FULL.as_bytes());
            refuse_step(c, s, port, now_ns, news);
            return;
        }
        c.chan = Some(ServerChannel::new(keys.clone(), rdrand_fill));
        c.session = *next_session;
        *next_session += 1;
        c.since_ns = now_ns;
        c.closing = false;
        c.open_said = false;
        c.pending.clear();
        let from = s
            .remote_endpoint()
            .map_or(String::from("?"), |e| format!("{e}"));
        say(&format!(
            "net: connection from {from} (session {})",
            c.session
        ));
        news.busy = true;
    }
    let Some(chan) = c.chan.as_mut() else { return };
    let mut buf = [0u8; 2048];
    while !c.closing && s.can_recv() {
        let n = match s.recv_slice(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        news.busy = true;
        c.meter.note(n, now_ns);
        match chan.receive(buf.get(..n).unwrap_or_default()) {
            Ok(lines) => news.lines.extend(lines.into_iter().map(|l| (c.session, l))),
            Err(e) => {
                say(&format!("net: session {}: closed: {e}", c.session));
                c.closing = true;
            }
        }
    }
    if chan.is_open() && !c.open_said {
        c.open_said = true;
        say(&format!(
            "net: session {} authenticated (key {})",
            c.session,
            chan.key_name().unwrap_or("?")
        ));
    }
    if !chan.is_open() && !c.closing && now_ns.saturating_sub(c.since_ns) > HANDSHAKE_NS {
        say(&format!(
            "net: session {}: no handshake within {} s: closed",
            c.session,
            HANDSHAKE_NS / 1_000_000_000
        ));
        c.closing = true;
    }
    c.pending.extend(chan.take_output());
    flush(c.handle, &mut c.pending, s);
    if c.closing && c.pending.is_empty() && s.is_open() {
        s.close();
    }
    // The connection is gone: the client closed (CloseWait: it sends no
    // more), or we close and the client has acknowledged everything we
    // sent (FinWait2), or TCP itself is done. The session ends; the slot
    // listens again. (SynReceived counts as active but cannot receive yet:
    // not gone.)
    let state = s.state();
    let gone = !s.is_active()
        || (c.closing
            && (state == tcp::State::FinWait2
                || now_ns.saturating_sub(c.since_ns) > 2 * HANDSHAKE_NS))
        || (!c.closing && state == tcp::State::CloseWait && c.pending.is_empty());
    if gone {
        if chan.is_open() {
            news.ended.push(c.session);
        }
        c.meter.end(&format!("session {}", c.session));
        say(&format!("net: session {} ended", c.session));
        c.chan = None;
        s.abort();
        let _ = s.listen(port);
        news.busy = true;
    }
}
