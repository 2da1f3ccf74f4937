//! Deterministic simulations with a fake clock: CPUs run what the scheduler
//! picks, guests are CPU-bound or I/O-bound, and the scheduler's own
//! accounting is judged.
#![allow(clippy::unwrap_used)]
use super::*;
use std::vec::Vec;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000 * MS;
/// The caller's periodic timer (100 Hz, as in `arch/sched`).
const TICK_NS: u64 = 10 * MS;

#[derive(Clone, Copy)]
enum Load {
    /// Always runnable.
    Hog,
    /// Runs `run_ns` of CPU, then blocks for `sleep_ns`.
    Io { run_ns: u64, sleep_ns: u64 },
}

struct SimVcpu {
    id: VcpuId,
    load: Load,
    burst_left: u64,
    wake_at: Option<u64>,
    woke_at: Option<u64>,
    max_latency: u64,
}

struct Running {
    v: usize,
    start: u64,
    end: u64,
}

struct Sim {
    s: Credit,
    now: u64,
    vcpus: Vec<SimVcpu>,
    cpus: Vec<Option<Running>>,
    next_tick: u64,
    /// How late every slice ends (a late timer interrupt).
    late_ns: u64,
    /// Time between a deschedule and the next pick on that CPU, charged
    /// to nobody (the hypervisor's own work between two guests).
    gap_ns: u64,
    /// Per CPU: no pick before this time.
    busy_until: Vec<u64>,
    /// Slices also end up to this much late, at random (a host that
    /// holds the emulator's thread back), from the generator state `jit`.
    jitter_ns: u64,
    jit: u64,
    /// Every domain made by [`Sim::dom`], in order.
    doms: Vec<SchedDom>,
    /// At each [`PERIOD_NS`] boundary the loop passes: the time, each
    /// domain's CPU time and each vCPU's credit (the grants' trace).
    trace: Vec<(u64, Vec<u64>, Vec<i64>)>,
    next_sample: u64,
}

impl Sim {
    fn new(cpus: usize) -> Self {
        Self {
            s: Credit::new(cpus),
            now: 0,
            vcpus: Vec::new(),
            cpus: (0..cpus).map(|_| None).collect(),
            next_tick: TICK_NS,
            late_ns: 0,
            gap_ns: 0,
            busy_until: std::vec![0; cpus],
            jit: 1,
            jitter_ns: 0,
            doms: Vec::new(),
            trace: Vec::new(),
            next_sample: PERIOD_NS,
        }
    }

    fn dom(&mut self, weight: u16, cap: u32) -> SchedDom {
        let d = self.s.add_domain(weight, cap).unwrap();
        self.doms.push(d);
        d
    }

    /// One line of [`Sim::trace`], when a period boundary was passed.
    fn sample(&mut self) {
        if self.now < self.next_sample {
            return;
        }
        self.next_sample += PERIOD_NS;
        let used = self.doms.iter().map(|&d| self.used(d)).collect();
        let credit = self
            .vcpus
            .iter()
            .map(|v| self.s.credit(v.id).unwrap())
            .collect();
        self.trace.push((self.now, used, credit));
    }

    /// Adds a vCPU running `load` and wakes it now.
    fn vcpu(&mut self, d: SchedDom, load: Load) -> usize {
        let id = self.s.add_vcpu(d).unwrap();
        let burst_left = match load {
            Load::Hog => 0,
            Load::Io { run_ns, .. } => run_ns,
        };
        self.vcpus.push(SimVcpu {
            id,
            load,
            burst_left,
            wake_at: Some(self.now),
            woke_at: None,
            max_latency: 0,
        });
        self.vcpus.len() - 1
    }

    fn stop(&mut self, c: usize) {
        let Some(r) = self.cpus[c].take() else {
            return;
        };
        let ran = self.now - r.start;
        let v = &mut self.vcpus[r.v];
        let runnable = match v.load {
            Load::Hog => true,
            Load::Io { run_ns, sleep_ns } => {
                v.burst_left = v.burst_left.saturating_sub(ran);
                if v.burst_left == 0 {
                    v.burst_left = run_ns;
                    v.wake_at = Some(self.now + sleep_ns);
                    false
                } else {
                    true
                }
            }
        };
        self.s
            .descheduled(c, v.id, ran, self.now, runnable)
            .unwrap();
        self.busy_until[c] = self.now + self.gap_ns;
    }

