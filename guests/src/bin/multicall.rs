//! A multicall of N ops costs one exit.
//!
//! Default mode: `rounds=R` (default 4) batches of 64 ops, each one
//! `HC_MULTICALL`: round 0 is 64 console writes (`multicall: line 00` to
//! `63`), the others 64 polls each. Command line `mode=single`: the same
//! ops as `64 * R` separate hypercalls. Everything else the guest does is
//! the same in both modes, so the difference between the two domains'
//! `exits=` counts (in their `domain-end:` lines) is what batching saved:
//! `63` per batch. Timer interrupts that happen to arrive while a vCPU is
//! in guest mode add an exit now and then to either domain; with several
//! rounds the boot test can allow for a few of them
//! (difference `>= 63 * R - (R - 1)`) and still tell one exit per batch
//! from two (`62 * R`).
//!
//! Both modes end with one more batch, `[write "bye", shutdown(poweroff,
//! 0), write "NOT REACHED"]`: a shutdown inside a batch ends the domain
//! there, so the last line must never appear.
//!
//! Output: the 64 lines, then `multicall: R rounds of 64 ops ok in R
//! multicalls` (or `in 64R hypercalls`), then `multicall: bye`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use pvabi::guest::{console, sched};
use pvabi::{
    HC_CONSOLE_WRITE, HC_SCHED_POLL, HC_SHUTDOWN, MULTICALL_MAX, MulticallEntry, SHUTDOWN_POWEROFF,
    StartInfo,
};

pvabi::entry_point!(main);

const N: usize = MULTICALL_MAX as usize;
const LINE: &[u8; 19] = b"multicall: line NN\n";

fn arg<'a>(si: &'a StartInfo, key: &str) -> Option<&'a str> {
    core::str::from_utf8(si.cmdline())
        .unwrap_or("")
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn code(r: Result<u64, pvabi::Error>) -> i64 {
    match r {
        Ok(n) => n as i64,
        Err(e) => e.code(),
    }
}

fn main(si: &StartInfo) -> i32 {
    let single = arg(si, "mode") == Some("single");
    let rounds: usize = arg(si, "rounds").and_then(|r| r.parse().ok()).unwrap_or(4);
    // Every line's bytes stay in place until the writes are done.
    let mut lines = [*LINE; N];
    for (i, l) in lines.iter_mut().enumerate() {
        l[16] = b'0' + (i / 10) as u8;
        l[17] = b'0' + (i % 10) as u8;
    }
    let mut bad = None;
    for round in 0..rounds {
        // Round 0 writes the lines; the others poll (nothing is pending).
        let want = |_: usize| if round == 0 { LINE.len() as i64 } else { 0 };
        let mut results = [0i64; N];
        if single {
            for (i, r) in results.iter_mut().enumerate() {
                *r = if round == 0 {
                    code(console::write(&lines[i]).map(|n| n as u64))
                } else {
                    code(sched::poll())
                };
            }
        } else {
            let mut batch = [MulticallEntry::new(HC_SCHED_POLL, [0; 6]); N];
            if round == 0 {
                for (e, l) in batch.iter_mut().zip(lines.iter()) {
                    let args = [l.as_ptr() as u64, l.len() as u64, 0, 0, 0, 0];
                    *e = MulticallEntry::new(HC_CONSOLE_WRITE, args);
                }
            }
            match pvabi::guest::multicall(&mut batch) {
                Ok(n) if n == N as u64 => {}
                other => {
                    pvabi::println!("multicall: FAILED: batch {round} returned {other:?}");
                    return 1;
                }
            }
            for (e, r) in batch.iter().zip(results.iter_mut()) {
                *r = code(e.status());
            }
        }
        if bad.is_none() {
            bad = results
                .iter()
                .enumerate()
                .find(|&(i, &r)| r != want(i))
                .map(|(i, &r)| (round, i, r));
        }
    }
    if let Some((round, i, r)) = bad {
        pvabi::println!("multicall: FAILED: round {round} op {i} returned {r}");
        return 1;
    }
    if single {
        pvabi::println!(
            "multicall: {rounds} rounds of {N} ops ok in {} hypercalls",
            rounds * N
        );
    } else {
        pvabi::println!("multicall: {rounds} rounds of {N} ops ok in {rounds} multicalls");
    }

    let bye = b"multicall: bye\n";
    let not = b"multicall: NOT REACHED\n";
    let mut end = [
        MulticallEntry::new(
            HC_CONSOLE_WRITE,
            [bye.as_ptr() as u64, bye.len() as u64, 0, 0, 0, 0],
        ),
        MulticallEntry::new(HC_SHUTDOWN, [SHUTDOWN_POWEROFF, 0, 0, 0, 0, 0]),
        MulticallEntry::new(
            HC_CONSOLE_WRITE,
            [not.as_ptr() as u64, not.len() as u64, 0, 0, 0, 0],
        ),
    ];
    let r = pvabi::guest::multicall(&mut end);
    pvabi::println!("multicall: FAILED: a batch with a shutdown returned {r:?}");
    1
}
