//! The paravirtual clock and timed waits, on four vCPUs.
//!
//! 1. Monotonicity: vCPU 0 starts vCPUs 1-3; all four read the PV clock
//!    (`time::now_ns`, no exit) in a loop for `ms=` milliseconds (default
//!    300). Each checks that its own readings never go backwards, and that a
//!    reading is never behind the latest value any vCPU published before it
//!    (an `AtomicU64` every vCPU raises to what it read): cross-vCPU
//!    monotonicity. Each yields every 2 ms, so all four take turns on
//!    fewer CPUs.
//! 2. The hypervisor's CPU-time accounting agrees with the clock: a vCPU
//!    cannot have run longer than the PV clock says it has been up.
//! 3. Block with a timeout wakes on time: `sched::block(Some(now + 20 ms))`
//!    returns 0 (no event) no earlier than the deadline and at most
//!    `2 ticks + slack` after it (a tick is 10 ms: the scheduler looks at
//!    deadlines on every tick, and the vCPU may wait one more for a CPU);
//!    `slack_ms=` (default 10) covers an emulator's own jitter. Both ends
//!    also check the PV clock against the hypervisor's clock, which judges
//!    the deadline.
//! 4. `set_timer(now + 15 ms)` then `wait_for(EVENT_TIMER, ..)` returns the
//!    timer event, after the deadline and within the same bound. (A safety
//!    deadline of one second keeps a lost timer from hanging the test: the
//!    block's own deadline raises no event, so it shows as a failure.)
//!
//! Command line (all optional): `ms=` (300), `slack_ms=` (10), `waits=0`
//! to skip 3 and 4 (for a run whose clock is the host's, where host
//! scheduling would decide the latencies).
//!
//! Prints the figures and one `clock: <name> ok|FAILED ...` line per check,
//! then `clock: <N> checks, <M> failed`; exits 0 iff all passed.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use pvabi::guest::{VcpuStack, sched, time, vcpu};
use pvabi::{EVENT_TIMER, StartInfo, VCPU_BLOCKED};

pvabi::entry_point!(main);

const MS: u64 = 1_000_000;
const US: u64 = 1_000;
/// The scheduler's tick.
const TICK_NS: u64 = 10 * MS;
/// vCPUs the test runs on.
const VCPUS: usize = 4;
/// How often a reading vCPU yields.
const YIELD_EVERY_NS: u64 = 2 * MS;
/// Timed waits of each kind.
const SAMPLES: usize = 5;

static CHECKS: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);

fn check(name: &str, ok: bool, what: core::fmt::Arguments<'_>) -> bool {
    CHECKS.fetch_add(1, Ordering::Relaxed);
    if ok {
        pvabi::println!("clock: {name} ok ({what})");
    } else {
        FAILED.fetch_add(1, Ordering::Relaxed);
        pvabi::println!("clock: {name} FAILED got {what}");
    }
    ok
}

/// The latest reading any vCPU has published.
static LAST: AtomicU64 = AtomicU64::new(0);
/// When the reading loops stop (system time).
static END: AtomicU64 = AtomicU64::new(0);
/// Workers that finished their loop.
static DONE: AtomicU32 = AtomicU32::new(0);

/// One vCPU's findings.
struct Findings {
    reads: AtomicU64,
    /// Readings below this vCPU's previous one, and the worst step back.
    back: AtomicU64,
    worst_back_ns: AtomicU64,
    /// Readings below a value published earlier by any vCPU.
    behind: AtomicU64,
    worst_behind_ns: AtomicU64,
    /// Largest step between two consecutive readings (time off the CPU).
    max_gap_ns: AtomicU64,
    first_ns: AtomicU64,
}

impl Findings {
    const fn new() -> Self {
        Self {
            reads: AtomicU64::new(0),
            back: AtomicU64::new(0),
            worst_back_ns: AtomicU64::new(0),
            behind: AtomicU64::new(0),
            worst_behind_ns: AtomicU64::new(0),
            max_gap_ns: AtomicU64::new(0),
            first_ns: AtomicU64::new(0),
        }
    }
}

static FINDINGS: [Findings; VCPUS] = [const { Findings::new() }; VCPUS];

static STACKS: [VcpuStack<16384>; VCPUS - 1] = [const { VcpuStack::new() }; VCPUS - 1];

