//! Calls every pvabi 1.0 hypercall with valid and hostile arguments and
//! checks each status against the contract in `pvabi`'s docs (errors in the
//! documented order, nothing changed on an error).
//!
//! Prints one line per check, `abi: <name> ok` or
//! `abi: <name> FAILED got <X> want <Y>`, then `abi: <N> checks, <M> failed`,
//! and exits 0 iff every check passed. The boot tests run it under both
//! backends.
//!
//! Raw hypercalls (`hypercall6`) pass the hostile arguments; the memory they
//! may write or release is `SCRATCH`, four page-aligned pages of atomics in
//! `.bss` that nothing else uses, so no `unsafe` is needed. The checks that
//! would kill the domain if the hypervisor got them wrong (starting a vCPU
//! at a released page) come last, so every other result is printed first.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use pvabi::guest::{VcpuStack, console, hypercall6, memory, sched, time, vcpu};
use pvabi::{
    CONSOLE_WRITE_MAX, E2BIG, EBUSY, EEXIST, EFAULT, EINVAL, ENOENT, ENOSYS, EPERM, EVENT_TIMER,
    Error, HC_CONSOLE_READ, HC_CONSOLE_WRITE, HC_MEM_INFO, HC_MEM_POPULATE, HC_MEM_RELEASE,
    HC_MULTICALL, HC_SCHED_BLOCK, HC_SCHED_POLL, HC_SET_TIMER, HC_SHUTDOWN, HC_VCPU_INFO,
    HC_VCPU_UP, HC_YIELD, LAST_CPU_NONE, MEM_OP_MAX_PAGES, MULTICALL_MAX, MulticallEntry,
    PAGE_SIZE, StartInfo, VCPU_BLOCKED, VCPU_DOWN, VCPU_RUNNING,
};

pvabi::entry_point!(main);

const MS: u64 = 1_000_000;
const P: u64 = PAGE_SIZE;

// ---------------------------------------------------------------------------
// Bookkeeping

static CHECKS: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);

/// A hypercall status for printing: the error's name for a known negative
/// code, else the number.
struct St(u64);

impl fmt::Display for St {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0 as i64;
        match Error::try_from(v) {
            Ok(e) if v < 0 => write!(f, "{}({v})", e.name()),
            _ if v < 0 => write!(f, "{v}"),
            _ if self.0 < 1 << 32 => write!(f, "{}", self.0),
            _ => write!(f, "{:#x}", self.0),
        }
    }
}

fn record(name: &str, ok: bool, got: fmt::Arguments<'_>, want: fmt::Arguments<'_>) -> bool {
    CHECKS.fetch_add(1, Ordering::Relaxed);
    if ok {
        pvabi::println!("abi: {name} ok");
    } else {
        FAILED.fetch_add(1, Ordering::Relaxed);
        pvabi::println!("abi: {name} FAILED got {got} want {want}");
    }
    ok
}

/// Checks a raw status (RAX).
fn st(name: &str, got: u64, want: i64) -> bool {
    let want = want as u64;
    record(
        name,
        got == want,
        format_args!("{}", St(got)),
        format_args!("{}", St(want)),
    )
}

/// Checks a value.
fn eq<T: PartialEq + fmt::Debug>(name: &str, got: T, want: T) -> bool {
    record(
        name,
        got == want,
        format_args!("{got:?}"),
        format_args!("{want:?}"),
    )
}

/// Checks a condition; `what` says what was seen.
fn holds(name: &str, ok: bool, what: fmt::Arguments<'_>) -> bool {
    record(name, ok, what, format_args!("(see the check's name)"))
}

fn hc(nr: u64, a: [u64; 6]) -> u64 {
    hypercall6(nr, a)
}

fn hc2(nr: u64, a1: u64, a2: u64) -> u64 {
    hypercall6(nr, [a1, a2, 0, 0, 0, 0])
}

// ---------------------------------------------------------------------------
// Scratch memory the hypervisor may write, release and populate

const SCRATCH_PAGES: usize = 4;
const WORDS: usize = SCRATCH_PAGES * 512;

#[repr(C, align(4096))]
struct Scratch([AtomicU64; WORDS]);

static SCRATCH: Scratch = Scratch([const { AtomicU64::new(0) }; WORDS]);

/// Guest-physical address of scratch byte `off` (identity map).
fn s(off: u64) -> u64 {
    SCRATCH.0.as_ptr() as u64 + off
}

fn word(off: u64) -> &'static AtomicU64 {
    &SCRATCH.0[(off / 8) as usize]
}

/// Reads `N` scratch bytes at any offset (little-endian words).
fn bytes<const N: usize>(off: u64) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        let at = off + i as u64;
        *b = (word(at & !7).load(Ordering::SeqCst) >> ((at % 8) * 8)) as u8;
    }
    out
}

fn u32_at(off: u64) -> u32 {
    u32::from_le_bytes(bytes::<4>(off))
}

fn u64_at(off: u64) -> u64 {
    u64::from_le_bytes(bytes::<8>(off))
}

