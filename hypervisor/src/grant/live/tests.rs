//! The grant paths between live domains on the host: copy both ways, map
//! read-write and read-only (the grantee reaches the page through its
//! nested page tables, as the CPU does), a revoke deferred while mapped
//! and completed by the unmap with an event to the granter, and a write
//! to a read-only mapping, which kills the grantee.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::vec;

use pvabi::{
    EVENT_CHANNEL, GRANT_COPY_TO_GRANT, GRANT_READONLY, GRANT_REVOKE_DEFERRED, HC_EVTCHN_BIND_IPI,
    HC_EVTCHN_POLL, HC_GRANT_ACCESS, HC_GRANT_COPY, HC_GRANT_MAP, HC_GRANT_REVOKE, HC_GRANT_UNMAP,
    HC_MEM_RELEASE, HC_SCHED_BLOCK,
};

use crate::hypercall::GuestRead;
use crate::testing::rt::{Machine, domain};
use crate::virt::fake::{Guest, Program, step, steps};

const G1: u64 = 0x30_0000;
const G2: u64 = 0x30_1000;
const LOCAL: u64 = 0x30_0000;
const MAP1: u64 = 0x31_0000;
const MAP2: u64 = 0x31_1000;
const PATTERN: &[u8] = b"granted page";
const BACK: &[u8] = b"copy to grant";

/// Values the guests publish (-1: not yet).
struct Meet {
    a: AtomicI64,
    b: AtomicI64,
    gref1: AtomicI64,
    gref2: AtomicI64,
    ipi: AtomicI64,
    handle1: AtomicI64,
    mapped: AtomicI64,
    revoke: AtomicI64,
    copy_while_revoking: AtomicI64,
    revoke_done: AtomicI64,
    map_after_revoke: AtomicI64,
}

impl Default for Meet {
    fn default() -> Self {
        let n = || AtomicI64::new(-1);
        Self {
            a: n(),
            b: n(),
            gref1: n(),
            gref2: n(),
            ipi: n(),
            handle1: n(),
            mapped: n(),
            revoke: n(),
            copy_while_revoking: n(),
            revoke_done: n(),
            map_after_revoke: n(),
        }
    }
}

fn ready(x: &AtomicI64) -> Option<u64> {
    let v = x.load(Ordering::Acquire);
    (v >= 0).then_some(v as u64)
}

fn set(x: &AtomicI64, g: &Guest<'_>) {
    x.store(g.status(), Ordering::Release);
}

fn granter(m: Arc<Meet>) -> Program {
    let m = [(); 7].map(|()| m.clone());
    let [m1, m2, m3, m4, m5, m6, m7] = m;
    steps(vec![
        step(move |g: &mut Guest<'_>| {
            let b = ready(&m1.b)?;
            g.write(G1, PATTERN).unwrap();
            Some(g.hypercall(HC_GRANT_ACCESS, &[G1, b, 0]))
        }),
        step(move |g: &mut Guest<'_>| {
            set(&m2.gref1, g);
            let b = ready(&m2.b)?;
            Some(g.hypercall(HC_GRANT_ACCESS, &[G2, b, GRANT_READONLY]))
        }),
        step(move |g: &mut Guest<'_>| {
            set(&m3.gref2, g);
            Some(g.hypercall(HC_EVTCHN_BIND_IPI, &[0]))
        }),
        step(move |g: &mut Guest<'_>| {
            set(&m4.ipi, g);
            Some(g.hypercall(pvabi::HC_YIELD, &[]))
        }),
        // Once B maps the page: revoke it, asking for an event when done.
        step(move |g: &mut Guest<'_>| {
            ready(&m5.mapped)?;
            let (gref, port) = (ready(&m5.gref1)?, ready(&m5.ipi)?);
            Some(g.hypercall(HC_GRANT_REVOKE, &[gref, port]))
        }),
        step(move |g: &mut Guest<'_>| {
            set(&m6.revoke, g);
            Some(g.hypercall(HC_SCHED_BLOCK, &[0]))
        }),
        step(move |g: &mut Guest<'_>| {
            assert_eq!(g.rax() & EVENT_CHANNEL, EVENT_CHANNEL, "revoke-done event");
            Some(g.hypercall(HC_EVTCHN_POLL, &[]))
        }),
        step(move |g: &mut Guest<'_>| {
            set(&m7.revoke_done, g);
            Some(g.hypercall(pvabi::HC_YIELD, &[]))
        }),
    ])
}

