//! Makes 1,000,000 hypercalls and checks every return value.
//!
//! Command line (both optional): `calls=N` makes N calls instead;
//! `noyield` uses a zero-length console write (returns 0, keeps the CPU)
//! as the valid call instead of yield. The preemption test needs that: on a
//! CPU shared with a guest that never yields, each yield hands that guest a
//! whole time slice (10 ms), so 500,000 yields would take over an hour.
#![no_std]
#![no_main]

pvabi::entry_point!(main);

const CALLS: u32 = 1_000_000;

fn main(start: &pvabi::StartInfo) -> i32 {
    let args = core::str::from_utf8(start.cmdline()).unwrap_or("");
    let calls = args
        .split_whitespace()
        .find_map(|w| w.strip_prefix("calls="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(CALLS);
    let yields = !args.split_whitespace().any(|w| w == "noyield");
    let mut bad = 0u32;
    for i in 0..calls {
        // Alternate a valid call (yield, or a console write of nothing:
        // both return 0) and an invalid one (an unknown number: must
        // return ENOSYS).
        let (nr, want) = match (i % 2, yields) {
            (0, true) => (pvabi::HC_YIELD, 0),
            (0, false) => (pvabi::HC_CONSOLE_WRITE, 0),
            _ => (0xdead, pvabi::ENOSYS as u64),
        };
        let got = pvabi::guest::hypercall(nr, 0, 0, 0);
        if got != want {
            bad += 1;
            if bad < 5 {
                pvabi::println!("call {i}: number {nr:#x} returned {got:#x}, expected {want:#x}");
            }
        }
    }
    pvabi::println!("{calls} hypercalls, {bad} wrong return values");
    if bad == 0 { 0 } else { 1 }
}
