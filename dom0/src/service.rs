//! The management service loop: bytes from the management line become
//! protocol lines (`proto::LineBuffer`), each answered by the toolstack's
//! `Server`; console output of attached domains goes out as events. Lines
//! may carry a session tag (`@<n> `, from `hvctl relay`): the answer and
//! the events of that session carry it too. Empty lines are skipped (a
//! client sends one first to end whatever a dead client left unfinished).

use alloc::format;
use alloc::string::String;

use kestrel_toolstack::proto::{self, Event, LineBuffer, SessionId};
use kestrel_toolstack::server::Server;
use pvabi::guest::mgmt;

use crate::consoles::Consoles;
use crate::hv::Hv;
use crate::say;

pub struct Service {
    me: u32,
    lines: LineBuffer,
    server: Server,
    pub consoles: Consoles,
    /// Names of the domains that ended, for `bench=` (taken by main).
    pub ended: alloc::vec::Vec<String>,
    /// The management service on the network, if configured (`net/`).
    pub net: Option<crate::net::NetService>,
}

fn send(line: &str) {
    let _ = mgmt::write_all(line.as_bytes());
}

impl Service {
    pub fn new(me: u32, history: usize) -> Self {
        Self {
            me,
            lines: LineBuffer::new(),
            server: Server::with_history(history),
            consoles: Consoles::default(),
            ended: alloc::vec::Vec::new(),
            net: None,
        }
    }

    /// How long an upload or import may go without a request before it is
    /// dropped and its space freed (`xfer_idle=<seconds>`).
    pub fn set_transfer_idle(&mut self, ns: u64) {
        self.server.set_transfer_idle(ns);
    }

    /// Sends `line` to `session`: over its network connection if it is
    /// one, else on the serial line (tagged if it has a tag).
    fn out(&mut self, session: SessionId, line: &str) {
        if let (Some(s), Some(net)) = (session, self.net.as_mut())
            && net.owns(s)
        {
            net.send(s, line);
            return;
        }
        send(&proto::tag(session, line));
    }

    /// Sends `e` to every session in `to`.
    fn event(&mut self, to: &[SessionId], e: &Event) {
        if let Ok(line) = proto::encode_event(e) {
            for &s in to {
                self.out(s, &line);
            }
        }
    }

    /// Remembers domain `id`, built from `cfg` in `file` at `created_ns`
    /// (at boot): its uptime counts from then, its end is recorded even if
    /// it ends before it is first listed, and its end policies apply.
    /// Domains dom0 did not build (boot modules the hypervisor started)
    /// count from when dom0 first lists them.
    pub fn adopt(
        &mut self,
        hv: &mut Hv,
        id: u32,
        file: &str,
        cfg: &kestrel_toolstack::config::DomainConfig,
        created_ns: u64,
    ) {
        use kestrel_toolstack::server::Hypervisor;
        let info = hv.info(id).map_or_else(
            |_| kestrel_toolstack::server::configured(id, cfg),
            |i| i.to_proto(),
        );
        self.server.adopt(info, file, cfg, created_ns);
    }

    /// Prints what the lifecycle logic did, and follows the consoles of
    /// domains it restarted.
    fn lifecycle_news(&mut self, hv: &mut Hv) {
        for n in core::mem::take(&mut self.server.lifecycle.notes) {
            say(&n);
        }
        for (id, name) in hv.created.drain(..) {
            self.consoles.follow(id, &name);
        }
    }

    /// When the service must run again with no event (system time),
    /// the network's timers included (`net/`).
    pub fn next_deadline(&self) -> Option<u64> {
        let d = self.server.next_deadline();
        let n = self.net.as_ref().and_then(crate::net::NetService::deadline);
        d.into_iter().chain(n).min()
    }

    /// One pass over what `woken` says may have work (the management
    /// line, the consoles, ended domains and timers; all of them after a
    /// request was answered): whether anything happened (then the caller
    /// passes again at once, over the same sources).
    pub fn poll(&mut self, hv: &mut Hv, mgmt_line: bool, woken: crate::wake::Woken) -> bool {
        let mut busy = false;
        let mut answered = false;
        if mgmt_line && woken.mgmt {
            let mut buf = [0u8; 512];
            let n = mgmt::read(&mut buf).unwrap_or(0);
            if n > 0 {
                busy = true;
                for line in self.lines.extend(buf.get(..n).unwrap_or(&[])) {
                    answered = true;
                    self.answer(hv, line);
                }
            }
        }
        if let Some(net) = self.net.as_mut() {
            let news = net.poll(pvabi::guest::time::now_ns());
            busy |= news.busy;
            for (s, line) in news.lines {
                answered = true;
                self.answer_in(hv, Some(s), line);
            }
            for s in news.ended {
                // As `hvctl relay` does when a client goes: its consoles
                // detach, its subscriptions end.
                let bye = proto::encode_request(&proto::Request {
                    id: 0,
                    op: proto::Op::Bye,
                });
                if let Ok(bye) = bye {
                    let line = bye.trim_end().as_bytes().to_vec();
                    self.answer_in(hv, Some(s), Ok(line));
                }
            }
        }
        if !(woken.console || woken.ended || answered) {
            self.flush_net();
            return busy;
        }
        // Before the consoles: a domain that ended is recorded (with its
        // last CPU time) while its last lines are still being drained.
        for d in self.server.observe(hv) {
            say(&ended_line(&d));
            crate::dev::canary::check(kestrel_toolstack::server::Hypervisor::free_bytes(hv));
            self.ended.push(d.name);
        }
        self.lifecycle_news(hv);
        self.send_events();
        self.consoles.discover(self.me);
        let d = self.consoles.drain();
        busy |= d.busy;
        for (id, bytes) in d.output {
            let to = self.server.watchers(id);
            if !to.is_empty() {
                let data = String::from_utf8_lossy(&bytes).into_owned();
                self.event(&to, &Event::Console { domain: id, data });
            }
        }
        for id in d.closed {
            let to = self.server.detach_domain(id);
            let reason = "domain ended".into();
            self.event(&to, &Event::ConsoleClosed { domain: id, reason });
        }
        self.flush_net();
        busy
    }

