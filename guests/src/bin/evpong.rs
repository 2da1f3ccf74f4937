//! Event-channel ping-pong, the answering side.
//!
//! Command line: `peer=<id>` (the `evping` domain), `rounds=<N>` (default
//! 10,000). Offers its first port ([`kestrel_guests::PONG_PORT`], 1) to the
//! peer, then answers `N` pings, each answer and the wait for the next ping
//! in one hypercall ([`evtchn::send_wait`], pvabi 1.4). With `three_calls`,
//! the 1.1 path: block until [`pvabi::EVENT_CHANNEL`], poll the port, send
//! back. Every poll must return that port or nothing; anything else, an
//! error or 10 s (system time) without a ping, fails.
//!
//! Output: `evpong: port 1 offered to domain <peer>`, then `evpong: <N>
//! pings answered` and exit 0; on failure a `evpong: FAILED ...` line and
//! exit 1. Exiting closes the port, which tells the peer.
//!
//! With `crash_after=<K>`: after answering `K` pings it prints `evpong:
//! crashing after <K> answers` and shuts down as crashed (code 7), in the
//! middle of the peer's next round trip: the death path (ports closed, the
//! peer told) is the one a killed domain takes.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::{PONG_PORT, num_arg};
use pvabi::guest::{evtchn, meter, sched, time};
use pvabi::{EVENT_CHANNEL, StartInfo};

pvabi::entry_point!(main);

const WAIT_NS: u64 = 10_000_000_000;

/// Waits (the 1.1 way) until `port` is polled or `deadline` passes.
fn next_ping(port: u32, deadline: u64) -> Result<(), &'static str> {
    loop {
        match evtchn::poll() {
            Ok(Some(p)) if p == port => return Ok(()),
            Ok(None) => match sched::wait_for(EVENT_CHANNEL, Some(deadline)) {
                Ok(ev) if ev & EVENT_CHANNEL != 0 => {}
                _ => return Err("no ping for 10 s"),
            },
            _ => return Err("poll gave another port or an error"),
        }
    }
}

fn main(si: &StartInfo) -> i32 {
    let peer = num_arg(si, "peer", 0) as u32;
    let rounds = num_arg(si, "rounds", 10_000);
    let crash_after = num_arg(si, "crash_after", u64::MAX);
    let port = match evtchn::alloc_unbound(peer) {
        Ok(p) if p == PONG_PORT => p,
        other => {
            pvabi::println!(
                "evpong: FAILED alloc_unbound({peer}) gave {other:?}, want Ok({PONG_PORT})"
            );
            return 1;
        }
    };
    pvabi::println!("evpong: port {port} offered to domain {peer}");
    let bench = kestrel_guests::flag(si, "bench");
    if bench {
        meter::start();
    }
    let three_calls = kestrel_guests::flag(si, "three_calls");
    let mut answered = 0u64;
    let mut deadline = time::now_ns() + WAIT_NS;
    // The combined path: the first wait sends nothing; each later call
    // answers the ping just taken and waits for the next one. The last
    // answer is a plain send (nothing more to wait for).
    let mut pinged = false;
    while !three_calls && answered < rounds {
        let send = pinged.then_some(port);
        if pinged && answered + 1 == rounds {
            if let Err(e) = evtchn::send(port) {
                pvabi::println!("evpong: FAILED send after {answered} answers: {e:?}");
                return 1;
            }
            answered += 1;
            break;
        }
        match evtchn::send_wait(send, port, Some(deadline)) {
            Ok(got) => {
                if pinged {
                    answered += 1;
                    if answered == crash_after {
                        pvabi::println!("evpong: crashing after {answered} answers");
                        sched::crash(7);
                    }
                }
                deadline = time::now_ns() + WAIT_NS;
                // Another event ended the wait: the ping may still come.
                pinged = got || {
                    match next_ping(port, deadline) {
                        Ok(()) => true,
                        Err(why) => {
                            pvabi::println!("evpong: FAILED {why} after {answered} answers");
                            return 1;
                        }
                    }
                };
            }
            Err(e) => {
                pvabi::println!("evpong: FAILED send_wait after {answered} answers: {e:?}");
                return 1;
            }
        }
    }
    while three_calls && answered < rounds {
        match evtchn::poll() {
            Ok(Some(p)) if p == port => {
                if let Err(e) = evtchn::send(port) {
                    pvabi::println!("evpong: FAILED send after {answered} answers: {e:?}");
                    return 1;
                }
                answered += 1;
                deadline = time::now_ns() + WAIT_NS;
                if answered == crash_after {
                    pvabi::println!("evpong: crashing after {answered} answers");
                    sched::crash(7);
                }
            }
            Ok(None) => match sched::wait_for(EVENT_CHANNEL, Some(deadline)) {
                Ok(ev) if ev & EVENT_CHANNEL != 0 => {}
                other => {
                    pvabi::println!(
                        "evpong: FAILED no ping for 10 s after {answered} answers ({other:?})"
                    );
                    return 1;
                }
            },
            other => {
                pvabi::println!("evpong: FAILED poll gave {other:?} after {answered} answers");
                return 1;
            }
        }
    }
    if bench {
        let m = meter::stop();
        pvabi::println!(
            "evpong: bench guest_tsc={} calls={}",
            m.guest_ticks,
            m.calls
        );
    }
    pvabi::println!("evpong: {answered} pings answered");
    0
}
