//! Lifecycle control (2.1, issue 15): the control domain asks a
//! guest to power off or reboot (as Xen's `xl shutdown` / `xl reboot`),
//! a guest ends itself with a reboot, and the control domain changes a
//! running domain's scheduling weight and cap.
//!
//! A request is only a request: the guest sees [`VIRQ_SHUTDOWN`] (if it
//! bound it) and reads the reason with [`HC_SHUTDOWN_REQUESTED`]; it may
//! honour it (finish its work, then [`crate::HC_SHUTDOWN`] with
//! [`crate::SHUTDOWN_POWEROFF`] or [`SHUTDOWN_REBOOT`]) or ignore it. The
//! control domain decides what happens to a guest that does not end in
//! time (dom0 destroys it after a timeout; `hvctl shutdown --timeout`).

/// Virq: the control domain asked this domain to end
/// ([`HC_DOMCTL_SHUTDOWN_REQUEST`]). Raised on every vCPU that bound it.
/// The reason is read with [`HC_SHUTDOWN_REQUESTED`]; a request made
/// before the bind is still readable there (virqs themselves are not
/// remembered).
pub const VIRQ_SHUTDOWN: u32 = 3;

/// [`crate::HC_SHUTDOWN`] reason: the guest asks to be restarted. It ends
/// like a power-off (code its own); its end report carries
/// [`DOMAIN_FLAG_REBOOTED`], and the control domain applies its
/// `on_reboot` policy.
pub const SHUTDOWN_REBOOT: u64 = 2;

/// [`HC_SHUTDOWN_REQUESTED`] result: nothing was asked.
pub const SHUTDOWN_REQUEST_NONE: u64 = 0;
/// [`HC_SHUTDOWN_REQUESTED`] result / [`HC_DOMCTL_SHUTDOWN_REQUEST`]
/// reason: power off.
pub const SHUTDOWN_REQUEST_POWEROFF: u64 = 1;
/// [`HC_SHUTDOWN_REQUESTED`] result / [`HC_DOMCTL_SHUTDOWN_REQUEST`]
/// reason: reboot (end with [`SHUTDOWN_REBOOT`]).
pub const SHUTDOWN_REQUEST_REBOOT: u64 = 2;

/// [`crate::DomainInfo::flags`] of a [`crate::DOMAIN_ENDED`] report: it
/// ended itself with [`SHUTDOWN_REBOOT`] (the code is its own).
pub const DOMAIN_FLAG_REBOOTED: u32 = 1 << 4;

/// **shutdown requested** (48): what the control domain asked of this
/// domain, if anything. Any domain may call it.
///
/// - IN: nothing.
/// - OUT: RAX = [`SHUTDOWN_REQUEST_NONE`], [`SHUTDOWN_REQUEST_POWEROFF`]
///   or [`SHUTDOWN_REQUEST_REBOOT`] (the newest request).
/// - Errors: none.
/// - Notes: reading does not clear it (a guest may look again after its
///   clean-up). The request is made before [`VIRQ_SHUTDOWN`] is raised,
///   so a guest woken by the virq always reads it.
pub const HC_SHUTDOWN_REQUESTED: u64 = 48;

/// **domctl shutdown request** (49): asks domain RDI to end, for reason
/// RSI; raises [`VIRQ_SHUTDOWN`] in it.
///
/// - IN: RDI = a domain id, RSI = [`SHUTDOWN_REQUEST_POWEROFF`] or
///   [`SHUTDOWN_REQUEST_REBOOT`].
/// - OUT: RAX = 0.
/// - Errors: `EPERM` (caller not privileged); `EINVAL` (RDI does not fit
///   in 32 bits or is the caller, or RSI is another value); `ENOENT` (no
///   such live domain).
/// - Notes: nothing is forced: a paused domain sees it when unpaused, and
///   a guest may ignore it. A second request replaces the reason.
pub const HC_DOMCTL_SHUTDOWN_REQUEST: u64 = 49;

/// **domctl set sched** (50): changes domain RDI's credit-scheduler
/// weight and cap while it runs.
///
/// - IN: RDI = a domain id, RSI = weight (1 ..= 65535), RDX = cap
///   (percent of one CPU, 0 = none, at most 100 × its vCPUs).
/// - OUT: RAX = 0; [`crate::HC_DOMCTL_INFO`] reports the new values.
/// - Errors: `EPERM` (caller not privileged); `EINVAL` (RDI does not fit
///   in 32 bits, a weight or cap out of range); `ENOENT` (no such live
///   domain).
/// - Notes: takes effect at the scheduler's next decision; the control
///   domain may change its own.
pub const HC_DOMCTL_SET_SCHED: u64 = 50;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(
            [
                HC_SHUTDOWN_REQUESTED,
                HC_DOMCTL_SHUTDOWN_REQUEST,
                HC_DOMCTL_SET_SCHED
            ],
            [48, 49, 50]
        );
        assert_eq!(VIRQ_SHUTDOWN, 3);
        const { assert!(VIRQ_SHUTDOWN < crate::NR_VIRQS) };
        assert_eq!(SHUTDOWN_REBOOT, 2);
        assert!(![crate::SHUTDOWN_POWEROFF, crate::SHUTDOWN_CRASH].contains(&SHUTDOWN_REBOOT));
        assert_eq!(
            DOMAIN_FLAG_REBOOTED
                & (crate::DOMAIN_FLAG_PRIVILEGED
                    | crate::DOMAIN_FLAG_EXITED
                    | crate::DOMAIN_FLAG_KILLED
                    | crate::DOMAIN_FLAG_DESTROYED),
            0
        );
    }
}