/// Fills a scratch page with a recognisable pattern.
fn fill_page(page: u64, seed: u64) {
    for i in 0..512 {
        word(page * P + i * 8).store(seed ^ (i * 0x0101_0101), Ordering::SeqCst);
    }
}

fn page_is_zero(page: u64) -> bool {
    (0..512).all(|i| word(page * P + i * 8).load(Ordering::SeqCst) == 0)
}

/// Whether the 24 bytes at `gpa` are present, asked of the hypervisor (it
/// writes a `MemInfo` there when they are): never touches a released page.
fn present(gpa: u64) -> bool {
    hc2(HC_MEM_INFO, gpa, 0) == 0
}

/// Writes a multicall entry into scratch memory at `off`.
fn put_entry(off: u64, op: u64, args: [u64; 6]) {
    word(off).store(op, Ordering::SeqCst);
    for (i, a) in args.iter().enumerate() {
        word(off + 8 + 8 * i as u64).store(*a, Ordering::SeqCst);
    }
    word(off + 56).store(0x5eed, Ordering::SeqCst);
}

fn entry_result(off: u64) -> u64 {
    word(off + 56).load(Ordering::SeqCst)
}

fn current_pages() -> u64 {
    memory::info().map_or(0, |m| m.current_pages)
}

// ---------------------------------------------------------------------------
// vCPUs

static STACK1: VcpuStack<16384> = VcpuStack::new();
static STACK_SPARE: VcpuStack<16384> = VcpuStack::new();
static WORKER_ARG: AtomicU64 = AtomicU64::new(0);

/// vCPU 1: says it runs, then waits for events forever.
extern "sysv64" fn worker(arg: u64) -> ! {
    WORKER_ARG.store(arg, Ordering::SeqCst);
    loop {
        let _ = sched::block(None);
    }
}

fn worker_rip() -> u64 {
    let f: extern "sysv64" fn(u64) -> ! = worker;
    f as usize as u64
}

// ---------------------------------------------------------------------------

#[repr(C, align(8))]
struct Aligned<const N: usize>([u8; N]);

static ODD: Aligned<48> = Aligned(*b"Xabi: (console write from an odd address)\n......");

const fn max_write() -> [u8; CONSOLE_WRITE_MAX as usize] {
    let mut b = [b'.'; CONSOLE_WRITE_MAX as usize];
    let mut i = 127;
    while i < b.len() {
        b[i] = b'\n';
        i += 128;
    }
    b
}

static MAX_WRITE: [u8; CONSOLE_WRITE_MAX as usize] = max_write();

fn main(si: &StartInfo) -> i32 {
    let m = si.memory_bytes;
    pvabi::println!(
        "abi: start: {} MiB, {} vCPUs, scratch at {:#x}, free region {:x?}",
        m >> 20,
        si.nr_vcpus,
        s(0),
        memory::free_region()
    );
    let _ = sched::poll();

    unknown_numbers();
    console_ops(m);
    sched_ops();
    let stack_top = vcpu_ops(si, m);
    mem_ops(si, m);
    multicall_ops(m);
    runtime_refusals();
    hazards(stack_top);

    let checks = CHECKS.load(Ordering::Relaxed);
    let failed = FAILED.load(Ordering::Relaxed);
    pvabi::println!("abi: {checks} checks, {failed} failed");
    if failed == 0 { 0 } else { 1 }
}

fn unknown_numbers() {
    for (name, nr) in [
        ("hypercall.nr_0", 0),
        ("hypercall.nr_0xffff", 0xffff),
        ("hypercall.nr_0xdead", 0xdead),
        ("hypercall.nr_max", u64::MAX),
        // Truncated to 32 bits this would be a console write of 0 bytes.
        ("hypercall.nr_2pow32_plus_1", (1 << 32) | HC_CONSOLE_WRITE),
        ("hypercall.nr_2pow32_plus_2", (1 << 32) | HC_SHUTDOWN),
    ] {
        st(name, hc(nr, [0; 6]), ENOSYS);
    }
}

