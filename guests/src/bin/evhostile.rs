//! A hostile event-channel user: every misuse gets its documented error
//! (`pvabi`'s `HC_EVTCHN_*` docs) and nothing else happens. Runs next to
//! the `evping`/`evpong` pair, which must be unharmed.
//!
//! Command line: `peer=<id>`: the `evpong` domain, whose port 1 is offered
//! to another domain (`evping`), never to us.
//!
//! Prints `evhostile: <name> ok` or `evhostile: <name> FAILED got <X> want
//! <Y>` per check, then `evhostile: <N> checks, <M> failed`, and exits 0
//! iff every check passed.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::{Checks, PONG_PORT, num_arg};
use pvabi::guest::{evtchn, hypercall6, sched, time};
use pvabi::{
    EBUSY, EINVAL, ENOENT, EPERM, EVENT_CHANNEL, HC_EVTCHN_ALLOC_UNBOUND,
    HC_EVTCHN_BIND_INTERDOMAIN, HC_EVTCHN_CLOSE, HC_EVTCHN_MASK, HC_EVTCHN_POLL, HC_EVTCHN_SEND,
    HC_EVTCHN_SEND_WAIT, HC_EVTCHN_UNMASK, StartInfo,
};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("evhostile");

fn check(name: &str, got: i64, want: i64) -> bool {
    CHECKS.check(name, got, want)
}

fn raw(nr: u64, a: u64, b: u64) -> i64 {
    hypercall6(nr, [a, b, 0, 0, 0, 0]) as i64
}

/// A domain id that does not exist: far beyond any boot module.
const NO_DOMAIN: u64 = 0x7fff_0000;

fn sw(send: u64, wait: u64, deadline: u64) -> i64 {
    hypercall6(HC_EVTCHN_SEND_WAIT, [send, wait, deadline, 0, 0, 0]) as i64
}

/// `HC_EVTCHN_SEND_WAIT` (pvabi 1.4) on the loopback pair a = 1 <-> b = 2,
/// nothing pending: every documented error, in order, sends nothing.
fn send_wait_checks() {
    check(
        "send_wait: send port over 32 bits",
        sw(1 << 32, 1, 0),
        EINVAL,
    );
    check("send_wait: wait port 0", sw(2, 0, 0), EINVAL);
    check(
        "send_wait: wait port over 32 bits",
        sw(2, 1 << 32, 0),
        EINVAL,
    );
    check("send_wait: wait port not allocated", sw(2, 77, 0), ENOENT);
    check(
        "send_wait: ...and nothing was sent",
        raw(HC_EVTCHN_POLL, 0, 0),
        0,
    );
    check("mask a for send_wait", raw(HC_EVTCHN_MASK, 1, 0), 0);
    check("send_wait: masked wait port", sw(2, 1, 0), EINVAL);
    check("unmask a after send_wait", raw(HC_EVTCHN_UNMASK, 1, 0), 0);
    check(
        "send_wait: masked: nothing sent",
        raw(HC_EVTCHN_POLL, 0, 0),
        0,
    );
    check("send_wait: send port not allocated", sw(77, 1, 0), ENOENT);
    check("send_wait: send on 2, a taken", sw(2, 1, 0), 1);
    check(
        "send_wait: a taken, not polled",
        raw(HC_EVTCHN_POLL, 0, 0),
        0,
    );
    check("send_wait: deadline passed", sw(0, 1, 1), 0);
    let soon = time::now_ns() + 1_000_000;
    check("send_wait: 1 ms deadline, nothing comes", sw(0, 1, soon), 0);
    check(
        "send_wait: the deadline passed before it returned",
        i64::from(time::now_ns() >= soon),
        1,
    );
    check("send_wait: another port (b) ends it with 0", sw(1, 1, 0), 0);
    check(
        "send_wait: b is left for a poll",
        raw(HC_EVTCHN_POLL, 0, 0),
        2,
    );
    let _ = sched::poll();
}

