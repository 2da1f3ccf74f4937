//! A domain's life on the host, CPUs as threads: create, pause, unpause
//! and destroy with live grants and event channels, after which every
//! frame is back, no port is left bound to it and no mapping of its pages
//! is left in another domain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::vec;
use std::vec::Vec;

use pvabi::{
    EVENT_CHANNEL, HC_EVTCHN_ALLOC_UNBOUND, HC_EVTCHN_BIND_INTERDOMAIN, HC_EVTCHN_BIND_VIRQ,
    HC_EVTCHN_POLL, HC_EVTCHN_SEND, HC_GRANT_ACCESS, HC_GRANT_MAP, HC_GRANT_UNMAP, HC_MEM_RELEASE,
    HC_SCHED_BLOCK, HC_SHUTDOWN, SHUTDOWN_POWEROFF, VIRQ_DOM_EXC,
};

use crate::domain::lifecycle::Run;
use crate::platform::{P, Platform};
use crate::testing::rt::{Machine, domain, vcpu};
use crate::virt::fake::{Guest, step, steps};

/// A page of the granter's, and where the grantee maps it (a hole it
/// makes by releasing its own page there first).
const GRANTED: u64 = 0x30_0000;
const MAPPED_AT: u64 = 0x31_0000;
const PATTERN: &[u8] = b"granted page";
const REPLY: &[u8] = b"written by the grantee";

/// What the two guests and the test tell each other (-1: not yet).
struct Meet {
    a: AtomicI64,
    b: AtomicI64,
    gref: AtomicI64,
    port_a: AtomicI64,
    port_b: AtomicI64,
    handle: AtomicI64,
    /// Entries of A's vCPU (it must not run while paused).
    a_runs: AtomicU64,
    /// Events A saw after it was unpaused.
    a_events: AtomicU64,
    /// Set by the test: B goes on to its after-the-death checks.
    go: AtomicI64,
    /// B's findings after A died: what it read at MAPPED_AT, the send's status.
    b_after_read: AtomicU64,
    b_after_send: AtomicI64,
}

impl Default for Meet {
    fn default() -> Self {
        let n = || AtomicI64::new(-1);
        Self {
            a: n(),
            b: n(),
            gref: n(),
            port_a: n(),
            port_b: n(),
            handle: n(),
            a_runs: AtomicU64::new(0),
            a_events: AtomicU64::new(0),
            go: n(),
            b_after_read: AtomicU64::new(u64::MAX),
            b_after_send: AtomicI64::new(0),
        }
    }
}

fn ready(x: &AtomicI64) -> Option<u64> {
    let v = x.load(Ordering::Acquire);
    (v >= 0).then_some(v as u64)
}

/// The granter: shares a page with B and offers B a port, then waits for
/// events (counting them).
fn granter(m: Arc<Meet>) -> crate::virt::fake::Program {
    let (m1, m2, m3, m4) = (m.clone(), m.clone(), m.clone(), m.clone());
    let prog = steps(vec![
        step(move |g: &mut Guest<'_>| {
            let b = ready(&m1.b)?;
            g.write(GRANTED, PATTERN).unwrap();
            Some(g.hypercall(HC_GRANT_ACCESS, &[GRANTED, b, 0]))
        }),
        step(move |g: &mut Guest<'_>| {
            assert!(g.status() >= 0, "grant access: {}", g.status());
            m2.gref.store(g.status(), Ordering::Release);
            let b = ready(&m2.b)?;
            Some(g.hypercall(HC_EVTCHN_ALLOC_UNBOUND, &[b]))
        }),
        step(move |g: &mut Guest<'_>| {
            assert!(g.status() > 0, "alloc unbound: {}", g.status());
            m3.port_a.store(g.status(), Ordering::Release);
            Some(g.hypercall(HC_EVTCHN_POLL, &[]))
        }),
    ]);
    // Then: blocks for events; counts its entries and the events seen.
    let mut prog = prog;
    Box::new(move |g: &mut Guest<'_>| {
        m4.a_runs.fetch_add(1, Ordering::Relaxed);
        if g.rax() & EVENT_CHANNEL != 0 && ready(&m4.port_a).is_some() {
            m4.a_events.fetch_add(1, Ordering::Relaxed);
        }
        prog(g)
    })
}

