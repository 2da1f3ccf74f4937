//! Domains, their vCPUs, and the credit scheduler over every CPU.
//!
//! Each boot module that is an ELF image becomes a domain with up to
//! [`DOMAIN_VCPUS`](crate::domain::lifecycle::DOMAIN_VCPUS) vCPUs (vCPU 0 runs at once; the guest starts the others
//! with `HC_VCPU_UP`). The scheduling unit is the vCPU; the policy is
//! [`crate::sched::Credit`] (weights, caps, per-CPU run queues, stealing;
//! `docs/scheduler.md`), wired in `policy.rs`. Each CPU asks it what to
//! run, runs that vCPU until its slice ends (the LAPIC one-shot timer, and
//! on VT-x the VMX-preemption timer), it yields, blocks or its domain ends,
//! and reports the time it ran. A blocked vCPU is in no queue: events wake
//! it (`events.rs`), its deadline or guest timer is in the timer list
//! (`timers.rs`), so it costs nothing until then. An idle CPU halts until
//! an interrupt (its timer, at most one tick away, or a reschedule IPI).
//!
//! A domain that breaks a rule is killed with one log line. Its vCPUs that
//! are not running leave the scheduler and the domain table at once, running ones
//! when their CPU notices; when the last one is gone the domain's memory
//! and page-table frames go back to the allocator (`Drop for Domain`), so
//! no frame is freed while any CPU may still run the guest.
//!
//! Lock order: the domain table (`domain/table.rs`), then a vCPU's state, then the scheduler lock
//! (`policy.rs`; nothing is taken under it), or a domain's inner state.
//! The timer list (`timers.rs`) is a leaf. A domain's event-channel table
//! (`Domain::events`) is taken with none of those held and takes none of
//! them; two tables are taken in ascending domain id (`events.rs`). Grants
//! (`grants.rs`): a granter's `grants`, then a grantee's `maps`, then a
//! domain's inner state; the domain table may be taken under `grants` and
//! `maps` (TLB shoot-down), never the other way.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use arrayvec::ArrayString;

use crate::console::live as consoles;
use crate::domain::lifecycle::{
    ALIVE, CREATED, DOMAINS, ENDED_CLEAN, ENDED_OTHER, MAX_RUNNING, RUNNING, Run,
    SHUTDOWN_WHEN_DONE, STARTED, VcpuEntry,
};
use crate::evtchn::live as events;
use crate::hostwork;
use crate::hypercall::services::Svc;
use crate::hypercall::{self, Action, Host, KillReason};
use crate::platform::{P, Platform};
use crate::sched::clock::now_ns;
use crate::sched::halt;
use crate::sched::live as policy;
use crate::sched::timers;
use crate::virt::VcpuBackend;

struct MachineHost;

impl Host for MachineHost {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        P::cpuid(leaf, subleaf)
    }
    fn tsc(&self) -> u64 {
        P::tsc()
    }
}

enum Outcome {
    Again,
    /// Blocked until the deadline (0: none); the vCPU its last hypercall
    /// woke, which may run next on this CPU (dropped unused, it is woken).
    Blocked(u64, Option<policy::Handoff>),
    Ended,
}

// The attention words cover every CPU the scheduler does.
const _: () = assert!(hostwork::MAX_CPUS >= crate::sched::MAX_CPUS);

/// The longest a CPU's timer is armed for (its tick, `arch/lapic.rs`).
const TICK_NS: u64 = 10_000_000;
/// The shortest: an interrupt sooner than this would cost more than it saves.
const MIN_ARM_NS: u64 = 20_000;

/// Arms this CPU's (`cpu`'s) timer for the earliest of `until` (a slice's
/// end or an idle CPU's wake-up), the next guest timer on its list and one
/// tick; returns the system time it fires at.
fn arm_timer(cpu: usize, now: u64, until: u64) -> u64 {
    let at = until.min(timers::next_due_on(cpu));
    let ns = at.saturating_sub(now).clamp(MIN_ARM_NS, TICK_NS);
    P::arm_timer_ns(ns);
    now.saturating_add(ns)
}

