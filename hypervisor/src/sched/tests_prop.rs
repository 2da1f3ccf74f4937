//! Unit cases (ids, idle, stealing, cost of blocked vCPUs) and randomized
//! op sequences that must never panic and must keep the invariants.
#![allow(clippy::unwrap_used)]
use super::*;
use std::vec::Vec;

const MS: u64 = 1_000_000;

use crate::testing::Choices as Rng;

#[test]
fn ids_are_checked_and_never_reused() {
    let s = Credit::new(2);
    assert_eq!(s.add_domain(0, 0), Err(Error::BadParam));
    assert_eq!(s.add_domain(1, 101), Err(Error::BadParam));
    let d = s.add_domain(DEFAULT_WEIGHT, 100).unwrap();
    let v = s.add_vcpu(d).unwrap();
    assert_eq!(s.pick_next(5, 0), Err(Error::NoSuchCpu));
    assert_eq!(s.tick(2, 0), Err(Error::NoSuchCpu));
    s.wake(v, 0).unwrap().unwrap();
    let cpu = s.cpu_of(v).unwrap().unwrap();
    assert_eq!(s.pick_next(cpu, 0).unwrap().vcpu, Some(v));
    assert_eq!(s.pick_next(cpu, 0), Err(Error::CpuBusy));
    assert_eq!(s.remove_vcpu(v), Err(Error::Running));
    assert_eq!(s.remove_domain(d), Err(Error::Running));
    assert_eq!(
        s.descheduled(1 - cpu, v, 5, 5, true),
        Err(Error::NotRunningHere)
    );
    s.descheduled(cpu, v, 5, 5, true).unwrap();
    s.remove_domain(d).unwrap();
    assert_eq!(s.wake(v, 6), Err(Error::NoSuchVcpu));
    assert_eq!(s.vcpu_used_ns(v), Err(Error::NoSuchVcpu));
    assert_eq!(s.add_vcpu(d), Err(Error::NoSuchDomain));
    // The slots are reused under new generations; old ids stay dead.
    let d2 = s.add_domain(DEFAULT_WEIGHT, 0).unwrap();
    let v2 = s.add_vcpu(d2).unwrap();
    assert_ne!((d, v), (d2, v2));
    assert_eq!(s.domain_of(v2), Ok(d2));
    assert_eq!(s.domain_used_ns(d), Err(Error::NoSuchDomain));
    assert_eq!(s.check_invariants(), Ok(()));
}

/// A vCPU's payload stays with its record: a pick's vCPU has it, removal
/// hands it back (or drops it, with the domain), and a slot reused under
/// a new generation starts without one.
#[test]
fn payloads_stay_with_their_vcpu_until_it_is_removed() {
    use std::rc::Rc;
    let s: Credit<Rc<&str>> = Credit::with_payloads(2);
    let d = s.add_domain(DEFAULT_WEIGHT, 0).unwrap();
    let (a, b) = (s.add_vcpu(d).unwrap(), s.add_vcpu(d).unwrap());
    assert_eq!(s.payload(a), None);
    let pa = Rc::new("a");
    assert_eq!(s.set_payload(a, pa.clone()), Ok(None));
    assert_eq!(s.set_payload(b, Rc::new("b0")).unwrap().as_deref(), None);
    assert_eq!(
        s.set_payload(b, Rc::new("b")).unwrap().as_deref(),
        Some(&"b0")
    );
    s.wake(a, 0).unwrap().unwrap();
    let cpu = s.cpu_of(a).unwrap().unwrap();
    let run = s.pick_next(cpu, 0).unwrap().vcpu.unwrap();
    assert_eq!(s.payload(run).map(|p| *p), Some("a"));
    assert_eq!(s.take_vcpu(a), Err(Error::Running));
    s.descheduled(cpu, a, 5, 5, false).unwrap();
    let back = s.take_vcpu(a).unwrap().unwrap();
    assert!(
        Rc::ptr_eq(&back, &pa),
        "the payload set is the one handed back"
    );
    assert_eq!(Rc::strong_count(&pa), 2, "none kept in the policy");
    assert_eq!(s.payload(a), None);
    assert_eq!(s.set_payload(a, pa.clone()), Err(Error::NoSuchVcpu));
    // The slot comes back under a new generation, empty.
    let c = s.add_vcpu(d).unwrap();
    assert_eq!((c.slot(), s.payload(c)), (a.slot(), None));
    let pb = s.payload(b).unwrap().clone();
    s.remove_domain(d).unwrap();
    assert_eq!(Rc::strong_count(&pb), 1, "removing the domain dropped b's");
    assert_eq!(s.check_invariants(), Ok(()));
}

