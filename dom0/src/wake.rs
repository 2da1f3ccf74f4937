//! What wakes dom0 (issue 15, "an idle host is idle"): it binds
//! `VIRQ_MGMT_RX` (the management line received bytes: the hypervisor
//! takes COM2's receive interrupt), `VIRQ_CONSOLE_OUT` (a domain's console
//! ring got output) and `VIRQ_DOM_EXC` (a domain ended), and then blocks
//! with no deadline while nothing happens, or until the next timer the
//! service needs (a shutdown request's timeout).
//!
//! Where the hypervisor has no interrupt for the management line (binding
//! `VIRQ_MGMT_RX` fails: no I/O APIC, COM2 absent) dom0 polls as before,
//! blocking [`POLL_NS`] between passes, and says so once at start.

use pvabi::guest::{evtchn, sched, time};
use pvabi::{VIRQ_CONSOLE_OUT, VIRQ_DOM_EXC, VIRQ_MGMT_RX};

/// How long dom0 blocks between polls when it has no interrupt (the
/// scheduler's tick is 10 ms, so this is "next tick").
pub const POLL_NS: u64 = 5_000_000;

/// How dom0 waits.
pub struct Wake {
    /// Every source has an event: block until one (or a deadline).
    pub by_event: bool,
}

impl Wake {
    /// Binds the virqs on vCPU 0; `why` is what to log when dom0 must poll.
    pub fn bind(mgmt_line: bool) -> (Self, Option<&'static str>) {
        let console = evtchn::bind_virq(VIRQ_CONSOLE_OUT, 0).is_ok();
        let ended = evtchn::bind_virq(VIRQ_DOM_EXC, 0).is_ok();
        let rx = !mgmt_line || evtchn::bind_virq(VIRQ_MGMT_RX, 0).is_ok();
        let why = if !console || !ended {
            Some("the hypervisor offers no console or domain-end virq")
        } else if !rx {
            Some("the hypervisor has no interrupt for the management line")
        } else {
            None
        };
        (
            Self {
                by_event: why.is_none(),
            },
            why,
        )
    }

    /// Blocks until an event, `deadline` (system time) or, when polling,
    /// the next poll; then takes every pending port, so the next event
    /// on any of them notifies again.
    pub fn wait(&self, deadline: Option<u64>) {
        let poll_at = time::now_ns().saturating_add(POLL_NS);
        let until = if self.by_event {
            deadline
        } else {
            Some(deadline.map_or(poll_at, |d| d.min(poll_at)))
        };
        let _ = sched::block(until);
        while let Ok(Some(_)) = evtchn::poll() {}
    }
}
