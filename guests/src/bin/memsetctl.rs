//! A minimal control domain that tests the memory target (issue 15,
//! `HC_DOMCTL_MEM_TARGET` 57, `HC_MEM_TARGET` 56, `VIRQ_MEM_TARGET`)
//! without dom0's toolstack, so it runs on both backends (the
//! `memset_qemu_balloond` test drives the same calls through `hvctl`,
//! which needs QEMU's COM2 socket). Boot it as module 0 with the
//! hypervisor's `dom0` option and the `balloond` and `ticker` images.
//!
//! It creates `balloond` (32 MiB) and `ignorer` (a ticker, 16 MiB); sets
//! balloond's target to 4096 pages and waits until `HC_DOMCTL_INFO` shows
//! it holds them (the host's free memory rose by at least 16 MiB less the
//! table frames, checked loosely: `memset_qemu_balloond` checks it to the
//! byte), then back to 8192; checks the refusals (over its maximum, under
//! the 4 MiB floor, itself, no domain) and that a query changes nothing;
//! sets ignorer's target and sees it keep its pages; destroys both and
//! sees every byte back. Prints `memsetctl: <N> checks, <F> failed` and
//! exits 0 when none failed.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::Checks;
use pvabi::guest::{domctl, memtarget, time};
use pvabi::{DomainCreate, Error};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("memsetctl");

fn code(r: Result<impl Sized, Error>) -> i64 {
    match r {
        Ok(_) => 0,
        Err(e) => e.code(),
    }
}

fn find_module(n: u32, name: &str) -> Option<u32> {
    (0..n).find(|&i| {
        domctl::module_info(i)
            .is_ok_and(|m| m.name.get(..m.name_len as usize) == Some(name.as_bytes()))
    })
}

fn child(name: &str, module: u32, mib: u64) -> Result<u32, Error> {
    let mut req = DomainCreate::new(name, module, mib << 20, 1);
    req.set_cmdline("every_ms=100");
    let id = domctl::create(&req)?;
    domctl::unpause(id)?;
    let _ = time::sleep_ns(300_000_000);
    Ok(id)
}

/// Pages domain `id` holds once it holds `want` (waiting up to 10 s), or
/// what it holds then.
fn holds(id: u32, want: u64) -> u64 {
    let deadline = time::now_ns() + 10_000_000_000;
    loop {
        let now = domctl::info(id).map_or(0, |i| i.current_pages);
        if now == want || time::now_ns() >= deadline {
            return now;
        }
        let _ = time::sleep_ns(10_000_000);
    }
}

fn free() -> u64 {
    domctl::host_info().map_or(0, |h| h.free_bytes)
}

fn main(si: &pvabi::StartInfo) -> i32 {
    let me = si.domain_id;
    let n = domctl::host_info().map_or(0, |h| h.nr_modules);
    let (Some(bmod), Some(tmod)) = (find_module(n, "balloond"), find_module(n, "ticker")) else {
        pvabi::println!("memsetctl: FAILED: no balloond or ticker module");
        return 1;
    };
    let c = &CHECKS;
    let before = free();
    let (Ok(b), Ok(t)) = (child("balloond", bmod, 32), child("ignorer", tmod, 16)) else {
        pvabi::println!("memsetctl: FAILED: cannot create the children");
        return 1;
    };
    c.check("no target yet: the maximum", code(memtarget::get(b)), 0);
    c.check("target read", memtarget::get(b).unwrap_or(0) as i64, 8192);
    let free0 = free();
    c.check(
        "set 4096",
        memtarget::set(b, 4096).unwrap_or(0) as i64,
        4096,
    );
    c.check("balloond holds 4096", holds(b, 4096) as i64, 4096);
    // Two to nine nested-table frames may stay with it (memset.rs says why).
    let rose = free().saturating_sub(free0);
    c.check(
        "free memory rose by 16 MiB less a few table frames",
        i64::from(((16 << 20) - 9 * 4096..=16 << 20).contains(&rose)),
        1,
    );
    c.check(
        "set 8192",
        memtarget::set(b, 8192).unwrap_or(0) as i64,
        8192,
    );
    c.check("balloond holds 8192", holds(b, 8192) as i64, 8192);
    let einval = Error::Invalid.code();
    c.check("over its maximum", code(memtarget::set(b, 8193)), einval);
    c.check("under the floor", code(memtarget::set(b, 1023)), einval);
    c.check("my own", code(memtarget::set(me, 4096)), einval);
    c.check(
        "no domain",
        code(memtarget::set(4000, 4096)),
        Error::NoEntry.code(),
    );
    c.check(
        "refusals changed nothing",
        memtarget::get(b).unwrap_or(0) as i64,
        8192,
    );
    c.check("I read my own target", code(memtarget::target()), 0);
    // A guest that ignores the target keeps its memory.
    c.check(
        "set ignorer 2048",
        memtarget::set(t, 2048).unwrap_or(0) as i64,
        2048,
    );
    let _ = time::sleep_ns(300_000_000);
    c.check("ignorer keeps 4096", holds(t, 2048) as i64, 4096);
    c.check(
        "ignorer's target",
        memtarget::get(t).unwrap_or(0) as i64,
        2048,
    );
    // Destroyed: every byte back.
    for id in [b, t] {
        c.check("destroy", code(domctl::destroy(id)), 0);
    }
    let deadline = time::now_ns() + 5_000_000_000;
    while free() != before && time::now_ns() < deadline {
        let _ = time::sleep_ns(10_000_000);
    }
    c.check("every byte back", (free() == before).into(), 1);
    let (checks, failed) = c.counts();
    pvabi::println!("memsetctl: {checks} checks, {failed} failed");
    i32::from(failed != 0)
}