fn console_ops(m: u64) {
    let msg = b"abi: (console write payload)\n";
    st(
        "console_write.valid",
        hc2(HC_CONSOLE_WRITE, msg.as_ptr() as u64, msg.len() as u64),
        msg.len() as i64,
    );
    st(
        "console_write.zero_len",
        hc2(HC_CONSOLE_WRITE, msg.as_ptr() as u64, 0),
        0,
    );
    st(
        "console_write.unaligned",
        hc2(HC_CONSOLE_WRITE, ODD.0.as_ptr() as u64 + 1, 41),
        41,
    );
    st(
        "console_write.max_len",
        hc2(
            HC_CONSOLE_WRITE,
            MAX_WRITE.as_ptr() as u64,
            CONSOLE_WRITE_MAX,
        ),
        CONSOLE_WRITE_MAX as i64,
    );
    let p = msg.as_ptr() as u64;
    for (name, addr, len, want) in [
        (
            "console_write.len_max_plus_1",
            p,
            CONSOLE_WRITE_MAX + 1,
            E2BIG,
        ),
        ("console_write.len_huge", p, u64::MAX, E2BIG),
        ("console_write.len_2pow32", p, 1 << 32, E2BIG),
        // E2BIG is checked before the address.
        (
            "console_write.order_e2big_before_efault",
            u64::MAX,
            1 << 40,
            E2BIG,
        ),
        ("console_write.at_end_of_memory", m, 1, EFAULT),
        ("console_write.straddles_end", m - 1, 2, EFAULT),
        ("console_write.overflow_wraps", u64::MAX - 7, 16, EFAULT),
        ("console_write.overflow_max", u64::MAX, 4096, EFAULT),
        ("console_write.beyond_4g", 1 << 32, 16, EFAULT),
        ("console_write.far_beyond", 1 << 46, 16, EFAULT),
        (
            "console_write.noncanonical",
            0x8000_0000_0000_0000,
            16,
            EFAULT,
        ),
    ] {
        st(name, hc2(HC_CONSOLE_WRITE, addr, len), want);
    }
    // Released memory is not guest memory any more.
    fill_page(1, 0x0a0a_0a0a_0a0a_0a0a);
    if st(
        "console_write.setup_release",
        hc2(HC_MEM_RELEASE, s(P), 1),
        1,
    ) {
        st(
            "console_write.released_page",
            hc2(HC_CONSOLE_WRITE, s(P), 8),
            EFAULT,
        );
        st(
            "console_write.straddles_released",
            hc2(HC_CONSOLE_WRITE, s(P - 4), 8),
            EFAULT,
        );
        st(
            "console_write.setup_populate",
            hc2(HC_MEM_POPULATE, s(P), 1),
            1,
        );
    }

    // Reading the console is for the privileged domain only; EPERM comes
    // before every other check.
    if pvabi::guest::start_info().is_privileged() {
        pvabi::println!("abi: note: this domain is privileged; console_read checks skipped");
    } else {
        let mut buf = [0u8; 16];
        st(
            "console_read.unprivileged",
            hc2(HC_CONSOLE_READ, buf.as_mut_ptr() as u64, 16),
            EPERM,
        );
        st(
            "console_read.order_eperm_before_e2big",
            hc2(HC_CONSOLE_READ, buf.as_mut_ptr() as u64, u64::MAX),
            EPERM,
        );
        st(
            "console_read.order_eperm_before_efault",
            hc2(HC_CONSOLE_READ, m, 16),
            EPERM,
        );
        eq(
            "console_read.runtime_unprivileged",
            console::read(&mut buf),
            Err(Error::Perm),
        );
    }
}

fn sched_ops() {
    // Shutdown with a reason the ABI does not define returns EINVAL and the
    // domain goes on. Code 77 would show in `domain-end:` if it did not.
    for (name, reason) in [
        ("shutdown.reason_3", 3),
        ("shutdown.reason_max", u64::MAX),
        // Truncated to 32 bits these would be poweroff and crash.
        ("shutdown.reason_2pow32", 1 << 32),
        ("shutdown.reason_2pow32_plus_1", (1 << 32) | 1),
    ] {
        st(name, hc2(HC_SHUTDOWN, reason, 77), EINVAL);
    }

    st("yield.plain", hc(HC_YIELD, [0; 6]), 0);
    st("yield.garbage_args", hc(HC_YIELD, [u64::MAX; 6]), 0);

    let _ = hc(HC_SCHED_POLL, [0; 6]);
    st("poll.nothing_pending", hc(HC_SCHED_POLL, [0; 6]), 0);
    st("poll.garbage_args", hc(HC_SCHED_POLL, [u64::MAX; 6]), 0);

    // A deadline already reached raises the event before set_timer returns.
    st("set_timer.past_deadline", hc2(HC_SET_TIMER, 1, 0), 0);
    let info = vcpu::info(0);
    eq(
        "vcpu_info.shows_pending_timer",
        info.map(|i| i.pending_events),
        Ok(EVENT_TIMER),
    );
    st(
        "poll.takes_timer_event",
        hc(HC_SCHED_POLL, [0; 6]),
        EVENT_TIMER as i64,
    );
    st("poll.event_cleared", hc(HC_SCHED_POLL, [0; 6]), 0);

    // Cancelling leaves a raised event pending.
    st("set_timer.past_again", hc2(HC_SET_TIMER, 1, 0), 0);
    st("set_timer.cancel", hc2(HC_SET_TIMER, 0, 0), 0);
    st(
        "poll.event_survives_cancel",
        hc(HC_SCHED_POLL, [0; 6]),
        EVENT_TIMER as i64,
    );

    // Block returns at once, with the mask, when an event is pending.
    let _ = hc2(HC_SET_TIMER, 1, 0);
    let t0 = time::now_ns();
    st(
        "block.pending_event_returns_mask",
        hc2(HC_SCHED_BLOCK, t0 + 10_000 * MS, 0),
        EVENT_TIMER as i64,
    );
    let waited = time::now_ns() - t0;
    holds(
        "block.pending_event_returns_at_once",
        waited < 5000 * MS,
        format_args!("{waited} ns"),
    );
    st("block.event_was_cleared", hc(HC_SCHED_POLL, [0; 6]), 0);

    // A deadline in the past: 0 at once.
    st("block.past_deadline", hc2(HC_SCHED_BLOCK, 1, 0), 0);

    // A short deadline: 0 (no event) once it has passed.
    let deadline = time::now_ns() + 5 * MS;
    st("block.deadline_5ms", hc2(HC_SCHED_BLOCK, deadline, 0), 0);
    let now = time::now_ns();
    holds(
        "block.deadline_5ms_not_early",
        now >= deadline,
        format_args!(
            "woke {} ns before the deadline",
            deadline.saturating_sub(now)
        ),
    );

    // A cancelled timer raises nothing. The cancel must come before the
    // deadline for that to hold (this vCPU may be off its CPU for a while
    // between the two calls on a busy emulator), so try up to five times.
    let mut attempt = 0;
    let (set, cancel, blocked, polled) = loop {
        let _ = hc(HC_SCHED_POLL, [0; 6]);
        let deadline = time::now_ns() + 20 * MS;
        let set = hc2(HC_SET_TIMER, deadline, 0);
        let cancel = hc2(HC_SET_TIMER, 0, 0);
        attempt += 1;
        if time::now_ns() < deadline || attempt == 5 {
            let blocked = hc2(HC_SCHED_BLOCK, deadline + 40 * MS, 0);
            break (set, cancel, blocked, hc(HC_SCHED_POLL, [0; 6]));
        }
    };
    st("set_timer.future", set, 0);
    st("set_timer.cancel_future", cancel, 0);
    st("block.cancelled_timer_raises_nothing", blocked, 0);
    st("poll.cancelled_timer_raises_nothing", polled, 0);

    // Setting again replaces the deadline.
    let now = time::now_ns();
    let _ = sched::set_timer(Some(now + 10_000 * MS));
    let _ = sched::set_timer(Some(now + 5 * MS));
    let got = sched::wait_for(EVENT_TIMER, Some(now + 9000 * MS));
    let after = time::now_ns();
    eq(
        "set_timer.replace_fires_new_deadline",
        got.map(|e| e & EVENT_TIMER),
        Ok(EVENT_TIMER),
    );
    holds(
        "set_timer.replace_not_early",
        after >= now + 5 * MS,
        format_args!("fired at +{} ns", after - now),
    );
    let _ = sched::set_timer(None);

    // A far deadline is accepted and cancelled.
    st("set_timer.deadline_max", hc2(HC_SET_TIMER, u64::MAX, 0), 0);
    st("set_timer.cancel_max", hc2(HC_SET_TIMER, 0, 0), 0);
    st("poll.after_far_timer", hc(HC_SCHED_POLL, [0; 6]), 0);
}

