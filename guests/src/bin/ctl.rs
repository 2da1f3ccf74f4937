//! A minimal control domain that tests the domctl op group (pvabi 1.3):
//! boot it as module 0 with the hypervisor's `dom0` option, with `hello`
//! and `spin` images and a data module after it.
//!
//! It reads the data module back, refuses bad requests with the documented
//! errors, creates a `hello` child paused (it must not run until unpaused)
//! and waits for it to exit, pauses a `spin` child (its CPU time must
//! stand still) and destroys it, then runs `cycles=` create/destroy
//! cycles, and checks that free memory and the domain list are back where
//! they started. Command line: `cycles=<n>` (default 100), `data=<text>`
//! (what the data module must start with).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::{Checks, arg, bind_retry, gnt, num_arg, raw};
use pvabi::guest::{domctl, evtchn, grant, memory, time};
use pvabi::{DOMAIN_DYING, DOMAIN_PAUSED, DOMAIN_RUNNING, DomainCreate, Error, MODULE_ELF};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("ctl");

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

/// Waits (up to 5 s) until domain `id` is gone; its last exit code, as
/// seen while it was dying (`None` if it was never seen dying).
fn wait_gone(id: u32) -> Result<Option<i32>, &'static str> {
    let deadline = time::now_ns() + 5_000_000_000;
    let mut code = None;
    loop {
        match domctl::info(id) {
            Err(Error::NoEntry) => return Ok(code),
            Ok(i) if i.state == DOMAIN_DYING => code = Some(i.exit_code),
            Ok(_) => {}
            Err(_) => return Err("info failed"),
        }
        if time::now_ns() > deadline {
            return Err("still there after 5 s");
        }
        // Its vCPUs leave when they stop (a running one at its next exit).
        pvabi::guest::sched::yield_now();
    }
}

/// One create/destroy cycle with a child that grants us a page and
/// offers us a port: we bind and map, destroy it, and check that the port
/// went unbound and the mapping shows a zeroed page instead of the dead
/// child's; then close and unmap. Returns our port's number (the same
/// every time unless ports leak).
fn share_cycle(me: u32, module: u32, hole: u64) -> Result<u32, &'static str> {
    let mut req = request("sharer", module, "");
    let mut digits = [0u8; 10];
    let mut n = me;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    req.cmdline_len = put_bytes(&mut req.cmdline, &[b"peer=", &digits[at..]]) as u32;
    let id = domctl::create(&req).map_err(|_| "create")?;
    domctl::unpause(id).map_err(|_| "unpause")?;
    let port = bind_retry(id, 1).map_err(|_| "bind")?;
    let map = grant::map(id, 0, hole, false).map_err(|_| "map")?;
    if raw::read(hole + 8) != gnt::pattern(1) {
        return Err("the shared page does not hold the pattern");
    }
    domctl::destroy(id).map_err(|_| "destroy")?;
    wait_gone(id)?;
    if evtchn::send(port) != Err(Error::Busy) {
        return Err("the dead child's port is still bound");
    }
    if raw::read(hole + 8) != 0 {
        return Err("the dead child's page is still mapped");
    }
    evtchn::close(port).map_err(|_| "close")?;
    grant::unmap(map).map_err(|_| "unmap")?;
    Ok(port)
}

/// Copies `parts` one after another into `buf`; bytes written (stops at
/// the buffer's end).
fn put_bytes(buf: &mut [u8], parts: &[&[u8]]) -> usize {
    let mut n = 0;
    for (slot, b) in buf.iter_mut().zip(parts.iter().flat_map(|s| s.iter())) {
        *slot = *b;
        n += 1;
    }
    n
}

fn request(name: &str, module: u32, cmdline: &str) -> DomainCreate {
    let mut r = DomainCreate::new(name, module, 4 << 20, 1);
    r.set_cmdline(cmdline);
    r
}

