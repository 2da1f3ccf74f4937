//! The direct switch ([`Credit::switch_to`]): when it hands the CPU to the
//! woken vCPU and when it leaves the choice to `pick_next`.
#![allow(clippy::unwrap_used)]
use super::*;

const MS: u64 = 1_000_000;

/// One CPU, `n` domains of one vCPU each; vCPU 0 runs, the rest blocked.
fn setup(cpus: usize, n: usize) -> (Credit, std::vec::Vec<VcpuId>) {
    let s = Credit::new(cpus);
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
    let (s, v) = setup(1, 2);
    // v0 sends (waking v1, queued here: the CPU is busy) and blocks.
    let placed = s.wake(v[1], MS).unwrap().unwrap();
    assert_eq!(placed.cpu, 0);
    let d = s.switch_to(0, v[0], MS, v[1], MS).unwrap().unwrap();
    assert_eq!(d.vcpu, Some(v[1]));
    assert_eq!(d.slice_ns, BOOST_SLICE_NS, "woken with credit: boosted");
    assert_eq!(s.cpu_of(v[1]).unwrap(), Some(0));
    assert_eq!(s.cpu_of(v[0]).unwrap(), None, "the sender is blocked");
    assert_eq!(s.current(0), Some(v[1]));
    assert_eq!(s.waiting(0), 0);
    assert_eq!(s.vcpu_used_ns(v[0]).unwrap(), MS);
    // And back: the ping-pong never goes through pick_next (v0 has credit
    // again, as the accounting would give it).
    s.set_credit(v[0], 5 * MS as i64);
    s.wake(v[0], 2 * MS).unwrap();
    let d = s.switch_to(0, v[1], MS, v[0], 2 * MS).unwrap().unwrap();
    assert_eq!(d.vcpu, Some(v[0]));
    s.check_invariants().unwrap();
    // Without credit (OVER) the woken vCPU is left to pick_next.
    s.set_credit(v[1], -1);
    s.wake(v[1], 3 * MS).unwrap();
    assert_eq!(s.switch_to(0, v[0], MS, v[1], 3 * MS).unwrap(), None);
    assert_eq!(s.pick_next(0, 3 * MS).unwrap().vcpu, Some(v[1]));
    s.check_invariants().unwrap();
}

#[test]
fn a_better_waiting_vcpu_is_not_skipped() {
    let (s, v) = setup(1, 3);
    // v2 was woken earlier and has its boost; v1 is woken with no credit
    // left (OVER after a long run): pick_next decides.
    s.wake(v[2], MS).unwrap();
    s.wake(v[1], MS).unwrap();
    s.set_boost(v[1], false);
    s.set_credit(v[1], -1);
    assert_eq!(s.switch_to(0, v[0], MS, v[1], MS).unwrap(), None);
    assert_eq!(s.cpu_of(v[0]).unwrap(), None, "the sender is descheduled");
    assert_eq!(s.pick_next(0, MS).unwrap().vcpu, Some(v[2]));
    s.check_invariants().unwrap();
}

#[test]
fn a_vcpu_placed_on_another_cpu_runs_there() {
    let (s, v) = setup(2, 2);
    // CPU 1 is idle: the woken vCPU goes there (and that CPU is kicked).
    let placed = s.wake(v[1], MS).unwrap().unwrap();
    assert_eq!((placed.cpu, placed.kick), (1, true));
    assert_eq!(s.switch_to(0, v[0], MS, v[1], MS).unwrap(), None);
    assert_eq!(s.pick_next(1, MS).unwrap().vcpu, Some(v[1]));
    s.check_invariants().unwrap();
}

