//! Per-domain heap budgets (issue 12, defect 2).
//!
//! The hypervisor heap is one small pool (`mm::memmap::heap_bytes`: 1 MiB
//! on a 128 MiB host) shared by every domain. Each allocation made on a
//! domain's behalf — its `Domain` and vCPU entries, its page list (8 bytes
//! per 4 KiB page), a vCPU's backend box,
//! its event-channel port buckets and bitmaps, grant and map-track
//! entries, the guest-physical addresses of the grants it maps, its
//! console line and input queue — is charged to that domain's [`Budget`]
//! *before* it is made:
//!
//! - over the domain's limit (set at creation: [`default_limit`] from its
//!   size and vCPUs, or what `HC_DOMCTL_CREATE` asked for), the charge is
//!   refused and the guest gets `ENOMEM`;
//! - a charge that would leave the heap with less than [`reserve`] free is
//!   refused too, whatever the domain's limit: the hypervisor keeps that
//!   much for its own progress (scheduler records, timer-list nodes,
//!   console rings, the domain table), so no mix of domains can make an
//!   infallible allocation of the hypervisor fail. Between a charge and
//!   its allocation another CPU may allocate too; the reserve (at least
//!   [`RESERVE_MIN`], far above the largest single charge times the CPUs)
//!   covers that window.
//!
//! Charges are made where the tables grow and are never shrunk while the
//! domain lives (a table keeps its high-water capacity, as `Vec` does);
//! everything goes back when the domain ends, because every charged
//! allocation is owned by the domain and freed with it (`Drop for
//! Domain`). What one unit costs ([`Cost`]) is an upper bound of what the
//! allocator really hands out, doubling growth of `Vec`s included, so a
//! budget is never exceeded in fact.
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use pvabi::Error;

/// The least the hypervisor keeps free for itself, in bytes.
pub const RESERVE_MIN: u64 = 64 << 10;

/// The smallest budget a domain may be created with: its own records
/// (domain, one vCPU, console line) must fit.
pub const BUDGET_MIN: u64 = pvabi::DOMCTL_BUDGET_MIN;

/// The largest budget a domain may ask for.
pub const BUDGET_MAX: u64 = pvabi::DOMCTL_BUDGET_MAX;

/// The reserve for a heap of `heap_bytes`: a quarter of it (at least
/// [`RESERVE_MIN`]) for the hypervisor's own records, plus what the
/// console rings may hold (`console/ring.rs`: bounded, and fallible, but
/// they must not eat into the quarter).
pub const fn reserve(heap_bytes: u64) -> u64 {
    let q = heap_bytes / 4;
    (if q > RESERVE_MIN { q } else { RESERVE_MIN })
        + crate::console::ring::CONSOLE_RINGS_TOTAL as u64
}

/// The budget a domain gets when none is asked for: 32 KiB, 16 KiB per
/// vCPU (its backend box, entry, timer-list share and some ports) and
/// 1/256 of its memory (8 KiB for a 2 MiB domain, 32 KiB for the 8 MiB
/// boot-module domains, 4 MiB for a 1 GiB one: half of it is the page
/// list, the rest for ports and grants), at most [`BUDGET_MAX`]. Bigger
/// domains run bigger guests with more ports and grants.
pub const fn default_limit(memory_bytes: u64, nr_vcpus: u32) -> u64 {
    let b = (32 << 10) + (16 << 10) * nr_vcpus as u64 + memory_bytes / 256;
    if b > BUDGET_MAX { BUDGET_MAX } else { b }
}

/// Validates a budget asked for in `HC_DOMCTL_CREATE`: 0 is the default,
/// anything else must lie in [`BUDGET_MIN`]..=[`BUDGET_MAX`].
pub fn check_request(bytes: u64) -> Result<(), Error> {
    if bytes == 0 || (BUDGET_MIN..=BUDGET_MAX).contains(&bytes) {
        Ok(())
    } else {
        Err(Error::Invalid)
    }
}

/// What one unit of a growing table costs, in heap bytes: an upper bound
/// (`Vec` growth doubles, so a `Vec` element is charged twice its size).
pub struct Cost;

impl Cost {
    /// One element of a `Vec<T>` that grows by doubling.
    pub const fn vec_elem<T>() -> u64 {
        2 * core::mem::size_of::<T>() as u64
    }

    /// One entry of a `BTreeMap`/`BTreeSet` with `K` keys and `V` values:
    /// a leaf node holds 11 entries and is at least half full, so an entry
    /// costs at most two elements' share of the node plus the node's own
    /// header (parent pointer, lengths), rounded up generously.
    pub const fn btree_entry<K, V>() -> u64 {
        2 * (core::mem::size_of::<K>() + core::mem::size_of::<V>()) as u64 + 16
    }
}