    /// Sends what was queued for network sessions.
    fn flush_net(&mut self) {
        if let Some(net) = self.net.as_mut() {
            net.flush(pvabi::guest::time::now_ns());
        }
    }

    /// A line from the serial line: its session is its tag.
    fn answer(&mut self, hv: &mut Hv, line: Result<alloc::vec::Vec<u8>, proto::ProtoError>) {
        let (session, line) = match line {
            Ok(l) => match proto::split_session(&l) {
                Ok((s, body)) => (s, Ok(body.to_vec())),
                Err(e) => (None, Err(e)),
            },
            Err(e) => (None, Err(e)),
        };
        self.answer_in(hv, session, line);
    }

    /// Answers `line` of `session` (a network connection's lines are
    /// never split for tags: a client cannot speak for another session).
    fn answer_in(
        &mut self,
        hv: &mut Hv,
        session: SessionId,
        line: Result<alloc::vec::Vec<u8>, proto::ProtoError>,
    ) {
        if line
            .as_ref()
            .is_ok_and(|l| l.iter().all(|b| b.is_ascii_whitespace()))
        {
            return;
        }
        // What changes domains is also logged on the serial console, with
        // free memory, so an operator (and the tests) can follow it.
        let op = match &line {
            Ok(l) => proto::decode_request(l).ok().map(|r| r.op),
            Err(_) => None,
        };
        let before = hv.free_bytes();
        // Named before it goes: `destroyed domain 5 (web)`.
        let target = match &op {
            Some(proto::Op::Destroy { domain }) => kestrel_toolstack::server::find(hv, domain)
                .map(|d| format!("domain {} ({})", d.id, d.name))
                .ok(),
            _ => None,
        };
        let reply = self.server.handle_session_line(hv, session, line);
        let ok = reply.contains("\"ok\":");
        match op {
            Some(proto::Op::Create { file, .. }) => {
                for (id, name) in hv.created.drain(..) {
                    self.consoles.follow(id, &name);
                }
                let how = if ok { "done" } else { "refused" };
                say(&format!(
                    "create {file}: {how}; free_bytes before={before} after={}",
                    hv.free_bytes()
                ));
            }
            // Uploads: what was kept or refused (the reply has the why).
            Some(proto::Op::UploadEnd { name }) => say(&format!(
                "image {name}: upload {}",
                if ok { "kept" } else { "refused: nothing kept" }
            )),
            Some(proto::Op::ImageDelete { name }) if ok => say(&format!("image {name}: deleted")),
            Some(proto::Op::Destroy { domain }) if ok => say(&format!(
                "destroyed {}; free_bytes before={before} after={}",
                target.unwrap_or_else(|| format!("domain {domain}")),
                hv.free_bytes()
            )),
            _ => {}
        }
        self.lifecycle_news(hv);
        self.out(session, &reply);
        self.send_events();
    }

    /// Sends the domain changes the server queued to the sessions that
    /// subscribed (`hvctl events`).
    fn send_events(&mut self) {
        let to = self.server.subscribers();
        for e in self.server.take_events() {
            self.event(&to, &e);
        }
    }

    /// Seeds the UUIDs dom0 generates.
    pub fn seed_uuids(&mut self, seed: u64) {
        self.server.seed_uuids(seed);
    }
}

/// `domain 3 (web) ended: exited with code 7 after 2.5 s, cpu 0.1 s`.
fn ended_line(d: &proto::DomainInfo) -> String {
    let how = match (d.reason.as_deref(), d.exit_code) {
        (Some("exited"), Some(c)) => format!("exited with code {c}"),
        (Some("rebooted"), Some(c)) => format!("rebooted with code {c}"),
        (Some("crashed"), Some(c)) => format!("crashed (the guest said so) with code {c}"),
        (Some("killed"), _) => match &d.kill_reason {
            Some(why) => format!("killed by the hypervisor: {why}"),
            None => String::from("killed by the hypervisor"),
        },
        (Some(r), _) => String::from(r),
        (None, _) => String::from("unknown"),
    };
    let secs = |ns: u64| format!("{}.{} s", ns / 1_000_000_000, ns / 100_000_000 % 10);
    format!(
        "domain {} ({}) ended: {how} after {}, cpu {}",
        d.id,
        d.name,
        secs(d.uptime_ns.unwrap_or(0)),
        secs(d.cpu_time_ns)
    )
}
