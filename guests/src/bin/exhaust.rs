//! A hostile guest that spends every hypervisor resource it can reach
//! until refused (issue 12, per-domain resource budgets).
//!
//! Command line: `peer=<id>` (the other exhauster or the control domain,
//! a domain id), `first` (this one offers the rendezvous port as port 1;
//! otherwise it binds to the peer's port `port=<n>`, default 1),
//! `vcpus` (also bring up every vCPU), `timers` (also arm a timer on every
//! vCPU), `console=<bytes>` (console output written after exhausting,
//! default 4096).
//!
//! Order: a rendezvous port with the peer (offered by `first` as port 1,
//! bound by the other), then event-channel ports until refused, then the
//! grant and map limits raised to the ceiling and grants made until
//! refused; with `vcpus`, every vCPU brought up (they block for good) and
//! one more refused; with `timers`, a timer armed on vCPU 0. Only then do
//! the two meet (send on the rendezvous port, wait for the peer's), so
//! both hold everything at once before either writes `console` bytes.
//!
//! With `innocent` (and `rounds=<n>`, default 50) it exhausts nothing: it
//! runs `n` rounds of an ordinary guest's work (a port allocated and
//! closed, a page granted to `peer` and revoked, a console line, a 2 ms
//! sleep), each of which must succeed while others exhaust their budgets,
//! then prints `exhaust: innocent: <n> rounds ok` and exits 0.
//!
//! Output: `exhaust: ports=<n> <err> grants=<n> <err> vcpus=<n> <err>`, then
//! the console bytes (lines of `x`), then `exhaust: wrote <n> console bytes,
//! enomem=<count>` and exit 0. `enomem` counts the refusals that were
//! `ENOMEM`; a refusal that is anything else prints `exhaust: FAILED ...`
//! and exits 1.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::{bind_retry, flag, num_arg, wait_port};
use pvabi::guest::{console, evtchn, grant, sched, time, vcpu};
use pvabi::{Error, StartInfo};

pvabi::entry_point!(main);

macro_rules! fail {
    ($($t:tt)*) => {{
        pvabi::println!("exhaust: FAILED {}", format_args!($($t)*));
        return 1;
    }};
}

/// A page of our own to grant over and over.
#[repr(C, align(4096))]
struct Page([u8; 4096]);
static PAGE: Page = Page([0; 4096]);

/// Stacks for the extra vCPUs (they only block).
static STACKS: [vcpu::VcpuStack<4096>; 3] = [
    vcpu::VcpuStack::new(),
    vcpu::VcpuStack::new(),
    vcpu::VcpuStack::new(),
];

/// What an extra vCPU runs: block for good.
extern "sysv64" fn parked(_arg: u64) -> ! {
    loop {
        let _ = sched::block(None);
    }
}

fn main(si: &StartInfo) -> i32 {
    let peer = num_arg(si, "peer", 0) as u32;
    let out = num_arg(si, "console", 4096) as usize;
    if flag(si, "innocent") {
        return innocent(peer, num_arg(si, "rounds", 50));
    }
    let rendezvous = if flag(si, "first") {
        evtchn::alloc_unbound(peer)
    } else {
        bind_retry(peer, num_arg(si, "port", 1) as u32)
    };
    let rendezvous = match rendezvous {
        Ok(p) => p,
        Err(e) => fail!("rendezvous with {peer}: {e:?}"),
    };
    let mut enomem = 0u32;
    let mut ports = 0u32;
    let port_err = loop {
        match evtchn::alloc_unbound(peer) {
            Ok(_) => ports += 1,
            Err(e) => break e,
        }
    };
    if port_err != Error::NoMem {
        fail!("ports refused with {port_err:?}, not ENOMEM");
    }
    enomem += 1;
    let ceiling = pvabi::GRANT_MAX_CEILING as u32;
    if let Err(e) = grant::set_max(ceiling, ceiling) {
        fail!("raising the grant limits: {e:?}");
    }
    let gpa = &raw const PAGE as u64;
    let mut grants = 0u32;
    let grant_err = loop {
        match grant::access(gpa, peer, true) {
            Ok(_) => grants += 1,
            Err(e) => break e,
        }
    };
    if grant_err != Error::NoMem {
        fail!("grants refused with {grant_err:?}, not ENOMEM");
    }
    enomem += 1;
    let mut vcpus = 1u32;
    let mut vcpu_err = "-";
    if flag(si, "vcpus") {
        for (i, stack) in (1..si.nr_vcpus).zip(STACKS.iter()) {
            let Some(stack) = stack.take() else {
                fail!("vCPU {i}: no stack");
            };
            match vcpu::start(i, parked, stack, 0) {
                Ok(()) => vcpus += 1,
                Err(Error::NoMem) => {
                    enomem += 1;
                    vcpu_err = "ENOMEM";
                    break;
                }
                Err(e) => fail!("vCPU {i} up: {e:?}"),
            }
        }
    }
    if flag(si, "timers") && sched::set_timer(Some(time::now_ns() + 3_600_000_000_000)).is_err() {
        fail!("arming a timer");
    }
    pvabi::println!(
        "exhaust: ports={ports} ENOMEM grants={grants} ENOMEM vcpus={vcpus} {vcpu_err}"
    );
    // Both hold everything now: only then does either write.
    // The peer may not have bound the port yet (`EBUSY` until it has).
    let deadline = time::now_ns() + 10_000_000_000;
    loop {
        match evtchn::send(rendezvous) {
            Ok(()) => break,
            Err(Error::Busy) if time::now_ns() < deadline => {
                let _ = time::sleep_ns(1_000_000);
            }
            Err(e) => fail!("rendezvous send to {peer}: {e:?}"),
        }
    }
    // The peer answers when it is ready (a control domain may be busy
    // creating domains): up to a minute.
    if !(0..6).any(|_| wait_port(rendezvous)) {
        fail!("no rendezvous with {peer}");
    }
    // Ordinary console writes of up to 4 KiB each (one hypercall each):
    // lines of 63 `x` and a newline.
    let mut chunk = [b'x'; 4096];
    for line in chunk.chunks_mut(64) {
        if let Some(last) = line.last_mut() {
            *last = b'\n';
        }
    }
    let mut written = 0usize;
    while written < out {
        let n = (out - written).min(chunk.len());
        match console::write(&chunk[..n]) {
            Ok(0) => fail!("console write took nothing"),
            Ok(w) => written += w,
            Err(e) => fail!("console write: {e:?}"),
        }
    }
    pvabi::println!("exhaust: wrote {written} console bytes, enomem={enomem}");
    0
}

/// The innocent bystander: ordinary work that must never be refused.
fn innocent(peer: u32, rounds: u64) -> i32 {
    let gpa = &raw const PAGE as u64;
    for round in 0..rounds {
        let port = match evtchn::alloc_unbound(peer) {
            Ok(p) => p,
            Err(e) => fail!("innocent: round {round}: port: {e:?}"),
        };
        let gref = match grant::access(gpa, peer, true) {
            Ok(g) => g,
            Err(e) => fail!("innocent: round {round}: grant: {e:?}"),
        };
        pvabi::println!("exhaust: innocent: round {round}");
        if let Err(e) = time::sleep_ns(2_000_000) {
            fail!("innocent: round {round}: sleep: {e:?}");
        }
        if let Err(e) = evtchn::close(port) {
            fail!("innocent: round {round}: close: {e:?}");
        }
        if let Err(e) = grant::revoke(gref, 0) {
            fail!("innocent: round {round}: revoke: {e:?}");
        }
    }
    pvabi::println!("exhaust: innocent: {rounds} rounds ok");
    0
}