    fn run(&mut self, dur: u64) {
        let end = self.now + dur;
        while self.now < end {
            let mut t = end.min(self.next_tick);
            for c in 0..self.cpus.len() {
                if self.cpus[c].is_none() && self.busy_until[c] > self.now {
                    t = t.min(self.busy_until[c]);
                } else if self.cpus[c].is_none() {
                    let d = self.s.pick_next(c, self.now).unwrap();
                    if let Some(id) = d.vcpu {
                        let v = self.vcpus.iter().position(|v| v.id == id).unwrap();
                        let sv = &mut self.vcpus[v];
                        self.jit = self
                            .jit
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let extra = if self.jitter_ns > 0 {
                            (self.jit >> 33) % self.jitter_ns
                        } else {
                            0
                        };
                        let mut run_end = self.now + d.slice_ns + self.late_ns + extra;
                        if let Load::Io { .. } = sv.load {
                            run_end = run_end.min(self.now + sv.burst_left);
                        }
                        if let Some(w) = sv.woke_at.take() {
                            sv.max_latency = sv.max_latency.max(self.now - w);
                        }
                        self.cpus[c] = Some(Running {
                            v,
                            start: self.now,
                            end: run_end,
                        });
                    } else if d.slice_ns != u64::MAX {
                        t = t.min(self.now + d.slice_ns);
                    }
                }
                if let Some(r) = &self.cpus[c] {
                    t = t.min(r.end);
                }
            }
            for v in &self.vcpus {
                if let Some(w) = v.wake_at {
                    t = t.min(w);
                }
            }
            self.now = t.max(self.now);
            for c in 0..self.cpus.len() {
                if self.cpus[c].as_ref().is_some_and(|r| r.end <= self.now) {
                    self.stop(c);
                }
            }
            for v in 0..self.vcpus.len() {
                if self.vcpus[v].wake_at.is_some_and(|w| w <= self.now) {
                    self.vcpus[v].wake_at = None;
                    self.vcpus[v].woke_at = Some(self.now);
                    let placed = self.s.wake(self.vcpus[v].id, self.now).unwrap();
                    // The IPI: the target's interrupt handler asks `tick`.
                    if let Some(p) = placed
                        && p.kick
                        && self.s.tick(p.cpu, self.now).unwrap()
                    {
                        self.stop(p.cpu);
                    }
                }
            }
            if self.now >= self.next_tick {
                self.next_tick += TICK_NS;
                for c in 0..self.cpus.len() {
                    // With late slice ends, the one-shot timer at the
                    // slice's end is the only stop (as in `arch/sched`).
                    if self.s.tick(c, self.now).unwrap() && self.late_ns == 0 {
                        self.stop(c);
                    }
                }
            }
            assert_eq!(self.s.check_invariants(), Ok(()));
            self.sample();
        }
        // Charge what still runs, so the accounting covers the whole run.
        for c in 0..self.cpus.len() {
            self.stop(c);
        }
    }

    fn used(&self, d: SchedDom) -> u64 {
        self.s.domain_used_ns(d).unwrap()
    }
}

/// Share of one CPU over `dur`, in percent.
fn pct(ns: u64, dur: u64) -> f64 {
    ns as f64 * 100.0 / dur as f64
}

#[test]
fn weights_1_to_3_on_one_cpu() {
    let mut sim = Sim::new(1);
    let a = sim.dom(100, 0);
    let b = sim.dom(300, 0);
    sim.vcpu(a, Load::Hog);
    sim.vcpu(b, Load::Hog);
    sim.run(10 * SEC);
    let (ua, ub) = (sim.used(a), sim.used(b));
    let ratio = ua as f64 / ub as f64;
    std::println!("1:3 weights: {ua} ns vs {ub} ns, ratio {ratio:.4} (want 0.3333)");
    assert!((ratio - 1.0 / 3.0).abs() <= 0.05 / 3.0, "ratio {ratio}");
    assert!(ua + ub >= 10 * SEC - SLICE_NS, "work conserving");
}

