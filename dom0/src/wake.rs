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

/// What woke dom0: which passes of the service loop have work.
#[derive(Debug, Clone, Copy)]
pub struct Woken {
    /// The management line may hold bytes.
    pub mgmt: bool,
    /// A console ring may hold output.
    pub console: bool,
    /// A domain may have ended, or a timer the service needs is due.
    pub ended: bool,
}

impl Woken {
    /// Every pass (the first one, polling, a deadline).
    pub const ALL: Self = Self {
        mgmt: true,
        console: true,
        ended: true,
    };
}

/// How dom0 waits.
pub struct Wake {
    /// Every source has an event: block until one (or a deadline).
    pub by_event: bool,
    /// The ports of `VIRQ_MGMT_RX`, `VIRQ_CONSOLE_OUT`, `VIRQ_DOM_EXC`.
    ports: [Option<u32>; 3],
}

impl Wake {
    /// Polls every [`POLL_NS`], binding nothing.
    pub fn polling() -> Self {
        Self {
            by_event: false,
            ports: [None; 3],
        }
    }

    /// Binds the virqs on vCPU 0; `why` is what to log when dom0 must poll.
    pub fn bind(mgmt_line: bool) -> (Self, Option<&'static str>) {
        let rx = if mgmt_line {
            evtchn::bind_virq(VIRQ_MGMT_RX, 0).ok()
        } else {
            None
        };
        let console = evtchn::bind_virq(VIRQ_CONSOLE_OUT, 0).ok();
        let ended = evtchn::bind_virq(VIRQ_DOM_EXC, 0).ok();
        let why = if console.is_none() || ended.is_none() {
            Some("the hypervisor offers no console or domain-end virq")
        } else if mgmt_line && rx.is_none() {
            Some("the hypervisor has no interrupt for the management line")
        } else {
            None
        };
        let wake = Self {
            by_event: why.is_none(),
            ports: [rx, console, ended],
        };
        (wake, why)
    }

    /// Blocks until an event, `deadline` (system time) or, when polling,
    /// the next poll; then takes every pending port (so the next event on
    /// any of them notifies again) and says which passes have work.
    pub fn wait(&self, deadline: Option<u64>) -> Woken {
        // A disk wait took ports that were not its own: they are no
        // longer pending, so look at everything now (`dev/completion.rs`).
        if crate::dev::completion::take_others() {
            return Woken::ALL;
        }
        if !self.by_event {
            let poll_at = time::now_ns().saturating_add(POLL_NS);
            let _ = sched::block(Some(deadline.map_or(poll_at, |d| d.min(poll_at))));
            while let Ok(Some(_)) = evtchn::poll() {}
            return Woken::ALL;
        }
        let events = sched::block(deadline).unwrap_or(0);
        let mut woken = Woken {
            mgmt: false,
            console: false,
            ended: events == 0,
        };
        let mut other = false;
        while let Ok(Some(port)) = evtchn::poll() {
            let [rx, console, ended] = self.ports;
            if Some(port) == rx {
                woken.mgmt = true;
            } else if Some(port) == console {
                woken.console = true;
            } else if Some(port) == ended {
                woken.ended = true;
            } else {
                // A port dom0 did not bind for this (a device's
                // interrupt): look at everything, once every pending
                // port is taken.
                other = true;
            }
        }
        if other { Woken::ALL } else { woken }
    }
}
