//! A long-running guest: prints `ticker: tick <n>` every `every_ms=`
//! milliseconds (default 100), sleeping in between, `count=` times (0, the
//! default: forever); after the last of `count` ticks it prints
//! `ticker: <count> ticks in <ms> ms` (system time from its first sleep to
//! its last tick) and ends with `code=` (default 0; dom0's history test
//! reads it back) the way `end=` says: `exit` (the default, a power-off),
//! `reboot` (`SHUTDOWN_REBOOT`) or `crash` (`SHUTDOWN_CRASH`; the lifecycle
//! tests' crashing guest). `note=<word>` is printed in its first line. The
//! dom0 boot tests use it to show that domains keep running while others
//! are created and destroyed, and that their console lines reach dom0.
//! A value that is not a number (`every_ms=soon`) ends it at once with
//! exit code 2 and a line naming the argument. It reads its arguments with
//! pvabi's own parser ([`pvabi::StartInfo::arg`]), as a guest built outside
//! this repository would.
//!
//! It honours dom0's shutdown and reboot requests (`hvctl shutdown`,
//! `hvctl reboot`: pvabi's `guest::lifecycle`): a request wakes it from
//! its sleep, it prints `ticker: <poweroff|reboot> requested after <n>
//! ticks` and ends that way with code 0. The bare word `ignore_shutdown`
//! makes it ignore them (it prints `ticker: ignoring the <what> request`
//! once), for the tests of dom0's forced end.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use pvabi::guest::{lifecycle, sched, time};

pvabi::entry_point!(main);

fn main(si: &pvabi::StartInfo) -> i32 {
    let (every_ms, count, code) = match (
        si.arg_or("every_ms", 100u64),
        si.arg_or("count", 0u64),
        si.arg_or("code", 0i32),
    ) {
        (Ok(e), Ok(c), Ok(x)) => (e, c, x),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            pvabi::println!("ticker: {e}");
            return 2;
        }
    };
    let every = every_ms.clamp(1, u64::MAX / 1_000_000) * 1_000_000;
    let ignore = si.flag("ignore_shutdown");
    let watching = lifecycle::watch().is_ok();
    pvabi::println!(
        "ticker: started, domain {}, {}",
        si.domain_id,
        si.arg("note").unwrap_or("no note")
    );
    let mut n = 0u64;
    let mut ignored = false;
    let t0 = time::now_ns();
    while count == 0 || n < count {
        n += 1;
        // Once a request is ignored, plain sleeps (the request stays
        // readable, and would end every sleep at once).
        let req = if watching && !ignored {
            lifecycle::sleep_watching(every)
        } else {
            let _ = time::sleep_ns(every);
            None
        };
        if let Some(r) = req {
            if ignore {
                pvabi::println!("ticker: ignoring the {} request", r.as_str());
                ignored = true;
            } else {
                pvabi::println!("ticker: {} requested after {} ticks", r.as_str(), n - 1);
                lifecycle::honour(r, 0);
            }
        }
        pvabi::println!("ticker: tick {n}");
    }
    let ms = time::now_ns().saturating_sub(t0) / 1_000_000;
    pvabi::println!("ticker: {n} ticks in {ms} ms");
    match si.arg("end") {
        Some("reboot") => lifecycle::reboot(code.into()),
        Some("crash") => sched::crash(code.into()),
        _ => code,
    }
}