/// What one CPU's run of a chain of vCPUs (the one `pick` chose, then
/// each a direct switch handed the CPU to: [`run_chain`]) keeps from one
/// vCPU's slice to the next, so that a switch does not pay for it again.
pub(crate) struct Chain {
    /// This CPU's attention word.
    attn: &'static AtomicU32,
    /// The system time this CPU's timer was last armed to fire at (0:
    /// not known). A slice whose own end comes no earlier leaves it armed:
    /// the interrupt then comes before the slice needs it, and its tick
    /// arms again for what is left (`run_slice`).
    armed: u64,
    /// The last slice length converted to TSC ticks, and the result: a
    /// chain of direct switches gives each vCPU the same boosted slice.
    slice_ticks: (u64, u64),
    /// The last slice's end: its last clock read, as a TSC value and the
    /// system time it converts to (`None` before the chain's first
    /// slice). The next slice starts there, so that a direct switch reads
    /// and converts the clock once, not at the end of one slice and again
    /// at the start of the next; the switch's own work between the two is
    /// charged to the vCPU it starts.
    ended: Option<(u64, u64)>,
}

impl Chain {
    /// The chain of CPU `cpu` (the caller's index, below the scheduler's
    /// bound), or `None` beyond the attention words.
    fn new(cpu: usize) -> Option<Self> {
        Some(Self {
            attn: hostwork::attention(cpu)?,
            armed: 0,
            slice_ticks: (0, 0),
            ended: None,
        })
    }

    /// `ns` in TSC ticks, converted once per length.
    fn ticks(&mut self, ns: u64) -> u64 {
        if self.slice_ticks.0 != ns {
            self.slice_ticks = (ns, crate::sched::clock::ns_to_ticks(ns));
        }
        self.slice_ticks.1
    }
}

