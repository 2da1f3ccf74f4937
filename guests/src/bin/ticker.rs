//! A long-running guest: prints `ticker: tick <n>` every `every_ms=`
//! milliseconds (default 100), sleeping in between, `count=` times (0, the
//! default: forever); after the last of `count` ticks it prints
//! `ticker: <count> ticks in <ms> ms` (system time from its first sleep to
//! its last tick) and exits with `code=` (default 0; dom0's history test
//! reads it back). `note=<word>` is printed in its first line. The dom0 boot tests use it to show that domains keep
//! running while others are created and destroyed, and that their console
//! lines reach dom0.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::{arg, num_arg};
use pvabi::guest::time;

pvabi::entry_point!(main);

fn main(si: &pvabi::StartInfo) -> i32 {
    let every = num_arg(si, "every_ms", 100).max(1) * 1_000_000;
    let count = num_arg(si, "count", 0);
    pvabi::println!(
        "ticker: started, domain {}, {}",
        si.domain_id,
        arg(si, "note").unwrap_or("no note")
    );
    let mut n = 0u64;
    let t0 = time::now_ns();
    while count == 0 || n < count {
        n += 1;
        let _ = time::sleep_ns(every);
        pvabi::println!("ticker: tick {n}");
    }
    let ms = time::now_ns().saturating_sub(t0) / 1_000_000;
    pvabi::println!("ticker: {n} ticks in {ms} ms");
    i32::try_from(num_arg(si, "code", 0)).unwrap_or(0)
}