/// A vCPU that becomes active joins the list of the CPU it is queued on,
/// not the shared one (a wake-up touches only that CPU's queue); the
/// accounting moves it over and grants it credit, and a vCPU removed
/// before that leaves its CPU's list too.
#[test]
fn vcpus_join_the_active_list_per_cpu_until_the_accounting() {
    let s = Credit::new(2);
    let d = s.add_domain(DEFAULT_WEIGHT, 0).unwrap();
    let v: Vec<VcpuId> = (0..3).map(|_| s.add_vcpu(d).unwrap()).collect();
    for &x in &v {
        s.wake(x, 0).unwrap().unwrap();
    }
    let on = |s: &Credit, c: usize| -> Vec<u32> {
        let mut want: Vec<u32> = Vec::new();
        for &x in &v {
            if s.cpu_of(x).unwrap() == Some(c) {
                want.push(x.index);
            }
        }
        want
    };
    assert!(s.active_list().is_empty(), "the shared list was touched");
    for c in 0..2 {
        assert!(!on(&s, c).is_empty(), "placement left CPU {c} empty");
        assert_eq!(s.joined(c), on(&s, c), "CPU {c}");
    }
    assert_eq!(s.check_invariants(), Ok(()));
    s.remove_vcpu(v[2]).unwrap();
    assert!(
        (0..2).all(|c| !s.joined(c).contains(&v[2].index)),
        "a removed vCPU stayed staged"
    );
    assert_eq!(s.check_invariants(), Ok(()));
    assert_eq!((s.credit(v[0]), s.credit(v[1])), (Ok(0), Ok(0)));
    // Each runs 5 ms (the accounting hands out the time charged).
    for c in 0..2 {
        let x = s.pick_next(c, 0).unwrap().vcpu.unwrap();
        s.descheduled(c, x, 5 * MS, 5 * MS, true).unwrap();
    }
    let before = [s.credit(v[0]).unwrap(), s.credit(v[1]).unwrap()];
    assert_eq!(before, [-5 * MS as i64; 2]);
    s.tick(0, PERIOD_NS).unwrap();
    assert!((0..2).all(|c| s.joined(c).is_empty()), "not moved");
    let mut active = s.active_list();
    active.sort_unstable();
    assert_eq!(active, [v[0].index, v[1].index]);
    assert_eq!((s.credit(v[0]), s.credit(v[1])), (Ok(0), Ok(0)), "granted");
    assert_eq!(s.check_invariants(), Ok(()));
}

