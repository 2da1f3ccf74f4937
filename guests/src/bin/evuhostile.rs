//! Misuses of the ABI 1.3 event-channel ops, each of which must get its
//! documented error or be contained: bad virq / vCPU / port numbers,
//! `HC_EVTCHN_INIT_CONTROL` with bad vectors, unaligned, outside, released
//! and granted pages and a second time, releasing and granting the pinned
//! area, scribbling over its own area, and flooding a peer's port.
//!
//! Command line: `peer=<id>`: the domain (`evupong`) that offers this
//! domain port 2 to flood. Registers its own control area (not the
//! runtime's) and never enables interrupts, so a scribbled area can only
//! keep its own upcalls from coming. Last line: `evuhostile: <N> checks,
//! <F> failed`; exit code 0 only when F is 0.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use kestrel_guests::{Checks, num_arg};
use pvabi::guest::{evtchn, grant, hypercall, time};
use pvabi::{
    EBUSY, EEXIST, EFAULT, EINVAL, ENOENT, Error, HC_EVTCHN_BIND_VCPU, HC_EVTCHN_BIND_VIRQ,
    HC_EVTCHN_INIT_CONTROL, HC_EVTCHN_STATUS, HC_MEM_POPULATE, HC_MEM_RELEASE, StartInfo,
};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("evuhostile");

const WORDS: usize = 2560;
#[repr(C, align(4096))]
struct Area([AtomicU64; WORDS]);
static AREA: Area = Area([const { AtomicU64::new(0) }; WORDS]);

fn code<T>(r: Result<T, Error>) -> i64 {
    match r {
        Ok(_) => 0,
        Err(e) => e.code(),
    }
}

/// Raw release / populate: the runtime's wrappers only touch the free
/// region, and these pages are this program's own (unused meanwhile).
fn release(gpa: u64, pages: u64) -> i64 {
    match hypercall(HC_MEM_RELEASE, gpa, pages, 0) as i64 {
        r if r > 0 => 0,
        e => e,
    }
}

fn populate(gpa: u64, pages: u64) -> i64 {
    match hypercall(HC_MEM_POPULATE, gpa, pages, 0) as i64 {
        r if r > 0 => 0,
        e => e,
    }
}

fn init(gpa: u64, vector: u64) -> i64 {
    hypercall(HC_EVTCHN_INIT_CONTROL, gpa, vector, 0) as i64
}

