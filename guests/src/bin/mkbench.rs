//! Domain-creation benchmark, a control domain: boot it as module 0 with
//! the hypervisor's `dom0` option and the `mkchild` image after it, on
//! **one** CPU, under an emulator whose TSC counts instructions (see
//! docs/benchmarks.md).
//!
//! 1. `runs=` times (default 5): reads the TSC, creates a `mkchild`
//!    domain (the least memory, one vCPU), unpauses it and yields until it
//!    is gone. It prints `mkbench: run=I id=D create_tsc=T` (the TSC just
//!    before the create call); the child prints the TSC at its first
//!    instruction and at the start of its `main`, so the differences are
//!    the instructions the machine ran from creation to each.
//! 2. Creates `idle=` domains (default 16) of the least memory, paused,
//!    and prints what the hypervisor's free memory and heap were before
//!    and after: `mkbench: idle domains=N memory_bytes=M pages=P
//!    free_before=A free_after=B heap_before=C heap_after=D`, then
//!    destroys them.
//!
//! Ends with `mkbench: done` (exit 0) or a `FAILED` line (exit 1).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::num_arg;
use pvabi::guest::{domctl, sched, time};
use pvabi::{DOMCTL_MEMORY_MIN, DomainCreate, Error, MODULE_ELF};

pvabi::entry_point!(main);

/// Most idle domains (the ids are kept on the stack).
const IDLE_MAX: usize = 64;

/// The ELF module whose name starts with `prefix`.
fn find_module(n: u32, prefix: &str) -> Option<u32> {
    (0..n).find(|&i| {
        domctl::module_info(i).is_ok_and(|m| {
            m.kind == MODULE_ELF
                && m.name
                    .get(..m.name_len as usize)
                    .is_some_and(|s| s.starts_with(prefix.as_bytes()))
        })
    })
}

/// Yields until domain `id` is gone (its memory freed).
fn wait_gone(id: u32) -> Result<(), Error> {
    loop {
        match domctl::info(id) {
            Err(Error::NoEntry) => return Ok(()),
            Err(e) => return Err(e),
            Ok(_) => sched::yield_now(),
        }
    }
}

fn request(module: u32) -> DomainCreate {
    DomainCreate::new("mkchild", module, DOMCTL_MEMORY_MIN, 1)
}

fn creations(module: u32, runs: u64) -> Result<(), Error> {
    for run in 1..=runs {
        let req = request(module);
        let t0 = time::read_tsc();
        let id = domctl::create(&req)?;
        domctl::unpause(id)?;
        sched::yield_now();
        wait_gone(id)?;
        pvabi::println!("mkbench: run={run} id={id} create_tsc={t0}");
    }
    Ok(())
}

fn idle(module: u32, n: usize) -> Result<(), Error> {
    let mut ids = [0u32; IDLE_MAX];
    let n = n.min(IDLE_MAX);
    let req = request(module);
    let before = domctl::host_info()?;
    for slot in ids.iter_mut().take(n) {
        *slot = domctl::create(&req)?;
    }
    let after = domctl::host_info()?;
    let pages = domctl::info(ids[0])?.current_pages;
    pvabi::println!(
        "mkbench: idle domains={n} memory_bytes={DOMCTL_MEMORY_MIN} pages={pages} free_before={} free_after={} heap_before={} heap_after={}",
        before.free_bytes,
        after.free_bytes,
        before.heap_used_bytes,
        after.heap_used_bytes
    );
    for &id in ids.iter().take(n) {
        domctl::destroy(id)?;
    }
    for &id in ids.iter().take(n) {
        wait_gone(id)?;
    }
    let end = domctl::host_info()?;
    pvabi::println!(
        "mkbench: idle destroyed free={} heap={}",
        end.free_bytes,
        end.heap_used_bytes
    );
    Ok(())
}

fn main(si: &pvabi::StartInfo) -> i32 {
    let Ok(host) = domctl::host_info() else {
        pvabi::println!("mkbench: FAILED: host info (not the control domain?)");
        return 1;
    };
    let Some(child) = find_module(host.nr_modules, "mkchild") else {
        pvabi::println!("mkbench: FAILED: no mkchild module");
        return 1;
    };
    let runs = num_arg(si, "runs", 5);
    let n = num_arg(si, "idle", 16) as usize;
    let r = creations(child, runs).and_then(|()| idle(child, n));
    match r {
        Ok(()) => {
            pvabi::println!("mkbench: done");
            0
        }
        Err(e) => {
            pvabi::println!("mkbench: FAILED: {e}");
            1
        }
    }
}
