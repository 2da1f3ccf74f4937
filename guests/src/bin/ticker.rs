//! A long-running guest: prints `ticker: tick <n>` every `every_ms=`
//! milliseconds (default 100), sleeping in between, `count=` times (0, the
//! default: forever); after the last of `count` ticks it prints
//! `ticker: <count> ticks in <ms> ms` (system time from its first sleep to
//! its last tick) and exits with `code=` (default 0; dom0's history test
//! reads it back). `note=<word>` is printed in its first line. The dom0
//! boot tests use it to show that domains keep running while others are
//! created and destroyed, and that their console lines reach dom0. A value that is not a number (`every_ms=soon`) ends it
//! at once with exit code 2 and a line naming the argument. It reads its
//! arguments with pvabi's own parser ([`pvabi::StartInfo::arg`]), as a
//! guest built outside this repository would.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use pvabi::guest::time;

pvabi::entry_point!(main);

fn main(si: &pvabi::StartInfo) -> i32 {
    let (every_ms, count) = match (si.arg_or("every_ms", 100u64), si.arg_or("count", 0u64)) {
        (Ok(e), Ok(c)) => (e, c),
        (Err(e), _) | (_, Err(e)) => {
            pvabi::println!("ticker: {e}");
            return 2;
        }
    };
    let every = every_ms.clamp(1, u64::MAX / 1_000_000) * 1_000_000;
    pvabi::println!(
        "ticker: started, domain {}, {}",
        si.domain_id,
        si.arg("note").unwrap_or("no note")
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
    si.arg_or("code", 0i32).unwrap_or(0)
}