fn main(si: &StartInfo) -> i32 {
    let c = &CHECKS;
    let me = si.domain_id;
    let peer = num_arg(si, "peer", 0) as u32;
    let size = si.memory_bytes;
    // Bad numbers.
    c.check("bind_virq 16", code(evtchn::bind_virq(16, 0)), EINVAL);
    c.check("bind_virq vcpu 4", code(evtchn::bind_virq(0, 4)), EINVAL);
    c.check(
        "bind_virq huge",
        hypercall(HC_EVTCHN_BIND_VIRQ, 1 << 32, 0, 0) as i64,
        EINVAL,
    );
    c.check(
        "bind_virq huge vcpu",
        hypercall(HC_EVTCHN_BIND_VIRQ, 0, u64::MAX, 0) as i64,
        EINVAL,
    );
    c.check("bind_ipi vcpu 4", code(evtchn::bind_ipi(4)), EINVAL);
    c.check(
        "bind_ipi vcpu max",
        code(evtchn::bind_ipi(u32::MAX)),
        EINVAL,
    );
    c.check("status port 0", code(evtchn::status_of(0)), ENOENT);
    c.check("status port 60000", code(evtchn::status_of(60000)), ENOENT);
    c.check(
        "status huge port",
        hypercall(HC_EVTCHN_STATUS, 1 << 32, 0x1000, 0) as i64,
        EINVAL,
    );
    c.check(
        "bind_vcpu port 60000",
        code(evtchn::bind_vcpu(60000, 0)),
        ENOENT,
    );
    c.check(
        "bind_vcpu huge vcpu",
        hypercall(HC_EVTCHN_BIND_VCPU, 1, 1 << 32, 0) as i64,
        EINVAL,
    );
    let a = evtchn::alloc_unbound(me).unwrap_or(0);
    c.check(
        "status to outside",
        hypercall(HC_EVTCHN_STATUS, a.into(), size, 0) as i64,
        EFAULT,
    );
    c.check(
        "status to the top",
        hypercall(HC_EVTCHN_STATUS, a.into(), u64::MAX - 8, 0) as i64,
        EFAULT,
    );
    let virq = evtchn::bind_virq(0, 0).unwrap_or(0);
    c.check("send on a virq port", code(evtchn::send(virq)), EINVAL);
    c.check("bind_virq twice", code(evtchn::bind_virq(0, 0)), EEXIST);

    // INIT_CONTROL before any registration.
    let gpa = AREA.0.as_ptr() as u64;
    for v in [0, 14, 31, 256, u64::MAX] {
        c.check("init bad vector", init(gpa, v), EINVAL);
    }
    c.check("init bad vector before alignment", init(gpa + 8, 7), EINVAL);
    c.check("init unaligned", init(gpa + 8, 0xe5), EINVAL);
    c.check("init outside", init(size, 0xe5), EFAULT);
    c.check("init straddling the end", init(size - 4096, 0xe5), EFAULT);
    c.check("init at the top", init(!0xfff, 0xe5), EFAULT);
    c.check("release area page 2", release(gpa + 2 * 4096, 1), 0);
    c.check("init over a released page", init(gpa, 0xe5), EFAULT);
    c.check("populate it back", populate(gpa + 2 * 4096, 1), 0);
    let gref = grant::access(gpa + 4096, peer, true);
    c.check("grant an area page", code(gref), 0);
    c.check("init over a granted page", init(gpa, 0xe5), EBUSY);
    if let Ok(g) = gref {
        c.check("revoke it", code(grant::revoke(g, 0)), 0);
    }
    // Pending bits made now must be carried into the area.
    let b = evtchn::bind_interdomain(me, a).unwrap_or(0);
    c.check("send before init", code(evtchn::send(a)), 0);
    c.check("init", init(gpa, 0xe5), 0);
    let pending = AREA.0[512 + b as usize / 64].load(Ordering::SeqCst);
    c.check(
        "pending carried into the area",
        i64::from(pending & (1 << (b % 64)) != 0),
        1,
    );
    c.check("init twice", init(gpa, 0xe5), EEXIST);
    c.check("init elsewhere after", init(0x10_0000, 0x40), EEXIST);
    c.check("release a pinned page", release(gpa + 4096, 1), EBUSY);
    c.check("release the whole area", release(gpa, 5), EBUSY);
    c.check(
        "grant a pinned page",
        code(grant::access(gpa + 3 * 4096, peer, false)),
        EBUSY,
    );

    // Scribble over the whole area: only this domain's delivery suffers.
    for (i, w) in AREA.0.iter().enumerate() {
        w.store(
            0xa5a5_5a5a_dead_beef ^ (i as u64).wrapping_mul(0x9e37_79b9),
            Ordering::SeqCst,
        );
    }
    c.check("send after scribbling", code(evtchn::send(a)), 0);
    c.check("status after scribbling", code(evtchn::status_of(b)), 0);
    let _ = evtchn::poll();
    c.check("mask after scribbling", code(evtchn::mask(b)), 0);
    c.check("unmask after scribbling", code(evtchn::unmask(b)), 0);
    c.check("close after scribbling", code(evtchn::close(a)), 0);
    c.check("close twice", code(evtchn::close(a)), ENOENT);
    for w in AREA.0.iter() {
        w.store(u64::MAX, Ordering::SeqCst);
    }
    c.check("poll with everything masked", code(evtchn::poll()), 0);

    // Flood the peer's port 2 while its ping-pong runs.
    let deadline = time::now_ns() + 10_000_000_000;
    let port = loop {
        match evtchn::bind_interdomain(peer, 2) {
            Ok(p) => break Some(p),
            Err(Error::NoEntry) if time::now_ns() < deadline => {
                let _ = time::sleep_ns(1_000_000);
            }
            Err(_) => break None,
        }
    };
    c.check("bind the flood port", i64::from(port.is_some()), 1);
    let (mut sent, mut other) = (0u64, 0u64);
    if let Some(p) = port {
        for _ in 0..20_000 {
            match evtchn::send(p) {
                Ok(()) => sent += 1,
                Err(Error::Busy) => break, // the peer finished and left
                Err(_) => other += 1,
            }
        }
    }
    pvabi::println!("evuhostile: flooded the peer with {sent} sends");
    c.check("flood: no unexpected error", other as i64, 0);
    let (n, f) = c.counts();
    pvabi::println!("evuhostile: {n} checks, {f} failed");
    i32::from(f != 0)
}
