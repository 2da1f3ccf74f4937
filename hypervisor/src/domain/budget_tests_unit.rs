//! Host tests of the budgets and their pool.
#![allow(clippy::unwrap_used)]

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

/// Two domains' charges of 60 bytes each in a pool of 100: whatever the
/// interleaving, exactly one is taken and the pool never exceeds its cap.
/// The old check (free heap bytes, read before the charge and lagging
/// behind it) let both through: with 160 free and a reserve of 60, each
/// saw room for its 60.
#[test]
fn pool_holds_under_every_interleaving() {
    use crate::testing::interleave::explore;
    use std::boxed::Box;
    use std::sync::{Arc, Mutex as StdMutex};
    let results: Arc<StdMutex<std::vec::Vec<bool>>> = Arc::default();
    let pool: &'static Pool = Box::leak(Box::new(Pool::new()));
    let (a, b) = (
        Arc::new(Budget::in_pool(1000, pool)),
        Arc::new(Budget::in_pool(1000, pool)),
    );
    let explored = explore(
        usize::MAX,
        10_000,
        || {
            a.refund(a.used());
            b.refund(b.used());
            results.lock().unwrap().clear();
            [a.clone(), b.clone()]
                .into_iter()
                .map(|d| {
                    let results = results.clone();
                    Box::new(move || {
                        // 160 free, 60 reserve: each alone fits the heap.
                        let ok = d.charge_in(60, 100, 160, 60).is_ok();
                        results.lock().unwrap().push(ok);
                    }) as crate::testing::interleave::Body
                })
                .collect()
        },
        |picks| {
            let r = results.lock().unwrap();
            assert_eq!(
                r.iter().filter(|&&ok| ok).count(),
                1,
                "picks {picks:?}: {r:?}"
            );
            assert!(pool.committed() <= 100, "picks {picks:?}");
            assert_eq!(pool.committed(), a.used() + b.used());
        },
    );
    assert!(explored.complete && explored.executions > 1);
}

#[test]
fn budgets_give_their_bytes_back_to_the_pool() {
    use std::boxed::Box;
    let pool: &'static Pool = Box::leak(Box::new(Pool::new()));
    let a = Budget::in_pool(1000, pool);
    let b = Budget::in_pool(50, pool);
    a.charge_in(300, 400, BIG, 0).unwrap();
    assert_eq!(
        b.charge_in(40, 100, BIG, 0),
        Err(Error::NoMem),
        "over the pool's cap"
    );
    assert_eq!((b.used(), b.refused()), (0, 1), "the limit's part undone");
    b.charge_in(40, 400, BIG, 0).unwrap();
    assert_eq!(
        b.charge_in(20, 1000, BIG, 0),
        Err(Error::NoMem),
        "over its own limit"
    );
    assert_eq!(pool.committed(), 340);
    a.refund(100);
    assert_eq!(pool.committed(), 240);
    drop(a);
    assert_eq!(pool.committed(), 40, "a dropped budget gives back the rest");
    b.refund(1000);
    assert_eq!(pool.committed(), 0, "never more than was charged");
    pool.note_base(100);
    assert_eq!(pool.cap(1 << 20), (1 << 20) - reserve(1 << 20) - 100);
}
