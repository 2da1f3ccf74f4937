//! Ballooning toward the memory target (unreleased, issue 15): the
//! control domain sets a target (`hvctl mem-set`), raises
//! [`VIRQ_MEM_TARGET`], and a cooperating guest calls
//! [`balloon_toward_target`], which releases pages from, or populates
//! pages into, the [`super::memory::free_region`] until the domain holds
//! the target, as far as that region allows.
//!
//! The balloon is the top of the free region: the `n` pages below its end
//! that this module released, `n` kept in [`ballooned`]. Growing it
//! releases the pages just below; shrinking it populates its lowest
//! pages. So it needs no bitmap, and a program that also calls
//! [`super::memory::release`] itself must keep to the lower part.
//!
//! ```ignore
//! let port = pvabi::guest::memtarget::watch()?;
//! loop {
//!     pvabi::guest::sched::block(None)?; // woken by VIRQ_MEM_TARGET
//!     let r = pvabi::guest::memtarget::balloon_toward_target()?;
//!     pvabi::println!("{r}");
//! }
//! ```

use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{evtchn, hypercall6, memory, status};
use crate::{
    Error, HC_DOMCTL_MEM_TARGET, HC_MEM_TARGET, MEM_OP_MAX_PAGES, MEM_TARGET_QUERY, PAGE_SIZE,
    VIRQ_MEM_TARGET,
};

/// Pages of the balloon (released by this module, at the top of the free
/// region).
static BALLOONED: AtomicU64 = AtomicU64::new(0);

/// Pages this module has released and not populated again.
pub fn ballooned() -> u64 {
    BALLOONED.load(Ordering::Relaxed)
}

/// This domain's memory target in pages ([`HC_MEM_TARGET`]); `ENOSYS`
/// from a hypervisor without targets.
pub fn target() -> Result<u64, Error> {
    status(hypercall6(HC_MEM_TARGET, [0; 6]))
}

/// Binds [`VIRQ_MEM_TARGET`] on vCPU 0 (a new target wakes a blocked
/// vCPU 0); returns the port.
pub fn watch() -> Result<u32, Error> {
    evtchn::bind_virq(VIRQ_MEM_TARGET, 0)
}

/// For the control domain: sets domain `id`'s target to `pages`
/// ([`HC_DOMCTL_MEM_TARGET`]); returns it.
pub fn set(id: u32, pages: u64) -> Result<u64, Error> {
    status(hypercall6(
        HC_DOMCTL_MEM_TARGET,
        [id.into(), pages, 0, 0, 0, 0],
    ))
}

/// For the control domain: domain `id`'s target in pages.
pub fn get(id: u32) -> Result<u64, Error> {
    set(id, MEM_TARGET_QUERY)
}

/// What [`balloon_toward_target`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The target it aimed for, in pages.
    pub target_pages: u64,
    /// Pages the domain held before the call.
    pub before_pages: u64,
    /// Pages it holds after.
    pub current_pages: u64,
    /// Pages this call released.
    pub released: u64,
    /// Pages this call populated.
    pub populated: u64,
    /// Pages of the balloon after.
    pub ballooned: u64,
    /// Why it stopped short of the target, if it did.
    pub short: Option<Short>,
}

/// Why [`balloon_toward_target`] stopped before the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Short {
    /// The free region is all balloon: nothing more may be released.
    RegionFull,
    /// The balloon is empty: pages missing elsewhere are not this
    /// module's to populate.
    BalloonEmpty,
    /// The hypervisor refused a step (e.g. `ENOMEM`: the host is out of
    /// memory).
    Refused(Error),
}

impl Report {
    /// Whether the domain now holds the target.
    pub fn reached(&self) -> bool {
        self.current_pages == self.target_pages
    }
}

impl core::fmt::Display for Report {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "target={} before={} current={} released={} populated={} ballooned={}",
            self.target_pages,
            self.before_pages,
            self.current_pages,
            self.released,
            self.populated,
            self.ballooned
        )?;
        match self.short {
            None => Ok(()),
            Some(Short::RegionFull) => write!(f, " short=free-region-full"),
            Some(Short::BalloonEmpty) => write!(f, " short=balloon-empty"),
            Some(Short::Refused(e)) => write!(f, " short={e:?}"),
        }
    }
}

/// Releases or populates pages until the domain holds its target, as far
/// as the free region allows; says how far it got. Errors only when the
/// target or the domain's memory cannot be read, or there is no free
/// region (`ENOENT`).
pub fn balloon_toward_target() -> Result<Report, Error> {
    let target = target()?;
    let current = memory::info()?.current_pages;
    let free = memory::free_region().ok_or(Error::NoEntry)?;
    let mut n = ballooned();
    let r = run(current, target, free, &mut n, |populate, gpa, pages| {
        if populate {
            memory::populate(gpa, pages)
        } else {
            memory::release(gpa, pages)
        }
    });
    BALLOONED.store(n, Ordering::Relaxed);
    Ok(r)
}