fn main(si: &StartInfo) -> i32 {
    let me = u64::from(si.domain_id);
    let pong = num_arg(si, "peer", 0);
    // Ports never allocated: 0, 1, 5, past the default limit, the largest
    // 32-bit number; and numbers that are no port at all.
    for (what, p, want) in [
        ("port 0", 0, ENOENT),
        ("port 1 (none yet)", 1, ENOENT),
        ("port 5", 5, ENOENT),
        ("port 70000", 70_000, ENOENT),
        ("port u32::MAX", u64::from(u32::MAX), ENOENT),
        ("port 2^32", 1 << 32, EINVAL),
        ("port u64::MAX", u64::MAX, EINVAL),
    ] {
        for (op, nr) in [
            ("send", HC_EVTCHN_SEND),
            ("close", HC_EVTCHN_CLOSE),
            ("mask", HC_EVTCHN_MASK),
            ("unmask", HC_EVTCHN_UNMASK),
        ] {
            let mut name = arrayname();
            let _ = core::fmt::write(&mut name, format_args!("{op} {what}"));
            check(name.as_str(), raw(nr, p, 0), want);
        }
    }
    check("poll with nothing pending", raw(HC_EVTCHN_POLL, 0, 0), 0);
    check(
        "alloc_unbound 2^32",
        raw(HC_EVTCHN_ALLOC_UNBOUND, 1 << 32, 0),
        EINVAL,
    );
    check(
        "bind nonexistent domain",
        raw(HC_EVTCHN_BIND_INTERDOMAIN, NO_DOMAIN, 1),
        ENOENT,
    );
    check(
        "bind domain 2^32",
        raw(HC_EVTCHN_BIND_INTERDOMAIN, 1 << 32, 1),
        EINVAL,
    );
    check(
        "bind remote port 2^32",
        raw(HC_EVTCHN_BIND_INTERDOMAIN, pong, 1 << 32),
        EINVAL,
    );
    check(
        "bind peer's never-allocated port",
        raw(HC_EVTCHN_BIND_INTERDOMAIN, pong, 60_000),
        ENOENT,
    );
    // The peer's port 1 is offered to evping, not us: EPERM while unbound,
    // EBUSY once evping has connected. ENOENT only until the peer has
    // allocated it: retry that for up to 10 s.
    let deadline = time::now_ns() + 10_000_000_000;
    let got = loop {
        let r = raw(HC_EVTCHN_BIND_INTERDOMAIN, pong, u64::from(PONG_PORT));
        if r != ENOENT || time::now_ns() >= deadline {
            break r;
        }
        let _ = time::sleep_ns(1_000_000);
    };
    let want = if got == EBUSY { EBUSY } else { EPERM };
    check("bind peer's port offered to another domain", got, want);

    // Port 1: offered to a domain that does not exist.
    let p1 = raw(HC_EVTCHN_ALLOC_UNBOUND, NO_DOMAIN, 0);
    check("first port is 1", p1, 1);
    check("send on unbound port", raw(HC_EVTCHN_SEND, 1, 0), EBUSY);
    check(
        "bind own port offered to another",
        raw(HC_EVTCHN_BIND_INTERDOMAIN, me, 1),
        EPERM,
    );
    check("close", raw(HC_EVTCHN_CLOSE, 1, 0), 0);
    check("close twice", raw(HC_EVTCHN_CLOSE, 1, 0), ENOENT);
    check("send on closed port", raw(HC_EVTCHN_SEND, 1, 0), ENOENT);
    check("mask closed port", raw(HC_EVTCHN_MASK, 1, 0), ENOENT);

    // A loopback channel a <-> b, masked and flooded.
    let a = evtchn::alloc_unbound(me as u32).map_or(-1, i64::from);
    check("loopback alloc reuses port 1", a, 1);
    let b = evtchn::bind_interdomain(me as u32, 1).map_or(-1, i64::from);
    check("loopback bind", b, 2);
    check(
        "bind a connected port",
        raw(HC_EVTCHN_BIND_INTERDOMAIN, me, 1),
        EBUSY,
    );
    check("mask a", raw(HC_EVTCHN_MASK, 1, 0), 0);
    for _ in 0..1000 {
        let _ = evtchn::send(2);
    }
    check("masked a is not polled", raw(HC_EVTCHN_POLL, 0, 0), 0);
    let ev = sched::poll().unwrap_or(0);
    check(
        "no EVENT_CHANNEL while masked",
        (ev & EVENT_CHANNEL) as i64,
        0,
    );
    check("unmask a", raw(HC_EVTCHN_UNMASK, 1, 0), 0);
    let ev = sched::poll().unwrap_or(0);
    check(
        "unmask of a pending port raises EVENT_CHANNEL",
        (ev & EVENT_CHANNEL) as i64,
        EVENT_CHANNEL as i64,
    );
    check("1000 sends coalesce into one", raw(HC_EVTCHN_POLL, 0, 0), 1);
    check("then nothing", raw(HC_EVTCHN_POLL, 0, 0), 0);
    send_wait_checks();
    check("close b", raw(HC_EVTCHN_CLOSE, 2, 0), 0);
    check("a is told: pending", raw(HC_EVTCHN_POLL, 0, 0), 1);
    check("send on a after b closed", raw(HC_EVTCHN_SEND, 1, 0), EBUSY);
    check("close a", raw(HC_EVTCHN_CLOSE, 1, 0), 0);

    // Many ports (past a 512-port bucket), then all closed.
    let mut ok = true;
    for i in 1..=600u64 {
        ok &= raw(HC_EVTCHN_ALLOC_UNBOUND, NO_DOMAIN, 0) == i as i64;
    }
    for i in 1..=600u64 {
        ok &= raw(HC_EVTCHN_CLOSE, i, 0) == 0;
    }
    check("600 ports allocated in order and closed", i64::from(ok), 1);

    let (n, f) = CHECKS.counts();
    pvabi::println!("evhostile: {n} checks, {f} failed");
    i32::from(f != 0)
}

/// A small fixed-capacity string for check names (no heap).
fn arrayname() -> Name {
    Name {
        buf: [0; 64],
        len: 0,
    }
}

struct Name {
    buf: [u8; 64],
    len: usize,
}

impl Name {
    fn as_str(&self) -> &str {
        core::str::from_utf8(self.buf.get(..self.len).unwrap_or(&[])).unwrap_or("?")
    }
}

impl core::fmt::Write for Name {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &c in s.as_bytes() {
            let slot = self.buf.get_mut(self.len).ok_or(core::fmt::Error)?;
            *slot = c;
            self.len += 1;
        }
        Ok(())
    }
}