/// Returns the top of the spare stack, for [`hazards`].
fn vcpu_ops(si: &StartInfo, m: u64) -> u64 {
    let n = u64::from(si.nr_vcpus);
    if n < 4 {
        pvabi::println!("abi: note: only {n} vCPUs; the ABI test wants 4");
    }
    let spare = STACK_SPARE.take().unwrap_or(&mut []);
    let spare_rsp = vcpu::initial_rsp(spare.as_ptr() as u64, spare.len()).unwrap_or(0);
    let rip = worker_rip();
    let up = |id: u64, rip: u64, rsp: u64| hc(HC_VCPU_UP, [id, rip, rsp, 0xbad, 0, 0]);
    // Ids: EINVAL before anything else (a bad RIP too, so that a wrongly
    // accepted id cannot start anything).
    st("vcpu_up.id_0", up(0, m, spare_rsp), EINVAL);
    st("vcpu_up.id_nr_vcpus", up(n, m, spare_rsp), EINVAL);
    st("vcpu_up.id_max", up(u64::MAX, m, spare_rsp), EINVAL);
    // Bit 32 is `VCPU_UP_CR3` (a flag, pvabi 2.1); any higher bit
    // makes the id out of range.
    st(
        "vcpu_up.id_2pow33_plus_1",
        up((1 << 33) | 1, m, spare_rsp),
        EINVAL,
    );
    // Addresses: EFAULT, and the vCPU stays down.
    for (name, rip, rsp) in [
        ("vcpu_up.rip_at_end_of_memory", m, spare_rsp),
        ("vcpu_up.rip_max", u64::MAX, spare_rsp),
        ("vcpu_up.rip_beyond_4g", 1 << 32, spare_rsp),
        ("vcpu_up.rsp_0", rip, 0),
        ("vcpu_up.rsp_7", rip, 7),
        ("vcpu_up.rsp_past_end", rip, m + 8),
        ("vcpu_up.rsp_max", rip, u64::MAX),
    ] {
        st(name, up(1, rip, rsp), EFAULT);
    }
    eq(
        "vcpu_up.failed_up_leaves_vcpu_down",
        vcpu::info(1).map(|i| i.state),
        Ok(VCPU_DOWN),
    );

    // vCPU info: the caller is running; a vCPU never started is down and
    // has never run anywhere.
    let me = vcpu::info(0);
    eq(
        "vcpu_info.self_running",
        me.map(|i| i.state),
        Ok(VCPU_RUNNING),
    );
    holds(
        "vcpu_info.self_last_cpu",
        me.is_ok_and(|i| i.last_cpu != LAST_CPU_NONE),
        format_args!("{me:?}"),
    );
    let last = n.saturating_sub(1) as u32;
    let never = vcpu::info(last);
    eq(
        "vcpu_info.never_up_state",
        never.map(|i| i.state),
        Ok(VCPU_DOWN),
    );
    eq(
        "vcpu_info.never_up_last_cpu_none",
        never.map(|i| i.last_cpu),
        Ok(LAST_CPU_NONE),
    );
    eq(
        "vcpu_info.never_up_no_time_no_events",
        never.map(|i| (i.cpu_time_ns, i.pending_events)),
        Ok((0, 0)),
    );
    let out = s(0);
    for (name, id, at, want) in [
        ("vcpu_info.id_nr_vcpus", n, out, EINVAL),
        ("vcpu_info.id_max", u64::MAX, out, EINVAL),
        // Truncated to 32 bits this would be vCPU 0.
        ("vcpu_info.id_2pow32", 1 << 32, out, EINVAL),
        ("vcpu_info.order_einval_before_efault", n, m, EINVAL),
        ("vcpu_info.out_at_end_of_memory", 0, m, EFAULT),
        ("vcpu_info.out_straddles_end", 0, m - 8, EFAULT),
        ("vcpu_info.out_overflow", 0, u64::MAX - 7, EFAULT),
        ("vcpu_info.out_beyond_4g", 0, 1 << 32, EFAULT),
    ] {
        st(name, hc2(HC_VCPU_INFO, id, at), want);
    }
    // Any alignment will do.
    if st("vcpu_info.out_unaligned", hc2(HC_VCPU_INFO, 0, s(3)), 0) {
        eq("vcpu_info.out_unaligned_contents", u32_at(3), VCPU_RUNNING);
    }

    // Bring vCPU 1 up for real.
    let started = match STACK1.take() {
        Some(stack) => vcpu::start(1, worker, stack, 0xfeed),
        None => Err(Error::Busy),
    };
    eq("vcpu_up.valid", started, Ok(()));
    let until = time::now_ns() + 10_000 * MS;
    while WORKER_ARG.load(Ordering::SeqCst) == 0 && time::now_ns() < until {
        let _ = time::sleep_ns(MS);
    }
    eq(
        "vcpu_up.runs_with_arg",
        WORKER_ARG.load(Ordering::SeqCst),
        0xfeed,
    );
    // Once up, EBUSY comes before the address checks.
    st("vcpu_up.already_up", up(1, rip, spare_rsp), EBUSY);
    st("vcpu_up.order_ebusy_before_efault", up(1, m, 0), EBUSY);
    let until = time::now_ns() + 10_000 * MS;
    let mut state = vcpu::info(1);
    while state.is_ok_and(|i| i.state != VCPU_BLOCKED) && time::now_ns() < until {
        let _ = time::sleep_ns(MS);
        state = vcpu::info(1);
    }
    eq(
        "vcpu_info.worker_blocked",
        state.map(|i| i.state),
        Ok(VCPU_BLOCKED),
    );
    holds(
        "vcpu_info.worker_has_run",
        state.is_ok_and(|i| i.last_cpu != LAST_CPU_NONE && i.cpu_time_ns > 0),
        format_args!("{state:?}"),
    );
    spare_rsp
}

