//! A control domain that tests the credit scheduler's weights and caps:
//! boot it as module 0 with the hypervisor's `dom0` option and a `burn`
//! image after it, on **one** CPU, so the domains it makes compete.
//!
//! 1. Weights: two `burn` domains with weights 1:3 ([`LIGHT`], [`HEAVY`])
//!    run for `ms=` milliseconds (default 2000) while this domain sleeps;
//!    their CPU time (`HC_DOMCTL_INFO`) over that window must be 1:3
//!    within 10%: `schedctl: weights light_ns=A heavy_ns=B wall_ns=W
//!    ratio_milli=R`.
//! 2. Caps: a `burn` domain capped at [`CAP`]% beside an uncapped one of
//!    the same weight, for the same time: the capped one's CPU time must
//!    stay at or under its cap (+[`CAP_SLACK_PERMILLE`]) of the wall time,
//!    and near it (it always has the hog to lose to, never idle time):
//!    `schedctl: cap capped_ns=C hog_ns=H wall_ns=W capped_permille=P`.
//!
//! The burners are then left to end by themselves (each prints its own
//! CPU time) and it prints `schedctl: <N> checks, <F> failed`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::{Checks, num_arg};
use pvabi::guest::{domctl, time};
use pvabi::{DomainCreate, Error, MODULE_ELF};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("schedctl");

/// The weights of the first phase (1:3).
const LIGHT: u32 = 128;
const HEAVY: u32 = 384;
/// The cap of the second phase, in percent of one CPU.
const CAP: u32 = 25;
/// Allowed overshoot of the cap, in per mille of the wall time.
const CAP_SLACK_PERMILLE: u64 = 20;

fn find_module(n: u32, name: &str) -> Option<u32> {
    (0..n).find(|&i| {
        domctl::module_info(i).is_ok_and(|m| {
            m.kind == MODULE_ELF && m.name.get(..m.name_len as usize) == Some(name.as_bytes())
        })
    })
}

fn burner(name: &str, module: u32, weight: u32, cap: u32, ms: u64) -> Result<u32, Error> {
    let mut r = DomainCreate::new(name, module, 4 << 20, 1);
    r.weight = weight;
    r.cap = cap;
    let mut buf = [0u8; 32];
    r.set_cmdline(ms_arg(&mut buf, ms));
    domctl::create(&r)
}

/// `ms=<n>`, written into `buf` (no allocator here).
fn ms_arg(buf: &mut [u8; 32], ms: u64) -> &str {
    let mut digits = [0u8; 20];
    let mut n = ms;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf[..3].copy_from_slice(b"ms=");
    for i in 0..len {
        buf[3 + i] = digits[len - 1 - i];
    }
    core::str::from_utf8(&buf[..3 + len]).unwrap_or("")
}

/// CPU time of `a` and `b` over `ms` milliseconds from now (both
/// unpaused first), and the wall time of the window.
fn measure(a: u32, b: u32, ms: u64) -> Option<(u64, u64, u64)> {
    domctl::unpause(a).ok()?;
    domctl::unpause(b).ok()?;
    let cpu = |id| domctl::info(id).map(|i| i.cpu_time_ns).ok();
    let t0 = time::now_ns();
    let (a0, b0) = (cpu(a)?, cpu(b)?);
    let _ = time::sleep_ns(ms * 1_000_000);
    let (a1, b1) = (cpu(a)?, cpu(b)?);
    let t1 = time::now_ns();
    Some((a1 - a0, b1 - b0, t1 - t0))
}

/// Waits (up to 30 s) until domain `id` is gone.
fn wait_gone(id: u32) -> bool {
    let deadline = time::now_ns() + 30_000_000_000;
    while time::now_ns() < deadline {
        if matches!(domctl::info(id), Err(Error::NoEntry)) {
            return true;
        }
        let _ = time::sleep_ns(10_000_000);
    }
    false
}

fn main(si: &pvabi::StartInfo) -> i32 {
    let ms = num_arg(si, "ms", 2000);
    let host = domctl::host_info().unwrap_or_default();
    pvabi::println!("schedctl: {} CPUs, window {ms} ms", host.nr_cpus);
    let Some(burn) = find_module(host.nr_modules, "burn") else {
        pvabi::println!("schedctl: FAILED: no burn module");
        return 1;
    };
    // The burners outlive the window by half a second: they are still
    // burning when it closes, then end by themselves.
    let life = ms + 500;

    // 1. Weights 1:3.
    let (Ok(light), Ok(heavy)) = (
        burner("light", burn, LIGHT, 0, life),
        burner("heavy", burn, HEAVY, 0, life),
    ) else {
        pvabi::println!("schedctl: create FAILED");
        return 1;
    };
    let Some((l, h, wall)) = measure(light, heavy, ms) else {
        pvabi::println!("schedctl: measuring FAILED");
        return 1;
    };
    let ratio_milli = h * 1000 / l.max(1);
    pvabi::println!(
        "schedctl: weights light_ns={l} heavy_ns={h} wall_ns={wall} ratio_milli={ratio_milli}"
    );
    CHECKS.check(
        "heavy:light within 10% of 3",
        i64::from((2700..=3300).contains(&ratio_milli)),
        1,
    );
    CHECKS.check(
        "the burners had the CPU",
        i64::from((l + h) * 10 >= wall * 9),
        1,
    );
    CHECKS.check("light ended", i64::from(wait_gone(light)), 1);
    CHECKS.check("heavy ended", i64::from(wait_gone(heavy)), 1);

    // 2. A cap beside a hog.
    let (Ok(capped), Ok(hog)) = (
        burner("capped", burn, 256, CAP, life),
        burner("hog", burn, 256, 0, life),
    ) else {
        pvabi::println!("schedctl: create FAILED");
        return 1;
    };
    let Some((c, h, wall)) = measure(capped, hog, ms) else {
        pvabi::println!("schedctl: measuring FAILED");
        return 1;
    };
    let permille = c * 1000 / wall.max(1);
    pvabi::println!(
        "schedctl: cap capped_ns={c} hog_ns={h} wall_ns={wall} capped_permille={permille}"
    );
    CHECKS.check(
        "capped at or under its cap",
        i64::from(permille <= u64::from(CAP) * 10 + CAP_SLACK_PERMILLE),
        1,
    );
    CHECKS.check(
        "capped near its cap",
        i64::from(permille + 50 >= u64::from(CAP) * 10),
        1,
    );
    CHECKS.check(
        "the hog had the rest",
        i64::from((c + h) * 10 >= wall * 9),
        1,
    );
    CHECKS.check("capped ended", i64::from(wait_gone(capped)), 1);
    CHECKS.check("hog ended", i64::from(wait_gone(hog)), 1);

    let (checks, failed) = CHECKS.counts();
    pvabi::println!("schedctl: {checks} checks, {failed} failed");
    i32::from(failed != 0)
}
