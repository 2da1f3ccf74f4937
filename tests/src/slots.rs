//! How many emulators run at once: at most one per host core for the runs
//! a test makes on its own thread, so the test command can run more test
//! threads than cores without the emulators sharing cores.
//!
//! Why more threads than cores: many tests read one run ([`crate::shared`]);
//! in name order they come one after the other, so while the first makes
//! the run the next one waits for it and its thread keeps no core busy. A
//! test thread beyond the cores fills that gap; the slots stop it from
//! running a third emulator on two cores when no test waits (each would
//! only be slower, and an SMP guest whose vCPU thread loses its core while
//! holding a lock makes the others spin).
//!
//! Only a run made on a test's own thread (libtest names it after the
//! test) takes a slot, before its deadline starts. A machine a test drives
//! from a thread of its own ([`crate::session::Machine`] and the like) does
//! not wait for one: the test talks to it meanwhile, on deadlines of its
//! own that a wait for a slot would eat.
//!
//! `KESTREL_EMULATORS=N` sets the number (default: the host's cores;
//! `0`: no limit).

use std::sync::{Condvar, Mutex};

struct Slots {
    busy: Mutex<usize>,
    freed: Condvar,
}

static SLOTS: Slots = Slots {
    busy: Mutex::new(0),
    freed: Condvar::new(),
};

/// A slot held until dropped.
pub struct Slot(());

impl Drop for Slot {
    fn drop(&mut self) {
        let mut busy = SLOTS.busy.lock().unwrap_or_else(|e| e.into_inner());
        *busy = busy.saturating_sub(1);
        SLOTS.freed.notify_one();
    }
}

/// The limit: `KESTREL_EMULATORS`, else the host's cores; `None` for no
/// limit. A value that is not a number is refused by name.
fn limit() -> Option<usize> {
    match std::env::var("KESTREL_EMULATORS") {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(_) => panic!("KESTREL_EMULATORS={v:?}: not a number (0 for no limit)"),
        },
        Err(_) => Some(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// Waits for a slot when called on a test's own thread (see the module
/// doc), else returns at once with none.
pub fn take() -> Option<Slot> {
    std::thread::current().name()?;
    let limit = limit()?;
    Some(take_within(limit))
}

fn take_within(limit: usize) -> Slot {
    let mut busy = SLOTS.busy.lock().unwrap_or_else(|e| e.into_inner());
    while *busy >= limit {
        busy = SLOTS.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
    }
    *busy += 1;
    Slot(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    /// One test (the slots are global): six named threads through a limit
    /// of two never hold more than two at once and all get one; then with
    /// two held, a third waits until one is given back.
    #[test]
    fn no_more_than_the_limit_hold_a_slot_at_once() {
        static NOW: AtomicUsize = AtomicUsize::new(0);
        static MOST: AtomicUsize = AtomicUsize::new(0);
        let threads: Vec<_> = (0..6)
            .map(|i| {
                std::thread::Builder::new()
                    .name(format!("t{i}"))
                    .spawn(|| {
                        let _s = take_within(2);
                        let n = NOW.fetch_add(1, Ordering::SeqCst) + 1;
                        MOST.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(10));
                        NOW.fetch_sub(1, Ordering::SeqCst);
                    })
                    .unwrap()
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(MOST.load(Ordering::SeqCst) <= 2, "{MOST:?}");

        static GOT: AtomicBool = AtomicBool::new(false);
        let a = take_within(2);
        let _b = take_within(2);
        let third = std::thread::spawn(|| {
            let s = take_within(2);
            GOT.store(true, Ordering::SeqCst);
            drop(s);
        });
        // Long enough for a third slot to be taken if the limit let it.
        std::thread::sleep(Duration::from_millis(100));
        assert!(!GOT.load(Ordering::SeqCst), "a third slot was taken");
        drop(a);
        third.join().unwrap();
        assert!(GOT.load(Ordering::SeqCst));
    }

    /// A thread a test spawned without a name takes none (nor waits).
    #[test]
    fn an_unnamed_thread_takes_no_slot() {
        let got = std::thread::spawn(|| take().is_some()).join().unwrap();
        assert!(!got);
    }
}
