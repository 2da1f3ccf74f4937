//! Event delivery by upcall (ABI 1.3) between live domains on the host:
//! both sides register a control area and take every event in their
//! upcall handler, as `evuping`/`evupong` do, with CPUs as threads. The
//! scripted vCPU sees the vector the hypervisor injects at entry
//! (`VcpuBackend::set_upcall`), and clears `upcall_pending`, the selector
//! and the pending word in its area with atomic operations, while the
//! hypervisor sets them from other CPUs (and kicks a target that runs in
//! guest mode on another CPU with an IPI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::boxed::Box;
use std::format;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pvabi::{
    EVTCHN_PENDING_OFFSET, HC_EVTCHN_ALLOC_UNBOUND, HC_EVTCHN_BIND_INTERDOMAIN,
    HC_EVTCHN_INIT_CONTROL, HC_EVTCHN_SEND, HC_SCHED_BLOCK, HC_SHUTDOWN, HC_YIELD,
    SHUTDOWN_POWEROFF,
};

use crate::testing::rt::{Machine, domain};
use crate::virt::VmExit;
use crate::virt::fake::{Guest, Program};

/// The control area (5 pages, clear of the image, stack and tables).
const AREA: u64 = 0x38_0000;
const VECTOR: u64 = 0x40;
/// Offset of vCPU 0's selector word 0 in its `EvtchnVcpu` record.
const SELECTOR: u64 = 128;

#[derive(Default)]
struct Meet {
    ping: AtomicU64,
    pong: AtomicU64,
    pong_port: AtomicU64,
    pings_seen: AtomicU64,
    replies_seen: AtomicU64,
}

/// Phases of one side.
enum Phase {
    Init,
    Bind,
    Loop,
    Done,
}

/// One side: registers its area, binds, then lives in its upcall
/// handler. The pinger sends first and again on each reply; the ponger
/// answers each ping.
fn side(meet: Arc<Meet>, rounds: u64, pinger: bool) -> Program {
    let mut phase = Phase::Init;
    let mut port = 0u64;
    let mut got = 0u64;
    Box::new(move |g: &mut Guest<'_>| -> VmExit {
        match phase {
            Phase::Init => {
                phase = Phase::Bind;
                g.hypercall(HC_EVTCHN_INIT_CONTROL, &[AREA, VECTOR])
            }
            Phase::Bind if g.status() == 0 && port == 0 => {
                // INIT_CONTROL done: allocate (ponger) or bind (pinger).
                port = u64::MAX;
                if pinger {
                    return g.hypercall(HC_YIELD, &[]);
                }
                let ping = meet.ping.load(Ordering::Acquire);
                g.hypercall(HC_EVTCHN_ALLOC_UNBOUND, &[ping])
            }
            Phase::Bind if pinger => {
                let theirs = meet.pong_port.load(Ordering::Acquire);
                if theirs == 0 {
                    return g.hypercall(HC_YIELD, &[]);
                }
                if port == u64::MAX {
                    port = u64::MAX - 1;
                    let pong = meet.pong.load(Ordering::Acquire);
                    return g.hypercall(HC_EVTCHN_BIND_INTERDOMAIN, &[pong, theirs]);
                }
                assert!(g.status() > 0, "bind: {}", g.status());
                port = g.rax();
                phase = Phase::Loop;
                g.hypercall(HC_EVTCHN_SEND, &[port])
            }
            Phase::Bind => {
                assert!(g.status() > 0, "alloc: {}", g.status());
                port = g.rax();
                meet.pong_port.store(port, Ordering::Release);
                phase = Phase::Loop;
                g.hypercall(HC_SCHED_BLOCK, &[0])
            }
            Phase::Loop => {
                if g.upcall.is_some() {
                    assert_eq!(g.upcall, Some(VECTOR as u8));
                    // The handler: upcall_pending first, then the selector,
                    // then the pending word (pvabi::EvtchnVcpu's order).
                    g.word(AREA).unwrap().store(0, Ordering::SeqCst);
                    let sel = g.word(AREA + SELECTOR).unwrap().swap(0, Ordering::SeqCst);
                    let word = port / 64;
                    if sel & (1 << word) != 0 {
                        let at = AREA + EVTCHN_PENDING_OFFSET as u64 + word * 8;
                        let bits = g.word(at).unwrap().swap(0, Ordering::SeqCst);
                        if bits & (1 << (port % 64)) != 0 {
                            got += 1;
                            if pinger {
                                meet.replies_seen.store(got, Ordering::Relaxed);
                                if got == rounds {
                                    phase = Phase::Done;
                                    return g.hypercall(HC_SHUTDOWN, &[SHUTDOWN_POWEROFF, 0]);
                                }
                            } else {
                                meet.pings_seen.store(got, Ordering::Relaxed);
                                if got == rounds {
                                    phase = Phase::Done;
                                }
                            }
                            return g.hypercall(HC_EVTCHN_SEND, &[port]);
                        }
                    }
                }
                g.hypercall(HC_SCHED_BLOCK, &[0])
            }
            Phase::Done => g.hypercall(HC_SHUTDOWN, &[SHUTDOWN_POWEROFF, 0]),
        }
    })
}

fn upcall_ping_pong(cpus: usize, rounds: u64) {
    let m = Machine::start(cpus);
    let meet = Arc::new(Meet::default());
    let (a, b) = (meet.clone(), meet.clone());
    let ping = m.create("uping", 1, true, move |_| side(a.clone(), rounds, true));
    let pong = m.create("upong", 1, true, move |_| side(b.clone(), rounds, false));
    meet.ping.store(u64::from(ping), Ordering::Release);
    meet.pong.store(u64::from(pong), Ordering::Release);
    for id in [pong, ping] {
        crate::sched::live::unpause(&domain(id).unwrap());
    }
    m.wait(&format!("{rounds} upcall round trips"), || {
        domain(ping).is_none() && domain(pong).is_none()
    });
    assert_eq!(meet.pings_seen.load(Ordering::Relaxed), rounds);
    assert_eq!(meet.replies_seen.load(Ordering::Relaxed), rounds);
    m.wait_all_gone();
    let out = m.stop();
    assert!(!out.contains("[WARN]") && !out.contains("[ERROR]"), "{out}");
    for (id, name) in [(ping, "uping"), (pong, "upong")] {
        assert!(
            out.contains(&format!("id={id} name={name} result=exited code=0")),
            "{out}"
        );
    }
}

#[test]
fn upcall_ping_pong_on_two_cpus_never_stalls() {
    upcall_ping_pong(2, 3_000);
}

#[test]
fn upcall_ping_pong_on_one_cpu() {
    upcall_ping_pong(1, 1_000);
}
