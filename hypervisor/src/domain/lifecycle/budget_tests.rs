//! Budgets on the live runtime (host, CPUs as threads): a domain that
//! spends its budget gets `ENOMEM` from the hypercalls that allocate, its
//! charges never pass its limit, and everything comes back when it ends;
//! a domain whose own records do not fit its budget is not created.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use pvabi::{ENOMEM, HC_EVTCHN_ALLOC_UNBOUND, HC_GRANT_ACCESS, HC_SHUTDOWN, SHUTDOWN_POWEROFF};

use crate::domain::budget::BUDGET_MIN;
use crate::domain::lifecycle::{self, CreateError, DomainSpec};
use crate::platform::{P, Platform};
use crate::testing::rt::{Machine, domain};
use crate::virt::Backend;
use crate::virt::fake::{self, Guest};

/// What the spender saw: ports and grants it got, the statuses that
/// ended each run, and the budget's use and limit when it was done.
#[derive(Default)]
struct Seen {
    ports: AtomicU64,
    port_end: AtomicI64,
    grants: AtomicU64,
    grant_end: AtomicI64,
}

/// Allocates ports until refused, then grants a page until refused, then
/// powers off.
fn spender(seen: Arc<Seen>) -> fake::Program {
    let mut phase = 0;
    Box::new(move |g: &mut Guest<'_>| {
        match phase {
            0 => phase = 1,
            1 if g.status() > 0 => {
                seen.ports.fetch_add(1, Ordering::Relaxed);
            }
            1 => {
                seen.port_end.store(g.status(), Ordering::Release);
                phase = 2;
            }
            2 if g.status() >= 0 => {
                seen.grants.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                seen.grant_end.store(g.status(), Ordering::Release);
                return g.hypercall(HC_SHUTDOWN, &[SHUTDOWN_POWEROFF, 0]);
            }
        }
        if phase == 1 {
            // Remote 0: any domain id will do for an unbound port.
            g.hypercall(HC_EVTCHN_ALLOC_UNBOUND, &[0])
        } else {
            g.hypercall(HC_GRANT_ACCESS, &[0x20_0000, 0, 1])
        }
    })
}

#[test]
fn a_spending_domain_meets_enomem_and_gives_everything_back() {
    let m = Machine::start(2);
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    // Paused until its budget is in hand: it spends fast.
    let id = m.create("spender", 1, true, move |_| spender(s.clone()));
    let d = domain(id).expect("created");
    let (limit, budget) = (d.budget.limit(), d.budget.clone());
    crate::sched::live::unpause(&d);
    drop(d);
    m.wait("the spender to end", || domain(id).is_none());
    m.wait_all_gone();
    assert_eq!(seen.port_end.load(Ordering::Acquire), ENOMEM);
    assert_eq!(seen.grant_end.load(Ordering::Acquire), ENOMEM);
    let (ports, grants) = (
        seen.ports.load(Ordering::Relaxed),
        seen.grants.load(Ordering::Relaxed),
    );
    assert!(ports >= 511, "at least a bucket of ports: {ports}");
    assert!(grants > 0, "some grants: {grants}");
    assert!(budget.used() <= limit, "{} of {limit}", budget.used());
    assert!(
        budget.used() + crate::grant::GRANT_ENTRY_COST > limit,
        "refused with room left: {} of {limit}",
        budget.used()
    );
    assert_eq!(budget.refused(), 2);
    m.stop();
}

#[test]
fn a_domain_whose_records_do_not_fit_its_budget_is_not_created() {
    let m = Machine::start(1);
    let free = P::free_frame_count();
    fake::next_domain(|_| Box::new(|g: &mut Guest<'_>| g.hypercall(HC_SHUTDOWN, &[0, 0])));
    let image = fake::image();
    let spec = DomainSpec {
        name: "big",
        image: &image,
        kind: crate::domain::lifecycle::ImageKind::Pvabi,
        cmdline: "",
        memory: 4 << 20,
        nr_vcpus: pvabi::DOMCTL_MAX_VCPUS,
        weight: 256,
        cap: 0,
        privileged: false,
        paused: true,
        budget: BUDGET_MIN,
    };
    match lifecycle::create(Backend::Svm, &spec) {
        Err(CreateError::Budget(b)) => assert_eq!(b, BUDGET_MIN),
        Err(e) => panic!("refused, but for another reason: {e}"),
        Ok(id) => panic!("created as domain {id}"),
    }
    assert_eq!(P::free_frame_count(), free, "nothing of it was left");
    m.wait_all_gone();
    m.stop();
}
