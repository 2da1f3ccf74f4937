//! A long-running guest: prints `ticker: <name> tick <n>` every `every_ms=`
//! milliseconds (default 100), sleeping in between, `count=` times (0, the
//! default: forever). The dom0 boot tests use it to show that domains keep
//! running while others are created and destroyed, and that their console
//! lines reach dom0.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::{arg, num_arg};
use pvabi::guest::time;

pvabi::entry_point!(main);

fn main(si: &pvabi::StartInfo) -> i32 {
    let name = arg(si, "name").unwrap_or("ticker");
    let every = num_arg(si, "every_ms", 100).max(1) * 1_000_000;
    let count = num_arg(si, "count", 0);
    pvabi::println!("ticker: {name} started, domain {}", si.domain_id);
    let mut n = 0u64;
    while count == 0 || n < count {
        n += 1;
        let _ = time::sleep_ns(every);
        pvabi::println!("ticker: {name} tick {n}");
    }
    0
}