fn grantee(m: Arc<Meet>) -> Program {
    let m = [(); 9].map(|()| m.clone());
    let [m1, m2, m4, m5, m6, m7, m8, m9, m10] = m;
    steps(vec![
        step(move |g: &mut Guest<'_>| {
            let (a, gref) = (ready(&m1.a)?, ready(&m1.gref1)?);
            ready(&m1.gref2)?;
            Some(g.hypercall(HC_GRANT_COPY, &[a, gref, 0, LOCAL, PATTERN.len() as u64, 0]))
        }),
        step(move |g: &mut Guest<'_>| {
            assert_eq!(g.rax(), PATTERN.len() as u64, "copy from the grant");
            let mut got = [0u8; PATTERN.len()];
            g.read(LOCAL, &mut got).unwrap();
            assert_eq!(&got, PATTERN);
            g.write(LOCAL + 0x100, BACK).unwrap();
            let (a, gref) = (ready(&m2.a)?, ready(&m2.gref1)?);
            let args = [a, gref, 0x200, LOCAL + 0x100, BACK.len() as u64];
            Some(g.hypercall(
                HC_GRANT_COPY,
                &[
                    args[0],
                    args[1],
                    args[2],
                    args[3],
                    args[4],
                    GRANT_COPY_TO_GRANT,
                ],
            ))
        }),
        step(move |g: &mut Guest<'_>| {
            assert_eq!(g.rax(), BACK.len() as u64, "copy to the grant");
            Some(g.hypercall(HC_MEM_RELEASE, &[MAP1, 2]))
        }),
        step(move |g: &mut Guest<'_>| {
            assert_eq!(g.rax(), 2, "release the holes");
            let (a, gref) = (ready(&m4.a)?, ready(&m4.gref1)?);
            Some(g.hypercall(HC_GRANT_MAP, &[a, gref, MAP1, 0]))
        }),
        step(move |g: &mut Guest<'_>| {
            set(&m5.handle1, g);
            let mut got = [0u8; PATTERN.len()];
            g.read(MAP1, &mut got).unwrap();
            assert_eq!(&got, PATTERN, "the mapped page is the granter's");
            let (a, gref) = (ready(&m5.a)?, ready(&m5.gref2)?);
            Some(g.hypercall(HC_GRANT_MAP, &[a, gref, MAP2, GRANT_READONLY]))
        }),
        step(move |g: &mut Guest<'_>| {
            assert!(g.status() >= 0, "read-only map: {}", g.status());
            m6.mapped.store(1, Ordering::Release);
            Some(g.hypercall(pvabi::HC_YIELD, &[]))
        }),
        // Once A asked for the revoke: a copy is refused, the unmap ends it.
        step(move |g: &mut Guest<'_>| {
            ready(&m7.revoke)?;
            let (a, gref) = (ready(&m7.a)?, ready(&m7.gref1)?);
            Some(g.hypercall(HC_GRANT_COPY, &[a, gref, 0, LOCAL, 8, 0]))
        }),
        step(move |g: &mut Guest<'_>| {
            set(&m8.copy_while_revoking, g);
            Some(g.hypercall(HC_GRANT_UNMAP, &[ready(&m8.handle1)?]))
        }),
        step(move |g: &mut Guest<'_>| {
            assert_eq!(g.status(), 0, "unmap");
            let (a, gref) = (ready(&m9.a)?, ready(&m9.gref1)?);
            ready(&m9.revoke_done)?;
            Some(g.hypercall(HC_GRANT_MAP, &[a, gref, MAP1, 0]))
        }),
        step(move |g: &mut Guest<'_>| {
            set(&m10.map_after_revoke, g);
            // A write to the read-only mapping: the nested page fault the
            // CPU would take.
            Some(g.write(MAP2, b"x").expect_err("the page is read-only"))
        }),
    ])
}

#[test]
fn grants_copy_map_revoke_and_read_only() {
    let m = Machine::start(2);
    let meet = Arc::new(Meet::default());
    let (ma, mb) = (meet.clone(), meet.clone());
    let a = m.create("granter", 1, false, move |_| granter(ma.clone()));
    let b = m.create("grantee", 1, false, move |_| grantee(mb.clone()));
    meet.a.store(i64::from(a), Ordering::Release);
    meet.b.store(i64::from(b), Ordering::Release);
    m.wait("the grantee killed", || domain(b).is_none());
    assert_eq!(
        meet.revoke.load(Ordering::Acquire) as u64,
        GRANT_REVOKE_DEFERRED,
        "revoke of a mapped grant"
    );
    assert!(
        meet.copy_while_revoking.load(Ordering::Acquire) < 0,
        "copy while revoking"
    );
    assert_eq!(
        meet.revoke_done.load(Ordering::Acquire),
        meet.ipi.load(Ordering::Acquire),
        "the revoke-done event came on the port named"
    );
    assert!(
        meet.map_after_revoke.load(Ordering::Acquire) < 0,
        "map after revoke"
    );
    // The copy to the grant landed in A's own page.
    let da = domain(a).unwrap();
    let mut back = [0u8; BACK.len()];
    da.inner.lock().mem.read(G1 + 0x200, &mut back).unwrap();
    assert_eq!(&back, BACK);
    da.finish("destroyed", -1, None);
    drop(da);
    m.wait_all_gone();
    let out = m.stop();
    let warns: std::vec::Vec<&str> = out.lines().filter(|l| l.starts_with("[WARN]")).collect();
    assert_eq!(warns.len(), 1, "{out}");
    assert!(
        warns[0].contains(&std::format!(
            "domain {b} (grantee) killed: wrote guest-physical {MAP2:#x}"
        )),
        "{out}"
    );
    assert!(!out.contains("[ERROR]"), "{out}");
}
