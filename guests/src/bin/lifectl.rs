//! A minimal control domain that tests lifecycle control (pvabi
//! 2.1, numbers 48-50) without dom0's toolstack, so it runs on both
//! backends (the `dom0_qemu_lifecycle` test needs QEMU's COM2 socket for
//! `hvctl`). Boot it as module 0 with the hypervisor's `dom0` option and a
//! `ticker` image.
//!
//! It creates `polite` (a ticker), changes its weight and cap
//! (`HC_DOMCTL_SET_SCHED`, read back with `HC_DOMCTL_INFO`), asks it to
//! power off (`HC_DOMCTL_SHUTDOWN_REQUEST`: the ticker, woken by
//! `VIRQ_SHUTDOWN`, ends itself) and reads its end report (exited, code 0);
//! then asks `rebooter` to reboot (it ends with `SHUTDOWN_REBOOT`: report
//! flag `DOMAIN_FLAG_REBOOTED`); and checks the refusals (bad reason, bad
//! weight, a cap over 100 per vCPU, its own id for a request, no such
//! domain) and that nothing was asked of itself. Prints
//! `lifectl: <N> checks, <F> failed` and exits 0.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::Checks;
use pvabi::guest::lifecycle::{self, Request};
use pvabi::guest::{domctl, hypercall6, time};
use pvabi::{DomainCreate, Error};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("lifectl");

fn code(r: Result<impl Sized, Error>) -> i64 {
    match r {
        Ok(_) => 0,
        Err(e) => e.code(),
    }
}

/// The index of the module called `name`.
fn find_module(n: u32, name: &str) -> Option<u32> {
    (0..n).find(|&i| {
        domctl::module_info(i)
            .is_ok_and(|m| m.name.get(..m.name_len as usize) == Some(name.as_bytes()))
    })
}

/// A running ticker child called `name` that has ticked at least once.
fn ticker(name: &str, module: u32) -> Result<u32, Error> {
    let mut req = DomainCreate::new(name, module, 4 << 20, 1);
    req.set_cmdline("every_ms=50");
    let id = domctl::create(&req)?;
    domctl::unpause(id)?;
    let _ = time::sleep_ns(200_000_000);
    Ok(id)
}

/// Waits (up to 5 s) for domain `id`'s end report.
fn ended(id: u32) -> Option<pvabi::DomainInfo> {
    let deadline = time::now_ns() + 5_000_000_000;
    while time::now_ns() < deadline {
        if let Ok(i) = domctl::ended(id) {
            return Some(i);
        }
        let _ = time::sleep_ns(10_000_000);
    }
    None
}

fn main(si: &pvabi::StartInfo) -> i32 {
    let me = si.domain_id;
    let Some(module) = domctl::host_info()
        .ok()
        .and_then(|h| find_module(h.nr_modules, "ticker"))
    else {
        pvabi::println!("lifectl: FAILED: no ticker module");
        return 1;
    };
    let c = &CHECKS;
    c.check(
        "nothing asked of me",
        i64::from(lifecycle::requested().is_some()),
        0,
    );
    let Ok(polite) = ticker("polite", module) else {
        pvabi::println!("lifectl: FAILED: cannot create polite");
        return 1;
    };
    // Scheduling parameters, changed while it runs.
    c.check("set sched", code(lifecycle::set_sched(polite, 512, 30)), 0);
    let info = domctl::info(polite).unwrap_or_default();
    c.check("weight read back", info.weight.into(), 512);
    c.check("cap read back", info.cap.into(), 30);
    let einval = Error::Invalid.code();
    c.check("weight 0", code(lifecycle::set_sched(polite, 0, 0)), einval);
    c.check(
        "weight over 65535",
        code(lifecycle::set_sched(polite, 65536, 0)),
        einval,
    );
    c.check(
        "cap over 100 per vCPU",
        code(lifecycle::set_sched(polite, 256, 101)),
        einval,
    );
    let info = domctl::info(polite).unwrap_or_default();
    c.check("refusals changed nothing", info.weight.into(), 512);
    c.check(
        "set sched of no domain",
        code(lifecycle::set_sched(4000, 256, 0)),
        Error::NoEntry.code(),
    );
    c.check("set my own", code(lifecycle::set_sched(me, 300, 0)), 0);
    // Requests.
    let raw = |id: u64, reason: u64| {
        pvabi::decode_status(hypercall6(
            pvabi::HC_DOMCTL_SHUTDOWN_REQUEST,
            [id, reason, 0, 0, 0, 0],
        ))
        .err()
        .and_then(Result::ok)
        .map_or(0, |e| e.code())
    };
    c.check("bad reason", raw(polite.into(), 7), einval);
    c.check("id over 32 bits", raw(1 << 32, 1), einval);
    c.check(
        "a request to myself",
        code(lifecycle::request(me, Request::PowerOff)),
        einval,
    );
    c.check(
        "a request to no domain",
        code(lifecycle::request(4000, Request::PowerOff)),
        Error::NoEntry.code(),
    );
    c.check(
        "poweroff request",
        code(lifecycle::request(polite, Request::PowerOff)),
        0,
    );
    let end = ended(polite).unwrap_or_default();
    c.check(
        "polite powered off",
        i64::from(end.flags & pvabi::DOMAIN_FLAG_EXITED != 0),
        1,
    );
    c.check("polite's code", end.exit_code.into(), 0);
    let Ok(rebooter) = ticker("rebooter", module) else {
        pvabi::println!("lifectl: FAILED: cannot create rebooter");
        return 1;
    };
    c.check(
        "reboot request",
        code(lifecycle::request(rebooter, Request::Reboot)),
        0,
    );
    let end = ended(rebooter).unwrap_or_default();
    c.check(
        "rebooter rebooted",
        i64::from(end.flags & pvabi::DOMAIN_FLAG_REBOOTED != 0),
        1,
    );
    c.check("rebooter's code", end.exit_code.into(), 0);
    let (checks, failed) = c.counts();
    pvabi::println!("lifectl: {checks} checks, {failed} failed");
    i32::from(failed != 0)
}
