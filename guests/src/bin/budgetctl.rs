//! The control domain of the resource-budget storm (issue 12): while
//! unprivileged guests exhaust every budget they have, it creates and
//! destroys domains, and checks that nothing it does is refused and that
//! every byte comes back.
//!
//! Command line: `rounds=<n>` (default 3, at most 4), `cycles=<n>` create/destroy
//! cycles per round (default 20), `exhausters=<n>` (default 3). Boot
//! modules it builds from: `exhaust` and `hello`.
//!
//! Each round: an innocent `exhaust innocent` domain (4 MiB, 1 vCPU, the
//! default budget), then `exhausters` domains `exhaust-<k>` (4 MiB, 4
//! vCPUs, a 64 KiB heap budget: `vcpus timers`), each offering us its port
//! 1, which we bind. While they exhaust ports, grants and vCPUs, we run
//! `cycles` create/unpause/destroy cycles of `hello` (none may fail). When
//! an exhauster signals that it holds everything, we read its `info`
//! (budget, use, refusals), queue console input for it (must be refused
//! with `ENOMEM`: its budget has no room for the queue) and let it go on;
//! it then writes 4 KiB to its console and exits. At the round's end every
//! child must be gone and the hypervisor heap and free memory are read.
//!
//! Output: `budgetctl: round <r>: exhaust-<k> used=<u> budget=<b>
//! refused=<n>` per exhauster, `budgetctl: round <r>: cycles=<c> failed=0
//! console_enomem=<k>`, `budgetctl: round <r>: heap_used=<h>
//! free_bytes=<f>`, and at the end `budgetctl: heap back: ...` and `budgetctl:
//! done`; any failure prints `budgetctl: FAILED ...` and exits 1.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::{bind_retry, num_arg};
use pvabi::guest::{domctl, evtchn, mgmt, sched, time};
use pvabi::{DOMAIN_DYING, DomainCreate, Error};

pvabi::entry_point!(main);

macro_rules! fail {
    ($($t:tt)*) => {{
        pvabi::println!("budgetctl: FAILED {}", format_args!($($t)*));
        return 1;
    }};
}

/// Most exhausters a round may have.
const MAX_EXHAUSTERS: usize = 4;

/// The index of the module called `name`.
fn find_module(name: &str) -> Option<u32> {
    let n = domctl::host_info().ok()?.nr_modules;
    (0..n).find(|&i| {
        domctl::module_info(i)
            .is_ok_and(|m| m.name.get(..m.name_len as usize) == Some(name.as_bytes()))
    })
}

