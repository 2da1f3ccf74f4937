//! The seam between domains and the IOMMU (`iommu/`, which sits above
//! this layer: it reads a domain's memory to build its DMA tables). The
//! IOMMU registers its functions here at boot; domains call through them
//! where DMA must be considered:
//!
//! - a balloon release is refused (`EBUSY`) while any device is attached
//!   to the domain: its IOMMU tables map every page it had at attach
//!   time, and a freed frame must never stay reachable by DMA
//!   (docs/threat-model.md, *IOMMU*);
//! - a dying domain's devices are cut off (DMA blocked, the unit's caches
//!   invalidated and the invalidation completed) before its frames are
//!   freed.
//!
//! Without a registration (host tests, no IOMMU) nothing is attached.

use core::sync::atomic::{AtomicU64, Ordering};

use super::ids::DomainId;
use crate::sync::Mutex;

/// What the IOMMU provides.
#[derive(Clone, Copy)]
pub struct DmaHooks {
    /// Whether any device is attached to the domain.
    pub has_devices: fn(DomainId) -> bool,
    /// Detaches every device of the domain; returns once their DMA is
    /// blocked and the unit's caches invalidated.
    pub cut_off: fn(DomainId),
    /// Logs the faults the units recorded since the last call.
    pub poll_faults: fn() -> usize,
}

static HOOKS: Mutex<Option<DmaHooks>> = Mutex::new(None);

/// Registers the IOMMU's functions (once, at boot).
pub fn register(hooks: DmaHooks) {
    *HOOKS.lock() = Some(hooks);
}

fn hooks() -> Option<DmaHooks> {
    *HOOKS.lock()
}

/// Whether a device may DMA into `dom`'s memory now.
pub fn has_devices(dom: DomainId) -> bool {
    hooks().is_some_and(|h| (h.has_devices)(dom))
}

/// Blocks every device attached to `dom`, completed, before its frames go.
pub fn cut_off(dom: DomainId) {
    if let Some(h) = hooks() {
        (h.cut_off)(dom);
    }
}

/// When the fault log was last read (ns of the hypervisor's clock).
static LAST_POLL: AtomicU64 = AtomicU64::new(0);
/// At most this often: each read is a few MMIO accesses.
const POLL_NS: u64 = 10_000_000;

/// Reads the IOMMU fault log if [`POLL_NS`] has passed since the last
/// read (called by an idle CPU).
pub fn poll_faults(now: u64) {
    if due(&LAST_POLL, now)
        && let Some(h) = hooks()
    {
        (h.poll_faults)();
    }
}

/// Whether [`POLL_NS`] has passed since `last`; if so `last` becomes `now`
/// (one caller wins when several CPUs ask at once).
fn due(last: &AtomicU64, now: u64) -> bool {
    let then = last.load(Ordering::Relaxed);
    now.saturating_sub(then) >= POLL_NS
        && last
            .compare_exchange(then, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only this id is "attached": other tests run meanwhile on other
    /// threads and must see no change.
    const ID: DomainId = DomainId(0x7fff_dead);

    fn yes(d: DomainId) -> bool {
        d == ID
    }
    fn cut(d: DomainId) {
        if d == ID {
            CUT.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn poll() -> usize {
        0
    }
    static CUT: AtomicU64 = AtomicU64::new(0);

    #[test]
    fn polls_are_rate_limited() {
        let last = AtomicU64::new(0);
        assert!(!due(&last, POLL_NS - 1));
        assert!(due(&last, POLL_NS));
        assert!(!due(&last, POLL_NS + 1), "second poll within 10 ms skipped");
        assert!(due(&last, 2 * POLL_NS));
    }

    /// Unregistered, nothing is attached; registered, calls go through.
    #[test]
    fn hooks_route_to_the_iommu() {
        assert!(!has_devices(ID));
        cut_off(ID);
        register(DmaHooks {
            has_devices: yes,
            cut_off: cut,
            poll_faults: poll,
        });
        assert!(has_devices(ID));
        assert!(!has_devices(DomainId(1)));
        cut_off(ID);
        assert_eq!(CUT.load(Ordering::Relaxed), 1);
        *HOOKS.lock() = None;
    }
}