#[test]
fn stale_or_blocked_targets_and_wrong_cpus() {
    let (s, v) = setup(1, 2);
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

/// [`Credit::wake_switch`]: the woken vCPU's wake left to the switch.
#[test]
fn a_deferred_wake_runs_the_vcpu_here_without_a_queue_round_trip() {
    let (s, v) = setup(1, 2);
    let steps = s.steps();
    let h = s.wake_switch(0, v[0], MS, v[1], MS).unwrap();
    assert_eq!(h.placed, None);
    let d = h.run.unwrap();
    assert_eq!(d.vcpu, Some(v[1]));
    assert_eq!(d.slice_ns, BOOST_SLICE_NS, "woken with credit: boosted");
    assert_eq!(s.current(0), Some(v[1]));
    assert_eq!(s.waiting(0), 0);
    assert_eq!(s.cpu_of(v[0]).unwrap(), None, "the sender is blocked");
    assert_eq!(s.vcpu_used_ns(v[0]).unwrap(), MS);
    assert_eq!(s.steps(), steps, "no queue was searched");
    s.check_invariants().unwrap();
    // And back, as the ping-pong does.
    s.set_credit(v[0], 5 * MS as i64);
    let d = s
        .wake_switch(0, v[1], MS, v[0], 2 * MS)
        .unwrap()
        .run
        .unwrap();
    assert_eq!(d.vcpu, Some(v[0]));
    s.check_invariants().unwrap();
}

#[test]
fn a_deferred_wake_without_credit_or_parked_is_a_wake_and_a_pick() {
    let (s, v) = setup(1, 3);
    // OVER: woken the usual way (queued here), and this CPU's pick made
    // at once: v2, boosted and waiting, runs.
    s.wake(v[2], MS).unwrap();
    s.set_credit(v[1], -1);
    let h = s.wake_switch(0, v[0], MS, v[1], MS).unwrap();
    assert_eq!(h.run.and_then(|d| d.vcpu), Some(v[2]));
    assert_eq!(h.placed, None);
    assert_eq!(s.cpu_of(v[1]).unwrap(), Some(0), "queued");
    assert_eq!(s.current(0), Some(v[2]));
    s.check_invariants().unwrap();
    // OVER and alone: the pick runs it, unboosted.
    let (s, v) = setup(1, 2);
    s.set_credit(v[1], -1);
    let d = s.wake_switch(0, v[0], MS, v[1], MS).unwrap().run.unwrap();
    assert_eq!((d.vcpu, d.slice_ns), (Some(v[1]), SLICE_NS));
    s.check_invariants().unwrap();
    // A parked domain's vCPU is queued, not run: the CPU idles.
    let (s, v) = setup(1, 2);
    s.park(s.domain_of(v[1]).unwrap());
    let h = s.wake_switch(0, v[0], MS, v[1], MS).unwrap();
    assert_eq!((h.run, h.placed), (None, None));
    assert_eq!(s.cpu_of(v[1]).unwrap(), Some(0));
    assert_eq!(s.current(0), None);
    s.check_invariants().unwrap();
    // OVER on two CPUs with others waiting here: placed on the idle one,
    // which is kicked; this CPU picks as usual.
    let (s, v) = setup(2, 4);
    s.wake(v[2], MS).unwrap();
    s.wake(v[3], MS).unwrap();
    assert_eq!(s.pick_next(1, MS).unwrap().vcpu, Some(v[2]));
    s.set_credit(v[1], -1);
    s.set_last_cpu(v[1], 1);
    s.set_credit(v[3], -1);
    let h = s.wake_switch(0, v[0], MS, v[1], MS).unwrap();
    assert_eq!(h.run, None);
    assert_eq!(
        h.placed,
        Some(Placed {
            cpu: 1,
            kick: false
        })
    );
    s.check_invariants().unwrap();
}

#[test]
fn a_deferred_wake_someone_else_did_meanwhile_is_a_plain_switch() {
    // Unpause queued the woken vCPU before the switch: as switch_to.
    let (s, v) = setup(1, 2);
    s.wake(v[1], MS).unwrap();
    let d = s.wake_switch(0, v[0], MS, v[1], MS).unwrap().run.unwrap();
    assert_eq!(d.vcpu, Some(v[1]));
    s.check_invariants().unwrap();
    // Placed on the other CPU: left there.
    let (s, v) = setup(2, 2);
    s.wake(v[1], MS).unwrap();
    let h = s.wake_switch(0, v[0], MS, v[1], MS).unwrap();
    assert_eq!((h.run, h.placed), (None, None));
    assert_eq!(s.cpu_of(v[1]).unwrap(), Some(1));
    s.check_invariants().unwrap();
}

#[test]
fn a_deferred_wake_of_a_removed_vcpu_or_from_the_wrong_cpu() {
    let (s, v) = setup(1, 2);
    s.remove_vcpu(v[1]).unwrap();
    let h = s.wake_switch(0, v[0], MS, v[1], MS).unwrap();
    assert_eq!((h.run, h.placed), (None, None));
    assert_eq!(
        s.wake_switch(0, v[0], MS, v[1], MS),
        Err(Error::NotRunningHere)
    );
    assert_eq!(s.wake_switch(3, v[0], MS, v[1], MS), Err(Error::NoSuchCpu));
    s.check_invariants().unwrap();
}

#[test]
fn a_deferred_wake_leaves_the_queue_as_it_was_and_a_paused_sender_blocks() {
    // v2 and v3 wait here unboosted (UNDER); the woken v1, boosted, runs at
    // once, and they keep their places.
    let (s, v) = setup(1, 4);
    s.wake(v[2], MS).unwrap();
    s.wake(v[3], MS).unwrap();
    s.set_boost(v[2], false);
    s.set_boost(v[3], false);
    // The sender was paused while it ran: the pause takes effect at this
    // deschedule, which must still find it running here.
    s.block(v[0], MS).unwrap();
    let d = s.wake_switch(0, v[0], MS, v[1], MS).unwrap().run.unwrap();
    assert_eq!(d.vcpu, Some(v[1]));
    assert_eq!(s.current(0), Some(v[1]));
    assert_eq!(s.waiting(0), 2);
    assert!(s.is_blocked(v[0]).unwrap(), "paused: blocked, not queued");
    s.check_invariants().unwrap();
    s.descheduled(0, v[1], MS, 2 * MS, false).unwrap();
    assert_eq!(s.pick_next(0, 2 * MS).unwrap().vcpu, Some(v[2]));
    s.descheduled(0, v[2], MS, 3 * MS, false).unwrap();
    assert_eq!(s.pick_next(0, 3 * MS).unwrap().vcpu, Some(v[3]));
    s.check_invariants().unwrap();
}