/// What a bucket of `ports` event-channel ports costs (`evtchn/mod.rs`):
/// the slots (a `P` each, allocated exactly), room on the free list (a
/// `u32` each, `Vec` growth), the pending and mask bitmaps and the hint
/// (`Vec` growth), the bucket's pointer, and the allocator's rounding of
/// each of those five allocations.
pub const fn port_bucket_cost<P>(ports: u32) -> u64 {
    let n = ports as u64;
    n * core::mem::size_of::<P>() as u64
        + n * Cost::vec_elem::<u32>()
        + 2 * 2 * n.div_ceil(64) * 8
        + 2 * n.div_ceil(64 * 64) * 8
        + Cost::vec_elem::<usize>() * 2
        + 5 * ALLOC_SLACK
}

/// What one grant entry or map-track slot costs: the entry (`E`) and its
/// room on the free list (a `u32`), both `Vec` growth; and, for a mapping,
/// `extra` more (its guest-physical address in the grantee's set of
/// foreign pages).
pub const fn table_entry_cost<E>(extra: u64) -> u64 {
    Cost::vec_elem::<E>() + Cost::vec_elem::<u32>() + extra
}

/// What the allocator may add to one allocation (linked-list allocator:
/// a block is at least two words and rounded to them, plus alignment).
pub const ALLOC_SLACK: u64 = 32;

/// Runs `alloc` under a charge of `bytes` to `budget` (none: uncharged):
/// charged first, given back if `alloc` fails.
pub fn charged<T>(
    budget: Option<&Budget>,
    bytes: u64,
    alloc: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    if let Some(b) = budget {
        b.charge(bytes)?;
    }
    alloc().inspect_err(|_| {
        if let Some(b) = budget {
            b.refund(bytes);
        }
    })
}

/// One domain's heap budget.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: AtomicU64,
    /// Charges refused (reported by `hvctl info`).
    refused: AtomicU64,
}

impl Budget {
    /// A budget of `limit` bytes, nothing charged.
    pub const fn new(limit: u64) -> Self {
        Self {
            limit,
            used: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// No limit of its own (tables made outside a domain: host tests);
    /// the heap's reserve still applies.
    pub const fn unlimited() -> Self {
        Self::new(u64::MAX)
    }

    /// Its limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes charged now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Charges refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Charges `bytes` before they are allocated; `NoMem` (nothing
    /// charged) over the limit or when the heap would fall below its
    /// reserve.
    pub fn charge(&self, bytes: u64) -> Result<(), Error> {
        use crate::platform::{P, Platform};
        self.charge_with(bytes, P::heap_free(), reserve(P::heap_bytes()))
    }

    /// [`Budget::charge`] with the heap's free bytes and reserve given.
    pub fn charge_with(&self, bytes: u64, heap_free: u64, reserve: u64) -> Result<(), Error> {
        let fits_heap = heap_free
            .checked_sub(reserve)
            .is_some_and(|room| bytes <= room);
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.checked_add(bytes).filter(|&n| n <= self.limit);
            let Some(next) = next.filter(|_| fits_heap) else {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Error::NoMem);
            };
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    /// Gives back `bytes` charged before (an allocation that failed after
    /// its charge, or memory freed while the domain lives).
    pub fn refund(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(bytes))
            });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BIG: u64 = 1 << 30;

    #[test]
    fn charge_and_refund() {
        let b = Budget::new(1000);
        b.charge_with(600, BIG, 0).unwrap();
        b.charge_with(400, BIG, 0).unwrap();
        assert_eq!(b.used(), 1000);
        assert_eq!(
            b.charge_with(1, BIG, 0),
            Err(Error::NoMem),
            "over the limit"
        );
        assert_eq!(b.used(), 1000, "a refusal charges nothing");
        assert_eq!(b.refused(), 1);
        b.refund(400);
        assert_eq!(b.used(), 600);
        b.charge_with(400, BIG, 0).unwrap();
        b.refund(2000);
        assert_eq!(b.used(), 0, "a refund never goes below zero");
    }

    #[test]
    fn overflowing_charge_is_refused() {
        let b = Budget::unlimited();
        b.charge_with(10, BIG, 0).unwrap();
        assert_eq!(b.charge_with(u64::MAX, u64::MAX, 0), Err(Error::NoMem));
        assert_eq!(b.used(), 10);
    }

