//! The exit path's locks, counted on the host (issue 11: "no global lock
//! on the exit path"). A counting [`Hook`] on the CPU thread that runs
//! the guest sees every `sync::Mutex` the real run loop takes there; the
//! clock is frozen, so no timer interrupt (and no tick's scheduler or
//! timer-list work) falls between two exits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::boxed::Box;
use std::format;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pvabi::{HC_SHUTDOWN, HC_YIELD, SHUTDOWN_POWEROFF};

use crate::platform::host;
use crate::sched::clock::now_ns;
use crate::sync::{Hook, set_hook};
use crate::testing::rt::Machine;
use crate::virt::fake::Guest;

/// Counts the locks let go on the threads it is set on.
#[derive(Default)]
struct Locks(AtomicU64);

impl Hook for Locks {
    fn point(&self) {}
    fn blocked(&self) {
        std::thread::yield_now();
    }
    fn released(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A hypercall the hypervisor does not know (`ENOSYS` at once, as the
/// `hcbench` guest measures it).
const UNKNOWN: u64 = 0xdead;

/// 1,000 plain hypercalls: between the guest's return from one and its
/// next, the run loop takes no lock at all, global or not (no scheduler
/// lock, no timer list, no domain table).
#[test]
fn a_plain_hypercall_takes_no_lock_on_the_exit_path() {
    const CALLS: u64 = 1_000;
    let m = Machine::start(1);
    let locks = Arc::new(Locks::default());
    let worst = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let (l, w, c) = (locks.clone(), worst.clone(), calls.clone());
    let id = m.create("plain", 1, false, move |_| {
        let (l, w, c) = (l.clone(), w.clone(), c.clone());
        let mut last = 0;
        Box::new(move |g: &mut Guest<'_>| {
            let n = c.fetch_add(1, Ordering::Relaxed);
            if n == CALLS + 1 {
                // The hook does count: the yield took the vCPU's state
                // lock and the scheduler's.
                assert!(l.0.load(Ordering::Relaxed) > last, "a yield took no lock");
                set_hook(None);
                host::freeze_time(None);
                return g.hypercall(HC_SHUTDOWN, &[SHUTDOWN_POWEROFF, 0]);
            }
            if n == 0 {
                host::freeze_time(Some(now_ns()));
                set_hook(Some(l.clone()));
            } else {
                assert_eq!(g.status(), pvabi::Error::NoSys.code(), "ENOSYS");
                let now = l.0.load(Ordering::Relaxed);
                w.fetch_max(now - last, Ordering::Relaxed);
            }
            last = l.0.load(Ordering::Relaxed);
            if n == CALLS {
                return g.hypercall(HC_YIELD, &[]);
            }
            g.hypercall(UNKNOWN, &[])
        })
    });
    m.wait_all_gone();
    let out = m.stop();
    assert_eq!(calls.load(Ordering::Relaxed), CALLS + 2);
    assert_eq!(
        worst.load(Ordering::Relaxed),
        0,
        "locks taken between two plain hypercalls"
    );
    assert!(
        out.contains(&format!("id={id} name=plain result=exited code=0")),
        "{out}"
    );
}
