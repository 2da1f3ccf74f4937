//! Event-channel upcalls inside one domain (ABI 1.3), on two vCPUs:
//! VIRQ_TIMER delivered as an upcall, ipis both ways between vCPU 0 and
//! vCPU 1 as upcalls, STATUS of each port kind, a send while masked (the
//! shared mask bit, no hypercall) handled once unmasked, and bind-vcpu
//! moving a port's upcalls to vCPU 1. Every check prints `evupcall:
//! <name> ok` or `... FAILED`; the last line is `evupcall: <N> checks, <F>
//! failed`, and the exit code is 0 only when F is 0.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use kestrel_guests::Checks;
use pvabi::guest::{VcpuStack, evtchn, sched, time, upcall, vcpu};
use pvabi::{
    EVTCHN_STATE_FREE, EVTCHN_STATE_INTERDOMAIN, EVTCHN_STATE_IPI, EVTCHN_STATE_UNBOUND,
    EVTCHN_STATE_VIRQ, Error, StartInfo, VIRQ_TIMER,
};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("evupcall");
static STACK1: VcpuStack<16384> = VcpuStack::new();

static TIMER_HITS: AtomicU64 = AtomicU64::new(0);
static PING_HITS: AtomicU64 = AtomicU64::new(0);
static ECHO_HITS: AtomicU64 = AtomicU64::new(0);
static MASKED_HITS: AtomicU64 = AtomicU64::new(0);
/// vCPU 0's ipi port (vCPU 1's handler echoes on it).
static IPI0: AtomicU32 = AtomicU32::new(0);

fn on_timer(_: u32) {
    TIMER_HITS.fetch_add(1, Ordering::SeqCst);
}
/// Runs on vCPU 1: echo to vCPU 0.
fn on_ping(_: u32) {
    PING_HITS.fetch_add(1, Ordering::SeqCst);
    let _ = evtchn::send(IPI0.load(Ordering::SeqCst));
}
fn on_echo(_: u32) {
    ECHO_HITS.fetch_add(1, Ordering::SeqCst);
}
fn on_masked(_: u32) {
    MASKED_HITS.fetch_add(1, Ordering::SeqCst);
}

extern "sysv64" fn worker(_: u64) -> ! {
    let _ = upcall::enable_this_vcpu(1);
    loop {
        let _ = sched::block(None);
    }
}

/// Waits (blocking, so upcalls can come) until `c` reaches `want`; 5 s.
fn wait(c: &AtomicU64, want: u64) -> u64 {
    let deadline = time::now_ns() + 5_000_000_000;
    while c.load(Ordering::SeqCst) < want && time::now_ns() < deadline {
        let _ = sched::block(Some((time::now_ns() + 1_000_000).min(deadline)));
    }
    c.load(Ordering::SeqCst)
}

fn code<T>(r: Result<T, Error>) -> i64 {
    match r {
        Ok(_) => 0,
        Err(e) => e.code(),
    }
}

fn check_ok<T>(name: &str, r: Result<T, Error>) -> Option<T> {
    let c = match &r {
        Ok(_) => 0,
        Err(e) => e.code(),
    };
    CHECKS.check(name, c, 0);
    r.ok()
}