/// Weights 1:3 on one CPU (schedctl's `sched_*_weights` boot tests) give
/// 3:1 within 10 % whatever time passes between two guests uncharged
/// (none, or 150 or 300 us per switch: 1.5 to 3 % of a slice, what an
/// emulator's hypervisor path costs), however late slices end (up to 3 or
/// 6 ms at random: QEMU without `-icount` on a loaded host) and whatever
/// the phase of the slices against the accounting's period (the burners
/// start 0 to 30 ms into a period, after a control domain that then
/// sleeps, as schedctl does). When the accounting handed out a whole
/// period per CPU however much was charged, the uncharged time inflated
/// every credit to the upper bound and the two took turns (1.17:1 at
/// 300 us in this simulation, 2.12:1 in Bochs); when it handed out what
/// was charged but at most a period per CPU, late slices deflated it to
/// the lower bound (1.90:1 at 6 ms, 2.56:1 in QEMU under CI's load).
#[test]
fn weights_hold_whatever_the_overhead_and_phase() {
    for (gap, jitter) in [
        (0, 0),
        (150_000, 0),
        (300_000, 0),
        (50_000, 3_000_000),
        (50_000, 6_000_000),
    ] {
        let (mut lo, mut hi) = (f64::MAX, 0.0f64);
        for k in 0..60u64 {
            let mut sim = Sim::new(1);
            sim.late_ns = 50_000;
            sim.gap_ns = gap;
            sim.jitter_ns = jitter;
            sim.jit = k + 1;
            let ctl = sim.dom(256, 0);
            let c = sim.vcpu(ctl, Load::Hog);
            sim.run(k * 500_000 + 1);
            sim.vcpus[c].load = Load::Io {
                run_ns: 1,
                sleep_ns: 100 * SEC,
            };
            let light = sim.dom(128, 0);
            let heavy = sim.dom(384, 0);
            sim.vcpu(light, Load::Hog);
            sim.vcpu(heavy, Load::Hog);
            let (l0, h0) = (sim.used(light), sim.used(heavy));
            sim.run(2 * SEC);
            let (l, h) = (sim.used(light) - l0, sim.used(heavy) - h0);
            let r = h as f64 / l as f64;
            (lo, hi) = (lo.min(r), hi.max(r));
        }
        std::println!("gap {gap} ns, jitter {jitter} ns: heavy:light from {lo:.3} to {hi:.3}");
        assert!(
            lo >= 2.7 && hi <= 3.3,
            "gap {gap} ns, jitter {jitter} ns: {lo:.3} to {hi:.3}"
        );
    }
}

/// The grants of one CPU with weights 1:3 (schedctl's 128 and 384, as
/// the `sched_*_weights` boot tests), both burning, pinned to the figure:
/// a locking change (issue 11's per-CPU run-queue locks) must leave the
/// policy's arithmetic as it is, and on one CPU nothing runs concurrently,
/// so any drift here is a change of behaviour (a split of the scheduler
/// once gave 2.56:1 instead of 3:1 in Bochs, which runs this on 1 CPU).
/// The figures are what `lead` (e621904) produces.
#[test]
fn weights_1_to_3_on_one_cpu_grant_the_same_as_before() {
    let mut sim = Sim::new(1);
    let light = sim.dom(128, 0);
    let heavy = sim.dom(384, 0);
    sim.vcpu(light, Load::Hog);
    sim.vcpu(heavy, Load::Hog);
    sim.run(2 * SEC);
    let first: Vec<_> = sim.trace.iter().take(6).cloned().collect();
    let (l, h) = (sim.used(light), sim.used(heavy));
    std::println!("1:3 on one CPU: light {l} ns, heavy {h} ns; first periods {first:?}");
    assert_eq!((l, h), (PINNED_LIGHT, PINNED_HEAVY), "CPU time after 2 s");
    assert_eq!(first, pinned_first_periods(), "per-period trace");
}

