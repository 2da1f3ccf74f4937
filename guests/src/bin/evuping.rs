//! Upcall-driven event-channel ping-pong (ABI 1.3), the asking side.
//!
//! Command line: `peer=<id>` (the `evupong` domain), `rounds=<N>` (default
//! 10,000). Binds to the peer's port 1, sends the first ping, and sends
//! every next one **from the upcall handler** that counts the reply;
//! `main` only sleeps until `N` replies came. Never polls. Output:
//! `evuping: bound port <p> to domain <peer> port 1`, then `evuping: <N>
//! replies to <N> sends, all in upcalls (<U> upcalls)`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use kestrel_guests::{PONG_PORT, num_arg};
use pvabi::guest::{evtchn, sched, time, upcall};
use pvabi::{Error, StartInfo};

pvabi::entry_point!(main);

const VECTOR: u8 = 0xf1;
const WAIT_NS: u64 = 10_000_000_000;

static ROUNDS: AtomicU64 = AtomicU64::new(0);
static SENT: AtomicU64 = AtomicU64::new(0);
static REPLIES: AtomicU64 = AtomicU64::new(0);
static SEND_ERRORS: AtomicU64 = AtomicU64::new(0);
static PEER_GONE: AtomicU64 = AtomicU64::new(0);

fn ping(port: u32) {
    match evtchn::send(port) {
        Ok(()) => SENT.fetch_add(1, Ordering::SeqCst),
        Err(Error::Busy) => PEER_GONE.fetch_add(1, Ordering::SeqCst),
        Err(_) => SEND_ERRORS.fetch_add(1, Ordering::SeqCst),
    };
}

/// Counts a reply and sends the next ping. After the last reply the peer
/// exits, and its close makes the port pending once more: not a reply.
fn on_reply(port: u32) {
    if REPLIES.load(Ordering::SeqCst) >= ROUNDS.load(Ordering::Relaxed) {
        return;
    }
    let n = REPLIES.fetch_add(1, Ordering::SeqCst) + 1;
    if n < ROUNDS.load(Ordering::Relaxed) {
        ping(port);
    }
}

fn main(si: &StartInfo) -> i32 {
    let peer = num_arg(si, "peer", 0) as u32;
    let rounds = num_arg(si, "rounds", 10_000);
    ROUNDS.store(rounds, Ordering::Relaxed);
    if let Err(e) = upcall::init(VECTOR) {
        pvabi::println!("evuping: FAILED init_control: {e:?}");
        return 1;
    }
    let deadline = time::now_ns() + WAIT_NS;
    let port = loop {
        match evtchn::bind_interdomain(peer, PONG_PORT) {
            Ok(p) => break p,
            Err(Error::NoEntry) if time::now_ns() < deadline => {
                let _ = time::sleep_ns(1_000_000);
            }
            Err(e) => {
                pvabi::println!("evuping: FAILED bind_interdomain({peer}, 1): {e:?}");
                return 1;
            }
        }
    };
    if upcall::set_handler(port, on_reply).is_err() || upcall::enable_this_vcpu(0).is_err() {
        pvabi::println!("evuping: FAILED handler or enable");
        return 1;
    }
    pvabi::println!("evuping: bound port {port} to domain {peer} port {PONG_PORT}");
    ping(port);
    let mut seen = 0;
    let mut deadline = time::now_ns() + WAIT_NS;
    loop {
        let now = REPLIES.load(Ordering::SeqCst);
        if now >= rounds || SEND_ERRORS.load(Ordering::SeqCst) != 0 {
            break;
        }
        if PEER_GONE.load(Ordering::SeqCst) != 0 {
            pvabi::println!("evuping: FAILED peer left after {now} replies");
            return 1;
        }
        if now != seen {
            seen = now;
            deadline = time::now_ns() + WAIT_NS;
        }
        if time::now_ns() > deadline {
            pvabi::println!("evuping: FAILED no reply for 10 s after {now} replies");
            return 1;
        }
        let _ = sched::block(Some(deadline));
    }
    let (sent, replies) = (SENT.load(Ordering::SeqCst), REPLIES.load(Ordering::SeqCst));
    let errors = SEND_ERRORS.load(Ordering::SeqCst);
    if errors != 0 || sent != rounds || replies != rounds {
        pvabi::println!("evuping: FAILED sent {sent} replies {replies} errors {errors}");
        return 1;
    }
    pvabi::println!(
        "evuping: {replies} replies to {sent} sends, all in upcalls ({} upcalls)",
        upcall::count(0)
    );
    0
}
