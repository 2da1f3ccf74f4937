//! The system clock guests share.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::platform::{P, Platform};

static TIME_MUL: AtomicU32 = AtomicU32::new(0);
static TIME_SHIFT: AtomicU32 = AtomicU32::new(0);
static TIME_TSC0: AtomicU64 = AtomicU64::new(0);

/// Sets the hypervisor's clock: nanoseconds since `tsc0`, at `tsc_hz`.
pub fn init_time(tsc0: u64, tsc_hz: u64) {
    let (mul, shift) = pvabi::scale_for(tsc_hz);
    TIME_MUL.store(mul, Ordering::Relaxed);
    TIME_SHIFT.store(shift as u8 as u32, Ordering::Relaxed);
    TIME_TSC0.store(tsc0, Ordering::Release);
}

pub(crate) fn time_info() -> pvabi::TimeInfo {
    let mut t = pvabi::TimeInfo::zeroed();
    t.version = 2;
    t.flags = pvabi::TIME_FLAG_TSC_STABLE;
    t.tsc_timestamp = TIME_TSC0.load(Ordering::Acquire);
    t.system_time_ns = 0;
    t.tsc_to_system_mul = TIME_MUL.load(Ordering::Relaxed);
    t.tsc_shift = TIME_SHIFT.load(Ordering::Relaxed) as u8 as i8;
    t
}

/// System time in nanoseconds since boot: the same clock guests read from
/// their `TimeInfo`.
pub fn now_ns() -> u64 {
    time_info().ns_at(P::tsc())
}