/// Every answer of the policy's API over a fixed pseudo-random sequence of
/// 20,000 operations on each of 1 to 4 CPUs (wake, block, pick, deschedule,
/// tick, `quiet_until`, `switch_to`, `wake_switch`, `set_params`; capped
/// and uncapped domains, accounting passes), and after each the credits,
/// CPUs, CPU time and parameters, folded into one digest and pinned: as
/// the grant pin above, for the locking changes of issue 11, which must
/// leave every answer as it is, here on several CPUs too. An intended
/// change of the policy updates the figure (the test prints it). The step
/// count is left out: it measures the work done, which per-CPU locks
/// change (a wake-up reads the other CPUs' published idleness instead of
/// scanning their queues). The per-CPU locks left the figure main
/// (c19b24b) produced as it was; it changed since, on purpose, when the
/// accounting began to hand out only the time charged
/// (`weights_hold_whatever_the_overhead_and_phase`, at a434d06), and when
/// its operations came from proptest's fixed-seed generator instead of a
/// hand-written xorshift (the figure below).
#[test]
fn random_ops_answer_as_before() {
    use proptest::prelude::Rng;
    use proptest::test_runner::{RngAlgorithm, TestRng};
    // proptest's fixed-seed generator: the same sequence on every run.
    let mut rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut rnd = move |n: u64| rng.next_u64() % n;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut fold = |s: &str| {
        for b in s.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    };
    for cpus in [1usize, 2, 3, 4] {
        let s = Credit::new(cpus);
        let mut doms = Vec::new();
        let mut vcpus = Vec::new();
        let mut now = 0u64;
        for _ in 0..3 {
            let cap = [0u32, 0, 10, 30, 100][rnd(5) as usize];
            let w = [64u16, 256, 768][rnd(3) as usize];
            let d = s.add_domain(w, cap.min(100)).unwrap();
            doms.push(d);
            for _ in 0..(1 + rnd(3)) {
                vcpus.push(s.add_vcpu(d).unwrap());
            }
        }
        for _ in 0..20_000 {
            now += rnd(3_000_000);
            let v = vcpus[rnd(vcpus.len() as u64) as usize];
            let c = rnd(cpus as u64) as usize;
            let out = match rnd(10) {
                0 | 1 => std::format!("w{:?}", s.wake(v, now)),
                2 => std::format!("b{:?}", s.block(v, now)),
                3 | 4 => std::format!("p{:?}", s.pick_next(c, now)),
                5 | 6 => {
                    let cur = s.current(c);
                    match cur {
                        Some(x) => std::format!(
                            "d{:?}",
                            s.descheduled(c, x, rnd(12_000_000), now, rnd(4) != 0)
                        ),
                        None => std::format!("t{:?}", s.tick(c, now)),
                    }
                }
                7 => std::format!("t{:?}{}", s.tick(c, now), s.quiet_until(c)),
                8 => {
                    let cur = s.current(c);
                    match cur {
                        Some(x) if rnd(2) == 0 => {
                            std::format!("s{:?}", s.switch_to(c, x, rnd(5_000_000), v, now))
                        }
                        Some(x) => {
                            std::format!("x{:?}", s.wake_switch(c, x, rnd(5_000_000), v, now))
                        }
                        None => std::format!("q{}", s.quiet_until(c)),
                    }
                }
                _ => {
                    let d = doms[rnd(doms.len() as u64) as usize];
                    let cap = [0u32, 0, 10, 30, 100][rnd(5) as usize];
                    std::format!("sp{:?}", s.set_params(d, 1 + rnd(900) as u16, cap))
                }
            };
            fold(&out);
            for &x in &vcpus {
                fold(&std::format!("{:?}{:?}", s.credit(x), s.cpu_of(x)));
            }
            for &d in &doms {
                fold(&std::format!("{:?}{:?}", s.domain_used_ns(d), s.params(d)));
            }
            s.check_invariants().unwrap();
        }
    }
    std::println!("random ops: digest {h:#018x}");
    assert_eq!(h, PINNED_DIGEST, "the policy answered differently");
}