/// A domain that uses its cap parks on the CPU whose deschedule charged
/// it, not in the shared parked list; new parameters unpark it from
/// there, and the accounting moves a parked one to the list.
#[test]
fn a_domain_parks_on_the_cpu_that_charged_it_until_the_accounting() {
    let s = Credit::new(2);
    let d = s.add_domain(DEFAULT_WEIGHT, 10).unwrap();
    let v = s.add_vcpu(d).unwrap();
    s.wake(v, 0).unwrap().unwrap();
    // CPU 1 runs it (by a steal if it was placed on CPU 0) and charges
    // it more than its 3 ms budget.
    let run_on_1 = |s: &Credit, ran: u64| {
        assert_eq!(s.pick_next(1, 0).unwrap().vcpu, Some(v));
        s.descheduled(1, v, ran, 0, true).unwrap();
    };
    run_on_1(&s, 4 * MS);
    let staged = |s: &Credit| -> [Vec<u32>; 2] { [s.parks(0), s.parks(1)] };
    assert_eq!(staged(&s), [vec![], vec![d.index]]);
    assert!(s.parked_list().is_empty(), "the shared list was touched");
    assert_eq!(s.check_invariants(), Ok(()));
    s.set_params(d, DEFAULT_WEIGHT, 0).unwrap();
    assert_eq!(staged(&s), [vec![], vec![]], "unparked");
    assert_eq!(s.check_invariants(), Ok(()));
    s.set_params(d, DEFAULT_WEIGHT, 10).unwrap();
    run_on_1(&s, 36 * MS);
    assert_eq!(staged(&s), [vec![], vec![d.index]]);
    // 40 ms used of 3: still in debt after the pass, so parked on.
    s.tick(0, PERIOD_NS).unwrap();
    assert_eq!(staged(&s), [vec![], vec![]], "not moved");
    assert_eq!(s.parked_list(), [d.index]);
    assert_eq!(s.check_invariants(), Ok(()));
}

/// A domain whose vCPUs use up its cap on two CPUs is parked by the
/// first deschedule that charges it past the budget and staged there
/// only, not again by the second.
#[test]
fn a_domain_capped_on_two_cpus_parks_once() {
    let s = Credit::new(2);
    let d = s.add_domain(DEFAULT_WEIGHT, 10).unwrap();
    let v = [s.add_vcpu(d).unwrap(), s.add_vcpu(d).unwrap()];
    for &x in &v {
        s.wake(x, 0).unwrap().unwrap();
    }
    let on: Vec<VcpuId> = (0..2)
        .map(|c| s.pick_next(c, 0).unwrap().vcpu.unwrap())
        .collect();
    assert_ne!(on[0], on[1]);
    // Each uses 4 ms of the domain's 3 ms budget.
    s.descheduled(0, on[0], 4 * MS, 0, true).unwrap();
    s.descheduled(1, on[1], 4 * MS, 0, true).unwrap();
    assert_eq!(s.parks(0), [d.index]);
    assert!(s.parks(1).is_empty(), "staged twice");
    assert_eq!(s.domain_used_ns(d), Ok(8 * MS));
    assert_eq!(s.check_invariants(), Ok(()));
}

#[test]
fn idle_cpu_halts_and_parked_work_sets_a_timer() {
    let s = Credit::new(1);
    let d = s.add_domain(DEFAULT_WEIGHT, 10).unwrap();
    let d0 = s.pick_next(0, 0).unwrap();
    assert_eq!(
        d0,
        Decision {
            vcpu: None,
            slice_ns: u64::MAX
        }
    );
    let v = s.add_vcpu(d).unwrap();
    // Not runnable until woken.
    assert_eq!(s.pick_next(0, 0).unwrap().vcpu, None);
    assert_eq!(s.wake(v, 0).unwrap(), Some(Placed { cpu: 0, kick: true }));
    let run = s.pick_next(0, 0).unwrap();
    assert_eq!(run.vcpu, Some(v));
    // Boosted, and cap 10 % of a 30 ms period leaves 3 ms.
    assert_eq!(run.slice_ns, BOOST_SLICE_NS);
    s.descheduled(0, v, MS, MS, true).unwrap();
    assert_eq!(s.pick_next(0, MS).unwrap().slice_ns, 2 * MS);
    s.descheduled(0, v, 2 * MS, 3 * MS, true).unwrap();
    // Parked: idle, but wake up for the next accounting at 30 ms.
    let idle = s.pick_next(0, 3 * MS).unwrap();
    assert_eq!(
        idle,
        Decision {
            vcpu: None,
            slice_ns: PERIOD_NS - 3 * MS
        }
    );
    assert!(!s.tick(0, 20 * MS).unwrap());
    assert!(s.tick(0, PERIOD_NS).unwrap(), "unparked work waits");
    assert_eq!(s.pick_next(0, PERIOD_NS).unwrap().vcpu, Some(v));
}

