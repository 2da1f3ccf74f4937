//! Counting a guest's own instructions between hypercalls, for benchmarks
//! under an emulator whose TSC advances one per instruction (QEMU TCG
//! `-icount shift=0`, Bochs with `clock: sync=none`).
//!
//! While metering is on, every hypercall made through [`super::hypercall6`]
//! (so every wrapper of this runtime) reads the TSC just before the
//! hypercall instruction and just after it returns; the ticks in between
//! hypercalls are the guest's. The rest of the machine's ticks over the same
//! span are the hypervisor's and other domains'. About five instructions of
//! the meter itself per call land on the hypervisor's side. For one vCPU
//! (the counters are shared by the domain's vCPUs).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::sys::read_tsc;

static ON: AtomicBool = AtomicBool::new(false);
static GUEST: AtomicU64 = AtomicU64::new(0);
static LAST: AtomicU64 = AtomicU64::new(0);
static CALLS: AtomicU64 = AtomicU64::new(0);

/// What [`stop`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metered {
    /// TSC ticks spent in the guest (outside hypercalls) since [`start`].
    pub guest_ticks: u64,
    /// Hypercalls made since [`start`].
    pub calls: u64,
}

/// Starts counting (from zero).
pub fn start() {
    GUEST.store(0, Ordering::Relaxed);
    CALLS.store(0, Ordering::Relaxed);
    LAST.store(read_tsc(), Ordering::Relaxed);
    ON.store(true, Ordering::Relaxed);
}

/// Stops counting and reports.
pub fn stop() -> Metered {
    before_call();
    ON.store(false, Ordering::Relaxed);
    Metered {
        guest_ticks: GUEST.load(Ordering::Relaxed),
        calls: CALLS.load(Ordering::Relaxed).saturating_sub(1),
    }
}

#[inline(always)]
pub(super) fn before_call() {
    if ON.load(Ordering::Relaxed) {
        let now = read_tsc();
        GUEST.fetch_add(
            now.wrapping_sub(LAST.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        CALLS.fetch_add(1, Ordering::Relaxed);
    }
}

#[inline(always)]
pub(super) fn after_call() {
    if ON.load(Ordering::Relaxed) {
        LAST.store(read_tsc(), Ordering::Relaxed);
    }
}