fn main(si: &pvabi::StartInfo) -> i32 {
    let me = si.domain_id;
    let host = match domctl::host_info() {
        Ok(h) => h,
        Err(e) => {
            pvabi::println!("ctl: host info FAILED: {e}");
            return 1;
        }
    };
    pvabi::println!(
        "ctl: domain {me}, {} CPUs, {} modules, {} domains",
        host.nr_cpus,
        host.nr_modules,
        host.nr_domains
    );
    let (Some(hello), Some(spin)) = (
        find_module(host.nr_modules, "hello"),
        find_module(host.nr_modules, "spin"),
    ) else {
        pvabi::println!("ctl: FAILED: no hello or spin module");
        return 1;
    };
    let data = (0..host.nr_modules)
        .find(|&i| domctl::module_info(i).is_ok_and(|m| m.kind != MODULE_ELF))
        .unwrap_or(u32::MAX);

    // The data module reads back, in two pieces across an offset.
    let mut buf = [0u8; 64];
    let want = arg(si, "data").unwrap_or("");
    let n1 = domctl::module_read(data, 0, &mut buf[..5]).unwrap_or(0);
    let n2 = domctl::module_read(data, n1 as u64, &mut buf[n1..]).unwrap_or(0);
    CHECKS.check(
        "data module reads back",
        i64::from(buf.get(..want.len()) == Some(want.as_bytes())),
        1,
    );
    CHECKS.check(
        "read past the end",
        domctl::module_read(data, 1 << 40, &mut buf).map_or(-1, |n| n as i64),
        0,
    );
    let _ = n2;

    // Refusals, each with its documented status.
    CHECKS.check(
        "create from own image",
        code(domctl::create(&request("x", 0, ""))),
        Error::NoEntry.code(),
    );
    CHECKS.check(
        "create from no module",
        code(domctl::create(&request("x", 99, ""))),
        Error::NoEntry.code(),
    );
    CHECKS.check(
        "create from data",
        code(domctl::create(&request("x", data, ""))),
        Error::Invalid.code(),
    );
    CHECKS.check(
        "bad name",
        code(domctl::create(&request("a b", hello, ""))),
        Error::Invalid.code(),
    );
    // pvabi 1.4: up to DOMCTL_MAX_VCPUS (64) vCPUs; one more is EINVAL.
    let mut too_many = request("many", hello, "");
    too_many.nr_vcpus = pvabi::DOMCTL_MAX_VCPUS + 1;
    CHECKS.check(
        "more vCPUs than the ABI max",
        code(domctl::create(&too_many)),
        Error::Invalid.code(),
    );
    for (what, n) in [
        ("vCPUs = host CPUs", host.nr_cpus.max(1)),
        ("vCPUs = ABI max", pvabi::DOMCTL_MAX_VCPUS),
    ] {
        let mut wide = request("wide", hello, "");
        wide.nr_vcpus = n;
        let got = domctl::create(&wide).and_then(|id| {
            let v = domctl::info(id).map(|i| i.nr_vcpus);
            domctl::destroy(id)?;
            v
        });
        // Created paused (domctl create's way), so vCPU 0 never runs.
        let got = match got {
            Ok(v) => i64::from(v),
            Err(e) => e.code(),
        };
        CHECKS.check(what, got, i64::from(n));
    }
    let mut huge = request("huge", hello, "");
    huge.memory_bytes = pvabi::DOMCTL_MEMORY_MAX;
    CHECKS.check(
        "more memory than free",
        code(domctl::create(&huge)),
        Error::NoMem.code(),
    );
    CHECKS.check(
        "destroy self",
        code(domctl::destroy(me)),
        Error::Invalid.code(),
    );
    CHECKS.check("pause self", code(domctl::pause(me)), Error::Invalid.code());
    CHECKS.check(
        "info of no domain",
        code(domctl::info(9999)),
        Error::NoEntry.code(),
    );
    CHECKS.check(
        "unpause no domain",
        code(domctl::unpause(9999)),
        Error::NoEntry.code(),
    );
    let free_before = domctl::host_info().map_or(0, |h| h.free_bytes);
    CHECKS.check(
        "nothing left behind",
        i64::from(domctl::host_info().map_or(0, |h| h.nr_domains)),
        1,
    );

    // A child created paused does not run until unpaused, then exits.
    let child = domctl::create(&request("child", hello, "made by ctl"));
    let Ok(child) = child else {
        pvabi::println!("ctl: create FAILED: {child:?}");
        return 1;
    };
    let _ = time::sleep_ns(30_000_000);
    let i = domctl::info(child).unwrap_or_default();
    CHECKS.check("child paused", i64::from(i.state), i64::from(DOMAIN_PAUSED));
    CHECKS.check("paused child never ran", i.exits as i64, 0);
    CHECKS.check("child memory", i.max_pages as i64, 1024);
    CHECKS.check("child name", i64::from(i.name.starts_with(b"child\0")), 1);
    // The control domain hears of every domain's end on VIRQ_DOM_EXC.
    let dom_exc = evtchn::bind_virq(pvabi::VIRQ_DOM_EXC, 0);
    CHECKS.check("bind VIRQ_DOM_EXC", code(dom_exc), 0);
    CHECKS.check("unpause", code(domctl::unpause(child)), 0);
    match wait_gone(child) {
        Ok(c) => {
            pvabi::println!("ctl: child {child} ended (code {c:?})");
        }
        Err(e) => {
            pvabi::println!("ctl: child {child} FAILED: {e}");
        }
    }
    let raised = matches!((dom_exc, evtchn::poll()), (Ok(p), Ok(Some(q))) if p == q);
    CHECKS.check(
        "VIRQ_DOM_EXC raised by the child's end",
        i64::from(raised),
        1,
    );
    if let Ok(p) = dom_exc {
        let _ = evtchn::close(p);
    }

    // An unprivileged child is refused every domctl op.
    if let Some(denied) = find_module(host.nr_modules, "denied") {
        match domctl::create(&request("denied", denied, "")) {
            Ok(id) => {
                let _ = domctl::unpause(id);
                // Its exit code may be gone before we look: the harness
                // reads it from the hypervisor's `domain-end:` line.
                let ended = wait_gone(id);
                CHECKS.check(
                    "denied child ended",
                    i64::from(matches!(ended, Ok(None | Some(0)))),
                    1,
                );
            }
            Err(e) => {
                CHECKS.check("create denied child", e.code(), 0);
            }
        }
    }

    // A paused spinner's CPU time stands still; destroy ends it.
    let Ok(spinner) = domctl::create(&request("spinner", spin, "")) else {
        pvabi::println!("ctl: create spinner FAILED");
        return 1;
    };
    let _ = domctl::unpause(spinner);
    let _ = time::sleep_ns(50_000_000);
    let running = domctl::info(spinner).unwrap_or_default();
    CHECKS.check(
        "spinner running",
        i64::from(running.state),
        i64::from(DOMAIN_RUNNING),
    );
    CHECKS.check("pause", code(domctl::pause(spinner)), 0);
    // Pausing takes effect at its next exit (one tick).
    let _ = time::sleep_ns(30_000_000);
    let t1 = domctl::info(spinner).unwrap_or_default().cpu_time_ns;
    let _ = time::sleep_ns(50_000_000);
    let t2 = domctl::info(spinner).unwrap_or_default().cpu_time_ns;
    CHECKS.check("paused CPU time stands still", (t2 - t1) as i64, 0);
    CHECKS.check("spinner had run", i64::from(t1 > 0), 1);
    let _ = domctl::unpause(spinner);
    let _ = time::sleep_ns(50_000_000);
    let t3 = domctl::info(spinner).unwrap_or_default().cpu_time_ns;
    CHECKS.check("unpaused spinner runs again", i64::from(t3 > t2), 1);
    CHECKS.check("destroy", code(domctl::destroy(spinner)), 0);
    CHECKS.check(
        "destroy twice",
        code(domctl::destroy(spinner)),
        Error::NoEntry.code(),
    );
    CHECKS.check(
        "spinner gone",
        i64::from(matches!(wait_gone(spinner), Ok(None | Some(-1)))),
        1,
    );

    // Create/destroy cycles leak nothing: frames, and (every tenth cycle,
    // a child that shares a page and a port with us) ports and grants.
    let cycles = num_arg(si, "cycles", 100);
    let sharer = find_module(host.nr_modules, "sharer");
    let hole = memory::free_region().map(|r| r.start);
    let hole = hole.filter(|&h| memory::release(h, 1) == Ok(1));
    let (mut shared, mut share_failed, mut first_port) = (0u64, 0u64, None);
    let mut failed = 0u64;
    // The heap after the first tenth of the cycles (its lists have grown to
    // what this load needs) must not grow with the other nine tenths.
    let warm = cycles / 10;
    let mut heap_warm = 0;
    for c in 0..cycles {
        if c == warm {
            heap_warm = domctl::host_info().map_or(0, |h| h.heap_used_bytes);
        }
        if c % 10 == 0
            && let (Some(m), Some(h)) = (sharer, hole)
        {
            match share_cycle(me, m, h) {
                Ok(port) if *first_port.get_or_insert(port) == port => shared += 1,
                Ok(port) => {
                    pvabi::println!("ctl: sharing cycle {c}: port {port}, a port leaked");
                    share_failed += 1;
                }
                Err(e) => {
                    pvabi::println!("ctl: sharing cycle {c} FAILED: {e}");
                    share_failed += 1;
                }
            }
            continue;
        }
        let Ok(id) = domctl::create(&request("cycle", hello, "quiet")) else {
            failed += 1;
            continue;
        };
        if c % 2 == 1 {
            let _ = domctl::unpause(id);
        }
        if domctl::destroy(id).is_err() && c % 2 == 0 {
            failed += 1;
        }
        if wait_gone(id).is_err() {
            failed += 1;
        }
    }
    CHECKS.check("cycles without failure", failed as i64, 0);
    CHECKS.check("sharing cycles without failure", share_failed as i64, 0);
    CHECKS.check("sharing cycles ran", i64::from(shared >= cycles / 10), 1);
    let maps = grant::query().map_or(u32::MAX, |l| l.maps_in_use);
    CHECKS.check("no mapping left", i64::from(maps), 0);
    // A destroyed domain leaves the domain list when its last vCPU leaves
    // the scheduler; its memory goes back when the last reference to it
    // goes, which for a vCPU that ran when it was destroyed is its CPU
    // finishing that step (and freeing 4 MiB of frames takes a while):
    // wait for it, bounded, so a leak still shows.
    let deadline = time::now_ns() + 1_000_000_000;
    while domctl::host_info().map_or(0, |h| h.free_bytes) < free_before && time::now_ns() < deadline
    {
        pvabi::guest::sched::yield_now();
    }
    let free_after = domctl::host_info().map_or(0, |h| h.free_bytes);
    let heap_after = domctl::host_info().map_or(0, |h| h.heap_used_bytes);
    pvabi::println!(
        "ctl: hypervisor heap used {heap_warm} after {warm} cycles, {heap_after} after all"
    );
    // Slack for transient allocations; a leak of even 8 bytes per cycle
    // would pass it within a thousand cycles.
    CHECKS.check(
        "hypervisor heap does not grow with cycles",
        i64::from(heap_after <= heap_warm + 2048),
        1,
    );
    CHECKS.check(
        "free memory back",
        (free_after as i64) - (free_before as i64),
        0,
    );
    let mut ids = [0u32; 8];
    let n = domctl::list(&mut ids).unwrap_or(0);
    CHECKS.check("only ctl is left", i64::from(n == 1 && ids[0] == me), 1);
    pvabi::println!(
        "ctl: {cycles} create/destroy cycles ({shared} sharing a page and a port), free bytes {free_after} as before"
    );
    let (checks, failed) = CHECKS.counts();
    pvabi::println!("ctl: {checks} checks, {failed} failed");
    i32::from(failed != 0)
}