#[test]
fn an_idle_cpu_steals_from_a_busy_one() {
    let s = Credit::new(2);
    let d = s.add_domain(DEFAULT_WEIGHT, 0).unwrap();
    let (v1, v2, v3) = (
        s.add_vcpu(d).unwrap(),
        s.add_vcpu(d).unwrap(),
        s.add_vcpu(d).unwrap(),
    );
    // v1 and v2 both last ran on CPU 0 and blocked; v3 runs on CPU 1.
    assert_eq!(s.wake(v1, 0).unwrap().unwrap().cpu, 0);
    assert_eq!(s.pick_next(0, 0).unwrap().vcpu, Some(v1));
    assert_eq!(s.wake(v3, 0).unwrap().unwrap().cpu, 1, "least loaded");
    assert_eq!(s.pick_next(1, 0).unwrap().vcpu, Some(v3));
    s.descheduled(0, v1, 10, 0, false).unwrap();
    assert_eq!(s.wake(v2, 0).unwrap().unwrap().cpu, 0, "least loaded");
    assert_eq!(s.pick_next(0, 0).unwrap().vcpu, Some(v2));
    s.descheduled(0, v2, 10, 0, false).unwrap();
    // Both wake to their last CPU 0 (no other CPU is idle).
    assert_eq!(s.wake(v1, 0).unwrap().unwrap().cpu, 0);
    assert_eq!(s.wake(v2, 0).unwrap().unwrap().cpu, 0);
    assert_eq!(s.pick_next(0, 0).unwrap().vcpu, Some(v1));
    // v3 blocks: CPU 1 has nothing of its own and takes v2.
    s.descheduled(1, v3, MS, MS, false).unwrap();
    assert_eq!(s.pick_next(1, MS).unwrap().vcpu, Some(v2));
    assert_eq!(s.cpu_of(v2), Ok(Some(1)));
    // v3's last CPU 1 is busy and CPU 0 idle: it wakes on CPU 0.
    s.descheduled(0, v1, MS, 2 * MS, false).unwrap();
    assert_eq!(s.pick_next(0, 2 * MS).unwrap().vcpu, None);
    let placed = s.wake(v3, 2 * MS).unwrap().unwrap();
    assert_eq!(placed, Placed { cpu: 0, kick: true });
    assert_eq!(s.check_invariants(), Ok(()));
}

/// Queue entries examined by `rounds` of pick/deschedule of two hogs.
fn pick_cost(s: &Credit, hogs: [VcpuId; 2], now: &mut u64, rounds: u32) -> u64 {
    let before = s.steps();
    for _ in 0..rounds {
        let d = s.pick_next(0, *now).unwrap();
        let v = d.vcpu.unwrap();
        assert!(hogs.contains(&v));
        *now += d.slice_ns;
        s.tick(0, *now).unwrap();
        s.descheduled(0, v, d.slice_ns, *now, true).unwrap();
    }
    s.steps() - before
}

#[test]
fn a_thousand_blocked_vcpus_cost_nothing() {
    let s = Credit::new(1);
    let d = s.add_domain(DEFAULT_WEIGHT, 0).unwrap();
    let hogs = [s.add_vcpu(d).unwrap(), s.add_vcpu(d).unwrap()];
    for v in hogs {
        s.wake(v, 0).unwrap();
    }
    let mut now = 0;
    pick_cost(&s, hogs, &mut now, 10);
    let quiet = pick_cost(&s, hogs, &mut now, 300);
    // A thousand vCPUs that ran once and blocked.
    let other = s.add_domain(DEFAULT_WEIGHT, 0).unwrap();
    let mut sleepers = Vec::new();
    for _ in 0..1000 {
        let v = s.add_vcpu(other).unwrap();
        s.wake(v, now).unwrap();
        sleepers.push(v);
    }
    while let Some(v) = s.pick_next(0, now).unwrap().vcpu {
        let blocks = sleepers.contains(&v);
        s.descheduled(0, v, 1000, now, !blocks).unwrap();
        now += 1000;
        if !blocks {
            break;
        }
    }
    // One accounting period forgets them.
    pick_cost(&s, hogs, &mut now, 10);
    let crowded = pick_cost(&s, hogs, &mut now, 300);
    std::println!("300 picks: {quiet} entries examined alone, {crowded} beside 1000 blocked");
    assert!(crowded <= quiet + 2, "{quiet} vs {crowded}");
    assert_eq!(s.check_invariants(), Ok(()));
}

