//! Lifecycle control (pvabi 2.1, numbers 48-50): the control
//! domain asks a domain to power off or reboot (`HC_DOMCTL_SHUTDOWN_REQUEST`:
//! the request is recorded, then `VIRQ_SHUTDOWN` is raised), the domain
//! reads what was asked (`HC_SHUTDOWN_REQUESTED`, any domain), and the
//! control domain changes a live domain's credit weight and cap
//! (`HC_DOMCTL_SET_SCHED`). As in Xen (`SCHEDOP_remote_shutdown` is not
//! used by `xl shutdown`: it writes `control/shutdown` in xenstore and
//! waits), the request forces nothing; dom0 destroys a guest that does
//! not end in time.
//!
//! Decoding (here) validates every register; the live effect
//! ([`request_shutdown`], [`set_sched`]) needs only the domain table.
#![deny(unsafe_code)]

use core::sync::atomic::Ordering;

use pvabi::Error;
use pvabi::{
    HC_DOMCTL_SET_SCHED, HC_DOMCTL_SHUTDOWN_REQUEST, SHUTDOWN_REQUEST_POWEROFF,
    SHUTDOWN_REQUEST_REBOOT,
};

use crate::domain::ids::DomainId;
use crate::domain::lifecycle::Domain;
use crate::hypercall::{DomctlReq, Services};

/// Runs lifecycle domctl `nr` (49, 50); `None` when `nr` is not one.
/// Privilege first, then every argument, as the other domctls.
pub fn run(svc: &mut impl Services, nr: u64, a: [u64; 6]) -> Option<Result<u64, Error>> {
    if nr != HC_DOMCTL_SHUTDOWN_REQUEST && nr != HC_DOMCTL_SET_SCHED {
        return crate::domain::memtarget::run(svc, nr, a);
    }
    if !svc.privileged() {
        return Some(Err(Error::Perm));
    }
    Some(decode(nr, a).and_then(|req| match svc.domctl(req)? {
        crate::hypercall::DomctlReply::Value(v) => Ok(v),
        _ => Err(Error::Invalid),
    }))
}

fn decode(nr: u64, a: [u64; 6]) -> Result<DomctlReq<'static>, Error> {
    let id = u32::try_from(a[0])
        .map(DomainId)
        .map_err(|_| Error::Invalid)?;
    if nr == HC_DOMCTL_SHUTDOWN_REQUEST {
        return match a[1] {
            SHUTDOWN_REQUEST_POWEROFF | SHUTDOWN_REQUEST_REBOOT => {
                Ok(DomctlReq::ShutdownRequest { id, reason: a[1] })
            }
            _ => Err(Error::Invalid),
        };
    }
    // The same bounds as `HC_DOMCTL_CREATE` (the cap's upper bound needs
    // the domain's vCPU count: checked by the scheduler).
    let weight = u32::try_from(a[1]).map_err(|_| Error::Invalid)?;
    let cap = u32::try_from(a[2]).map_err(|_| Error::Invalid)?;
    if !(1..=65535).contains(&weight) || u64::from(cap) > 100 * u64::from(pvabi::DOMCTL_MAX_VCPUS) {
        return Err(Error::Invalid);
    }
    Ok(DomctlReq::SetSched { id, weight, cap })
}

/// Records `reason` as `d`'s shutdown request, then raises its
/// `VIRQ_SHUTDOWN` (in that order: a guest woken by the virq always
/// reads the request).
pub(crate) fn request_shutdown(d: &Domain, reason: u64) {
    d.shutdown_request.store(reason, Ordering::Release);
    log::info!(
        "domain {} ({}): {} requested",
        d.id,
        d.name,
        if reason == SHUTDOWN_REQUEST_REBOOT {
            "reboot"
        } else {
            "poweroff"
        }
    );
    crate::evtchn::live::raise_virq_everywhere(d, pvabi::VIRQ_SHUTDOWN);
}

/// Sets `d`'s weight and cap in the scheduler, then in what `HC_DOMCTL_INFO`
/// reports. `EINVAL` when the scheduler refuses (a cap over 100 × its
/// vCPUs).
pub(crate) fn set_sched(d: &Domain, weight: u32, cap: u32) -> Result<(), Error> {
    crate::sched::live::set_params(d.sdom, weight, cap)?;
    d.weight.store(weight, Ordering::Relaxed);
    d.cap.store(cap, Ordering::Relaxed);
    log::info!("domain {} ({}): weight={weight} cap={cap}", d.id, d.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_checks_every_register() {
        let r = |nr, a: [u64; 3]| decode(nr, [a[0], a[1], a[2], 0, 0, 0]);
        assert!(matches!(
            r(HC_DOMCTL_SHUTDOWN_REQUEST, [3, SHUTDOWN_REQUEST_REBOOT, 0]),
            Ok(DomctlReq::ShutdownRequest {
                id: DomainId(3),
                reason: SHUTDOWN_REQUEST_REBOOT
            })
        ));
        for bad in [0, 3, u64::MAX] {
            assert_eq!(
                r(HC_DOMCTL_SHUTDOWN_REQUEST, [3, bad, 0]).err(),
                Some(Error::Invalid),
                "reason {bad}"
            );
        }
        assert_eq!(
            r(HC_DOMCTL_SHUTDOWN_REQUEST, [1 << 32, 1, 0]).err(),
            Some(Error::Invalid)
        );
        assert!(matches!(
            r(HC_DOMCTL_SET_SCHED, [4, 512, 50]),
            Ok(DomctlReq::SetSched {
                id: DomainId(4),
                weight: 512,
                cap: 50
            })
        ));
        for (w, c) in [(0, 0), (65536, 0), (1 << 32, 0), (1, 6401), (1, 1 << 32)] {
            assert_eq!(
                r(HC_DOMCTL_SET_SCHED, [4, w, c]).err(),
                Some(Error::Invalid),
                "weight {w} cap {c}"
            );
        }
    }
}