const PINNED_DIGEST: u64 = 0xc11c_5811_c45f_dae2;

/// 2.93:1 (the 10 ms ticks cut the shares to whole slices).
const PINNED_LIGHT: u64 = 509_000_000;
const PINNED_HEAVY: u64 = 1_491_000_000;

/// (time, [light, heavy] CPU time, [light, heavy] credit) at the first
/// six period boundaries.
fn pinned_first_periods() -> Vec<(u64, Vec<u64>, Vec<i64>)> {
    let ms = |n: u64| n * MS;
    let c = |n: i64| n * 500_000;
    std::vec![
        (ms(30), std::vec![ms(19), ms(11)], std::vec![c(-23), c(23)]),
        (ms(60), std::vec![ms(29), ms(31)], std::vec![c(-28), c(28)]),
        (ms(90), std::vec![ms(39), ms(51)], std::vec![c(-33), c(33)]),
        (ms(120), std::vec![ms(49), ms(71)], std::vec![c(-38), c(38)]),
        (ms(150), std::vec![ms(59), ms(91)], std::vec![c(-43), c(43)]),
        (
            ms(180),
            std::vec![ms(59), ms(121)],
            std::vec![c(-28), c(28)]
        ),
    ]
}

#[test]
fn cap_25_beside_a_hog() {
    let mut sim = Sim::new(1);
    let capped = sim.dom(DEFAULT_WEIGHT, 25);
    let hog = sim.dom(DEFAULT_WEIGHT, 0);
    sim.vcpu(capped, Load::Hog);
    sim.vcpu(hog, Load::Hog);
    sim.run(10 * SEC);
    let (c, h) = (
        pct(sim.used(capped), 10 * SEC),
        pct(sim.used(hog), 10 * SEC),
    );
    std::println!("cap 25: capped {c:.2}%, hog {h:.2}%");
    assert!(c <= 25.5, "capped domain used {c}%");
    assert!(c >= 24.0, "the cap is not a starvation: {c}%");
    assert!(h >= 74.0, "hog got {h}%");
}

#[test]
fn cap_holds_when_slices_end_late() {
    // Every slice ends 1.5 ms after the scheduler said (an emulator's
    // timer under load did 1.3 ms): the overrun is a debt, not a gift.
    let mut sim = Sim::new(1);
    sim.late_ns = 1_500_000;
    let capped = sim.dom(DEFAULT_WEIGHT, 25);
    let hog = sim.dom(DEFAULT_WEIGHT, 0);
    sim.vcpu(capped, Load::Hog);
    sim.vcpu(hog, Load::Hog);
    sim.run(10 * SEC);
    let c = pct(sim.used(capped), 10 * SEC);
    std::println!("cap 25, slices 1.5 ms late: capped {c:.2}%");
    assert!(c <= 25.5, "capped domain used {c}%");
    assert!(c >= 23.5, "the cap is not a starvation: {c}%");
}

#[test]
fn capped_alone_leaves_the_cpu_idle() {
    let mut sim = Sim::new(1);
    let capped = sim.dom(DEFAULT_WEIGHT, 40);
    sim.vcpu(capped, Load::Hog);
    sim.run(3 * SEC);
    let c = pct(sim.used(capped), 3 * SEC);
    std::println!("cap 40 alone: {c:.2}%");
    assert!((39.0..=40.5).contains(&c), "{c}%");
}