/// One of `xs`, or (sometimes) none.
fn choose<T: Copy>(r: &mut Rng<'_>, xs: &[T]) -> Option<T> {
    xs.get(r.below(xs.len() as u64 + 1) as usize).copied()
}

/// Random ops on random (also stale and foreign) ids: no panic, invariants
/// after every op, credit bounded, removed vCPUs gone. And the promise of
/// [`Credit::quiet_until`], kept as `live.rs` keeps it (ended for a CPU a
/// wake-up queued on and a CPU that picks or deschedules, that is, starts
/// another run; for all CPUs when parameters are set): a `tick` before
/// that time answers `false` (so `live.rs` may answer it without the
/// lock).
#[test]
fn random_op_sequences_keep_the_invariants() {
    crate::testing::check(40, 3000 * 8, |r| {
        let cpus = 1 + r.below(4) as usize;
        let s = Credit::new(cpus);
        let mut doms: Vec<SchedDom> = Vec::new();
        let mut vcpus: Vec<VcpuId> = Vec::new();
        let mut removed: Vec<VcpuId> = Vec::new();
        let mut now = 0u64;
        let mut quiet = std::vec![0u64; cpus + 1];
        for step in 0..3000 {
            now += r.below(3 * MS);
            let cpu = r.below(cpus as u64 + 1) as usize;
            match r.below(12) {
                0 => {
                    let w = r.below(70_000) as u16;
                    if let Ok(d) = s.add_domain(w, r.below(120) as u32) {
                        doms.push(d);
                    }
                }
                1 => {
                    if let Some(d) = choose(r, &doms) {
                        let _ = s.set_params(d, r.next() as u16, r.below(500) as u32);
                        quiet.fill(0);
                    }
                }
                2 | 3 => {
                    if let Some(d) = choose(r, &doms)
                        && let Ok(v) = s.add_vcpu(d)
                    {
                        vcpus.push(v);
                    }
                }
                4 | 5 => {
                    if let Some(v) = choose(r, &vcpus)
                        && let Ok(Some(p)) = s.wake(v, now)
                    {
                        quiet[p.cpu] = 0;
                    }
                }
                6 => {
                    if let Some(v) = choose(r, &vcpus) {
                        let _ = s.block(v, now);
                    }
                }
                7 => {
                    if let Some(v) = choose(r, &vcpus)
                        && s.remove_vcpu(v).is_ok()
                    {
                        removed.push(v);
                    }
                }
                8 => {
                    if let Some(d) = choose(r, &doms)
                        && s.remove_domain(d).is_ok()
                    {
                        for &v in &vcpus {
                            if s.vcpu_used_ns(v).is_err() && !removed.contains(&v) {
                                removed.push(v);
                            }
                        }
                    }
                }
                9 => {
                    quiet[cpu] = 0;
                    if let Ok(d) = s.pick_next(cpu, now) {
                        assert!(d.slice_ns >= MIN_SLICE_NS);
                        if d.vcpu.is_some() {
                            assert!(d.slice_ns <= SLICE_NS);
                        }
                    }
                }
                10 => {
                    quiet[cpu] = 0;
                    let running = s.current(cpu);
                    let v = if r.below(4) == 0 {
                        choose(r, &vcpus)
                    } else {
                        running
                    };
                    if let Some(v) = v {
                        let ran = if r.below(50) == 0 {
                            u64::MAX
                        } else {
                            r.below(20 * MS)
                        };
                        let _ = s.descheduled(cpu, v, ran, now, r.below(3) != 0);
                    }
                }
                _ => {
                    let leave = s.tick(cpu, now);
                    if now < quiet[cpu] {
                        assert_eq!(leave, Ok(false), "step {step}: a quiet tick on CPU {cpu}");
                    }
                    quiet[cpu] = match leave {
                        Ok(false) => s.quiet_until(cpu),
                        _ => 0,
                    };
                }
            }
            if let Err(e) = s.check_invariants() {
                panic!("step {step}: {e}");
            }
            for &v in &removed {
                assert_eq!(s.cpu_of(v), Err(Error::NoSuchVcpu));
            }
        }
    });
}

