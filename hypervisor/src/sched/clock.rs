//! The system clock guests share.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::platform::{P, Platform};

pub(crate) static TIME_MUL: AtomicU32 = AtomicU32::new(0);
pub(crate) static TIME_SHIFT: AtomicU32 = AtomicU32::new(0);
pub(crate) static TIME_TSC0: AtomicU64 = AtomicU64::new(0);
/// Unix time in nanoseconds at system time 0, the wall-clock base every
/// domain's `TimeInfo` carries; 0 (unknown) until [`set_wall_clock`].
static WALL_BASE_NS: AtomicU64 = AtomicU64::new(0);
/// TSC ticks per nanosecond in 32.32 fixed point, for [`ns_to_ticks`].
static TICKS_PER_NS_FP: AtomicU64 = AtomicU64::new(1 << 32);
/// The clock's scale packed for [`ticks_to_ns`] in one load: the
/// multiplier (bits 0-31), the right shift of the TSC delta before the
/// product (32-39) and of the product (40-47); 0 (time stands still)
/// until [`init_time`], and for a scale outside `pvabi::tsc_to_ns`'s fast
/// range (then [`ticks_to_ns`] takes the general path).
static SCALE: AtomicU64 = AtomicU64::new(0);
/// Bit 48 of [`SCALE`]: the packed form is valid.
const SCALE_PACKED: u64 = 1 << 48;

/// `scale_for`'s `(mul, shift)` packed for [`SCALE`]: `ns = ((delta >>
/// pre) * mul) >> post`, which is `pvabi::tsc_to_ns` for shifts -63..=31.
fn pack(mul: u32, shift: i8) -> u64 {
    let (pre, post) = match shift {
        0..=31 => (0, 32 - shift as u64),
        -63..=-1 => (u64::from(shift.unsigned_abs()), 32),
        _ => return 0,
    };
    u64::from(mul) | pre << 32 | post << 40 | SCALE_PACKED
}

/// Sets the hypervisor's clock: nanoseconds since `tsc0`, at `tsc_hz`.
pub fn init_time(tsc0: u64, tsc_hz: u64) {
    let (mul, shift) = pvabi::scale_for(tsc_hz);
    TIME_MUL.store(mul, Ordering::Relaxed);
    TIME_SHIFT.store(shift as u8 as u32, Ordering::Relaxed);
    SCALE.store(pack(mul, shift), Ordering::Relaxed);
    let fp = (u128::from(tsc_hz) << 32) / 1_000_000_000;
    TICKS_PER_NS_FP.store(fp.clamp(1, u128::from(u64::MAX)) as u64, Ordering::Relaxed);
    TIME_TSC0.store(tsc0, Ordering::Release);
}

/// A TSC span in nanoseconds, at the clock's scale (what guests compute
/// from their `TimeInfo`): one multiplication, where a division by the
/// frequency took a 128-bit division routine (about 60 instructions) on
/// every slice.
#[inline]
pub(crate) fn ticks_to_ns(ticks: u64) -> u64 {
    let s = SCALE.load(Ordering::Relaxed);
    if s & SCALE_PACKED == 0 {
        return pvabi::tsc_to_ns(
            ticks,
            TIME_MUL.load(Ordering::Relaxed),
            TIME_SHIFT.load(Ordering::Relaxed) as u8 as i8,
        );
    }
    let (mul, pre, post) = (s & 0xffff_ffff, (s >> 32) & 0xff, (s >> 40) & 0xff);
    let ns = (u128::from(ticks >> pre) * u128::from(mul)) >> post;
    ns.min(u128::from(u64::MAX)) as u64
}

/// Nanoseconds in TSC ticks (a slice's end), in fixed point: exact to
/// about 1e-9 of the span (at a 1 GHz TSC, exact).
pub(crate) fn ns_to_ticks(ns: u64) -> u64 {
    let t = (u128::from(ns) * u128::from(TICKS_PER_NS_FP.load(Ordering::Relaxed))) >> 32;
    t.min(u128::from(u64::MAX)) as u64
}

/// Sets the wall-clock base from `unix_ns`, the Unix time now (read from
/// the RTC at boot): the base is the Unix time at system time 0. Domains
/// created afterwards see it in their `TimeInfo`.
pub fn set_wall_clock(unix_ns: u64) {
    WALL_BASE_NS.store(unix_ns.saturating_sub(now_ns()).max(1), Ordering::Relaxed);
}

/// The wall-clock base (0: unknown).
pub fn wall_clock_base_ns() -> u64 {
    WALL_BASE_NS.load(Ordering::Relaxed)
}

pub(crate) fn time_info() -> pvabi::TimeInfo {
    let mut t = pvabi::TimeInfo::zeroed();
    t.version = 2;
    t.flags = pvabi::TIME_FLAG_TSC_STABLE;
    t.tsc_timestamp = TIME_TSC0.load(Ordering::Acquire);
    t.system_time_ns = 0;
    t.tsc_to_system_mul = TIME_MUL.load(Ordering::Relaxed);
    t.tsc_shift = TIME_SHIFT.load(Ordering::Relaxed) as u8 as i8;
    t.wall_clock_base_ns = wall_clock_base_ns();
    t
}

/// System time in nanoseconds since boot: the same clock guests read from
/// their `TimeInfo` (`TimeInfo::ns_at` with `system_time_ns` 0), without
/// building one: read on nearly every exit.
#[inline]
pub fn now_ns() -> u64 {
    ns_at(P::tsc())
}

/// System time at TSC value `tsc` (one read already made).
#[inline]
pub fn ns_at(tsc: u64) -> u64 {
    ticks_to_ns(tsc.saturating_sub(TIME_TSC0.load(Ordering::Acquire)))
}
