//! Event-channel ping-pong, the answering side.
//!
//! Command line: `peer=<id>` (the `evping` domain), `rounds=<N>` (default
//! 10,000). Offers its first port ([`kestrel_guests::PONG_PORT`], 1) to the
//! peer, then answers `N` pings: blocks until [`pvabi::EVENT_CHANNEL`],
//! polls the port, sends back. Every poll must return that port or nothing;
//! anything else, an error or 10 s (system time) without a ping, fails.
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
    let mut answered = 0u64;
    let mut deadline = time::now_ns() + WAIT_NS;
    while answered < rounds {
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
