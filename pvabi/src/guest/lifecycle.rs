//! Lifecycle requests from the control domain (2.1): a guest learns
//! that it was asked to power off or reboot (`hvctl shutdown|reboot`) and
//! honours the request by ending itself; a guest that ignores it is
//! destroyed by dom0 when the timeout passes.
//!
//! A long-running guest calls [`watch`] once, then sleeps with
//! [`sleep_watching`] instead of [`super::time::sleep_ns`] (the request
//! wakes it at once), or checks [`requested`] whenever it likes:
//!
//! ```ignore
//! let _ = pvabi::guest::lifecycle::watch();
//! loop {
//!     if let Some(req) = pvabi::guest::lifecycle::sleep_watching(100_000_000) {
//!         pvabi::println!("stopping: {}", req.as_str());
//!         pvabi::guest::lifecycle::honour(req, 0);
//!     }
//!     // work
//! }
//! ```

use super::{evtchn, hypercall6, sched, status, time};
use crate::{
    Error, HC_DOMCTL_SET_SCHED, HC_DOMCTL_SHUTDOWN_REQUEST, HC_SHUTDOWN_REQUESTED,
    SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT, SHUTDOWN_REQUEST_POWEROFF, SHUTDOWN_REQUEST_REBOOT,
    VIRQ_SHUTDOWN,
};

/// What the control domain asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Power off: end with [`crate::SHUTDOWN_POWEROFF`].
    PowerOff,
    /// Reboot: end with [`crate::SHUTDOWN_REBOOT`]; dom0 applies the
    /// domain's `on_reboot` policy.
    Reboot,
}

impl Request {
    /// `poweroff` or `reboot`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PowerOff => "poweroff",
            Self::Reboot => "reboot",
        }
    }

    /// The [`HC_DOMCTL_SHUTDOWN_REQUEST`] reason word.
    pub fn word(self) -> u64 {
        match self {
            Self::PowerOff => SHUTDOWN_REQUEST_POWEROFF,
            Self::Reboot => SHUTDOWN_REQUEST_REBOOT,
        }
    }
}

/// What the control domain has asked of this domain, if anything
/// ([`HC_SHUTDOWN_REQUESTED`]). A hypervisor that does not know the call
/// (an older one) asks nothing.
pub fn requested() -> Option<Request> {
    match status(hypercall6(HC_SHUTDOWN_REQUESTED, [0; 6])) {
        Ok(SHUTDOWN_REQUEST_POWEROFF) => Some(Request::PowerOff),
        Ok(SHUTDOWN_REQUEST_REBOOT) => Some(Request::Reboot),
        _ => None,
    }
}

/// Binds [`VIRQ_SHUTDOWN`] on vCPU 0 so a request wakes a blocked vCPU 0;
/// returns the port. Needed once, before [`sleep_watching`].
pub fn watch() -> Result<u32, Error> {
    evtchn::bind_virq(VIRQ_SHUTDOWN, 0)
}

/// Sleeps `ns` nanoseconds, or less when a request arrives (after
/// [`watch`]); returns the request, if any. Other events that arrive are
/// taken and dropped (the caller owns none while it sleeps here), and do
/// not end the sleep early.
pub fn sleep_watching(ns: u64) -> Option<Request> {
    let deadline = time::now_ns().saturating_add(ns);
    loop {
        if let Some(r) = requested() {
            return Some(r);
        }
        // The request is recorded before the virq is raised, and block
        // returns at once if the event is already pending, so nothing
        // between the check above and the block is missed.
        match sched::block(Some(deadline)) {
            Ok(0) | Err(_) => return requested(),
            Ok(_) => while let Ok(Some(_)) = evtchn::poll() {},
        }
        if time::now_ns() >= deadline {
            return requested();
        }
    }
}

/// Ends the domain as the request asks, with exit `code`; never returns.
pub fn honour(req: Request, code: i64) -> ! {
    match req {
        Request::PowerOff => sched::shutdown(SHUTDOWN_POWEROFF, code),
        Request::Reboot => reboot(code),
    }
}

/// Ends the domain asking to be restarted ([`SHUTDOWN_REBOOT`]) with exit
/// `code`; never returns. A hypervisor that does not know the reason
/// (older than this call) ends the domain as crashed.
pub fn reboot(code: i64) -> ! {
    sched::shutdown(SHUTDOWN_REBOOT, code)
}

/// For the control domain: asks domain `id` to end
/// ([`HC_DOMCTL_SHUTDOWN_REQUEST`]).
pub fn request(id: u32, req: Request) -> Result<(), Error> {
    status(hypercall6(
        HC_DOMCTL_SHUTDOWN_REQUEST,
        [id.into(), req.word(), 0, 0, 0, 0],
    ))
    .map(|_| ())
}

/// For the control domain: sets domain `id`'s scheduling weight and cap
/// ([`HC_DOMCTL_SET_SCHED`]).
pub fn set_sched(id: u32, weight: u32, cap: u32) -> Result<(), Error> {
    status(hypercall6(
        HC_DOMCTL_SET_SCHED,
        [id.into(), weight.into(), cap.into(), 0, 0, 0],
    ))
    .map(|_| ())
}
