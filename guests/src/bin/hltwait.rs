//! HLT with interrupts on waits for an event (issue 13): vCPU 0 takes
//! upcalls, then halts (`sti; hlt`, as an idle Linux does)
//! - with its one-shot timer armed and `VIRQ_TIMER` bound: one HLT, woken
//!   by the timer upcall at or after the deadline;
//! - with no timer, until vCPU 1 sends it an ipi 20 ms later: one HLT,
//!   woken by the ipi's upcall (not by a timer) no sooner than that;
//! - idle for 200 ms with a 10 ms periodic timer: about one HLT per tick.
//!
//! Before HLT blocked, each HLT returned at once (a yield): the loops
//! below would count thousands of HLTs, and the domain's exit count (in
//! its `domain-end:` line, checked by `tests/tests/boot/hlt.rs`) would
//! show the storm. Every check prints `hltwait: <name> ok` or `... FAILED`;
//! the last line is `hltwait: <N> checks, <F> failed`, exit code 0 only
//! when F is 0.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use kestrel_guests::Checks;
use pvabi::guest::{VcpuStack, evtchn, sched, time, upcall, vcpu};
use pvabi::{StartInfo, VIRQ_TIMER};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("hltwait");
static STACK1: VcpuStack<16384> = VcpuStack::new();

static TIMER_HITS: AtomicU64 = AtomicU64::new(0);
static IPI_HITS: AtomicU64 = AtomicU64::new(0);
/// vCPU 0's ipi port, which vCPU 1 sends on.
static IPI0: AtomicU32 = AtomicU32::new(0);
/// Set by vCPU 0 just before it halts for the ipi: vCPU 1 then waits
/// [`IPI_DELAY_NS`] and sends.
static GO: AtomicU64 = AtomicU64::new(0);

const IPI_DELAY_NS: u64 = 20_000_000;
/// The longest any wait here may take before it counts as a failure.
const GIVE_UP_NS: u64 = 5_000_000_000;

fn on_timer(_: u32) {
    TIMER_HITS.fetch_add(1, Ordering::SeqCst);
}

fn on_ipi(_: u32) {
    IPI_HITS.fetch_add(1, Ordering::SeqCst);
}

/// vCPU 1: waits (blocking) for GO, sleeps, sends the ipi, then idles.
extern "sysv64" fn worker(_: u64) -> ! {
    let give_up = time::now_ns() + GIVE_UP_NS;
    while GO.load(Ordering::SeqCst) == 0 && time::now_ns() < give_up {
        let _ = sched::block(Some(time::now_ns() + 1_000_000));
    }
    let _ = time::sleep_ns(IPI_DELAY_NS);
    let _ = evtchn::send(IPI0.load(Ordering::SeqCst));
    loop {
        let _ = sched::block(None);
    }
}

/// Halts until `c` passes `before` (or [`GIVE_UP_NS`]): the HLTs it took.
fn halts_until_above(c: &AtomicU64, before: u64) -> u64 {
    let give_up = time::now_ns() + GIVE_UP_NS;
    let mut halts = 0;
    while c.load(Ordering::SeqCst) <= before && time::now_ns() < give_up {
        upcall::halt();
        halts += 1;
    }
    halts
}

fn main(_si: &StartInfo) -> i32 {
    CHECKS.check("init_control", upcall::init(0xe0).map_or(-1, |_| 0), 0);
    let tport = evtchn::bind_virq(VIRQ_TIMER, 0).unwrap_or(0);
    let _ = upcall::set_handler(tport, on_timer);
    let ipi0 = evtchn::bind_ipi(0).unwrap_or(0);
    IPI0.store(ipi0, Ordering::SeqCst);
    let _ = upcall::set_handler(ipi0, on_ipi);
    CHECKS.check("ports bound", i64::from(tport != 0 && ipi0 != 0), 1);
    CHECKS.check(
        "enable vcpu0",
        upcall::enable_this_vcpu(0).map_or(-1, |_| 0),
        0,
    );

    // 1. The timer wakes a halted vCPU, once, not early.
    let deadline = time::now_ns() + 20_000_000;
    let _ = sched::set_timer(Some(deadline));
    let halts = halts_until_above(&TIMER_HITS, 0);
    let woke = time::now_ns();
    pvabi::println!("hltwait: timer: {halts} halt(s)");
    CHECKS.check("timer: one halt", halts as i64, 1);
    CHECKS.check(
        "timer: upcall taken",
        TIMER_HITS.load(Ordering::SeqCst) as i64,
        1,
    );
    CHECKS.check(
        "timer: not before its deadline",
        i64::from(woke >= deadline),
        1,
    );

    // 2. An ipi from vCPU 1 wakes it; no timer is armed.
    let _ = sched::set_timer(None);
    if let Some(stack) = STACK1.take() {
        CHECKS.check(
            "vcpu 1 up",
            vcpu::start(1, worker, stack, 0).map_or(-1, |_| 0),
            0,
        );
    }
    let timers = TIMER_HITS.load(Ordering::SeqCst);
    let t0 = time::now_ns();
    GO.store(t0, Ordering::SeqCst);
    let halts = halts_until_above(&IPI_HITS, 0);
    let waited = time::now_ns() - t0;
    pvabi::println!("hltwait: ipi: {halts} halt(s), {} us", waited / 1000);
    CHECKS.check("ipi: one halt", halts as i64, 1);
    CHECKS.check(
        "ipi: upcall taken",
        IPI_HITS.load(Ordering::SeqCst) as i64,
        1,
    );
    CHECKS.check(
        "ipi: no timer upcall meanwhile",
        (TIMER_HITS.load(Ordering::SeqCst) - timers) as i64,
        0,
    );
    CHECKS.check(
        "ipi: not before it was sent",
        i64::from(waited >= IPI_DELAY_NS),
        1,
    );

    // 3. Idle for 200 ms on a 10 ms periodic timer: one HLT per tick (a
    //    wake-up for something else may add one).
    let end = time::now_ns() + 200_000_000;
    let before = TIMER_HITS.load(Ordering::SeqCst);
    let mut halts = 0;
    while time::now_ns() < end {
        // Read before arming: a tick that comes before the read would
        // otherwise be waited for again, with no timer armed.
        let seen = TIMER_HITS.load(Ordering::SeqCst);
        let _ = sched::set_timer(Some(time::now_ns() + 10_000_000));
        halts += halts_until_above(&TIMER_HITS, seen);
    }
    let ticks = TIMER_HITS.load(Ordering::SeqCst) - before;
    pvabi::println!("hltwait: idle: {halts} halt(s) for {ticks} tick(s)");
    CHECKS.check("idle: ticks came", i64::from(ticks >= 1), 1);
    CHECKS.check("idle: one halt per tick", i64::from(halts <= ticks + 2), 1);

    let (n, f) = CHECKS.counts();
    pvabi::println!("hltwait: {n} checks, {f} failed");
    i32::from(f != 0)
}