fn mem_ops(si: &StartInfo, m: u64) {
    // Memory info: the reservation as the start info says.
    let info = memory::info();
    eq(
        "mem_info.valid",
        info.map(|i| (i.max_pages, i.page_size)),
        Ok((si.max_pages, PAGE_SIZE)),
    );
    let before = info.map_or(0, |i| i.current_pages);
    holds(
        "mem_info.current_within_quota",
        info.is_ok_and(|i| i.current_pages > 0 && i.current_pages <= i.max_pages),
        format_args!("{info:?}"),
    );
    for (name, at, want) in [
        ("mem_info.out_at_end_of_memory", m, EFAULT),
        ("mem_info.out_straddles_end", m - 8, EFAULT),
        ("mem_info.out_overflow", u64::MAX - 7, EFAULT),
        ("mem_info.out_beyond_4g", 1 << 32, EFAULT),
    ] {
        st(name, hc2(HC_MEM_INFO, at, 0), want);
    }
    if st("mem_info.out_unaligned", hc2(HC_MEM_INFO, s(5), 0), 0) {
        eq(
            "mem_info.out_unaligned_contents",
            (u64_at(5), u64_at(13), u64_at(21)),
            (before, si.max_pages, PAGE_SIZE),
        );
    }

    // Release and populate: argument checks, in the documented order.
    for nr in [HC_MEM_RELEASE, HC_MEM_POPULATE] {
        let op = if nr == HC_MEM_RELEASE {
            "mem_release"
        } else {
            "mem_populate"
        };
        for (what, gpa, pages, want) in [
            ("unaligned", s(1), 1, EINVAL),
            ("unaligned_2048", s(2048), 1, EINVAL),
            ("zero_pages", s(0), 0, EINVAL),
            ("too_many_pages", s(0), MEM_OP_MAX_PAGES + 1, EINVAL),
            ("pages_max", s(0), u64::MAX, EINVAL),
            ("order_einval_before_efault", m + 1, 1, EINVAL),
            ("at_end_of_memory", m, 1, EFAULT),
            ("straddles_end", m - P, 2, EFAULT),
            ("max_pages_past_end", m - P, MEM_OP_MAX_PAGES, EFAULT),
            ("overflow", !(P - 1), 1, EFAULT),
            ("overflow_512", !(P - 1), MEM_OP_MAX_PAGES, EFAULT),
            ("beyond_4g", 1 << 32, 1, EFAULT),
        ] {
            let mut name = name_of(op);
            name.push_str(".");
            name.push_str(what);
            st(name.as_str(), hc2(nr, gpa, pages), want);
        }
    }
    eq("mem_ops.bad_args_change_nothing", current_pages(), before);

    // Release scratch page 1: the count drops, the page is gone.
    fill_page(1, 0x1111_2222_3333_4444);
    fill_page(0, 0x5555_6666_7777_8888);
    st("mem_release.valid", hc2(HC_MEM_RELEASE, s(P), 1), 1);
    eq(
        "mem_release.current_pages_down",
        current_pages(),
        before - 1,
    );
    holds(
        "mem_release.page_gone",
        !present(s(P)),
        format_args!("HC_MEM_INFO into the released page succeeded"),
    );
    st(
        "mem_release.again_enoent",
        hc2(HC_MEM_RELEASE, s(P), 1),
        ENOENT,
    );
    // Pages 0 (present) and 1 (released): ENOENT, and page 0 stays.
    st(
        "mem_release.partly_released_enoent",
        hc2(HC_MEM_RELEASE, s(0), 2),
        ENOENT,
    );
    let kept = current_pages() == before - 1 && present(s(P - 24));
    holds(
        "mem_release.all_or_nothing",
        kept,
        format_args!("current_pages {}", current_pages()),
    );
    if kept {
        // (present() wrote a MemInfo over the last 24 bytes of page 0.)
        eq(
            "mem_release.neighbour_contents_kept",
            word(0).load(Ordering::SeqCst),
            0x5555_6666_7777_8888,
        );
    }

    // Out structures straddling a present and a released page: EFAULT and
    // not a byte written.
    for (i, (name, nr, a1, a2)) in [
        (
            "vcpu_info.out_straddles_released",
            HC_VCPU_INFO,
            0,
            s(P - 8),
        ),
        ("mem_info.out_straddles_released", HC_MEM_INFO, s(P - 8), 0),
        ("vcpu_info.out_in_released", HC_VCPU_INFO, 0, s(P)),
        ("mem_info.out_in_released", HC_MEM_INFO, s(P), 0),
    ]
    .into_iter()
    .enumerate()
    {
        let sentinel = 0xdead_beef_0000_0000 | i as u64;
        word(P - 8).store(sentinel, Ordering::SeqCst);
        st(name, hc2(nr, a1, a2), EFAULT);
        let mut unchanged = name_of(name);
        unchanged.push_str("_writes_nothing");
        eq(
            unchanged.as_str(),
            word(P - 8).load(Ordering::SeqCst),
            sentinel,
        );
    }

    // Populate: present pages are EEXIST (also when only some are), and
    // nothing changes.
    st(
        "mem_populate.present_eexist",
        hc2(HC_MEM_POPULATE, s(0), 1),
        EEXIST,
    );
    st(
        "mem_populate.partly_present_eexist",
        hc2(HC_MEM_POPULATE, s(0), 2),
        EEXIST,
    );
    holds(
        "mem_populate.all_or_nothing",
        current_pages() == before - 1 && !present(s(P)),
        format_args!("current_pages {}", current_pages()),
    );
    st("mem_populate.valid", hc2(HC_MEM_POPULATE, s(P), 1), 1);
    eq("mem_populate.current_pages_back", current_pages(), before);
    holds(
        "mem_populate.page_zeroed",
        page_is_zero(1),
        format_args!("word 0 = {:#x}", word(P).load(Ordering::SeqCst)),
    );
    st(
        "mem_populate.again_eexist",
        hc2(HC_MEM_POPULATE, s(P), 1),
        EEXIST,
    );
    // The quota: populate never takes the domain past it. With the quota
    // equal to the guest-physical size (as here), ENOMEM for the quota
    // cannot happen, because every page that could be populated was
    // released first.
    let info = memory::info();
    holds(
        "mem_info.quota_holds",
        info.is_ok_and(|i| i.current_pages <= i.max_pages),
        format_args!("{info:?}"),
    );
    if info.is_ok_and(|i| i.max_pages * PAGE_SIZE >= m) {
        pvabi::println!(
            "abi: note: quota ({} pages) covers all guest-physical memory: populate beyond the quota (ENOMEM) is unreachable",
            si.max_pages
        );
    }
}

