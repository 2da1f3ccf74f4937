//! Which management sessions said `hello`, and which consoles each one
//! has attached. A session is a client of `hvctl relay` (tagged `@<n>` on
//! the line) or the one untagged client on the line itself.

use alloc::vec::Vec;

use crate::proto::SessionId;

/// Most sessions kept at once: a `hello` past it ends the oldest session
/// (the relay numbers sessions in order), so dom0's memory stays bounded
/// whatever a relay sends.
pub const MAX_SESSIONS: usize = 64;

#[derive(Debug, Default)]
pub struct Sessions {
    /// Sessions that said hello, oldest first.
    open: Vec<SessionId>,
    /// Console attachments: (session, domain).
    attached: Vec<(SessionId, u32)>,
    /// Sessions that asked for domain events (`subscribe`).
    subscribed: Vec<SessionId>,
}

impl Sessions {
    /// Starts `s`. An untagged hello means the line has a new owner (a
    /// client on it directly, or a relay that just started): every session
    /// before it ends, so consoles of clients killed without detaching
    /// stop streaming. A tagged hello restarts only its own session.
    pub fn hello(&mut self, s: SessionId) {
        if s.is_none() {
            self.open.clear();
            self.attached.clear();
            self.subscribed.clear();
        } else {
            self.end(s);
        }
        if self.open.len() >= MAX_SESSIONS
            && let Some(oldest) = self.open.first().copied()
        {
            self.end(oldest);
        }
        self.open.push(s);
    }

    pub fn is_open(&self, s: SessionId) -> bool {
        self.open.contains(&s)
    }

    /// Ends `s`: its consoles detach.
    pub fn end(&mut self, s: SessionId) {
        self.open.retain(|&o| o != s);
        self.attached.retain(|&(o, _)| o != s);
        self.subscribed.retain(|&o| o != s);
    }

    /// `s` gets domain events from now on (until it ends).
    pub fn subscribe(&mut self, s: SessionId) {
        if !self.subscribed.contains(&s) {
            self.subscribed.push(s);
        }
    }

    /// Sessions that get domain events.
    pub fn subscribers(&self) -> Vec<SessionId> {
        self.subscribed.clone()
    }

    pub fn attach(&mut self, s: SessionId, domain: u32) {
        if !self.attached.contains(&(s, domain)) {
            self.attached.push((s, domain));
        }
    }

    pub fn detach(&mut self, s: SessionId, domain: u32) {
        self.attached.retain(|&a| a != (s, domain));
    }

    /// Sessions that have `domain`'s console attached.
    pub fn watchers(&self, domain: u32) -> Vec<SessionId> {
        self.attached
            .iter()
            .filter(|&&(_, d)| d == domain)
            .map(|&(s, _)| s)
            .collect()
    }

    /// Detaches `domain` from every session (it ended); returns them.
    pub fn detach_domain(&mut self, domain: u32) -> Vec<SessionId> {
        let w = self.watchers(domain);
        self.attached.retain(|&(_, d)| d != domain);
        w
    }
}