/// Runs one vCPU on this CPU for `len` ns (its slice), until a yield, a
/// block or its domain's end; returns how it stopped, the ns it ran
/// (TSC-measured: what the scheduler is charged and `cpu_time_ns` shows)
/// and the system time it stopped at (the run's last clock read, which
/// the caller reports to the scheduler). `start` is the system time the
/// caller read when it chose the vCPU (a clock read less per switch);
/// `cpu` is this CPU's index (the caller's: no per-CPU look-up per
/// slice), `chain` what its run keeps.
///
/// Generic over the backend: [`run_picked`] calls it with the concrete
/// vendor type (`virt::Concrete`), so that each exit's calls into the
/// backend (`run`, the hypercall's registers, its completion) are direct
/// and inlined rather than through the vtable.
#[inline(always)]
fn run_slice<V: VcpuBackend + ?Sized>(
    cpu: usize,
    me: &Arc<VcpuEntry>,
    vcpu: &mut V,
    resume: Option<u64>,
    start: u64,
    len: u64,
    chain: &mut Chain,
) -> (Outcome, u64, u64) {
    // The domain itself, not its `Arc`: one pointer in a register rather
    // than a load through the `Arc` at each of the exit path's uses.
    let d: &crate::domain::lifecycle::Domain = &me.domain;
    // This CPU's attention word, tested after every exit.
    let attn = chain.attn;
    // The scheduler's last "go on" in this run (`policy::tick`).
    let mut quiet = policy::Quiet::default();
    me.running_on.store(cpu as u32, Ordering::Release);
    me.last_cpu.store(cpu as u32, Ordering::Relaxed);
    // The slice runs its length from here: from the last slice's end in a
    // chain of direct switches (no clock read), else from a clock read
    // now. Not from `start` (the pick), which can lie well before: a host
    // that descheduled this CPU's thread between the two (3 ms once on
    // CI's 2-core machine).
    let chained = chain.ended.is_some();
    let (t0, t0_ns) = match chain.ended {
        Some(ended) => ended,
        None => {
            let t0 = P::tsc();
            (t0, crate::sched::clock::ns_at(t0))
        }
    };
    vcpu.enter(cpu);
    let slice_end = t0_ns.saturating_add(len);
    // The slice's end as a TSC value: checked after every exit without
    // converting the TSC to nanoseconds (the hypercall path's cost).
    let end_tsc = t0.saturating_add(chain.ticks(len));
    vcpu.set_slice_end(end_tsc);
    // Left armed when it fires before this slice's end and the next guest
    // timer here, and still ahead (a chain of direct switches: each slice
    // ends later than the last armed for), else armed now. "Ahead" of
    // `t0`, which in a chain lies a switch back: `MIN_ARM_NS` is far more
    // than a switch takes.
    let mut armed = chain.armed;
    if armed < t0_ns.saturating_add(MIN_ARM_NS) || armed > slice_end.min(timers::next_due_on(cpu)) {
        // From the clock now, not a chained slice's `t0`: armed from an
        // earlier time, the timer fires that much late, and `armed` is
        // that much early, so a guest timer due in between is not
        // re-armed for (it waits for the slice's end). A picked slice's
        // `t0` was read just now.
        let now = if chained { now_ns() } else { t0_ns };
        armed = arm_timer(cpu, now, slice_end);
    }
    let mut rearmed_for = 0;
    // The TLB generation this vCPU flushed for, kept here too: only this
    // loop writes `seen_gen`, so each entry compares without loading it.
    let mut seen_gen = d.tlb_gen.load(Ordering::Acquire);
    me.seen_gen.store(seen_gen, Ordering::Release);
    // Back from a block: RAX gets the events (or the port a send_wait
    // waited for), or 0 once the deadline has passed; woken with neither,
    // it sleeps on (never a 0 before its deadline: `sleep_until` trusts
    // that 0).
    let mut sleep_on = None;
    // Back from HLT: nothing to give it, every register stays.
    if let Some(deadline) = resume.filter(|_| !halt::resumed(me)) {
        match events::wake_value(me, deadline, start) {
            Some(rax) => vcpu.set_rax(rax),
            None => {
                early_wake(me, deadline, start);
                sleep_on = Some(deadline);
            }
        }
    }
    // A chained slice follows the blocking exit that ended the last one
    // before its test of this CPU's word (below): what came since (a
    // timer interrupt during the switch, a kick) is answered before the
    // first entry. Else it waits for an exit that does not block, which
    // a chain of send-and-waits may not make for long: due guest timers
    // on this CPU waited, and its timer, armed again for them at every
    // switch, fired every `MIN_ARM_NS`.
    let mut leave = false;
    if chained && sleep_on.is_none() && attn.load(Ordering::Relaxed) != 0 {
        match answer(cpu, me, attn, slice_end, armed, rearmed_for, &mut quiet) {
            Some(timer) => (armed, rearmed_for) = timer,
            None => leave = true,
        }
    }
    // The hypercall services, one value for every exit of the slice:
    // `blocked` and `handoff` are set only by a hypercall that blocks
    // (multicalls refuse those), which ends the loop, taking both.
    let mut svc = Svc {
        me,
        blocked: None,
        handoff: None,
    };
    // Console bytes go to the domain's own queue; a bounded share of it
    // reaches the transmit ring after each exit (`console/out.rs`), and
    // the ring the serial port at the exits that find `ATTN_CONSOLE`.
    let mut console = |b: &[u8]| consoles::write(d, b);
    // How it stopped, and the slice's last clock read (its end).
    let (outcome, last_tsc) = if leave {
        (Outcome::Again, P::tsc())
    } else {
        loop {
            if let Some(deadline) = sleep_on.take() {
                break (Outcome::Blocked(deadline, None), P::tsc());
            }
            // Ended, or paused (the scheduler drops it at `descheduled`): one
            // load when neither.
            if d.stopping() {
                if d.dying() {
                    break (Outcome::Ended, P::tsc());
                }
                if d.paused() {
                    break (Outcome::Again, P::tsc());
                }
            }
            me.in_guest.store(true, Ordering::SeqCst);
            let generation = d.tlb_gen.load(Ordering::SeqCst);
            if seen_gen < generation {
                vcpu.flush_tlb();
                seen_gen = generation;
                me.seen_gen.store(generation, Ordering::SeqCst);
            }
            // A continued hypercall is executed again before any upcall.
            if me.cont.pending() {
                vcpu.set_upcall(None);
            } else {
                events::prepare_upcall(me, d, vcpu);
            }
            let exit = vcpu.run();
            let exit_tsc = P::tsc();
            // Out of the guest: a release store is enough. A shoot-down that
            // reads this `false` returns at once; the next entry's `true` and
            // generation load are both SeqCst, ordered after the shoot-down's
            // generation bump (`hypercall/services.rs`), so it flushes.
            me.in_guest.store(false, Ordering::Release);
            // A pending host interrupt (timer, kick, shoot-down) is taken now:
            // both hardware backends return with interrupts on (AMD-V's STGI;
            // VT-x enables them after its decode); the host tests' fakes do not.
            if !vcpu.exits_with_interrupts_on() {
                P::interrupts_on();
            }
            d.exits.fetch_add(1, Ordering::Relaxed);
            let action =
                hypercall::handle(exit, vcpu, &mut svc, &MachineHost, d.insn, &mut console);
            consoles::drain(d);
            // Its longest exit, in its `domain-end:` line (bounded exits,
            // `hypercall/continuation.rs`).
            // Compared first: the locked update only for a new longest exit.
            let now_tsc = P::tsc();
            let took = now_tsc.wrapping_sub(exit_tsc);
            if took > d.max_exit_ticks.load(Ordering::Relaxed) {
                d.max_exit_ticks.fetch_max(took, Ordering::Relaxed);
            }
            match action {
                Action::Resume | Action::Interrupt => {}
                Action::Yield => break (Outcome::Again, now_tsc),
                Action::Block => {
                    let blocked =
                        Outcome::Blocked(svc.blocked.take().unwrap_or(0), svc.handoff.take());
                    break (blocked, now_tsc);
                }
                Action::Shutdown {
                    crashed,
                    code,
                    reboot,
                } => {
                    let how = match (crashed, reboot) {
                        (true, _) => "crashed",
                        (false, true) => "rebooted",
                        (false, false) => "exited",
                    };
                    d.finish(how, code, None);
                    break (Outcome::Ended, P::tsc());
                }
                Action::Kill(why) => {
                    if matches!(why, KillReason::TripleFault { .. }) {
                        // What the guest was doing when it died: the event being
                        // delivered, its stack, its IDT (for the guest's author
                        // and for a hypervisor bug that injected a bad event).
                        let mut state = ArrayString::<512>::new();
                        let _ = vcpu.describe(&mut state);
                        log::warn!(
                            "domain {} ({}) vCPU {} triple fault: {state}",
                            d.id,
                            d.name,
                            me.index
                        );
                    }
                    let mut reason = ArrayString::<160>::new();
                    let _ = core::fmt::write(&mut reason, format_args!("{why}"));
                    d.finish("killed", -1, Some(&reason));
                    break (Outcome::Ended, P::tsc());
                }
            }
            if now_tsc >= end_tsc {
                break (Outcome::Again, now_tsc);
            }
            // This CPU's word: a timer interrupt came, the vCPU set its
            // guest timer, host work was noted, or console output waits
            // outside the domains' queues ([`answer`]); one load when none.
            if attn.load(Ordering::Relaxed) != 0 {
                match answer(cpu, me, attn, slice_end, armed, rearmed_for, &mut quiet) {
                    Some(timer) => (armed, rearmed_for) = timer,
                    None => break (Outcome::Again, P::tsc()),
                }
            }
        }
    };
    // A slice whose last exit ended it before the word's test (a yield, a
    // block, the slice's end) still takes its CPU's console share: a CPU
    // that only runs vCPUs yielding at every exit is never idle, and
    // would otherwise never push the console again.
    if attn.load(Ordering::Relaxed) & hostwork::ATTN_CONSOLE != 0 {
        work::attend_console(attn);
    }
    vcpu.put();
    me.running_on.store(u32::MAX, Ordering::Release);
    chain.armed = armed;
    // The last clock read of the loop (after the last exit's handler, on
    // the paths a guest takes at every exit) ends the slice: the time it
    // ran, the scheduler's `now`, and the next slice's start. What comes
    // after it here (`put`) is charged to the vCPU a direct switch
    // starts, or to none.
    let now = crate::sched::clock::ns_at(last_tsc);
    chain.ended = Some((last_tsc, now));
    let ns = now.saturating_sub(t0_ns);
    me.cpu_time_ns.fetch_add(ns, Ordering::Relaxed);
    (outcome, ns, now)
}