fn multicall_ops(m: u64) {
    let a = s(0);
    put_entry(0, HC_SCHED_POLL, [0; 6]);
    for (name, arr, count, want) in [
        ("multicall.count_0", a, 0, EINVAL),
        ("multicall.count_65", a, MULTICALL_MAX + 1, E2BIG),
        ("multicall.count_max", a, u64::MAX, E2BIG),
        ("multicall.count_2pow32_plus_1", a, (1 << 32) | 1, E2BIG),
        ("multicall.order_einval_before_efault", m, 0, EINVAL),
        ("multicall.order_e2big_before_efault", m, 65, E2BIG),
        ("multicall.array_at_end_of_memory", m, 1, EFAULT),
        ("multicall.array_straddles_end", m - 64, 2, EFAULT),
        ("multicall.array_overflow", u64::MAX - 63, 2, EFAULT),
        ("multicall.array_beyond_4g", 1 << 32, 1, EFAULT),
    ] {
        st(name, hc2(HC_MULTICALL, arr, count), want);
    }

    // An array running into a released page: EFAULT, and no entry ran
    // (entry 0, in the present page, would raise a timer event).
    let _ = hc(HC_SCHED_POLL, [0; 6]);
    put_entry(P - 64, HC_SET_TIMER, [1, 0, 0, 0, 0, 0]);
    if st("multicall.setup_release", hc2(HC_MEM_RELEASE, s(P), 1), 1) {
        st(
            "multicall.array_in_released_page",
            hc2(HC_MULTICALL, s(P), 1),
            EFAULT,
        );
        st(
            "multicall.array_straddles_released",
            hc2(HC_MULTICALL, s(P - 64), 2),
            EFAULT,
        );
        st("multicall.efault_ran_nothing", hc(HC_SCHED_POLL, [0; 6]), 0);
        st("multicall.setup_populate", hc2(HC_MEM_POPULATE, s(P), 1), 1);
    }

    // A mixed batch: every entry gets what RAX would have had, and each
    // sees the effects of the ones before it.
    let msg = b"abi: (console write from a multicall)\n";
    let batch: [(&str, u64, [u64; 6], i64); 15] = [
        ("poll_first", HC_SCHED_POLL, [0; 6], 0),
        ("set_timer_past", HC_SET_TIMER, [1, 0, 0, 0, 0, 0], 0),
        (
            "poll_sees_earlier_entry",
            HC_SCHED_POLL,
            [0; 6],
            EVENT_TIMER as i64,
        ),
        (
            "console_write",
            HC_CONSOLE_WRITE,
            [msg.as_ptr() as u64, msg.len() as u64, 0, 0, 0, 0],
            msg.len() as i64,
        ),
        (
            "console_write_efault",
            HC_CONSOLE_WRITE,
            [m, 1, 0, 0, 0, 0],
            EFAULT,
        ),
        ("unknown_op", 0xdead, [0; 6], ENOSYS),
        ("op_0", 0, [0; 6], ENOSYS),
        ("nested_multicall", HC_MULTICALL, [a, 1, 0, 0, 0, 0], EINVAL),
        ("block", HC_SCHED_BLOCK, [0; 6], EINVAL),
        (
            "block_with_deadline",
            HC_SCHED_BLOCK,
            [1, 0, 0, 0, 0, 0],
            EINVAL,
        ),
        (
            "shutdown_bad_reason",
            HC_SHUTDOWN,
            [3, 77, 0, 0, 0, 0],
            EINVAL,
        ),
        ("yield", HC_YIELD, [0; 6], 0),
        ("mem_info", HC_MEM_INFO, [s(2 * P), 0, 0, 0, 0, 0], 0),
        (
            "vcpu_info_bad_id",
            HC_VCPU_INFO,
            [u64::MAX, s(2 * P), 0, 0, 0, 0],
            EINVAL,
        ),
        (
            "mem_release_unaligned",
            HC_MEM_RELEASE,
            [s(1), 1, 0, 0, 0, 0],
            EINVAL,
        ),
    ];
    for (i, (_, op, args, _)) in batch.iter().enumerate() {
        put_entry(i as u64 * 64, *op, *args);
    }
    let _ = hc(HC_SCHED_POLL, [0; 6]);
    st(
        "multicall.mixed_batch",
        hc2(HC_MULTICALL, a, batch.len() as u64),
        batch.len() as i64,
    );
    let mut changed = None;
    for (i, (what, op, args, want)) in batch.iter().enumerate() {
        let mut name = name_of("multicall.entry.");
        name.push_str(what);
        let at = i as u64 * 64;
        st(name.as_str(), entry_result(at), *want);
        let same = word(at).load(Ordering::SeqCst) == *op
            && (0..6).all(|k| word(at + 8 + 8 * k).load(Ordering::SeqCst) == args[k as usize]);
        if !same && changed.is_none() {
            changed = Some(i);
        }
    }
    holds(
        "multicall.write_back_keeps_ops_and_args",
        changed.is_none(),
        format_args!("entry {changed:?} changed"),
    );
    st(
        "multicall.mixed_batch_left_nothing_pending",
        hc(HC_SCHED_POLL, [0; 6]),
        0,
    );

    // The most entries a batch may have.
    for i in 0..MULTICALL_MAX {
        put_entry(i * 64, HC_SCHED_POLL, [0; 6]);
    }
    st(
        "multicall.count_64",
        hc2(HC_MULTICALL, a, MULTICALL_MAX),
        MULTICALL_MAX as i64,
    );
    holds(
        "multicall.count_64_results",
        (0..MULTICALL_MAX).all(|i| entry_result(i * 64) == 0),
        format_args!("a result other than 0"),
    );

    // An entry that releases the array's own page: every entry runs, the
    // write-back fails, EFAULT.
    fill_page(2, 0x2222);
    put_entry(2 * P, HC_MEM_RELEASE, [s(2 * P), 1, 0, 0, 0, 0]);
    put_entry(2 * P + 64, HC_SET_TIMER, [1, 0, 0, 0, 0, 0]);
    let _ = hc(HC_SCHED_POLL, [0; 6]);
    st(
        "multicall.releases_own_array_efault",
        hc2(HC_MULTICALL, s(2 * P), 2),
        EFAULT,
    );
    st(
        "multicall.releases_own_array_later_entries_ran",
        hc(HC_SCHED_POLL, [0; 6]),
        EVENT_TIMER as i64,
    );
    holds(
        "multicall.releases_own_array_page_gone",
        !present(s(2 * P)),
        format_args!("the page is present"),
    );
    st(
        "multicall.releases_own_array_repopulate",
        hc2(HC_MEM_POPULATE, s(2 * P), 1),
        1,
    );
    holds(
        "multicall.releases_own_array_zeroed",
        page_is_zero(2),
        format_args!("word 0 = {:#x}", word(2 * P).load(Ordering::SeqCst)),
    );
}

