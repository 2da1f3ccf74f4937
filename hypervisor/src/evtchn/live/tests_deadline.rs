//! `HC_EVTCHN_SEND_WAIT` with a deadline already passed, through the real
//! run loop on one CPU: the call does not read the clock, it blocks, and
//! the run loop resumes it at once (`run_picked`) with RAX 0 from
//! `wake_value`. Its send is not lost: a peer waiting for the port it
//! raised is woken with that port, the handoff dropped by the resume.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::boxed::Box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pvabi::{
    HC_EVTCHN_ALLOC_UNBOUND, HC_EVTCHN_BIND_INTERDOMAIN, HC_EVTCHN_SEND_WAIT, HC_SHUTDOWN,
    HC_YIELD, SHUTDOWN_POWEROFF,
};

use crate::domain::lifecycle::Run;
use crate::testing::rt::{Machine, domain, vcpu};
use crate::virt::VmExit;
use crate::virt::fake::Guest;

/// Not yet seen.
const NONE: u64 = u64::MAX;

fn shutdown(g: &mut Guest<'_>) -> VmExit {
    g.hypercall(HC_SHUTDOWN, &[SHUTDOWN_POWEROFF, 0])
}

fn finish(m: Machine) {
    m.wait_all_gone();
    let out = m.stop();
    assert!(!out.contains("lost wake-up"), "{out}");
    // An early wake (a resume with nothing before its deadline) warns.
    assert!(!out.contains("[WARN]") && !out.contains("[ERROR]"), "{out}");
}

/// Nothing ready, nothing sent: RAX 0 (not an error, not a port).
#[test]
fn a_passed_deadline_answers_zero() {
    let got = Arc::new(AtomicU64::new(NONE));
    let m = Machine::start(1);
    let g2 = got.clone();
    let id = m.create("late", 1, true, move |_| {
        let got = g2.clone();
        let mut step = 0;
        Box::new(move |g: &mut Guest<'_>| {
            step += 1;
            match step {
                1 => g.hypercall(HC_EVTCHN_ALLOC_UNBOUND, &[0]),
                2 => {
                    assert!(g.status() > 0, "alloc_unbound: {}", g.status());
                    let p = g.rax();
                    // 1 ns after boot: long passed.
                    g.hypercall(HC_EVTCHN_SEND_WAIT, &[0, p, 1])
                }
                _ => {
                    got.store(g.rax(), Ordering::Release);
                    shutdown(g)
                }
            }
        })
    });
    crate::sched::live::unpause(&domain(id).unwrap());
    m.wait("the late wait returned", || {
        got.load(Ordering::Acquire) != NONE
    });
    assert_eq!(got.load(Ordering::Acquire), 0);
    finish(m);
}

/// W waits for its port `pw` with no deadline; S, once W is blocked,
/// sends to it and waits for its own port with a passed deadline. S gets
/// 0; W gets `pw` (handed to it by the send, woken when S's resume
/// dropped the handoff).
#[test]
fn a_passed_deadline_answers_zero_and_the_send_still_wakes_the_peer() {
    let pw = Arc::new(AtomicU64::new(0));
    let w_got = Arc::new(AtomicU64::new(NONE));
    let s_got = Arc::new(AtomicU64::new(NONE));
    let m = Machine::start(1);
    let (pw1, w1, s1) = (pw.clone(), w_got.clone(), s_got.clone());
    let sid_cell = Arc::new(AtomicU64::new(0));
    let sid1 = sid_cell.clone();
    let wid = m.create("w", 1, true, move |_| {
        let (pw, got, sid, s_got) = (pw1.clone(), w1.clone(), sid1.clone(), s1.clone());
        let mut step = 0;
        Box::new(move |g: &mut Guest<'_>| {
            step += 1;
            match step {
                1 => g.hypercall(HC_EVTCHN_ALLOC_UNBOUND, &[sid.load(Ordering::Acquire)]),
                2 => {
                    assert!(g.status() > 0, "alloc_unbound: {}", g.status());
                    let p = g.rax();
                    pw.store(p, Ordering::Release);
                    g.hypercall(HC_EVTCHN_SEND_WAIT, &[0, p, 0])
                }
                3 => {
                    got.store(g.rax(), Ordering::Release);
                    g.hypercall(HC_YIELD, &[])
                }
                // Its end closes `pw`, which raises S's port: not before S
                // has its answer.
                _ if s_got.load(Ordering::Acquire) == NONE => {
                    step = 3;
                    g.hypercall(HC_YIELD, &[])
                }
                _ => shutdown(g),
            }
        })
    });
    let (pw2, s2) = (pw.clone(), s_got.clone());
    let w = u64::from(wid);
    let sid = m.create("s", 1, true, move |_| {
        let (pw, got) = (pw2.clone(), s2.clone());
        let mut step = 0;
        Box::new(move |g: &mut Guest<'_>| {
            if step == 0 {
                let blocked = vcpu(w as u32, 0)
                    .is_some_and(|v| matches!(v.st.lock().run, Run::Blocked { .. }));
                if pw.load(Ordering::Acquire) == 0 || !blocked {
                    return g.hypercall(HC_YIELD, &[]);
                }
            }
            step += 1;
            match step {
                1 => g.hypercall(HC_EVTCHN_BIND_INTERDOMAIN, &[w, pw.load(Ordering::Acquire)]),
                2 => {
                    assert!(g.status() > 0, "bind_interdomain: {}", g.status());
                    let ps = g.rax();
                    g.hypercall(HC_EVTCHN_SEND_WAIT, &[ps, ps, 1])
                }
                _ => {
                    got.store(g.rax(), Ordering::Release);
                    shutdown(g)
                }
            }
        })
    });
    sid_cell.store(u64::from(sid), Ordering::Release);
    crate::sched::live::unpause(&domain(wid).unwrap());
    crate::sched::live::unpause(&domain(sid).unwrap());
    m.wait("both waits returned", || {
        w_got.load(Ordering::Acquire) != NONE && s_got.load(Ordering::Acquire) != NONE
    });
    assert_eq!(s_got.load(Ordering::Acquire), 0, "the late sender");
    assert_eq!(
        w_got.load(Ordering::Acquire),
        pw.load(Ordering::Acquire),
        "the waiter gets its port"
    );
    finish(m);
}
