//! The direct switch ([`Credit::switch_to`]): when it hands the CPU to the
//! woken vCPU and when it leaves the choice to `pick_next`.
#![allow(clippy::unwrap_used)]
use super::*;

const MS: u64 = 1_000_000;

/// One CPU, `n` domains of one vCPU each; vCPU 0 runs, the rest blocked.
fn setup(cpus: usize, n: usize) -> (Credit, std::vec::Vec<VcpuId>) {
    let mut s = Credit::new(cpus);
    let mut v = std::vec::Vec::new();
    for _ in 0..n {
        let d = s.add_domain(DEFAULT_WEIGHT, 0).unwrap();
        v.push(s.add_vcpu(d).unwrap());
    }
    s.wake(v[0], 0).unwrap();
    assert_eq!(s.pick_next(0, 0).unwrap().vcpu, Some(v[0]));
    (s, v)
}

#[test]
fn the_woken_vcpu_runs_at_once_on_this_cpu() {
    let (mut s, v) = setup(1, 2);
    // v0 sends (waking v1, queued here: the CPU is busy) and blocks.
    let placed = s.wake(v[1], MS).unwrap().unwrap();
    assert_eq!(placed.cpu, 0);
    let d = s.switch_to(0, v[0], MS, v[1], MS).unwrap().unwrap();
    assert_eq!(d.vcpu, Some(v[1]));
    assert_eq!(d.slice_ns, BOOST_SLICE_NS, "woken with credit: boosted");
    assert_eq!(s.cpu_of(v[1]).unwrap(), Some(0));
    assert_eq!(s.cpu_of(v[0]).unwrap(), None, "the sender is blocked");
    assert_eq!(s.run_queue(0).unwrap().current(), Some(v[1]));
    assert_eq!(s.run_queue(0).unwrap().waiting(), 0);
    assert_eq!(s.vcpu_used_ns(v[0]).unwrap(), MS);
    // And back: the ping-pong never goes through pick_next (v0 has credit
    // again, as the accounting would give it).
    s.vcpus[v[0].index as usize].credit = 5 * MS as i64;
    s.wake(v[0], 2 * MS).unwrap();
    let d = s.switch_to(0, v[1], MS, v[0], 2 * MS).unwrap().unwrap();
    assert_eq!(d.vcpu, Some(v[0]));
    s.check_invariants().unwrap();
    // Without credit (OVER) the woken vCPU is left to pick_next.
    s.vcpus[v[1].index as usize].credit = -1;
    s.wake(v[1], 3 * MS).unwrap();
    assert_eq!(s.switch_to(0, v[0], MS, v[1], 3 * MS).unwrap(), None);
    assert_eq!(s.pick_next(0, 3 * MS).unwrap().vcpu, Some(v[1]));
    s.check_invariants().unwrap();
}

#[test]
fn a_better_waiting_vcpu_is_not_skipped() {
    let (mut s, v) = setup(1, 3);
    // v2 was woken earlier and has its boost; v1 is woken with no credit
    // left (OVER after a long run): pick_next decides.
    s.wake(v[2], MS).unwrap();
    s.wake(v[1], MS).unwrap();
    s.vcpus[v[1].index as usize].boost = false;
    s.vcpus[v[1].index as usize].credit = -1;
    assert_eq!(s.switch_to(0, v[0], MS, v[1], MS).unwrap(), None);
    assert_eq!(s.cpu_of(v[0]).unwrap(), None, "the sender is descheduled");
    assert_eq!(s.pick_next(0, MS).unwrap().vcpu, Some(v[2]));
    s.check_invariants().unwrap();
}

#[test]
fn a_vcpu_placed_on_another_cpu_runs_there() {
    let (mut s, v) = setup(2, 2);
    // CPU 1 is idle: the woken vCPU goes there (and that CPU is kicked).
    let placed = s.wake(v[1], MS).unwrap().unwrap();
    assert_eq!((placed.cpu, placed.kick), (1, true));
    assert_eq!(s.switch_to(0, v[0], MS, v[1], MS).unwrap(), None);
    assert_eq!(s.pick_next(1, MS).unwrap().vcpu, Some(v[1]));
    s.check_invariants().unwrap();
}

#[test]
fn stale_or_blocked_targets_and_wrong_cpus() {
    let (mut s, v) = setup(1, 2);
    // v1 was never woken: nothing to switch to.
    assert_eq!(s.switch_to(0, v[0], MS, v[1], MS).unwrap(), None);
    // v0 is no longer running: the deschedule part refuses.
    assert_eq!(
        s.switch_to(0, v[0], MS, v[1], MS),
        Err(Error::NotRunningHere)
    );
    assert_eq!(s.switch_to(5, v[0], MS, v[1], MS), Err(Error::NoSuchCpu));
    s.check_invariants().unwrap();
}