/// What the safe runtime refuses before asking the hypervisor.
fn runtime_refusals() {
    // The balloon wrappers act only inside the free region.
    eq(
        "runtime.release_program_memory_refused",
        memory::release(s(0), 1),
        Err(Error::Perm),
    );
    eq(
        "runtime.populate_program_memory_refused",
        memory::populate(s(0), 1),
        Err(Error::Perm),
    );
    // Multicall: ops that could write program memory are refused whole.
    let mut bad = [
        MulticallEntry::new(HC_SCHED_POLL, [0; 6]),
        MulticallEntry::new(HC_VCPU_UP, [2, 0, 0, 0, 0, 0]),
    ];
    eq(
        "runtime.multicall_vcpu_up_refused",
        pvabi::guest::multicall(&mut bad),
        Err(Error::Perm),
    );
    let msg = b"abi: (runtime multicall)\n";
    let mut ok = [
        MulticallEntry::new(
            HC_CONSOLE_WRITE,
            [msg.as_ptr() as u64, msg.len() as u64, 0, 0, 0, 0],
        ),
        MulticallEntry::new(HC_SCHED_POLL, [0; 6]),
        MulticallEntry::new(HC_SCHED_BLOCK, [0; 6]),
    ];
    eq(
        "runtime.multicall_valid",
        pvabi::guest::multicall(&mut ok),
        Ok(3),
    );
    eq(
        "runtime.multicall_statuses",
        [ok[0].status(), ok[1].status(), ok[2].status()],
        [Ok(msg.len() as u64), Ok(0), Err(Error::Invalid)],
    );
    eq(
        "runtime.multicall_empty",
        pvabi::guest::multicall(&mut []),
        Err(Error::Invalid),
    );
    eq(
        "runtime.wait_for_nothing_forever",
        sched::wait_for(0, None),
        Err(Error::Invalid),
    );
}