/// The grantee: maps A's page into a hole, writes to it, binds to A's
/// port and sends; after A is destroyed, reads the mapping again and
/// sends again, then unmaps and exits.
fn grantee(m: Arc<Meet>) -> crate::virt::fake::Program {
    let ms: Vec<Arc<Meet>> = (0..8).map(|_| m.clone()).collect();
    let [m1, m2, m3, m4, m5, m6, m7, m8] = <[Arc<Meet>; 8]>::try_from(ms).ok().unwrap();
    steps(vec![
        step(move |g: &mut Guest<'_>| {
            ready(&m1.port_a)?;
            Some(g.hypercall(HC_MEM_RELEASE, &[MAPPED_AT, 1]))
        }),
        step(move |g: &mut Guest<'_>| {
            assert_eq!(g.status(), 1, "release");
            let (a, gref) = (ready(&m2.a)?, ready(&m2.gref)?);
            Some(g.hypercall(HC_GRANT_MAP, &[a, gref, MAPPED_AT, 0]))
        }),
        step(move |g: &mut Guest<'_>| {
            assert!(g.status() >= 0, "map: {}", g.status());
            m3.handle.store(g.status(), Ordering::Release);
            let mut seen = [0u8; PATTERN.len()];
            g.read(MAPPED_AT, &mut seen).unwrap();
            assert_eq!(&seen, PATTERN, "the grantee sees the granter's page");
            g.write(MAPPED_AT + 100, REPLY).unwrap();
            let a = ready(&m3.a)?;
            let port = ready(&m3.port_a)?;
            Some(g.hypercall(HC_EVTCHN_BIND_INTERDOMAIN, &[a, port]))
        }),
        step(move |g: &mut Guest<'_>| {
            assert!(g.status() > 0, "bind: {}", g.status());
            m4.port_b.store(g.status(), Ordering::Release);
            Some(g.hypercall(pvabi::HC_YIELD, &[]))
        }),
        // Once the test paused A, send to it.
        step(move |g: &mut Guest<'_>| {
            ready(&m5.go).filter(|&v| v >= 1)?;
            let port = ready(&m5.port_b)?;
            Some(g.hypercall(HC_EVTCHN_SEND, &[port]))
        }),
        step(move |g: &mut Guest<'_>| {
            assert_eq!(g.status(), 0, "send while A is paused");
            m6.go.store(2, Ordering::Release);
            Some(g.hypercall(pvabi::HC_YIELD, &[]))
        }),
        // Once the test destroyed A: the mapping and the port again.
        step(move |g: &mut Guest<'_>| {
            ready(&m8.go).filter(|&v| v >= 3)?;
            let mut seen = [0u8; 8];
            g.read(MAPPED_AT, &mut seen).unwrap();
            m8.b_after_read
                .store(u64::from_le_bytes(seen), Ordering::Release);
            let port = ready(&m8.port_b)?;
            Some(g.hypercall(HC_EVTCHN_SEND, &[port]))
        }),
        step(move |g: &mut Guest<'_>| {
            m7.b_after_send.store(g.status(), Ordering::Release);
            let h = ready(&m7.handle)?;
            Some(g.hypercall(HC_GRANT_UNMAP, &[h]))
        }),
        step(move |g: &mut Guest<'_>| {
            assert_eq!(g.status(), 0, "unmap after the granter died");
            Some(g.hypercall(HC_SHUTDOWN, &[SHUTDOWN_POWEROFF, 0]))
        }),
    ])
}

#[test]
fn pause_unpause_and_destroy_with_live_grants_and_ports() {
    let m = Machine::start(2);
    let meet = Arc::new(Meet::default());
    let (ma, mb) = (meet.clone(), meet.clone());
    let a = m.create("granter", 1, false, move |_| granter(ma.clone()));
    let b = m.create("grantee", 1, false, move |_| grantee(mb.clone()));
    meet.a.store(i64::from(a), Ordering::Release);
    meet.b.store(i64::from(b), Ordering::Release);
    m.wait("the port bound both ways", || ready(&meet.port_b).is_some());

    // The grantee's write went to the granter's own frame.
    let da = domain(a).unwrap();
    let mut back = [0u8; REPLY.len()];
    crate::hypercall::GuestRead::read(&da.inner.lock().mem, GRANTED + 100, &mut back).unwrap();
    assert_eq!(&back, REPLY);

    // Paused, A does not run; an event for it leaves it runnable but not
    // queued; unpaused, it runs and sees the event.
    let va = vcpu(a, 0).unwrap();
    crate::sched::live::pause(&da);
    m.wait("A to stop running", || va.st.lock().run != Run::Running);
    let runs = meet.a_runs.load(Ordering::Acquire);
    meet.go.store(1, Ordering::Release);
    m.wait("B's send to the paused A", || ready(&meet.go) == Some(2));
    {
        let st = va.st.lock();
        assert!(
            matches!(st.run, Run::Runnable | Run::Blocked { .. }),
            "A after the event"
        );
        assert!(
            crate::sched::live::held_blocked(&va),
            "a paused vCPU is not queued"
        );
    }
    assert_eq!(
        meet.a_runs.load(Ordering::Acquire),
        runs,
        "A ran while paused"
    );
    crate::sched::live::unpause(&da);
    m.wait("A to see the event", || {
        meet.a_events.load(Ordering::Acquire) > 0
    });

    // Destroyed while B maps its page and holds a port bound to it.
    let free_before = P::free_frame_count();
    da.finish("destroyed", -1, None);
    drop((da, va));
    m.wait("A gone", || domain(a).is_none());
    // A's memory is back, but for the scratch frame now under B's mapping.
    assert!(P::free_frame_count() > free_before, "A's frames came back");
    meet.go.store(3, Ordering::Release);
    m.wait("B to finish", || domain(b).is_none());
    assert_eq!(
        meet.b_after_read.load(Ordering::Acquire),
        0,
        "B reads a zeroed scratch page where A's page was"
    );
    assert_eq!(
        meet.b_after_send.load(Ordering::Acquire),
        pvabi::EBUSY,
        "A's death left B's port unbound"
    );
    m.wait_all_gone();
    let out = m.stop();
    assert!(!out.contains("[WARN]") && !out.contains("[ERROR]"), "{out}");
    assert!(
        out.contains(&std::format!("id={a} name=granter result=destroyed")),
        "{out}"
    );
    assert!(
        out.contains(&std::format!("id={b} name=grantee result=exited code=0")),
        "{out}"
    );
}