/// Reads the clock until `END`, checking every reading.
fn read_loop(id: usize) {
    let f = &FINDINGS[id];
    let end = END.load(Ordering::SeqCst);
    let (mut reads, mut back, mut worst_back, mut behind, mut worst_behind, mut gap) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut prev = 0u64;
    let mut next_yield = 0u64;
    loop {
        // Loaded before the clock is read: whatever another vCPU published
        // was read on its clock before this reading.
        let published = LAST.load(Ordering::SeqCst);
        let t = time::now_ns();
        if prev == 0 {
            f.first_ns.store(t, Ordering::Relaxed);
        } else if t < prev {
            back += 1;
            worst_back = worst_back.max(prev - t);
        } else {
            gap = gap.max(t - prev);
        }
        if t < published {
            behind += 1;
            worst_behind = worst_behind.max(published - t);
        }
        LAST.fetch_max(t, Ordering::SeqCst);
        prev = t;
        reads += 1;
        if t >= end {
            break;
        }
        // Every 2 ms, let the other vCPUs have the CPU: with more vCPUs
        // than CPUs they would otherwise wait for the timer to preempt this
        // one (and Bochs 2.7 never preempts a VT-x guest running with
        // interrupts off, as guests do).
        if t >= next_yield {
            sched::yield_now();
            next_yield = time::now_ns() + YIELD_EVERY_NS;
        }
    }
    f.reads.store(reads, Ordering::Relaxed);
    f.back.store(back, Ordering::Relaxed);
    f.worst_back_ns.store(worst_back, Ordering::Relaxed);
    f.behind.store(behind, Ordering::Relaxed);
    f.worst_behind_ns.store(worst_behind, Ordering::Relaxed);
    f.max_gap_ns.store(gap, Ordering::Relaxed);
}

extern "sysv64" fn worker(id: u64) -> ! {
    read_loop(id as usize);
    DONE.fetch_add(1, Ordering::SeqCst);
    loop {
        let _ = sched::block(None);
    }
}