/// Answers CPU `cpu`'s attention word `attn` (found not 0) for `me`,
/// which runs there in a slice that ends at `slice_end` (system time),
/// the CPU's timer armed to fire at `armed`, last re-armed for the guest
/// timer due at `rearmed_for`: those two again, or `None` when `me` must
/// leave now (the scheduler's tick said so). A timer interrupt came,
/// the vCPU set its guest timer, host work was noted (the management
/// line, end reports, device messages: polled now, `run/work.rs`), or
/// console output waits outside the domains' queues (the transmit ring,
/// leftovers: a share of it now, `console/live.rs`). Out of line: the
/// exit path only tests the word.
#[cold]
#[inline(never)]
fn answer(
    cpu: usize,
    me: &VcpuEntry,
    attn: &AtomicU32,
    slice_end: u64,
    mut armed: u64,
    mut rearmed_for: u64,
    quiet: &mut policy::Quiet,
) -> Option<(u64, u64)> {
    let bits = work::attend(attn);
    // A guest timer set in the last exit (`HC_SET_TIMER`) due before this
    // CPU's timer: re-armed now, or it would fire at the slice's end or
    // the tick, up to 10 ms late. Once per deadline (one that stays on
    // another CPU's list fires there).
    if bits & hostwork::ATTN_TIMER != 0 {
        let due = me.timer.load(Ordering::Relaxed);
        if due != rearmed_for && due != 0 && due < armed {
            rearmed_for = due;
            armed = arm_timer(cpu, now_ns(), slice_end.min(due));
        }
    }
    // A timer interrupt or a reschedule request (both bits of the word,
    // taken with it): fire due guest timers, and ask the scheduler
    // whether something better waits.
    if bits & (hostwork::ATTN_TICK | hostwork::ATTN_RESCHED) != 0 {
        let now = now_ns();
        timers::fire_list(cpu, now);
        if policy::tick(cpu, now, quiet) {
            return None;
        }
        armed = arm_timer(cpu, now, slice_end);
    }
    Some((armed, rearmed_for))
}