/// The arithmetic of [`balloon_toward_target`]: from `current` pages
/// toward `target`, with a balloon of `*ballooned` pages at the top of
/// `free`, in steps of at most [`MEM_OP_MAX_PAGES`] through `op(populate,
/// gpa, pages)`; `*ballooned` follows every step that succeeds.
fn run(
    current: u64,
    target: u64,
    free: Range<u64>,
    ballooned: &mut u64,
    mut op: impl FnMut(bool, u64, u64) -> Result<u64, Error>,
) -> Report {
    let region = (free.end - free.start) / PAGE_SIZE;
    let mut r = Report {
        target_pages: target,
        before_pages: current,
        current_pages: current,
        released: 0,
        populated: 0,
        ballooned: *ballooned,
        short: None,
    };
    while r.current_pages != target {
        let populate = r.current_pages < target;
        let room = if populate {
            *ballooned
        } else {
            region.saturating_sub(*ballooned)
        };
        if room == 0 {
            r.short = Some(if populate {
                Short::BalloonEmpty
            } else {
                Short::RegionFull
            });
            break;
        }
        let want = target.abs_diff(r.current_pages);
        let pages = want.min(room).min(MEM_OP_MAX_PAGES);
        // Growing: the pages just below the balloon; shrinking: its lowest.
        let low = if populate {
            *ballooned
        } else {
            *ballooned + pages
        };
        let gpa = free.end - low * PAGE_SIZE;
        if let Err(e) = op(populate, gpa, pages) {
            r.short = Some(Short::Refused(e));
            break;
        }
        if populate {
            *ballooned -= pages;
            r.populated += pages;
            r.current_pages += pages;
        } else {
            *ballooned += pages;
            r.released += pages;
            r.current_pages -= pages;
        }
    }
    r.ballooned = *ballooned;
    r
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;
    const FREE: Range<u64> = 4 * MIB..28 * MIB; // 6144 pages

    /// A domain of `present` pages whose free region's pages are tracked
    /// one by one, with the hypervisor's all-or-nothing rules.
    struct Fake {
        present: Vec<bool>,
        calls: Vec<(bool, u64, u64)>,
        refuse_populate: bool,
    }

    impl Fake {
        fn new() -> Self {
            let n = ((FREE.end - FREE.start) / PAGE_SIZE) as usize;
            Self {
                present: std::vec![true; n],
                calls: Vec::new(),
                refuse_populate: false,
            }
        }

        fn op(&mut self, populate: bool, gpa: u64, pages: u64) -> Result<u64, Error> {
            self.calls.push((populate, gpa, pages));
            assert!(pages >= 1 && pages <= MEM_OP_MAX_PAGES, "{pages} pages");
            assert!(FREE.start <= gpa && gpa + pages * PAGE_SIZE <= FREE.end);
            if populate && self.refuse_populate {
                return Err(Error::NoMem);
            }
            let first = ((gpa - FREE.start) / PAGE_SIZE) as usize;
            let range = first..first + pages as usize;
            // Releasing needs present pages, populating absent ones.
            assert!(self.present[range.clone()].iter().all(|&p| p != populate));
            self.present[range].fill(populate);
            Ok(pages)
        }

        fn absent(&self) -> u64 {
            self.present.iter().filter(|p| !**p).count() as u64
        }
    }

    #[test]
    fn shrinks_then_grows_back_through_the_top_of_the_free_region() {
        let mut f = Fake::new();
        let mut n = 0;
        // 32 MiB (8192 pages) to 16 MiB: 4096 released in 8 steps of 512.
        let r = run(8192, 4096, FREE, &mut n, |p, g, c| f.op(p, g, c));
        assert!(r.reached(), "{r}");
        assert_eq!((r.released, r.populated, n, r.short), (4096, 0, 4096, None));
        assert_eq!(f.calls.len(), 8);
        assert_eq!(f.calls[0], (false, FREE.end - 512 * PAGE_SIZE, 512));
        assert!(f.present[..6144 - 4096].iter().all(|&p| p), "below stays");
        assert_eq!(f.absent(), 4096);
        // An uneven target: 100 pages back.
        let r = run(4096, 4196, FREE, &mut n, |p, g, c| f.op(p, g, c));
        assert_eq!((r.populated, r.current_pages, n), (100, 4196, 3996));
        assert_eq!(
            f.calls.last(),
            Some(&(true, FREE.end - 4096 * PAGE_SIZE, 100))
        );
        // All of it back: the balloon empties.
        let r = run(4196, 8192, FREE, &mut n, |p, g, c| f.op(p, g, c));
        assert!(r.reached(), "{r}");
        assert_eq!((n, f.absent()), (0, 0));
        // At the target already: nothing to do.
        let calls = f.calls.len();
        let r = run(8192, 8192, FREE, &mut n, |p, g, c| f.op(p, g, c));
        assert!(r.reached() && f.calls.len() == calls);
    }

    #[test]
    fn stops_where_the_region_or_the_hypervisor_does_and_says_so() {
        let mut f = Fake::new();
        let mut n = 0;
        // A target below what the free region can give: 6144 released.
        let r = run(8192, 1024, FREE, &mut n, |p, g, c| f.op(p, g, c));
        assert_eq!(
            (r.current_pages, n, r.short),
            (2048, 6144, Some(Short::RegionFull))
        );
        assert!(!r.reached());
        // A target above what the balloon holds (pages missing elsewhere).
        let r = run(2048, 9000, FREE, &mut n, |p, g, c| f.op(p, g, c));
        assert_eq!(
            (r.current_pages, n, r.short),
            (8192, 0, Some(Short::BalloonEmpty))
        );
        // The host out of memory: the balloon keeps what it has.
        let _ = run(8192, 7000, FREE, &mut n, |p, g, c| f.op(p, g, c));
        f.refuse_populate = true;
        let r = run(7000, 8192, FREE, &mut n, |p, g, c| f.op(p, g, c));
        assert_eq!((r.current_pages, n), (7000, 1192));
        assert_eq!(r.short, Some(Short::Refused(Error::NoMem)));
        assert!(r.to_string().ends_with("short=NoMem"), "{r}");
    }
}