#[test]
fn cap_150_on_two_vcpus_beside_a_hog() {
    let mut sim = Sim::new(2);
    let capped = sim.dom(u16::MAX, 0);
    assert_eq!(
        sim.s.set_params(capped, u16::MAX, 150),
        Err(Error::BadParam)
    );
    sim.vcpu(capped, Load::Hog);
    sim.vcpu(capped, Load::Hog);
    sim.s.set_params(capped, u16::MAX, 150).unwrap();
    assert_eq!(
        sim.s.set_params(capped, u16::MAX, 201),
        Err(Error::BadParam)
    );
    let hog = sim.dom(DEFAULT_WEIGHT, 0);
    sim.vcpu(hog, Load::Hog);
    sim.vcpu(hog, Load::Hog);
    sim.run(10 * SEC);
    let (c, h) = (
        pct(sim.used(capped), 10 * SEC),
        pct(sim.used(hog), 10 * SEC),
    );
    std::println!("cap 150 on 2 vCPUs / 2 CPUs: capped {c:.2}%, hog {h:.2}% (of one CPU)");
    assert!(c <= 151.0, "capped domain used {c}%");
    assert!(c >= 145.0, "{c}%");
    assert!(h >= 48.0, "hog got {h}%");
}

fn equal_hogs(cpus: usize, n: usize) -> Vec<f64> {
    let mut sim = Sim::new(cpus);
    let doms: Vec<SchedDom> = (0..n).map(|_| sim.dom(DEFAULT_WEIGHT, 0)).collect();
    for &d in &doms {
        sim.vcpu(d, Load::Hog);
    }
    sim.run(10 * SEC);
    doms.iter().map(|&d| pct(sim.used(d), 10 * SEC)).collect()
}

#[test]
fn four_hogs_on_two_cpus_get_half_each() {
    let shares = equal_hogs(2, 4);
    std::println!("4 hogs on 2 CPUs: {shares:.2?}");
    for s in shares {
        assert!((s - 50.0).abs() <= 2.5, "{s}%");
    }
}

#[test]
fn three_hogs_on_two_cpus_migrate_to_two_thirds_each() {
    let shares = equal_hogs(2, 3);
    std::println!("3 hogs on 2 CPUs: {shares:.2?}");
    for s in shares {
        assert!((s - 200.0 / 3.0).abs() <= 200.0 / 3.0 * 0.05, "{s}%");
    }
}

#[test]
fn io_guest_wakes_within_a_slice_and_hogs_share_the_rest() {
    let mut sim = Sim::new(1);
    let a = sim.dom(DEFAULT_WEIGHT, 0);
    let b = sim.dom(DEFAULT_WEIGHT, 0);
    let io = sim.dom(DEFAULT_WEIGHT, 0);
    sim.vcpu(a, Load::Hog);
    sim.vcpu(b, Load::Hog);
    let v = sim.vcpu(
        io,
        Load::Io {
            run_ns: MS / 2,
            sleep_ns: 20 * MS,
        },
    );
    sim.run(5 * SEC);
    let lat = sim.vcpus[v].max_latency;
    let (ua, ub, ui) = (sim.used(a), sim.used(b), sim.used(io));
    std::println!("io guest: worst wake-to-run {lat} ns, used {ui} ns; hogs {ua} / {ub}");
    assert!(lat <= SLICE_NS, "woken vCPU waited {lat} ns");
    // It asked for 0.5 ms every 20.5 ms and should get all of it.
    assert!(pct(ui, 5 * SEC) >= 2.3, "{ui}");
    let r = ua as f64 / ub as f64;
    assert!((r - 1.0).abs() <= 0.05, "hogs {r}");
}

#[test]
fn wake_boost_cannot_be_gamed() {
    // Blocks for a moment after every 0.9 ms, to be boosted on each wake.
    let mut sim = Sim::new(1);
    let gamer = sim.dom(DEFAULT_WEIGHT, 0);
    let hog = sim.dom(DEFAULT_WEIGHT, 0);
    sim.vcpu(
        gamer,
        Load::Io {
            run_ns: 900_000,
            sleep_ns: 10_000,
        },
    );
    sim.vcpu(hog, Load::Hog);
    sim.run(10 * SEC);
    let (g, h) = (pct(sim.used(gamer), 10 * SEC), pct(sim.used(hog), 10 * SEC));
    std::println!("boost gaming: gamer {g:.2}%, hog {h:.2}%");
    assert!(g <= 55.0, "gamer got {g}%");
    assert!(h >= 44.0, "hog got {h}%");
}