/// Runs the vCPU the scheduler picked for `cpu` for at most `slice_ns`,
/// then tells the scheduler how it stopped. Returns the vCPU to run next
/// on this CPU without asking the scheduler to pick (a direct switch to
/// the vCPU a blocking send woke: `policy::switch_to`), if any, with its
/// slice and the system time of that decision. Inlined by force into
/// [`run_chain`]'s loop, its one caller.
#[inline(always)]
fn run_picked(
    cpu: usize,
    entry: &Arc<VcpuEntry>,
    now: u64,
    slice_ns: u64,
    chain: &mut Chain,
) -> Option<(Arc<VcpuEntry>, u64, u64)> {
    let taken = {
        let mut st = entry.st.lock();
        match (st.run, st.vcpu.take()) {
            (Run::Runnable, Some(vc)) => {
                st.run = Run::Running;
                Some((vc, st.resume.take()))
            }
            (run, vc) => {
                // Reaped (dead) between the pick and this lock.
                st.vcpu = vc;
                policy::descheduled(cpu, entry, 0, false);
                if run != Run::Dead {
                    log::warn!(
                        "vCPU {} of domain {} picked while not runnable",
                        entry.index,
                        entry.domain.id
                    );
                }
                None
            }
        }
    };
    let Some((mut vcpu, resume)) = taken else {
        if entry.st.lock().run == Run::Dead {
            policy::retire(entry);
        }
        return None;
    };
    let (outcome, ran, now) = match vcpu.concrete() {
        #[cfg(target_os = "none")]
        crate::virt::Concrete::Svm(v) => run_slice(cpu, entry, v, resume, now, slice_ns, chain),
        #[cfg(target_os = "none")]
        crate::virt::Concrete::Vmx(v) => run_slice(cpu, entry, v, resume, now, slice_ns, chain),
        #[cfg(not(target_os = "none"))]
        crate::virt::Concrete::Other(_) => {
            run_slice(cpu, entry, &mut *vcpu, resume, now, slice_ns, chain)
        }
    };
    let mut next = None;
    let dead = {
        let mut st = entry.st.lock();
        st.vcpu = Some(vcpu);
        // Checked under the lock: a domain that ended after `reap` passed
        // this (running) vCPU by is seen here.
        let outcome = if entry.domain.dying() {
            Outcome::Ended
        } else {
            outcome
        };
        let mut deadline = 0;
        let mut handoff = None;
        st.run = match outcome {
            Outcome::Again => Run::Runnable,
            // An event that arrived while we were still running is not
            // lost: the mask is checked under the lock senders take.
            Outcome::Blocked(d, to) => {
                if halt::wake_ready(entry) || (d != 0 && now >= d) {
                    st.resume = Some(d);
                    Run::Runnable
                } else {
                    deadline = d;
                    handoff = to;
                    Run::Blocked { deadline: d }
                }
            }
            Outcome::Ended => {
                if let Some(mut vc) = st.vcpu.take() {
                    vc.release();
                }
                Run::Dead
            }
        };
        match handoff {
            Some(to) => {
                next = to.switch(cpu, entry, ran, now).map(|(e, ns)| (e, ns, now));
            }
            None => policy::descheduled_at(cpu, entry, ran, st.run == Run::Runnable, now),
        }
        timers::arm_on(cpu, entry, deadline);
        st.run == Run::Dead
    };
    if dead {
        policy::retire(entry);
    }
    next
}

