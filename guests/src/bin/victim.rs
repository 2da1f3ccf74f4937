//! An innocent guest beside floods (issue 12, defect 5): waits `delay_ms=`
//! (default 100, so the floods are under way), then sleeps `ms=` (default
//! 50) milliseconds `n=` times (default 20) with `time::sleep_until`, and
//! measures by its own PV clock how late each wake-up was (the clock time
//! it runs again at, minus the deadline). The boot test compares the worst
//! with the hypervisor's scheduler slice.
//!
//! Output: `victim: sleeps=N worst_late_us=W mean_late_us=M`, then exits 0
//! (1 if a sleep failed or returned before its deadline).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use pvabi::StartInfo;
use pvabi::guest::time;

pvabi::entry_point!(main);

const MS: u64 = 1_000_000;

fn arg(si: &StartInfo, key: &str, default: u64) -> u64 {
    core::str::from_utf8(si.cmdline())
        .unwrap_or("")
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main(si: &StartInfo) -> i32 {
    let delay = arg(si, "delay_ms", 100);
    let ms = arg(si, "ms", 50);
    let n = arg(si, "n", 20);
    if time::sleep_ns(delay * MS).is_err() {
        pvabi::println!("victim: FAILED the first sleep");
        return 1;
    }
    let (mut worst, mut total) = (0u64, 0u64);
    for i in 0..n {
        let deadline = time::now_ns() + ms * MS;
        if time::sleep_until(deadline).is_err() {
            pvabi::println!("victim: FAILED sleep {i}");
            return 1;
        }
        let now = time::now_ns();
        if now < deadline {
            pvabi::println!("victim: FAILED sleep {i} woke {} ns early", deadline - now);
            return 1;
        }
        let late = now - deadline;
        worst = worst.max(late);
        total += late;
    }
    pvabi::println!(
        "victim: sleeps={n} worst_late_us={} mean_late_us={}",
        worst / 1000,
        total / n.max(1) / 1000
    );
    0
}