/// Waits (up to 60 s) until domain `id` is gone; its exit code as last
/// seen while dying.
fn wait_gone(id: u32) -> Result<Option<i32>, Error> {
    let deadline = time::now_ns() + 60_000_000_000;
    let mut code = None;
    loop {
        match domctl::info(id) {
            Err(Error::NoEntry) => return Ok(code),
            Ok(i) if i.state == DOMAIN_DYING => code = Some(i.exit_code),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
        if time::now_ns() > deadline {
            return Err(Error::Busy);
        }
        let _ = time::sleep_ns(1_000_000);
    }
}

/// Waits (up to 60 s) until exhauster `k` has signalled on its port,
/// noting the others' signals that come first in `seen`.
fn wait_signal(ex: &[(u32, u32)], seen: &mut [bool], k: usize) -> bool {
    let deadline = time::now_ns() + 60_000_000_000;
    while !seen.get(k).copied().unwrap_or(false) {
        match evtchn::poll() {
            Ok(Some(p)) => {
                if let Some(i) = ex.iter().position(|&(_, port)| port == p)
                    && let Some(s) = seen.get_mut(i)
                {
                    *s = true;
                }
            }
            Ok(None) => {
                let ev = sched::wait_for(pvabi::EVENT_CHANNEL, Some(deadline));
                if !ev.is_ok_and(|e| e & pvabi::EVENT_CHANNEL != 0) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// Host info once free memory is back to `free` and the heap has stopped
/// changing (two reads 1 ms apart agree); `None` after 10 s.
fn settled(free: u64) -> Option<pvabi::HostInfo> {
    let deadline = time::now_ns() + 10_000_000_000;
    let mut last = domctl::host_info().ok()?;
    while time::now_ns() < deadline {
        let _ = time::sleep_ns(1_000_000);
        let now = domctl::host_info().ok()?;
        if now.free_bytes == free
            && last.free_bytes == free
            && now.heap_used_bytes == last.heap_used_bytes
        {
            return Some(now);
        }
        last = now;
    }
    None
}

fn create(name: &str, module: u32, vcpus: u32, budget: u64, cmdline: &str) -> Result<u32, Error> {
    let mut r = DomainCreate::new(name, module, 4 << 20, vcpus);
    r.heap_budget = budget;
    if !r.set_cmdline(cmdline) {
        return Err(Error::TooBig);
    }
    let id = domctl::create(&r)?;
    domctl::unpause(id)?;
    Ok(id)
}

struct Line<const N: usize>(arrayvec_lite::Buf<N>);

mod arrayvec_lite {
    /// A small formatting buffer (no heap).
    pub struct Buf<const N: usize> {
        pub bytes: [u8; N],
        pub len: usize,
    }
    impl<const N: usize> core::fmt::Write for Buf<N> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let end = self.len + s.len();
            let dst = self.bytes.get_mut(self.len..end).ok_or(core::fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }
}

impl<const N: usize> Line<N> {
    fn new(args: core::fmt::Arguments<'_>) -> Self {
        let mut b = arrayvec_lite::Buf {
            bytes: [0; N],
            len: 0,
        };
        let _ = core::fmt::write(&mut b, args);
        Self(b)
    }
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0.bytes[..self.0.len]).unwrap_or("")
    }
}

fn main(si: &pvabi::StartInfo) -> i32 {
    let me = si.domain_id;
    let rounds = num_arg(si, "rounds", 3).min(4);
    let cycles = num_arg(si, "cycles", 20);
    let exhausters = (num_arg(si, "exhausters", 3) as usize).min(MAX_EXHAUSTERS);
    let (Some(exhaust), Some(hello)) = (find_module("exhaust"), find_module("hello")) else {
        fail!("modules exhaust and hello not found");
    };
    let Ok(start) = domctl::host_info() else {
        fail!("host info");
    };
    let mut after = [(0u64, 0u64); 4];
    for round in 0..rounds {
        let inn = Line::<64>::new(format_args!("innocent peer={me} rounds=40"));
        let innocent = match create("innocent", exhaust, 1, 0, inn.as_str()) {
            Ok(id) => id,
            Err(e) => fail!("round {round}: creating the innocent guest: {e:?}"),
        };
        let mut ex = [(0u32, 0u32); MAX_EXHAUSTERS];
        for (k, slot) in ex.iter_mut().enumerate().take(exhausters) {
            let name = Line::<16>::new(format_args!("exhaust-{k}"));
            let cmd = Line::<64>::new(format_args!("peer={me} first vcpus timers"));
            let id = match create(name.as_str(), exhaust, 4, 64 << 10, cmd.as_str()) {
                Ok(id) => id,
                Err(e) => fail!("round {round}: creating exhaust-{k}: {e:?}"),
            };
            let port = match bind_retry(id, 1) {
                Ok(p) => p,
                Err(e) => fail!("round {round}: binding exhaust-{k}'s port: {e:?}"),
            };
            *slot = (id, port);
        }
        // Domains come and go while the exhausters spend everything.
        for c in 0..cycles {
            let id = match create("cycle", hello, 1, 0, "from budgetctl") {
                Ok(id) => id,
                Err(e) => fail!("round {round}: cycle {c}: create: {e:?}"),
            };
            // `hello` may have ended by itself already (it only prints).
            match domctl::destroy(id) {
                Ok(()) | Err(Error::NoEntry) => {}
                Err(e) => fail!("round {round}: cycle {c}: destroy: {e:?}"),
            }
            if let Err(e) = wait_gone(id) {
                fail!("round {round}: cycle {c}: not gone: {e:?}");
            }
        }
        let mut console_enomem = 0;
        let mut signalled = [false; MAX_EXHAUSTERS];
        for (k, &(id, _)) in ex.iter().enumerate().take(exhausters) {
            if !wait_signal(&ex[..exhausters], &mut signalled, k) {
                fail!("round {round}: exhaust-{k} never signalled");
            }
            let port = ex[k].1;
            let Ok(i) = domctl::info(id) else {
                fail!("round {round}: info of exhaust-{k}");
            };
            pvabi::println!(
                "budgetctl: round {round}: exhaust-{k} used={} budget={} refused={}",
                i.heap_used,
                i.heap_budget,
                i.heap_refused
            );
            if i.heap_used > i.heap_budget || i.heap_refused < 3 {
                fail!("round {round}: exhaust-{k}: budget not spent as it should be");
            }
            match mgmt::console_write(id, b"input\n") {
                Err(Error::NoMem) => console_enomem += 1,
                other => fail!("round {round}: console input to exhaust-{k}: {other:?}"),
            }
            if let Err(e) = evtchn::send(port) {
                fail!("round {round}: releasing exhaust-{k}: {e:?}");
            }
        }
        pvabi::println!(
            "budgetctl: round {round}: cycles={cycles} failed=0 console_enomem={console_enomem}"
        );
        for &(id, port) in ex.iter().take(exhausters) {
            match wait_gone(id) {
                Ok(Some(0) | None) => {}
                other => fail!("round {round}: exhauster {id} ended with {other:?}"),
            }
            let _ = evtchn::close(port);
        }
        match wait_gone(innocent) {
            Ok(Some(0) | None) => {}
            other => fail!("round {round}: the innocent guest ended with {other:?}"),
        }
        // A domain leaves the domain table just before its last reference
        // is dropped (on whichever CPU ran its last vCPU): its frames and
        // heap come back a moment after `info` stops finding it.
        let Some(h) = settled(start.free_bytes) else {
            fail!("round {round}: free memory not back within 10 s");
        };
        pvabi::println!(
            "budgetctl: round {round}: heap_used={} free_bytes={}",
            h.heap_used_bytes,
            h.free_bytes
        );
        if let Some(a) = after.get_mut(round as usize) {
            *a = (h.heap_used_bytes, h.free_bytes);
        }
    }
    // The first rounds grow the hypervisor's own tables (scheduler
    // records, the domain table's nodes, the control domain's own port
    // table) to what this load needs; after the last two rounds
    // everything must be where the one before left it.
    let n = (rounds as usize).min(after.len());
    pvabi::println!(
        "budgetctl: heap back: heap_used start={} rounds={:?}; free_bytes start={}",
        start.heap_used_bytes,
        &after[..n],
        start.free_bytes
    );
    if n >= 2
        && (after[n - 1].0 != after[n - 2].0
            || after.iter().take(n).any(|a| a.1 != start.free_bytes))
    {
        fail!("heap or memory not back");
    }
    pvabi::println!("budgetctl: done");
    0
}