/// Early wake-ups reported so far (the first few are logged).
static EARLY_WAKES: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// `me` was resumed from a block with no event before its deadline (by
/// this CPU's clock): it is blocked again rather than told its deadline
/// passed. No path in this file does that on purpose (an event sets a bit
/// before it wakes, the timer list wakes only at the deadline), so it is
/// reported: the first few times, as a `scheduler:` line the boot tests
/// fail on.
fn early_wake(me: &VcpuEntry, deadline: u64, now: u64) {
    if EARLY_WAKES.fetch_add(1, Ordering::Relaxed) < 8 {
        log::error!(
            "scheduler: vCPU {} of domain {} woken with no event {} us before its deadline: blocked again",
            me.index,
            me.domain.id,
            deadline.saturating_sub(now) / 1000
        );
    }
}

/// This CPU's scheduler loop: never returns. The boot CPU ends the
/// hypervisor once every domain has ended, if asked to.
pub fn run_cpu() -> ! {
    let cpu = P::cpu_index();
    loop {
        schedule(cpu);
    }
}

/// One turn of CPU `cpu`'s loop (the calling CPU): run what the scheduler
/// picks for one slice, or halt until an interrupt. Host tests call it in
/// their own loop on threads that play the CPUs.
pub fn schedule(cpu: usize) {
    // Interrupts stay off from the decision to the halt: a kick sent
    // after `pick` found nothing is taken by the `hlt` (STI's shadow
    // covers it), never just before it.
    P::interrupts_off();
    crate::console::wake::poll();
    crate::pci::msi_live::poll();
    let now = now_ns();
    timers::fire_list(cpu, now);
    policy::clear_resched(cpu);
    work::tick_seen(cpu);
    match policy::pick(cpu, now) {
        policy::Pick::Run(entry, slice_ns) => {
            P::interrupts_on();
            run_chain(cpu, &entry, now, slice_ns);
        }
        policy::Pick::Idle(wake_in) => {
            if cpu == 0
                && STARTED.load(Ordering::Acquire)
                && ALIVE.load(Ordering::Acquire) == 0
                && !consoles::leftovers_pending()
            {
                all_ended();
            }
            rescue_lost_wakeups();
            if cpu == 0 {
                crate::domain::dma::poll_faults(now);
            }
            // Queued console output: look again in 100 us, not a tick.
            let wake_in = if consoles::drain_idle() {
                wake_in.min(100_000)
            } else {
                wake_in
            };
            // Nothing to run: sleep until the timer (a guest timer, a
            // parked domain's next period, at most a tick) or a kick.
            let _ = arm_timer(cpu, now, now.saturating_add(wake_in));
            P::halt();
        }
    }
}

/// Runs `entry`, which `pick` chose for `cpu` at `now`, for at most
/// `slice_ns`, and then every vCPU a direct switch hands the CPU to: the
/// scheduler already made each of them run here. Due guest timers fire
/// at its first exit after a tick (`run_slice`), as for any running vCPU.
/// Inlined by force: it is `schedule`'s own code, taken out for the host
/// tests that drive a pick without the idle CPU's halt; the release build
/// (optimized for size) would call out for it on every pick.
///
/// The CPU counts as running a vCPU (`max_concurrent`) for the whole
/// chain: a switch does not touch the shared counters.
#[inline(always)]
pub(crate) fn run_chain(cpu: usize, entry: &Arc<VcpuEntry>, now: u64, slice_ns: u64) {
    let Some(mut chain) = Chain::new(cpu) else {
        // No attention word (cannot happen: they cover every CPU the
        // scheduler does): the picked vCPU goes back to its queue rather
        // than stay running in the policy with nothing running it.
        policy::descheduled(cpu, entry, 0, true);
        return;
    };
    let running = RUNNING.fetch_add(1, Ordering::AcqRel) + 1;
    MAX_RUNNING.fetch_max(running, Ordering::AcqRel);
    // One call site, so that `run_picked` is inlined here: a switch pays
    // no call, and no saving and restoring of registers, per vCPU.
    let mut next: Option<(Arc<VcpuEntry>, u64, u64)> = None;
    loop {
        let held;
        let (e, at, ns) = match next.take() {
            Some((e, ns, at)) => {
                held = e;
                (&held, at, ns)
            }
            None => (entry, now, slice_ns),
        };
        next = run_picked(cpu, e, at, ns, &mut chain);
        if next.is_none() {
            break;
        }
    }
    RUNNING.fetch_sub(1, Ordering::AcqRel);
}

