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
//!   infallible allocation of the hypervisor fail.
//! - **One atomic step for all domains together.** The heap's free bytes
//!   lag behind charges (a charge comes before its allocation), so two
//!   CPUs that both read them and then charge could together pass the
//!   reserve. Every charge therefore also takes its bytes from one global
//!   [`Pool`] with a compare-exchange: the bytes charged to all domains
//!   together never exceed [`Pool::cap`] (the heap less its reserve and
//!   what the hypervisor itself used when domains started), whatever the
//!   interleaving (host test `pool_holds_under_every_interleaving`, with
//!   the exhaustive explorer `testing/interleave.rs`). Since every charge
//!   is an upper bound of its allocation, the heap then always keeps the
//!   reserve for the hypervisor's own later allocations. The free-bytes
//!   check stays as a second guard (it sees the hypervisor's own growth).
//!   A charge that passes the domain's limit but not the pool is undone:
//!   meanwhile another charge of that domain may be refused that would
//!   have fitted (a refusal, never an overcommit).
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

/// Bytes charged to every budget together, against one cap (see the
/// module doc). A [`Budget`] gives its bytes back when it is dropped.
#[derive(Debug)]
pub struct Pool {
    committed: AtomicU64,
    /// Heap bytes the hypervisor used itself when domains started
    /// ([`Pool::note_base`]); not for domains.
    base: AtomicU64,
}

/// The pool of the hypervisor's heap.
pub static HEAP_POOL: Pool = Pool::new();

impl Pool {
    /// An empty pool.
    pub const fn new() -> Self {
        Self {
            committed: AtomicU64::new(0),
            base: AtomicU64::new(0),
        }
    }

    /// Records what the hypervisor's heap holds when domains start: its
    /// own records, never charged.
    pub fn note_base(&self, heap_used: u64) {
        self.base.store(heap_used, Ordering::Relaxed);
    }

    /// The most all budgets may hold together on a heap of `heap_bytes`.
    pub fn cap(&self, heap_bytes: u64) -> u64 {
        heap_bytes
            .saturating_sub(reserve(heap_bytes))
            .saturating_sub(self.base.load(Ordering::Relaxed))
    }

    /// Bytes charged now, all budgets together.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Takes `bytes` if the total stays within `cap`, in one atomic step.
    fn take(&self, bytes: u64, cap: u64) -> bool {
        let mut now = self.committed.load(Ordering::Acquire);
        loop {
            crate::sync::point();
            let Some(next) = now.checked_add(bytes).filter(|&n| n <= cap) else {
                return false;
            };
            match self.committed.compare_exchange_weak(
                now,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(seen) => now = seen,
            }
        }
    }

    fn give(&self, bytes: u64) {
        let _ = self
            .committed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some(c.saturating_sub(bytes))
            });
    }
}

impl Default for Pool {
    fn default() -> Self {
        Self::new()
    }
}

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
    /// What every charge is also taken from.
    pool: &'static Pool,
}

impl Drop for Budget {
    /// The domain's tables are gone with it: its bytes go back to the pool.
    fn drop(&mut self) {
        self.pool.give(*self.used.get_mut());
    }
}

impl Budget {
    /// A budget of `limit` bytes, nothing charged, in the heap's pool.
    pub const fn new(limit: u64) -> Self {
        Self::in_pool(limit, &HEAP_POOL)
    }

    /// A budget of `limit` bytes in `pool`.
    pub const fn in_pool(limit: u64, pool: &'static Pool) -> Self {
        Self {
            limit,
            used: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            pool,
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
        let heap = P::heap_bytes();
        self.charge_in(bytes, self.pool.cap(heap), P::heap_free(), reserve(heap))
    }

    /// [`Budget::charge`] with the heap's free bytes and reserve given (no
    /// pool cap: tests of the limit alone).
    pub fn charge_with(&self, bytes: u64, heap_free: u64, reserve: u64) -> Result<(), Error> {
        self.charge_in(bytes, u64::MAX, heap_free, reserve)
    }

    /// [`Budget::charge`] with the pool's cap, the heap's free bytes and
    /// the reserve given: the domain's limit, then the pool, each in one
    /// atomic step (undone if a later check refuses), then the heap.
    pub fn charge_in(
        &self,
        bytes: u64,
        cap: u64,
        heap_free: u64,
        reserve: u64,
    ) -> Result<(), Error> {
        let fits_heap = heap_free
            .checked_sub(reserve)
            .is_some_and(|room| bytes <= room);
        let refuse = || {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Err(Error::NoMem)
        };
        if !fits_heap {
            return refuse();
        }
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            crate::sync::point();
            let Some(next) = used.checked_add(bytes).filter(|&n| n <= self.limit) else {
                return refuse();
            };
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => used = now,
            }
        }
        if !self.pool.take(bytes, cap) {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            return refuse();
        }
        Ok(())
    }

    /// Gives back `bytes` charged before (an allocation that failed after
    /// its charge, or memory freed while the domain lives).
    pub fn refund(&self, bytes: u64) {
        if let Ok(was) = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(bytes))
            })
        {
            self.pool.give(was.min(bytes));
        }
    }
}

#[cfg(test)]
#[path = "budget_tests_unit.rs"]
mod tests;