    #[test]
    fn the_reserve_holds_whatever_the_limit() {
        let b = Budget::unlimited();
        // 100 KiB free, 64 KiB reserve: 36 KiB may be charged, no more.
        let free = 100 << 10;
        b.charge_with(36 << 10, free, RESERVE_MIN).unwrap();
        assert_eq!(
            b.charge_with(1, free - (36 << 10), RESERVE_MIN),
            Err(Error::NoMem)
        );
        assert_eq!(
            b.charge_with(1, RESERVE_MIN - 1, RESERVE_MIN),
            Err(Error::NoMem)
        );
        assert_eq!(b.used(), 36 << 10);
    }

    #[test]
    fn reserve_and_defaults() {
        let rings = crate::console::ring::CONSOLE_RINGS_TOTAL as u64;
        assert_eq!(
            reserve(1 << 20),
            (256 << 10) + rings,
            "a quarter of a 1 MiB heap"
        );
        assert_eq!(reserve(128 << 10), RESERVE_MIN + rings);
        assert_eq!(default_limit(8 << 20, 4), (32 + 64 + 32) << 10);
        assert_eq!(default_limit(2 << 20, 1), (32 + 16 + 8) << 10);
        assert_eq!(default_limit(1 << 40, 64), BUDGET_MAX);
        assert!(default_limit(2 << 20, 1) >= BUDGET_MIN);
    }

    #[test]
    fn requests_are_validated() {
        assert_eq!(check_request(0), Ok(()));
        assert_eq!(check_request(BUDGET_MIN), Ok(()));
        assert_eq!(check_request(BUDGET_MAX), Ok(()));
        assert_eq!(check_request(BUDGET_MIN - 1), Err(Error::Invalid));
        assert_eq!(check_request(BUDGET_MAX + 1), Err(Error::Invalid));
    }

    #[test]
    fn tables_meet_their_budget_not_the_heap() {
        use crate::domain::ids::DomainId;
        use crate::evtchn::{BUCKET_PORTS, EventTable, PORT_BUCKET_COST};
        use crate::grant::{Access, GRANT_ENTRY_COST, GrantTable};
        use std::sync::Arc;
        // Room for two buckets of ports: the third is refused, nothing of
        // it is charged, and ports of the first two are still handed out.
        let bucket = PORT_BUCKET_COST;
        let b = Arc::new(Budget::new(2 * bucket + bucket / 2));
        let mut ev = EventTable::new(DomainId(1), 1).charge_to(b.clone());
        let mut ports = 0;
        while ev.alloc_unbound(DomainId(2)).is_ok() {
            ports += 1;
        }
        assert_eq!(ports, 2 * BUCKET_PORTS - 1, "port 0 is never handed out");
        assert_eq!(b.used(), 2 * bucket);
        assert_eq!(b.refused(), 1);
        // The grant table shares the budget: what is left buys entries.
        let mut g = GrantTable::new(DomainId(1)).charge_to(b.clone());
        let each = GRANT_ENTRY_COST;
        let left = b.limit() - b.used();
        let mut grants = 0;
        while g.grant(DomainId(2), 0x1000, Access::ReadOnly).is_ok() {
            grants += 1;
        }
        assert!(
            grants > 0 && grants <= left / each,
            "{grants} grants in {left} bytes"
        );
        assert_eq!(
            g.grant(DomainId(2), 0x1000, Access::ReadOnly),
            Err(Error::NoMem)
        );
        // Freed entries are reused without a new charge.
        let used = b.used();
        g.revoke(0, 0).unwrap();
        g.grant(DomainId(2), 0x1000, Access::ReadOnly).unwrap();
        assert_eq!(b.used(), used);
    }

    #[test]
    fn creation_cost_fits_the_smallest_budget() {
        use crate::domain::lifecycle::creation_cost;
        use crate::domain::lifecycle::page_list_cost;
        assert!(creation_cost(1) <= BUDGET_MIN, "{}", creation_cost(1));
        // The default always holds the domain's records and page list,
        // with room to spare for ports and grants.
        for (mem, vcpus) in [(2 << 20, 1), (2 << 20, 64), (8 << 20, 4), (1 << 30, 64)] {
            let own = creation_cost(vcpus) + page_list_cost(mem);
            assert!(
                own + (16 << 10) <= default_limit(mem, vcpus),
                "{mem} {vcpus}"
            );
        }
    }

    #[test]
    fn concurrent_charges_never_exceed_the_limit() {
        let b = std::sync::Arc::new(Budget::new(10_000));
        let threads: std::vec::Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut got = 0u64;
                    while b.charge_with(7, BIG, 0).is_ok() {
                        got += 7;
                    }
                    got
                })
            })
            .collect();
        let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, b.used());
        assert!(total <= 10_000 && total > 10_000 - 7);
    }
}