/// [`Credit::quiet_until`]'s promise, densely: the clock moves little
/// between ops and ticks are frequent, so many ticks fall inside a quiet
/// time, with wake-ups, parks of capped domains and parameter changes in
/// between. The model of who ends what is `live.rs`'s (see the test
/// above).
#[test]
fn a_quiet_tick_answers_as_the_policy_would() {
    let checked = core::cell::Cell::new(0u64);
    crate::testing::check(200, 2000 * 8, |r| {
        let cpus = 1 + r.below(3) as usize;
        let s = Credit::new(cpus);
        let mut doms: Vec<SchedDom> = Vec::new();
        let mut vcpus: Vec<VcpuId> = Vec::new();
        for _ in 0..2 + r.below(4) {
            let d = s.add_domain(1 + r.below(1000) as u16, 0).unwrap();
            for _ in 0..1 + r.below(3) {
                vcpus.push(s.add_vcpu(d).unwrap());
            }
            let cap = if r.below(2) == 0 {
                0
            } else {
                5 + r.below(30) as u32
            };
            s.set_params(d, 1 + r.below(1000) as u16, cap).unwrap();
            doms.push(d);
        }
        let mut now = 0u64;
        let mut quiet = std::vec![0u64; cpus];
        for step in 0..2000 {
            now += r.below(MS / 4);
            let cpu = r.below(cpus as u64) as usize;
            match r.below(10) {
                0 | 1 => {
                    if let Some(v) = choose(r, &vcpus)
                        && let Ok(Some(p)) = s.wake(v, now)
                    {
                        quiet[p.cpu] = 0;
                    }
                }
                2 => {
                    if let Some(v) = choose(r, &vcpus) {
                        let _ = s.block(v, now);
                    }
                }
                3 => {
                    quiet[cpu] = 0;
                    let _ = s.pick_next(cpu, now);
                }
                4 => {
                    quiet[cpu] = 0;
                    if let Some(v) = s.current(cpu) {
                        let _ = s.descheduled(cpu, v, r.below(5 * MS), now, r.below(3) != 0);
                    }
                }
                5 if r.below(4) == 0 => {
                    if let Some(d) = choose(r, &doms) {
                        let cap = if r.below(2) == 0 {
                            0
                        } else {
                            5 + r.below(30) as u32
                        };
                        let _ = s.set_params(d, 1 + r.below(1000) as u16, cap);
                        quiet.fill(0);
                    }
                }
                _ => {
                    let leave = s.tick(cpu, now);
                    if now < quiet[cpu] {
                        checked.set(checked.get() + 1);
                        assert_eq!(leave, Ok(false), "step {step}: a quiet tick on CPU {cpu}");
                    }
                    quiet[cpu] = match leave {
                        Ok(false) => s.quiet_until(cpu),
                        _ => 0,
                    };
                }
            }
            if let Err(e) = s.check_invariants() {
                panic!("step {step}: {e}");
            }
        }
    });
    let checked = checked.get();
    std::println!("{checked} ticks inside a quiet time checked");
    assert!(
        checked >= 1000,
        "the quiet times were hardly tested: {checked}"
    );
}

