//! How a disk driver waits for a completion: asleep on the event port its
//! device's MSI-X entry is bound to ([`super::irq::Irq`]), or, as the
//! fallback, by spinning (no MSI-X, the binding or the device refused the
//! entry, or `disk=poll` / `wake=poll` on dom0's command line). The disk's
//! boot line says which ([`Completions::describe`]).
//!
//! The driver keeps the loop: it looks at its completion queue, and if
//! nothing is there calls [`Completions::pause`] with its deadline, then
//! looks again. The sleep is `HC_EVTCHN_SEND_WAIT` on the disk's port
//! (pvabi `evtchn.rs`): it takes that port's pending bit and returns, or
//! returns at once when another port is pending, or at the deadline. A
//! completion that lands between the look and the sleep leaves the port
//! pending, so the sleep returns at once: no wake-up is lost. A pending
//! bit left from a completion already consumed costs one extra look.
//!
//! Disks are driven from inside dom0's service loop (the store, uploads),
//! which sleeps on its own ports (`wake.rs`). When another port wakes a
//! disk wait, the wait takes every pending port (or `SEND_WAIT` would
//! return at once again and the wait would spin) and records that it took
//! some that were not its own; [`take_others`] tells the service loop,
//! which then looks at every source once, as after an unknown port.
//!
//! Counting: QEMU may complete a request inside the doorbell write, so
//! the driver finds it done and never sleeps, and the MSI that arrives
//! anyway only leaves the port pending. [`Completions::drain`] (after the
//! self-check and after each bench workload) takes that bit without
//! sleeping and counts it, so the count is of completion interrupts that
//! came, whether or not a waiter was parked (coalesced: several MSIs while
//! nobody looked leave one pending bit, so it is a lower bound).

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicBool, Ordering};

use pvabi::guest::evtchn;

use super::irq::Irq;

/// A disk wait took ports that were not its own (module doc).
static OTHERS: AtomicBool = AtomicBool::new(false);

/// Whether a disk wait took other ports since the last call (and clears
/// the flag): then every source of the service loop may have work.
pub fn take_others() -> bool {
    OTHERS.swap(false, Ordering::AcqRel)
}

/// How one disk's completions are waited for.
#[derive(Debug)]
pub struct Completions {
    /// `Ok`: woken by this entry; `Err`: why the disk is polled.
    irq: Result<Irq, String>,
    /// Times the disk's port was found pending (by a wait or by
    /// [`Self::drain`]): completion interrupts seen, coalesced.
    interrupts: u64,
    /// Of those, found by [`Self::drain`]: interrupts that came while no
    /// wait was parked.
    drained: u64,
}

impl Completions {
    /// Woken by `irq`.
    pub fn by(irq: Irq) -> Self {
        Self {
            irq: Ok(irq),
            interrupts: 0,
            drained: 0,
        }
    }

    /// Polled, because `why`.
    pub fn polled(why: impl Into<String>) -> Self {
        Self {
            irq: Err(why.into()),
            interrupts: 0,
            drained: 0,
        }
    }

    /// Whether completions interrupt.
    pub fn irq(&self) -> Option<&Irq> {
        self.irq.as_ref().ok()
    }

    /// Completion interrupts seen so far.
    pub fn interrupts(&self) -> u64 {
        self.interrupts
    }

    /// Of [`Self::interrupts`], those [`Self::drain`] found.
    pub fn drained(&self) -> u64 {
        self.drained
    }

    /// For the disk's boot line: `completions by MSI-X entry 0 (port 7)`
    /// or `completions polled (why)`.
    pub fn describe(&self) -> String {
        match &self.irq {
            Ok(i) => format!("completions by MSI-X entry {} (port {})", i.entry, i.port),
            Err(why) => format!("completions polled ({why})"),
        }
    }

    /// Waits a little for the device: asleep until its port is pending
    /// or system time reaches `deadline`; polled, one spin.
    pub fn pause(&mut self, deadline: u64) {
        let Ok(irq) = &self.irq else {
            core::hint::spin_loop();
            return;
        };
        let port = irq.port;
        match evtchn::send_wait(None, port, Some(deadline)) {
            Ok(true) => self.interrupts += 1,
            Ok(false) => {
                // Another port, the timer or the deadline (module doc).
                while let Ok(Some(p)) = evtchn::poll() {
                    if p == port {
                        self.interrupts += 1;
                    } else {
                        OTHERS.store(true, Ordering::Release);
                    }
                }
            }
            // The port was closed or masked under us: nothing to sleep
            // on, so this wait spins (the caller's deadline still ends
            // it).
            Err(_) => core::hint::spin_loop(),
        }
    }

    /// Takes the disk's port if it is pending, without sleeping, and
    /// counts it: the MSI of a request found done before any wait
    /// (module doc). `HC_EVTCHN_SEND_WAIT` with a deadline already passed
    /// "looks once, without blocking" (pvabi `evtchn.rs`); system time 1
    /// ns is past on any running domain. Polled: nothing to take.
    pub fn drain(&mut self) {
        let Ok(irq) = &self.irq else { return };
        if let Ok(true) = evtchn::send_wait(None, irq.port, Some(1)) {
            self.interrupts += 1;
            self.drained += 1;
        }
    }

    /// Frees the port (the disk is closed or given up).
    pub fn release(self) {
        if let Ok(i) = self.irq {
            i.unbind();
        }
    }
}