/// Starting a vCPU at, or with a stack in, a released page must fail with
/// EFAULT ("guest memory" is the pages present now). If the hypervisor
/// accepted, the new vCPU would touch the released page and the domain
/// would be killed: so these come last.
fn hazards(spare_rsp: u64) {
    let id = 2;
    if vcpu::count() <= id {
        return;
    }
    if !st("hazard.setup_release", hc2(HC_MEM_RELEASE, s(3 * P), 1), 1) {
        return;
    }
    let up = |rip: u64, rsp: u64| hc(HC_VCPU_UP, [u64::from(id), rip, rsp, 0, 0, 0]);
    // If one is wrongly accepted, the page stays released: the new vCPU then
    // faults on it at once and the domain is killed (a clear failure),
    // rather than running whatever a repopulated page would hold.
    if st("vcpu_up.rip_in_released_page", up(s(3 * P), spare_rsp), EFAULT)
        // RSP - 8 is the last word of the released page.
        && st(
            "vcpu_up.rsp_in_released_page",
            up(worker_rip(), s(4 * P)),
            EFAULT,
        )
    {
        st("hazard.repopulate", hc2(HC_MEM_POPULATE, s(3 * P), 1), 1);
    }
}

/// A short name built at run time (no allocator here).
fn name_of(prefix: &str) -> Name {
    let mut n = Name::new();
    n.push_str(prefix);
    n
}

struct Name {
    buf: [u8; 96],
    len: usize,
}

impl Name {
    fn new() -> Self {
        Self {
            buf: [0; 96],
            len: 0,
        }
    }

    fn push_str(&mut self, s: &str) {
        for &b in s.as_bytes() {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(self.buf.get(..self.len).unwrap_or(&[])).unwrap_or("?")
    }
}