fn main(si: &StartInfo) -> i32 {
    let me = si.domain_id;
    check_ok("init_control", upcall::init(0xe0));
    // VIRQ_TIMER as an upcall on vCPU 0.
    let tport = check_ok("bind_virq timer", evtchn::bind_virq(VIRQ_TIMER, 0)).unwrap_or(0);
    let _ = upcall::set_handler(tport, on_timer);
    check_ok("enable vcpu0", upcall::enable_this_vcpu(0));
    let _ = sched::set_timer(Some(time::now_ns() + 2_000_000));
    CHECKS.check("timer virq upcall", wait(&TIMER_HITS, 1) as i64, 1);
    let st = evtchn::status_of(tport).unwrap_or_default();
    CHECKS.check(
        "status virq state",
        st.state.into(),
        EVTCHN_STATE_VIRQ.into(),
    );
    CHECKS.check("status virq number", st.virq.into(), VIRQ_TIMER.into());
    CHECKS.check("status virq vcpu", st.vcpu.into(), 0);
    CHECKS.check("status virq not pending", st.pending.into(), 0);

    // Ipis: vCPU 0 pings vCPU 1, whose handler echoes to vCPU 0.
    let ipi1 = check_ok("bind_ipi vcpu1", evtchn::bind_ipi(1)).unwrap_or(0);
    let ipi0 = check_ok("bind_ipi vcpu0", evtchn::bind_ipi(0)).unwrap_or(0);
    IPI0.store(ipi0, Ordering::SeqCst);
    let _ = upcall::set_handler(ipi1, on_ping);
    let _ = upcall::set_handler(ipi0, on_echo);
    if let Some(stack) = STACK1.take() {
        check_ok("vcpu 1 up", vcpu::start(1, worker, stack, 0));
    }
    let ups1 = upcall::count(1);
    for i in 1..=100u64 {
        let _ = evtchn::send(ipi1);
        if wait(&ECHO_HITS, i) != i {
            break;
        }
    }
    CHECKS.check(
        "100 ipis to vcpu1 handled",
        PING_HITS.load(Ordering::SeqCst) as i64,
        100,
    );
    CHECKS.check(
        "100 ipi echoes to vcpu0",
        ECHO_HITS.load(Ordering::SeqCst) as i64,
        100,
    );
    CHECKS.check("vcpu1 took upcalls", i64::from(upcall::count(1) > ups1), 1);
    let st = evtchn::status_of(ipi1).unwrap_or_default();
    CHECKS.check("status ipi state", st.state.into(), EVTCHN_STATE_IPI.into());
    CHECKS.check("status ipi vcpu", st.vcpu.into(), 1);

    // Loopback: unbound, then interdomain; masked send seen on unmask.
    let a = check_ok("alloc_unbound self", evtchn::alloc_unbound(me)).unwrap_or(0);
    let st = evtchn::status_of(a).unwrap_or_default();
    CHECKS.check(
        "status unbound state",
        st.state.into(),
        EVTCHN_STATE_UNBOUND.into(),
    );
    CHECKS.check("status unbound remote", st.remote_domain.into(), me.into());
    let b = check_ok("bind loopback", evtchn::bind_interdomain(me, a)).unwrap_or(0);
    let st = evtchn::status_of(b).unwrap_or_default();
    CHECKS.check(
        "status interdomain state",
        st.state.into(),
        EVTCHN_STATE_INTERDOMAIN.into(),
    );
    CHECKS.check(
        "status interdomain remote port",
        st.remote_port.into(),
        a.into(),
    );
    let _ = upcall::set_handler(b, on_masked);
    upcall::mask(b);
    check_ok("send while masked", evtchn::send(a));
    let _ = time::sleep_ns(5_000_000);
    CHECKS.check(
        "masked: no upcall",
        MASKED_HITS.load(Ordering::SeqCst) as i64,
        0,
    );
    CHECKS.check(
        "masked: pending bit set",
        i64::from(upcall::is_pending(b)),
        1,
    );
    let st = evtchn::status_of(b).unwrap_or_default();
    CHECKS.check("status masked", st.masked.into(), 1);
    CHECKS.check("status pending", st.pending.into(), 1);
    check_ok("unmask", upcall::unmask(b));
    CHECKS.check(
        "unmask delivers the held send",
        wait(&MASKED_HITS, 1) as i64,
        1,
    );

    // bind_vcpu: the loopback port's upcalls now go to vCPU 1.
    check_ok("bind_vcpu b to 1", evtchn::bind_vcpu(b, 1));
    let before = upcall::count(1);
    check_ok("send to moved port", evtchn::send(a));
    CHECKS.check("moved port handled", wait(&MASKED_HITS, 2) as i64, 2);
    CHECKS.check(
        "moved port upcall on vcpu1",
        i64::from(upcall::count(1) > before),
        1,
    );
    CHECKS.check(
        "bind_vcpu to vcpu 4",
        code(evtchn::bind_vcpu(b, 4)),
        Error::Invalid.code(),
    );
    CHECKS.check(
        "bind_vcpu of an ipi",
        code(evtchn::bind_vcpu(ipi1, 0)),
        Error::Invalid.code(),
    );

    check_ok("close", evtchn::close(a));
    CHECKS.check(
        "status closed",
        evtchn::status_of(a).map_or(-1, |s| s.state.into()),
        EVTCHN_STATE_FREE.into(),
    );
    let (n, f) = CHECKS.counts();
    pvabi::println!("evupcall: {n} checks, {f} failed");
    i32::from(f != 0)
}
