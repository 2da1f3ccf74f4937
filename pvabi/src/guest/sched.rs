//! The sched op group: [`crate::HC_YIELD`], [`crate::HC_SCHED_BLOCK`],
//! [`crate::HC_SCHED_POLL`], [`crate::HC_SET_TIMER`],
//! [`crate::HC_SHUTDOWN`], and the event-wait loop [`wait_for`].
//!
//! Events are bits in a per-vCPU pending mask ([`crate::EVENT_TIMER`], ...).
//! [`block`] and [`poll`] return the mask and clear it, so a caller that
//! waits for one event but receives others must keep them: [`wait_for`]
//! returns every bit it took.

use super::{hypercall6, status};
use crate::{
    Error, HC_SCHED_BLOCK, HC_SCHED_POLL, HC_SET_TIMER, HC_SHUTDOWN, HC_YIELD, SHUTDOWN_CRASH,
    SHUTDOWN_POWEROFF,
};

/// A deadline as the ABI encodes it: 0 for none; a deadline of 0 (long past)
/// becomes 1, which is past as well.
fn deadline_arg(deadline: Option<u64>) -> u64 {
    deadline.map_or(0, |d| d.max(1))
}

/// Gives up the rest of this vCPU's time slice; the vCPU stays runnable.
pub fn yield_now() {
    let _ = hypercall6(HC_YIELD, [0; 6]);
}

/// Blocks this vCPU until an event is pending for it or system time reaches
/// `deadline` (nanoseconds, see [`super::time::now_ns`]; `None` waits for
/// an event only). Returns the pending-event mask, now cleared; 0 means the
/// deadline passed with no event. Returns at once if an event is already
/// pending or the deadline has passed.
pub fn block(deadline: Option<u64>) -> Result<u64, Error> {
    status(hypercall6(
        HC_SCHED_BLOCK,
        [deadline_arg(deadline), 0, 0, 0, 0, 0],
    ))
}

/// Takes this vCPU's pending-event mask (clearing it) without blocking.
pub fn poll() -> Result<u64, Error> {
    status(hypercall6(HC_SCHED_POLL, [0; 6]))
}

/// Arms this vCPU's single-shot timer to raise [`crate::EVENT_TIMER`] when
/// system time reaches `deadline` (at once if it already has), replacing
/// any earlier deadline; `None` cancels it.
pub fn set_timer(deadline: Option<u64>) -> Result<(), Error> {
    status(hypercall6(
        HC_SET_TIMER,
        [deadline_arg(deadline), 0, 0, 0, 0, 0],
    ))
    .map(|_| ())
}

/// Waits until one of the events in `mask` is pending or system time
/// reaches `deadline` (`None`: no deadline). Returns every event bit taken
/// while waiting, the ones outside `mask` included (they have been cleared
/// from the vCPU and are the caller's to handle): the result has a bit of
/// `mask` set if the wait ended by an event, none if it timed out.
/// A `mask` of 0 with no deadline would wait forever: [`Error::Invalid`].
pub fn wait_for(mask: u64, deadline: Option<u64>) -> Result<u64, Error> {
    if mask == 0 && deadline.is_none() {
        return Err(Error::Invalid);
    }
    let mut got = 0;
    loop {
        let events = block(deadline)?;
        if events == 0 {
            // The hypervisor says the deadline has passed.
            return Ok(got);
        }
        got |= events;
        if got & mask != 0 {
            return Ok(got);
        }
    }
}

/// Ends the domain with `reason` ([`SHUTDOWN_POWEROFF`] or
/// [`SHUTDOWN_CRASH`]) and exit `code`; never returns. An unknown reason is
/// reported as a crash.
pub fn shutdown(reason: u64, code: i64) -> ! {
    loop {
        let _ = hypercall6(HC_SHUTDOWN, [reason, code as u64, 0, 0, 0, 0]);
        // Only an invalid reason returns; crash instead.
        let _ = hypercall6(HC_SHUTDOWN, [SHUTDOWN_CRASH, code as u64, 0, 0, 0, 0]);
    }
}

/// Powers the domain off with exit `code`; never returns.
pub fn poweroff(code: i64) -> ! {
    shutdown(SHUTDOWN_POWEROFF, code)
}

/// Shuts the domain down as crashed with exit `code`; never returns.
pub fn crash(code: i64) -> ! {
    shutdown(SHUTDOWN_CRASH, code)
}
