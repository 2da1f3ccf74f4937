//! The time op group: the paravirtual clock ([`crate::TimeInfo`]), read with
//! no exit, and sleeping built on [`super::sched`].
//!
//! System time is nanoseconds since the hypervisor started, the clock every
//! deadline uses; wall-clock time ([`wall_clock_ns`], [`utc_now`]) is the
//! boot's wall-clock base plus system time.

use core::sync::atomic::{AtomicU64, Ordering};

use super::{sched, sys};
use crate::{Error, TimeInfo};

/// The latest time any vCPU has read, for clocks without
/// [`crate::TIME_FLAG_TSC_STABLE`].
static LAST: AtomicU64 = AtomicU64::new(0);

/// System time now, in nanoseconds, read from the PV clock with no exit
/// (retrying while the hypervisor updates it). Never goes backwards, on one
/// vCPU or across vCPUs: with a stable TSC the hypervisor guarantees it;
/// without, the reading is clamped to the latest one any vCPU has seen.
/// Returns 0 when the domain has no clock (a start info without a sane
/// `time_info_gpa`; see [`has_clock`]).
pub fn now_ns() -> u64 {
    let Some((info, tsc)) = sys::clock_sample() else {
        return 0;
    };
    let now = info.ns_at(tsc);
    if info.tsc_stable() {
        now
    } else {
        LAST.fetch_max(now, Ordering::Relaxed).max(now)
    }
}

/// Wall-clock time now, Unix nanoseconds (UTC): the boot's wall-clock base
/// ([`TimeInfo::wall_clock_base_ns`], from the CMOS RTC) plus system time.
/// `None` when the hypervisor knows no wall-clock time (no RTC, or a
/// hypervisor older than the field) or the domain has no clock.
pub fn wall_clock_ns() -> Option<u64> {
    let (info, tsc) = sys::clock_sample()?;
    info.wall_clock_ns_at(tsc)
}

/// Wall-clock time now as a calendar date in UTC (its `Display` is ISO
/// 8601, `2020-01-02T03:04:05Z`); `None` as for [`wall_clock_ns`].
pub fn utc_now() -> Option<crate::UtcTime> {
    wall_clock_ns().map(crate::UtcTime::from_unix_ns)
}

/// Whether the domain has a PV clock (always, under a 1.0 hypervisor).
pub fn has_clock() -> bool {
    sys::clock_sample().is_some()
}

/// A consistent copy of the PV clock's parameters, or `None` without a
/// clock.
pub fn time_info() -> Option<TimeInfo> {
    sys::clock_sample().map(|(info, _)| info)
}

/// The time-stamp counter, read in order with the loads before it
/// (`LFENCE; RDTSC`).
pub fn read_tsc() -> u64 {
    sys::read_tsc()
}

/// Blocks until system time reaches `deadline`. Returns the events taken
/// while sleeping (see [`sched::wait_for`]: they are cleared, and the
/// caller's to handle); an event does not end the sleep early.
pub fn sleep_until(deadline: u64) -> Result<u64, Error> {
    let mut got = 0;
    loop {
        // The deadline argument of block ends the wait without touching the
        // vCPU's timer, so a timer the caller armed keeps running.
        let events = sched::block(Some(deadline))?;
        if events == 0 {
            return Ok(got);
        }
        got |= events;
        if now_ns() >= deadline {
            return Ok(got);
        }
    }
}

/// Blocks for `ns` nanoseconds; see [`sleep_until`].
pub fn sleep_ns(ns: u64) -> Result<u64, Error> {
    sleep_until(now_ns().saturating_add(ns))
}
