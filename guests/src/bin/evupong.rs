//! Upcall-driven event-channel ping-pong (ABI 1.3), the answering side.
//!
//! Command line: `peer=<id>` (the `evuping` domain), `rounds=<N>`
//! (default 10,000), `flood=<id>` (optional: a second port, 2, offered to
//! that domain, whose notifications are only counted).
//!
//! Registers the control area with vector 0xf0, offers port 1 to the peer
//! and answers every ping **in the upcall handler** (a send back); `main`
//! only sleeps until `N` answers were made. Never polls. Output:
//! `evupong: port 1 offered to domain <peer>`, then `evupong: <N> pings
//! answered in upcalls (<U> upcalls, <F> flood upcalls)`; failures print
//! `evupong: FAILED ...` and exit 1.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use kestrel_guests::{PONG_PORT, num_arg};
use pvabi::guest::{evtchn, sched, time, upcall};
use pvabi::{Error, StartInfo};

pvabi::entry_point!(main);

const VECTOR: u8 = 0xf0;
const WAIT_NS: u64 = 10_000_000_000;

static ANSWERED: AtomicU64 = AtomicU64::new(0);
static SEND_ERRORS: AtomicU64 = AtomicU64::new(0);
static FLOODS: AtomicU64 = AtomicU64::new(0);
static PEER_GONE: AtomicU64 = AtomicU64::new(0);

/// Answers a ping. The peer's close (when it exits after our last answer)
/// also makes the port pending, now unbound: the send then gets `EBUSY`,
/// which is no error after the last round (checked by `main`).
fn on_ping(port: u32) {
    match evtchn::send(port) {
        Ok(()) => ANSWERED.fetch_add(1, Ordering::SeqCst),
        Err(Error::Busy) => PEER_GONE.fetch_add(1, Ordering::SeqCst),
        Err(_) => SEND_ERRORS.fetch_add(1, Ordering::SeqCst),
    };
}

fn on_flood(_: u32) {
    FLOODS.fetch_add(1, Ordering::Relaxed);
}

fn main(si: &StartInfo) -> i32 {
    let peer = num_arg(si, "peer", 0) as u32;
    let rounds = num_arg(si, "rounds", 10_000);
    let flood = kestrel_guests::arg(si, "flood").and_then(|s| s.parse::<u32>().ok());
    if let Err(e) = upcall::init(VECTOR) {
        pvabi::println!("evupong: FAILED init_control: {e:?}");
        return 1;
    }
    let port = match evtchn::alloc_unbound(peer) {
        Ok(p) if p == PONG_PORT => p,
        other => {
            pvabi::println!("evupong: FAILED alloc_unbound({peer}) gave {other:?}");
            return 1;
        }
    };
    if upcall::set_handler(port, on_ping).is_err() {
        pvabi::println!("evupong: FAILED set_handler");
        return 1;
    }
    if let Some(f) = flood {
        match evtchn::alloc_unbound(f) {
            Ok(fp) if upcall::set_handler(fp, on_flood).is_ok() => {}
            other => {
                pvabi::println!("evupong: FAILED flood port for {f}: {other:?}");
                return 1;
            }
        }
    }
    if let Err(e) = upcall::enable_this_vcpu(0) {
        pvabi::println!("evupong: FAILED enable: {e:?}");
        return 1;
    }
    pvabi::println!("evupong: port {port} offered to domain {peer}");
    let mut seen = 0;
    let mut deadline = time::now_ns() + WAIT_NS;
    loop {
        let now = ANSWERED.load(Ordering::SeqCst);
        if now >= rounds || SEND_ERRORS.load(Ordering::SeqCst) != 0 {
            break;
        }
        if PEER_GONE.load(Ordering::SeqCst) != 0 {
            pvabi::println!("evupong: FAILED peer left after {now} answers");
            return 1;
        }
        if now != seen {
            seen = now;
            deadline = time::now_ns() + WAIT_NS;
        }
        if time::now_ns() > deadline {
            pvabi::println!("evupong: FAILED no ping for 10 s after {now} answers");
            return 1;
        }
        // Woken by the event the upcall handled (EVENT_CHANNEL is raised
        // with it), so no wake-up is lost between the check and the block.
        let _ = sched::block(Some(deadline));
    }
    let errors = SEND_ERRORS.load(Ordering::SeqCst);
    if errors != 0 {
        pvabi::println!("evupong: FAILED {errors} sends failed");
        return 1;
    }
    pvabi::println!(
        "evupong: {} pings answered in upcalls ({} upcalls, {} flood upcalls)",
        ANSWERED.load(Ordering::SeqCst),
        upcall::count(0),
        FLOODS.load(Ordering::Relaxed)
    );
    0
}
