//! The memory target (issue 15, `pvabi::HC_DOMCTL_MEM_TARGET` 57 and
//! `HC_MEM_TARGET` 56): the control domain sets how many pages a live
//! domain should hold, the hypervisor records it and raises
//! `VIRQ_MEM_TARGET`, and the domain reads it and balloons toward it. The
//! target forces nothing (the quota, `max_pages`, is unchanged): it is
//! the mechanism a balloon policy in dom0 drives later, as Xen's
//! `memory/target` is for its balloon driver.
//!
//! Decoding (here) validates every register; the bound that needs the
//! domain (`max_pages`) is checked by [`set`] under the domain table.
#![deny(unsafe_code)]

use core::sync::atomic::Ordering;

use pvabi::{Error, HC_DOMCTL_MEM_TARGET, MEM_TARGET_MIN_PAGES, MEM_TARGET_QUERY};

use crate::domain::ids::DomainId;
use crate::domain::lifecycle::Domain;
use crate::hypercall::{DomctlReply, DomctlReq, Services};

/// Runs `HC_DOMCTL_MEM_TARGET`; `None` when `nr` is another number.
/// Privilege first, then every argument, as the other domctls.
pub fn run(svc: &mut impl Services, nr: u64, a: [u64; 6]) -> Option<Result<u64, Error>> {
    if nr != HC_DOMCTL_MEM_TARGET {
        return crate::domain::stage_ops::run(svc, nr, a);
    }
    if !svc.privileged() {
        return Some(Err(Error::Perm));
    }
    Some(decode(a).and_then(|req| match svc.domctl(req)? {
        DomctlReply::Value(v) => Ok(v),
        _ => Err(Error::Invalid),
    }))
}

fn decode(a: [u64; 6]) -> Result<DomctlReq<'static>, Error> {
    let id = u32::try_from(a[0])
        .map(DomainId)
        .map_err(|_| Error::Invalid)?;
    let pages = match a[1] {
        MEM_TARGET_QUERY => None,
        p if p >= MEM_TARGET_MIN_PAGES => Some(p),
        _ => return Err(Error::Invalid),
    };
    Ok(DomctlReq::MemTarget { id, pages })
}

/// The target of a domain whose recorded value is `stored` (0: never
/// set) and whose quota is `max_pages`: no target means "all of it".
fn resolve(stored: u64, max_pages: u64) -> u64 {
    if stored == 0 { max_pages } else { stored }
}

/// Whether `pages` may be the target of a domain with `max_pages`: the
/// floor is checked by [`decode`], the ceiling needs the domain.
fn fits(pages: u64, max_pages: u64) -> Result<u64, Error> {
    if (MEM_TARGET_MIN_PAGES..=max_pages).contains(&pages) {
        Ok(pages)
    } else {
        Err(Error::Invalid)
    }
}

/// `d`'s target in pages (`HC_MEM_TARGET`).
pub(crate) fn target(d: &Domain) -> u64 {
    let max = d.inner.lock().mem.max_pages();
    resolve(d.mem_target.load(Ordering::Acquire), max)
}

/// Sets `d`'s target to `pages` (or only reads it, `None`); the target
/// after. The virq is raised after the store (a guest woken by it always
/// reads the new target) and with no lock held (`raise_virq_everywhere`).
pub(crate) fn set(d: &Domain, pages: Option<u64>) -> Result<u64, Error> {
    let max = d.inner.lock().mem.max_pages();
    let Some(pages) = pages else {
        return Ok(resolve(d.mem_target.load(Ordering::Acquire), max));
    };
    let pages = fits(pages, max)?;
    d.mem_target.store(pages, Ordering::Release);
    log::info!(
        "domain {} ({}): memory target {pages} pages ({} KiB) of {max}",
        d.id,
        d.name,
        pages * (pvabi::PAGE_SIZE >> 10)
    );
    crate::evtchn::live::raise_virq_everywhere(d, pvabi::VIRQ_MEM_TARGET);
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_checks_every_register() {
        let r = |id, pages| decode([id, pages, 0, 0, 0, 0]);
        assert!(matches!(
            r(3, 4096),
            Ok(DomctlReq::MemTarget {
                id: DomainId(3),
                pages: Some(4096)
            })
        ));
        assert!(matches!(
            r(3, MEM_TARGET_QUERY),
            Ok(DomctlReq::MemTarget {
                id: DomainId(3),
                pages: None
            })
        ));
        assert!(matches!(
            r(3, MEM_TARGET_MIN_PAGES),
            Ok(DomctlReq::MemTarget { .. })
        ));
        for (id, pages) in [(3, 0), (3, MEM_TARGET_MIN_PAGES - 1), (1 << 32, 4096)] {
            assert_eq!(r(id, pages).err(), Some(Error::Invalid), "{id} {pages}");
        }
    }

    #[test]
    fn target_is_the_quota_until_set_and_never_above_it() {
        assert_eq!(resolve(0, 8192), 8192, "never set: all of it");
        assert_eq!(resolve(4096, 8192), 4096);
        assert_eq!(fits(8192, 8192), Ok(8192));
        assert_eq!(fits(MEM_TARGET_MIN_PAGES, 8192), Ok(MEM_TARGET_MIN_PAGES));
        assert_eq!(fits(8193, 8192), Err(Error::Invalid));
        // A quota below the floor (no such domain is made) takes no target.
        assert_eq!(fits(512, 512), Err(Error::Invalid));
    }
}