/// `Credit::due`, the "not yet" test that needs no lock, is true exactly
/// when a call would run the accounting: before the first call, from the
/// period's end on, and a whole period after a late call (no backlog).
#[test]
fn the_not_yet_test_says_when_a_call_runs_the_accounting() {
    let s = Credit::new(1);
    let d = s.add_domain(DEFAULT_WEIGHT, 0).unwrap();
    let v = s.add_vcpu(d).unwrap();
    // Before the first call: due at any time (that call sets the period).
    assert!(s.due(0));
    let t0 = 5 * MS;
    s.wake(v, t0).unwrap();
    assert!(!s.due(t0));
    assert!(!s.due(t0 + PERIOD_NS - 1));
    assert!(s.due(t0 + PERIOD_NS));
    // It runs 1 ms (what the accounting will hand out).
    s.pick_next(0, t0).unwrap();
    s.descheduled(0, v, MS, t0 + MS, true).unwrap();
    let ran = -(MS as i64);
    // A call short of the period grants nothing; the one at it does.
    s.tick(0, t0 + PERIOD_NS - 1).unwrap();
    assert_eq!(s.credit(v).unwrap(), ran);
    s.tick(0, t0 + PERIOD_NS).unwrap();
    assert!(s.credit(v).unwrap() > ran);
    assert!(!s.due(t0 + PERIOD_NS));
    assert!(s.due(t0 + 2 * PERIOD_NS));
    // After a long quiet time: a period from the late call, no backlog.
    let late = t0 + 10 * PERIOD_NS + 7;
    s.tick(0, late).unwrap();
    assert!(!s.due(late + PERIOD_NS - 1));
    assert!(s.due(late + PERIOD_NS));
    s.check_invariants().unwrap();
}

/// A pause that comes while a wake-up is placing the vCPU (after its
/// claim, before it takes its target's lock) leaves it blocked: the
/// pause marks the claimed state, and the wake-up's settling swap finds
/// the mark. `wake_if`'s question runs at that very point.
#[test]
fn a_pause_while_a_wake_up_places_the_vcpu_leaves_it_blocked() {
    let s = Credit::new(2);
    let d = s.add_domain(DEFAULT_WEIGHT, 0).unwrap();
    let v = s.add_vcpu(d).unwrap();
    let placed = s.wake_if(v, 0, || {
        s.block(v, 0).unwrap();
        true
    });
    assert_eq!(placed, Ok(None));
    assert_eq!(s.cpu_of(v), Ok(None));
    assert_eq!(s.is_blocked(v), Ok(true));
    assert_eq!(s.check_invariants(), Ok(()));
    // A later wake-up queues it as usual.
    assert!(s.wake(v, 0).unwrap().is_some());
    assert_eq!(s.check_invariants(), Ok(()));
}

/// A pause and then a wake-up (an unpause) while the first wake-up places
/// the vCPU: the second finds it claimed and cancels the pause; the first
/// queues it, once.
#[test]
fn a_wake_up_after_a_pause_while_placing_cancels_the_pause() {
    let s = Credit::new(2);
    let d = s.add_domain(DEFAULT_WEIGHT, 0).unwrap();
    let v = s.add_vcpu(d).unwrap();
    let placed = s.wake_if(v, 0, || {
        s.block(v, 0).unwrap();
        assert_eq!(s.wake(v, 0), Ok(None), "a second wake-up queued it");
        true
    });
    assert!(placed.unwrap().is_some(), "not queued");
    assert!(s.cpu_of(v).unwrap().is_some());
    assert_eq!(s.check_invariants(), Ok(()));
}

/// A vCPU removed while a wake-up places it is not queued.
#[test]
fn a_vcpu_removed_while_a_wake_up_places_it_is_not_queued() {
    let s = Credit::new(2);
    let d = s.add_domain(DEFAULT_WEIGHT, 0).unwrap();
    let v = s.add_vcpu(d).unwrap();
    let placed = s.wake_if(v, 0, || {
        s.remove_vcpu(v).unwrap();
        true
    });
    assert_eq!(placed, Ok(None));
    assert_eq!(s.cpu_of(v), Err(Error::NoSuchVcpu));
    assert!((0..2).all(|c| s.waiting(c) == 0));
    assert_eq!(s.check_invariants(), Ok(()));
}

