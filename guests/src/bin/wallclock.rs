//! Prints the wall-clock time it reads from the PV clock (pvabi
//! `guest::time::utc_now`: the boot's wall-clock base from the CMOS RTC
//! plus system time) as `wallclock: <ISO 8601> base_ns=<base>`, or
//! `wallclock: unknown`, and exits 0 (1 when unknown). With `sleep_ms=N`
//! it sleeps N ms and prints the time again, which must have moved on by N
//! ms (exit 3 when not). Arguments come from pvabi's own parser.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use pvabi::guest::time;

pvabi::entry_point!(main);

fn main(si: &pvabi::StartInfo) -> i32 {
    let sleep_ms = match si.arg_or("sleep_ms", 0u64) {
        Ok(v) => v,
        Err(e) => {
            pvabi::println!("wallclock: {e}");
            return 2;
        }
    };
    let base = time::time_info().map_or(0, |t| t.wall_clock_base_ns);
    let (Some(t0), Some(utc)) = (time::wall_clock_ns(), time::utc_now()) else {
        pvabi::println!("wallclock: unknown");
        return 1;
    };
    pvabi::println!("wallclock: {utc} base_ns={base}");
    if sleep_ms == 0 {
        return 0;
    }
    let _ = time::sleep_ns(sleep_ms.saturating_mul(1_000_000));
    let t1 = time::wall_clock_ns().unwrap_or(0);
    let moved_ms = t1.saturating_sub(t0) / 1_000_000;
    pvabi::println!(
        "wallclock: after sleep_ms={sleep_ms}: {} (moved {moved_ms} ms)",
        pvabi::UtcTime::from_unix_ns(t1)
    );
    if moved_ms >= sleep_ms { 0 } else { 3 }
}