/// A control domain that binds `VIRQ_DOM_EXC` and then blocks with no
/// deadline, taking its ports each time it wakes: `port` is the virq's
/// port once bound, `seen` counts the times it found that port pending.
fn dom_exc_watcher(port: Arc<AtomicI64>, seen: Arc<AtomicU64>) -> crate::virt::fake::Program {
    let mut state = 0;
    Box::new(move |g: &mut Guest<'_>| match state {
        0 => {
            state = 1;
            g.hypercall(HC_EVTCHN_BIND_VIRQ, &[u64::from(VIRQ_DOM_EXC), 0])
        }
        1 => {
            assert!(g.status() > 0, "bind VIRQ_DOM_EXC: {}", g.status());
            port.store(g.status(), Ordering::Release);
            state = 2;
            g.hypercall(HC_SCHED_BLOCK, &[0])
        }
        2 => {
            // Woken: take the pending ports.
            state = 3;
            g.hypercall(HC_EVTCHN_POLL, &[])
        }
        _ => {
            if g.status() > 0 {
                if g.status() == port.load(Ordering::Acquire) {
                    seen.fetch_add(1, Ordering::AcqRel);
                }
                g.hypercall(HC_EVTCHN_POLL, &[])
            } else {
                state = 2;
                g.hypercall(HC_SCHED_BLOCK, &[0])
            }
        }
    })
}

/// `VIRQ_DOM_EXC` comes again once the ended domain's report is kept:
/// the report is written when its last reference goes, which may be well
/// after `finish` raised the virq, and dom0 records the end from it. With
/// only the first raise, a dom0 that looked in between blocked with
/// nothing left to wake it (`dom0_qemu_console` saw the end 59 s late).
#[test]
fn dom_exc_again_once_the_end_report_is_kept() {
    let m = Machine::start(2);
    let port = Arc::new(AtomicI64::new(-1));
    let seen = Arc::new(AtomicU64::new(0));
    let (p, s) = (port.clone(), seen.clone());
    let ctl = m.create_as("ctl", 1, false, true, move |_| {
        dom_exc_watcher(p.clone(), s.clone())
    });
    m.wait("the virq bound", || ready(&port).is_some());
    let vc = vcpu(ctl, 0).unwrap();
    let blocked = || matches!(vc.st.lock().run, Run::Blocked { .. });
    m.wait("the watcher blocked", blocked);

    let victim = m.create("victim", 1, false, |_| steps(vec![]));
    let dv = domain(victim).unwrap();
    dv.finish("destroyed", -1, None);
    // The test holds the last reference: the domain leaves the table, but
    // its report is not kept yet.
    m.wait("the victim out of the table", || domain(victim).is_none());
    m.wait("the first VIRQ_DOM_EXC taken", || {
        seen.load(Ordering::Acquire) >= 1 && blocked()
    });
    assert!(
        crate::domain::ended::get(victim).is_none(),
        "the report is kept only at the last drop"
    );
    let first = seen.load(Ordering::Acquire);

    drop(dv);
    assert!(crate::domain::ended::get(victim).is_some(), "report kept");
    m.wait("VIRQ_DOM_EXC again for the kept report", || {
        seen.load(Ordering::Acquire) > first
    });

    drop(vc);
    let c = domain(ctl).unwrap();
    c.finish("destroyed", -1, None);
    drop(c);
    m.wait_all_gone();
    let out = m.stop();
    assert!(!out.contains("[WARN]") && !out.contains("[ERROR]"), "{out}");
}
