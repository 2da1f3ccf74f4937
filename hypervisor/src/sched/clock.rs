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
/// The clock's scale in the form [`ticks_to_ns`] computes fastest: `ns =
/// ((delta >> FAST_PRE) * FAST_MUL) >> 32`, one 64x64->128 multiplication
/// and a fixed shift. `FAST_MUL` is the multiplier shifted left by a
/// non-negative shift (below 2^63: the multiplier has 32 bits, the shift
/// at most 31), `FAST_PRE` a negative shift's size. Equal to
/// `pvabi::tsc_to_ns` bit for bit: for 0 <= shift < 32, `(delta * mul)
/// >> (32 - shift)` is `(delta * (mul << shift)) >> 32` (no bit is lost
/// below 2^127). 0 (time stands still) until [`init_time`], and for a
/// scale outside that range (then [`ticks_to_ns`] takes the general path).
static FAST_MUL: AtomicU64 = AtomicU64::new(0);
static FAST_PRE: AtomicU32 = AtomicU32::new(0);

/// `scale_for`'s `(mul, shift)` as `(FAST_MUL, FAST_PRE)`; `(0, 0)` for a
/// shift outside -63..=31.
const fn fast_scale(mul: u32, shift: i8) -> (u64, u32) {
    match shift {
        0..=31 => ((mul as u64) << shift, 0),
        -63..=-1 => (mul as u64, shift.unsigned_abs() as u32),
        _ => (0, 0),
    }
}

/// Sets the hypervisor's clock: nanoseconds since `tsc0`, at `tsc_hz`.
pub fn init_time(tsc0: u64, tsc_hz: u64) {
    let (mul, shift) = pvabi::scale_for(tsc_hz);
    TIME_MUL.store(mul, Ordering::Relaxed);
    TIME_SHIFT.store(shift as u8 as u32, Ordering::Relaxed);
    let (fast_mul, fast_pre) = fast_scale(mul, shift);
    FAST_PRE.store(fast_pre, Ordering::Relaxed);
    FAST_MUL.store(fast_mul, Ordering::Relaxed);
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
    let mul = FAST_MUL.load(Ordering::Relaxed);
    if mul == 0 {
        return pvabi::tsc_to_ns(
            ticks,
            TIME_MUL.load(Ordering::Relaxed),
            TIME_SHIFT.load(Ordering::Relaxed) as u8 as i8,
        );
    }
    fast_ns(ticks, mul, FAST_PRE.load(Ordering::Relaxed))
}

/// `ticks` at the fast scale `(mul, pre)` ([`FAST_MUL`]), saturated.
#[inline(always)]
fn fast_ns(ticks: u64, mul: u64, pre: u32) -> u64 {
    let p = u128::from(ticks >> pre) * u128::from(mul);
    // Past 2^64 ns (584 years) only for a delta that is not a real span.
    if p >> 96 != 0 {
        return u64::MAX;
    }
    (p >> 32) as u64
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

#[cfg(test)]
mod tests {
    use super::{fast_ns, fast_scale};

    /// The fast form gives what guests compute (`pvabi::tsc_to_ns`) for
    /// every scale `scale_for` makes from 1 MHz to 10 GHz, at spans from
    /// one tick to past the saturation point.
    #[test]
    fn the_fast_scale_is_the_guests_clock() {
        let spans = [
            0,
            1,
            999,
            1 << 20,
            3_000_000_007,
            1 << 40,
            (1 << 52) + 12345,
            u64::MAX / 3,
            u64::MAX,
        ];
        let mut hz = 1_000_000u64;
        while hz <= 10_000_000_000 {
            let (mul, shift) = pvabi::scale_for(hz);
            let (fm, pre) = fast_scale(mul, shift);
            assert_ne!(fm, 0, "{hz} Hz: shift {shift} outside the fast range");
            for &d in &spans {
                assert_eq!(
                    fast_ns(d, fm, pre),
                    pvabi::tsc_to_ns(d, mul, shift),
                    "{hz} Hz, {d} ticks"
                );
            }
            hz = hz * 7 / 5 + 1;
        }
    }
}
