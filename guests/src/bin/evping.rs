//! Event-channel ping-pong, the asking side.
//!
//! Command line: `peer=<id>` (the `evpong` domain), `rounds=<N>` (default
//! 10,000). Binds to the peer's port [`kestrel_guests::PONG_PORT`],
//! retrying every millisecond while it does not exist yet (`ENOENT`: the
//! peer has not started or not allocated it) for up to 10 s, then makes `N`
//! round trips, each one hypercall (pvabi 1.4): [`evtchn::send_wait`] sends
//! on the port and sleeps until the reply makes it pending (two exits per
//! round trip with evpong doing the same). With `three_calls`, the 1.1
//! path instead: send, block until [`pvabi::EVENT_CHANNEL`], poll the reply.
//! Then it waits for the peer to end: `evpong` exits after its last answer,
//! which closes its port and leaves ours unbound, so a send fails with
//! `EBUSY`; we send (harmless extra pings) and wait until it does.
//!
//! Output: `evping: bound port <p> to domain <peer> port 1`, `evping: <N>
//! round trips, <N> replies`, `evping: peer closed, send gets EBUSY`, exit
//! 0; on failure a `evping: FAILED ...` line and exit 1.
//!
//! With `bench`: counts the loop's TSC ticks and, with
//! [`pvabi::guest::meter`], its own ticks between hypercalls, and prints
//! `evping: bench rounds=<N> tsc=<T> guest_tsc=<G> calls=<C>` (for
//! `cargo xtask bench`).
//!
//! With `peer_dies`: the peer is expected to die mid-run (`evpong
//! crash_after=K`). Its death closes its port, which makes ours pending
//! (taken as one last "reply" if we were waiting) and unbound, so the next
//! send fails with `EBUSY`: then it prints `evping: peer gone after <R>
//! replies, send gets EBUSY` (R is K, or K + 1 when the death's
//! notification ended a wait) and exits 0.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::{PONG_PORT, num_arg};
use pvabi::guest::{evtchn, meter, sched, time};
use pvabi::{EVENT_CHANNEL, Error, StartInfo};

pvabi::entry_point!(main);

const MS: u64 = 1_000_000;
const WAIT_NS: u64 = 10_000 * MS;

/// Waits until `port` is polled; `Err` with a reason on anything else.
fn wait_port(port: u32) -> Result<(), &'static str> {
    let deadline = time::now_ns() + WAIT_NS;
    loop {
        match evtchn::poll() {
            Ok(Some(p)) if p == port => return Ok(()),
            Ok(None) => match sched::wait_for(EVENT_CHANNEL, Some(deadline)) {
                Ok(ev) if ev & EVENT_CHANNEL != 0 => {}
                _ => return Err("no reply for 10 s"),
            },
            _ => return Err("poll gave another port or an error"),
        }
    }
}

fn main(si: &StartInfo) -> i32 {
    let peer = num_arg(si, "peer", 0) as u32;
    let rounds = num_arg(si, "rounds", 10_000);
    let peer_dies = kestrel_guests::flag(si, "peer_dies");
    let deadline = time::now_ns() + WAIT_NS;
    let port = loop {
        match evtchn::bind_interdomain(peer, PONG_PORT) {
            Ok(p) => break p,
            Err(Error::NoEntry) if time::now_ns() < deadline => {
                let _ = time::sleep_ns(MS);
            }
            Err(e) => {
                pvabi::println!("evping: FAILED bind_interdomain({peer}, {PONG_PORT}): {e:?}");
                return 1;
            }
        }
    };
    pvabi::println!("evping: bound port {port} to domain {peer} port {PONG_PORT}");
    let bench = kestrel_guests::flag(si, "bench");
    let three_calls = kestrel_guests::flag(si, "three_calls");
    if bench {
        meter::start();
    }
    let t0 = time::read_tsc();
    let mut replies = 0u64;
    for i in 0..rounds {
        let sent = if three_calls {
            evtchn::send(port).map(|()| false)
        } else {
            evtchn::send_wait(Some(port), port, Some(time::now_ns() + WAIT_NS))
        };
        let answered = match sent {
            Ok(answered) => answered,
            Err(Error::Busy) if peer_dies => {
                pvabi::println!("evping: peer gone after {replies} replies, send gets EBUSY");
                return 0;
            }
            Err(e) => {
                pvabi::println!("evping: FAILED send {i}: {e:?}");
                return 1;
            }
        };
        // Without the reply taken (the 1.1 path, or another event ended
        // the combined wait): poll for it.
        if !answered && let Err(why) = wait_port(port) {
            pvabi::println!("evping: FAILED round trip {i}: {why}");
            return 1;
        }
        replies += 1;
    }
    if peer_dies {
        pvabi::println!("evping: FAILED the peer never died ({replies} replies)");
        return 1;
    }
    if bench {
        let t = time::read_tsc().wrapping_sub(t0);
        let m = meter::stop();
        pvabi::println!(
            "evping: bench rounds={rounds} tsc={t} guest_tsc={} calls={}",
            m.guest_ticks,
            m.calls
        );
    }
    pvabi::println!("evping: {rounds} round trips, {replies} replies");
    // The peer ends after its last answer; then our port is unbound.
    let deadline = time::now_ns() + WAIT_NS;
    loop {
        match evtchn::send(port) {
            Err(Error::Busy) => break,
            Ok(()) if time::now_ns() < deadline => {
                let _ = sched::wait_for(EVENT_CHANNEL, Some(time::now_ns() + 10 * MS));
                while let Ok(Some(_)) = evtchn::poll() {}
            }
            other => {
                pvabi::println!(
                    "evping: FAILED waiting for the peer to close: send gave {other:?}"
                );
                return 1;
            }
        }
    }
    pvabi::println!("evping: peer closed, send gets EBUSY");
    0
}