/// An assertion, checked by CPUs with nothing to do. Events are raised on
/// a vCPU that is not running under its state lock, which also wakes it
/// if blocked (`events::kick`, `timers::fire`); and a runnable vCPU is
/// always queued or running in the policy. A vCPU found blocked with
/// events pending, or runnable but held as blocked by the policy, for
/// over [`STUCK_NS`] is a lost wake-up, a bug: it is logged as an error
/// (`lost wake-up`), which fails every boot test that boots guests
/// (`tests/src/guest_run.rs`, the stress test `tests/tests/boot/stress.rs`).
/// It is still woken, so that a machine in service does not sit out a
/// guest's deadline; the tests, not this wake, are what keeps the bug out.
pub(crate) fn rescue_lost_wakeups() {
    let now = now_ns();
    // Lock order: the domain table, a vCPU's state, the scheduler. No
    // allocation here (this runs on every idle pass).
    let table = DOMAINS.lock();
    for v in table.all_vcpus() {
        let mut st = v.st.lock();
        let stranded = st.run == Run::Runnable
            && !v.domain.paused()
            && !v.domain.dying()
            && !policy::handoff_in_flight(v)
            && policy::held_blocked(v);
        let unwoken = matches!(st.run, Run::Blocked { .. }) && halt::wake_missed(v);
        if !stranded && !unwoken {
            v.stuck_since.store(0, Ordering::Relaxed);
            continue;
        }
        // Creating, unpausing and waking pass through such states for a
        // moment (between their steps): only one that lasts is lost.
        let since = v.stuck_since.load(Ordering::Relaxed);
        if since == 0 {
            v.stuck_since.store(now.max(1), Ordering::Relaxed);
            continue;
        }
        if now.saturating_sub(since) < STUCK_NS {
            continue;
        }
        v.stuck_since.store(0, Ordering::Relaxed);
        #[cfg(test)]
        LOST_WAKEUPS.fetch_add(1, Ordering::Relaxed);
        log::error!(
            "scheduler: vCPU {} of domain {} {} for {} us: woken by an idle CPU (lost wake-up)",
            v.index,
            v.domain.id,
            if stranded {
                "runnable but not queued"
            } else {
                "blocked with events pending"
            },
            now.saturating_sub(since) / 1000
        );
        if stranded {
            policy::requeue(v);
        } else {
            if let Run::Blocked { deadline } = st.run {
                st.resume = Some(deadline);
            }
            policy::make_runnable(v, &mut st);
        }
    }
}

/// How long a vCPU must look stranded before an idle CPU wakes it (and
/// reports it). Creating and unpausing pass through such states between
/// their steps, and under an emulator the host may deschedule the thread
/// that plays a CPU mid-step for tens of milliseconds (1 ms here once
/// failed loaded test runs). A lost wake-up lasts until this check ends
/// it, so 1 s still catches every one (the stress guests give up after
/// 10 s), and in service a bug costs a guest 1 s, not its deadline.
const STUCK_NS: u64 = 1_000_000_000;

/// Lost wake-ups reported so far (host tests read it).
#[cfg(test)]
pub(crate) static LOST_WAKEUPS: core::sync::atomic::AtomicU64 =
    core::sync::atomic::AtomicU64::new(0);

static REPORTED: AtomicBool = AtomicBool::new(false);

fn all_ended() {
    if REPORTED.swap(true, Ordering::AcqRel) {
        return;
    }
    crate::println!(
        "domains: all {} ended ({} exited cleanly, {} did not); max_concurrent={} free_bytes={}",
        CREATED.load(Ordering::Relaxed),
        ENDED_CLEAN.load(Ordering::Relaxed),
        ENDED_OTHER.load(Ordering::Relaxed),
        MAX_RUNNING.load(Ordering::Relaxed),
        P::free_frame_count() * 4096
    );
    if SHUTDOWN_WHEN_DONE.load(Ordering::Acquire) {
        log::info!("shutdown requested on the command line");
        P::exit(true);
    }
}

pub(crate) mod work;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_handoff;
#[cfg(test)]
mod tests_locks;
