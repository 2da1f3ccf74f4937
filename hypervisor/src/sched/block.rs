//! What `HC_SCHED_BLOCK` returns to a vCPU that blocked and was woken.
//!
//! The ABI (`pvabi::HC_SCHED_BLOCK`) returns the pending-event mask, and 0
//! only when the deadline has passed: `pvabi::guest::time::sleep_until`
//! trusts a 0 to mean "your deadline is here" and ends the sleep. So a
//! blocked vCPU that is resumed must get either its events or, with none,
//! a deadline that really passed; anything else (woken with no event bit
//! before its deadline, by whichever path) must put it back to sleep
//! rather than hand it a 0. Pure logic, host-tested; the runtime calls it
//! with the resuming CPU's clock (`arch/sched/mod.rs`, `run_slice`).

/// What a woken vCPU that blocked with `deadline` (0: none) gets, with
/// `pending` the events taken from it and `now` the system time:
/// `Some(rax)` to resume it with, or `None` to block it again (no event,
/// and its deadline not reached yet or none at all).
pub fn resume_value(pending: u64, deadline: u64, now: u64) -> Option<u64> {
    if pending != 0 {
        Some(pending)
    } else if deadline != 0 && now >= deadline {
        Some(0)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::resume_value;

    #[test]
    fn events_win_over_everything() {
        assert_eq!(resume_value(2, 0, 0), Some(2));
        assert_eq!(resume_value(3, 100, 50), Some(3));
        assert_eq!(resume_value(1, 100, 500), Some(1));
    }

    #[test]
    fn zero_only_once_the_deadline_passed() {
        assert_eq!(resume_value(0, 100, 100), Some(0));
        assert_eq!(resume_value(0, 100, 101), Some(0));
        // The early-timer fault: woken a tick before its deadline with no
        // event, a sleeper must not be told its time is up.
        assert_eq!(resume_value(0, 100, 99), None);
        assert_eq!(resume_value(0, 3_000_000_000, 125_000_000), None);
    }

    #[test]
    fn no_deadline_and_no_event_sleeps_on() {
        assert_eq!(resume_value(0, 0, 0), None);
        assert_eq!(resume_value(0, 0, u64::MAX), None);
    }

    /// A guest's `sleep_until` loop over every wake-up order: whatever
    /// mix of spurious wake-ups (no event, before the deadline) and events
    /// the runtime produces, the sleep ends at or after the deadline.
    #[test]
    fn a_sleep_never_ends_early() {
        let deadline = 1_000;
        for spurious_every in 1..20u64 {
            let mut now = 0;
            let ended = loop {
                now += spurious_every * 37;
                let events = if now % 3 == 0 { 2 } else { 0 };
                match resume_value(events, deadline, now) {
                    Some(0) => break now,
                    Some(_) if now >= deadline => break now,
                    _ => {}
                }
            };
            assert!(ended >= deadline, "sleep ended at {ended} < {deadline}");
        }
    }
}