/// An idle CPU whose steal passes over a queue because another CPU holds
/// its lock (adding a domain takes every lock) does not halt for ever:
/// it is told to look again after the shortest slice, and then steals.
#[test]
fn an_idle_cpu_that_found_a_queue_locked_looks_again_soon() {
    let s = Credit::new(2);
    let d = s.add_domain(DEFAULT_WEIGHT, 0).unwrap();
    let v = s.add_vcpu(d).unwrap();
    // Never ran: placed on the least loaded CPU, 0.
    assert_eq!(s.wake(v, 0).unwrap().map(|p| p.cpu), Some(0));
    // CPU 0's lock is held elsewhere while CPU 1 picks.
    let held = s.cpus[0].rq.lock();
    let d1 = s.pick_next(1, MS).unwrap();
    drop(held);
    assert_eq!(d1.vcpu, None);
    assert_eq!(d1.slice_ns, MIN_SLICE_NS, "told to look again soon");
    // Looking again, it steals the vCPU.
    assert_eq!(s.pick_next(1, MS + MIN_SLICE_NS).unwrap().vcpu, Some(v));
    assert_eq!(s.check_invariants(), Ok(()));
}

/// Domains and vCPUs removed give their record slots back: 300 create,
/// run and remove cycles use the first few slots, never new ones (the
/// tables' chunks are never freed, so a slot not reused would be kept).
#[test]
fn removed_domains_and_vcpus_give_their_slots_back() {
    let s = Credit::new(2);
    for k in 0..300u64 {
        let d = s.add_domain(DEFAULT_WEIGHT, 0).unwrap();
        let v = [s.add_vcpu(d).unwrap(), s.add_vcpu(d).unwrap()];
        s.wake(v[0], k * MS).unwrap();
        if let Some(x) = s.pick_next(0, k * MS).unwrap().vcpu {
            s.descheduled(0, x, 10, k * MS + 10, false).unwrap();
        }
        s.take_vcpu(v[0]).unwrap();
        s.take_vcpu(v[1]).unwrap();
        s.remove_domain(d).unwrap();
    }
    assert!(
        s.doms.len() < 4 && s.vcpus.len() < 6,
        "{} domain and {} vCPU slots used",
        s.doms.len(),
        s.vcpus.len()
    );
}

/// Records past the first chunk (made with the table) are reached as
/// those in it: 150 domains with one vCPU each fill three chunks of each
/// table; every vCPU runs, is charged to its own domain and is found by
/// its id, and ids of other slots are told apart.
#[test]
fn records_past_the_first_chunk_are_found() {
    let s = Credit::new(1);
    let n = 150u64;
    let mut ids = Vec::new();
    for _ in 0..n {
        let d = s.add_domain(DEFAULT_WEIGHT, 0).unwrap();
        ids.push((d, s.add_vcpu(d).unwrap()));
    }
    assert!(s.doms.len() > 2 * 64 && s.vcpus.len() > 2 * 64);
    for (k, &(d, v)) in ids.iter().enumerate() {
        let k = k as u64;
        assert_eq!(s.domain_of(v), Ok(d));
        s.wake(v, k * MS).unwrap();
        assert_eq!(s.pick_next(0, k * MS).unwrap().vcpu, Some(v));
        s.descheduled(0, v, 1000 + k, k * MS + 10, false).unwrap();
    }
    for (k, &(d, v)) in ids.iter().enumerate() {
        assert_eq!(s.vcpu_used_ns(v), Ok(1000 + k as u64));
        assert_eq!(s.domain_used_ns(d), Ok(1000 + k as u64));
    }
    let (d, v) = ids[140];
    s.take_vcpu(v).unwrap();
    assert_eq!(s.domain_of(v), Err(Error::NoSuchVcpu));
    s.remove_domain(d).unwrap();
    assert_eq!(s.domain_used_ns(d), Err(Error::NoSuchDomain));
    let beyond = VcpuId {
        index: 64 * 3 + 5,
        generation: v.generation,
    };
    assert_eq!(s.domain_of(beyond), Err(Error::NoSuchVcpu));
    assert_eq!(s.check_invariants(), Ok(()));
}