fn arg(si: &StartInfo, key: &str, default: u64) -> u64 {
    core::str::from_utf8(si.cmdline())
        .unwrap_or("")
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main(si: &StartInfo) -> i32 {
    let loop_ms = arg(si, "ms", 300);
    let slack_ns = arg(si, "slack_ms", 10) * MS;
    let bound_ns = 2 * TICK_NS + slack_ns;
    let info = time::time_info();
    pvabi::println!(
        "clock: start: {} vCPUs, loop {loop_ms} ms, wake-up bound deadline + {} ms (2 ticks of {} ms + slack {} ms)",
        si.nr_vcpus,
        bound_ns / MS,
        TICK_NS / MS,
        slack_ns / MS,
    );
    if let Some(i) = info {
        pvabi::println!(
            "clock: TimeInfo: version {}, flags {:#x}, tsc_timestamp {}, mul {:#x}, shift {}",
            i.version,
            i.flags,
            i.tsc_timestamp,
            i.tsc_to_system_mul,
            i.tsc_shift
        );
    }
    check(
        "has_clock",
        time::has_clock() && time::now_ns() > 0,
        format_args!("now {} ns", time::now_ns()),
    );
    check(
        "tsc_stable_flag",
        info.is_some_and(|i| i.tsc_stable()),
        format_args!("flags {:?}", info.map(|i| i.flags)),
    );

    monotonic(si, loop_ms);
    if arg(si, "waits", 1) != 0 {
        timed_waits(bound_ns);
    } else {
        pvabi::println!("clock: note: waits=0: timed waits skipped");
    }

    let checks = CHECKS.load(Ordering::Relaxed);
    let failed = FAILED.load(Ordering::Relaxed);
    pvabi::println!("clock: {checks} checks, {failed} failed");
    if failed == 0 { 0 } else { 1 }
}

fn monotonic(si: &StartInfo, loop_ms: u64) {
    let want = VCPUS as u32;
    if !check(
        "enough_vcpus",
        si.nr_vcpus >= want,
        format_args!("{} vCPUs", si.nr_vcpus),
    ) {
        return;
    }
    let t0 = time::now_ns();
    END.store(t0 + loop_ms * MS, Ordering::SeqCst);
    let mut up_at = [t0; VCPUS];
    for (i, stack) in STACKS.iter().enumerate() {
        let id = i as u32 + 1;
        up_at[id as usize] = time::now_ns();
        let r = match stack.take() {
            Some(s) => vcpu::start(id, worker, s, u64::from(id)),
            None => Err(pvabi::Error::Busy),
        };
        check("vcpu_up", r.is_ok(), format_args!("vCPU {id}: {r:?}"));
    }
    read_loop(0);
    // The workers stop at the same END; give them time to be scheduled.
    let give_up = time::now_ns() + 5000 * MS;
    while DONE.load(Ordering::SeqCst) < want - 1 && time::now_ns() < give_up {
        let _ = time::sleep_ns(MS);
    }
    let done = DONE.load(Ordering::SeqCst);
    check(
        "workers_finished",
        done == want - 1,
        format_args!("{done} of {} workers", want - 1),
    );
    let mut total = 0;
    for (id, f) in FINDINGS.iter().enumerate() {
        let reads = f.reads.load(Ordering::Relaxed);
        total += reads;
        let (back, worst_back) = (
            f.back.load(Ordering::Relaxed),
            f.worst_back_ns.load(Ordering::Relaxed),
        );
        let (behind, worst_behind) = (
            f.behind.load(Ordering::Relaxed),
            f.worst_behind_ns.load(Ordering::Relaxed),
        );
        pvabi::println!(
            "clock: vCPU {id}: {reads} reads from {} ns, largest step {} us, {back} steps back (worst {worst_back} ns), {behind} behind a published value (worst {worst_behind} ns)",
            f.first_ns.load(Ordering::Relaxed),
            f.max_gap_ns.load(Ordering::Relaxed) / US
        );
        check("reads", reads > 0, format_args!("vCPU {id}: {reads} reads"));
        check(
            "monotonic_on_vcpu",
            back == 0,
            format_args!("vCPU {id}: {back} steps back, worst {worst_back} ns"),
        );
        check(
            "monotonic_across_vcpus",
            behind == 0,
            format_args!(
                "vCPU {id}: {behind} readings behind a published one, worst {worst_behind} ns"
            ),
        );
    }
    pvabi::println!("clock: {total} readings on {want} vCPUs");

    // The hypervisor's accounting of each worker's CPU time cannot exceed
    // the time the PV clock says it has been up (1 ms for rounding).
    let now = time::now_ns();
    for (id, at) in up_at.iter().enumerate().skip(1) {
        let info = vcpu::info(id as u32);
        let up_for = now - at;
        check(
            "cpu_time_within_clock",
            info.is_ok_and(|i| i.cpu_time_ns > 0 && i.cpu_time_ns <= up_for + MS),
            format_args!(
                "vCPU {id}: cpu_time_ns {:?}, up for {up_for} ns",
                info.map(|i| i.cpu_time_ns)
            ),
        );
        check(
            "worker_blocked",
            info.is_ok_and(|i| i.state == VCPU_BLOCKED),
            format_args!("vCPU {id}: state {:?}", info.map(|i| i.state)),
        );
    }
}

fn timed_waits(bound_ns: u64) {
    let _ = sched::poll();
    let mut worst = 0u64;
    let mut best = u64::MAX;
    for i in 0..SAMPLES {
        let deadline = time::now_ns() + 20 * MS;
        let r = sched::block(Some(deadline));
        let woke = time::now_ns();
        let late = woke.wrapping_sub(deadline) as i64;
        worst = worst.max(late.max(0) as u64);
        best = best.min(late.max(0) as u64);
        check(
            "block_20ms_returns_no_event",
            r == Ok(0),
            format_args!("sample {i}: {r:?}"),
        );
        check(
            "block_20ms_on_time",
            woke >= deadline && woke - deadline <= bound_ns,
            format_args!("sample {i}: woke {late} ns after the deadline"),
        );
    }
    pvabi::println!(
        "clock: block(now + 20 ms): woke {} to {} us after the deadline (bound {} us)",
        best / US,
        worst / US,
        bound_ns / US
    );

    let mut worst = 0u64;
    let mut best = u64::MAX;
    for i in 0..SAMPLES {
        let deadline = time::now_ns() + 15 * MS;
        let set = sched::set_timer(Some(deadline));
        let r = sched::wait_for(EVENT_TIMER, Some(deadline + 1000 * MS));
        let woke = time::now_ns();
        let late = woke.wrapping_sub(deadline) as i64;
        worst = worst.max(late.max(0) as u64);
        best = best.min(late.max(0) as u64);
        check(
            "set_timer_15ms_event",
            set.is_ok() && r.is_ok_and(|e| e & EVENT_TIMER != 0),
            format_args!("sample {i}: set {set:?}, wait {r:?}"),
        );
        check(
            "set_timer_15ms_on_time",
            woke >= deadline && woke - deadline <= bound_ns,
            format_args!("sample {i}: event {late} ns after the deadline"),
        );
    }
    pvabi::println!(
        "clock: set_timer(now + 15 ms): event {} to {} us after the deadline (bound {} us)",
        best / US,
        worst / US,
        bound_ns / US
    );
}
