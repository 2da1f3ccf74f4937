//! The credit scheduler ([`crate::sched::Credit`]) wired to the machine:
//! the policy with a lock per CPU's run queue inside it, which keeps each
//! vCPU's [`VcpuEntry`] in the vCPU's record (its payload); wake-ups with
//! reschedule IPIs; pause, unpause and the end of a domain's vCPUs.
//!
//! Lock order (`sched/mod.rs`): the domain table, then a vCPU's state,
//! then the run-queue locks. Nothing is taken under a run-queue lock, no
//! IPI is sent under one, and no [`VcpuEntry`] is dropped under one (an
//! entry may hold the last reference to its domain, whose drop frees
//! memory and prints): entries are handed back by the policy and dropped
//! here.
//!
//! A timer interrupt or kick whose [`tick`] finds the answer of the last
//! `tick` that asked, in the same run of the same vCPU, still good
//! ([`Quiet`]) takes no lock at all; pick, block and wake take one
//! run-queue lock each.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::domain::lifecycle::{DOMAINS, Domain, Run, VState, VcpuEntry};
use crate::hostwork::{self, ATTN_RESCHED};
use crate::platform::{P, Platform};
use crate::sched::clock::now_ns;
use crate::sched::{Credit, MAX_CPUS, SchedDom, VcpuId};

/// The policy, which keeps each of its vCPUs' [`VcpuEntry`] in the
/// vCPU's record ([`Credit::set_payload`]): a pick has it without a
/// separate table. Its locks are inside it, one per CPU's run queue.
type Sched = Credit<Arc<VcpuEntry>>;

/// Empty until [`init`] (before any domain exists); CPUs that start
/// earlier idle until then. Made once; host tests that start afresh
/// empty it ([`Credit::reset`]).
static SCHED: spin::Once<Sched> = spin::Once::new();

#[inline(always)]
fn sched() -> Option<&'static Sched> {
    SCHED.get()
}

/// Creates the scheduler for `cpus` CPUs (boot CPU, once, before the first
/// domain; host tests again between runs, with no vCPU running).
pub fn init(cpus: usize) {
    // Tests derive their latency bounds from this line (`boot/bounded.rs`).
    log::info!(
        "sched: credit scheduler, slice_us={} boost_slice_us={}",
        crate::sched::SLICE_NS / 1000,
        crate::sched::BOOST_SLICE_NS / 1000
    );
    // Room for exactly the CPUs that boot; host tests start afresh with
    // other counts, so they get room for any.
    let room = if cfg!(test) { MAX_CPUS } else { cpus };
    let mut fresh = false;
    let s = SCHED.call_once(|| {
        fresh = true;
        Credit::with_room(cpus, room)
    });
    if !fresh {
        // Entries dropped here, with no lock held.
        drop(s.reset(cpus));
    }
}

/// Times every scheduler lock was taken at once (the accounting, adding
/// and removing domains): host tests count them per path, where a plain
/// wake, block or pick must take none.
#[cfg(test)]
pub(crate) fn global_locks() -> u64 {
    sched().map_or(0, |s| s.all_locks.load(Ordering::Relaxed))
}

/// Times a single run-queue lock was taken (host tests).
#[cfg(test)]
pub(crate) fn rq_locks() -> u64 {
    sched().map_or(0, |s| s.rq_locks.load(Ordering::Relaxed))
}

/// What the calling CPU does next.
pub(crate) enum Pick {
    /// Run this vCPU for at most this many ns.
    Run(Arc<VcpuEntry>, u64),
    /// Halt; wake up by timer no later than this many ns from now
    /// (`u64::MAX`: no reason to).
    Idle(u64),
}

/// A new domain with `nr_vcpus` vCPUs (none runnable) in the policy,
/// with its weight and cap; `None` (and nothing left behind) if the
/// scheduler refuses them (the domctl decoder already checked the ABI's
/// bounds, which are the scheduler's).
pub(crate) fn add_domain(weight: u32, cap: u32, nr_vcpus: u32) -> Option<(SchedDom, Vec<VcpuId>)> {
    let w = u16::try_from(weight).ok()?;
    let s = sched()?;
    let d = s.add_domain(w, 0).ok()?;
    let mut ids = Vec::new();
    for _ in 0..nr_vcpus {
        match s.add_vcpu(d) {
            Ok(v) => ids.push(v),
            Err(_) => break,
        }
    }
    if ids.len() != nr_vcpus as usize || s.set_params(d, w, cap).is_err() {
        let _ = s.remove_domain(d);
        return None;
    }
    Some((d, ids))
}

/// Changes a live domain's weight and cap (`HC_DOMCTL_SET_SCHED`):
/// `EINVAL` when the policy refuses them (a cap over 100 × its vCPUs).
/// Takes effect at the next scheduling decision.
pub(crate) fn set_params(d: SchedDom, weight: u32, cap: u32) -> Result<(), pvabi::Error> {
    let w = u16::try_from(weight).map_err(|_| pvabi::Error::Invalid)?;
    let s = sched().ok_or(pvabi::Error::Invalid)?;
    let r = s.set_params(d, w, cap).map_err(|_| pvabi::Error::Invalid);
    // It may have unparked the domain: vCPUs waiting anywhere may now
    // win. After the change, so that no `tick` promises quiet from the
    // old parameters.
    for cpu in 0..s.cpus() {
        queued_here(cpu);
    }
    r
}

/// Keeps a new domain's vCPU entries with their records in the policy.
pub(crate) fn register(entries: &[Arc<VcpuEntry>]) {
    // A replaced entry (there is none: ids are not reused while their
    // vCPU lives) is dropped after the lock.
    let Some(s) = sched() else {
        return;
    };
    for e in entries {
        drop(s.set_payload(e.sid, e.clone()));
    }
}

/// Whether `cpu` was asked to reschedule since it last looked (and clears
/// it): [`ATTN_RESCHED`] in its attention word, which the run loop takes
/// with the word's other bits after each exit.
pub(crate) fn take_resched(cpu: usize) -> bool {
    hostwork::attention(cpu).is_some_and(|a| {
        a.load(Ordering::Relaxed) & ATTN_RESCHED != 0
            && a.fetch_and(!ATTN_RESCHED, Ordering::AcqRel) & ATTN_RESCHED != 0
    })
}

/// `cpu` is about to ask the scheduler anyway.
pub(crate) fn clear_resched(cpu: usize) {
    let _ = take_resched(cpu);
}

/// Per CPU: moved whenever a vCPU is queued there (after it is, before
/// any kick) or any domain's parameters change (after they did): it ends
/// every [`Quiet`] promise made on that CPU before. [`tick`] reads it
/// before it asks the policy, so a queueing it does not see moves it
/// later.
static QUEUED: [AtomicU64; crate::sched::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::sched::MAX_CPUS];

/// A vCPU was queued on `cpu` (called before any kick, so a kicked
/// CPU's [`tick`] asks the policy).
fn queued_here(cpu: usize) {
    if let Some(q) = QUEUED.get(cpu) {
        q.store(q.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

/// The last answer of [`tick`] that asked the policy, in one run of one
/// vCPU on one CPU (the run loop keeps one per run, from `Default`): "go
/// on" until `until` ([`Credit::quiet_until`]), unless a vCPU was queued
/// on that CPU since ([`QUEUED`] moved from `queued`).
#[derive(Default)]
pub(crate) struct Quiet {
    until: u64,
    queued: u64,
}

/// Marks `cpu` (it asks the scheduler at its next exit) and, when it is
/// another CPU, sends it a reschedule IPI, which makes that exit now.
fn kick(cpu: usize) {
    let Some(word) = hostwork::attention(cpu) else {
        return;
    };
    word.fetch_or(ATTN_RESCHED, Ordering::AcqRel);
    if cpu != P::cpu_index() {
        P::send_ipi(cpu);
    }
}

/// Makes `v` runnable (its state lock held by the caller, as `st`): queued
/// by the scheduler unless its domain is paused or ending (then unpause
/// queues it, or it is reaped).
pub(crate) fn make_runnable(v: &VcpuEntry, st: &mut VState) {
    st.run = Run::Runnable;
    if v.domain.paused() || v.domain.dying() {
        return;
    }
    wake(v);
}

/// Whether the policy holds `v` as blocked (in no queue, not running).
pub(crate) fn held_blocked(v: &VcpuEntry) -> bool {
    sched().is_some_and(|s| s.is_blocked(v.sid) == Ok(true))
}

/// The CPU whose queue holds `v`, or that runs it; `None` when the policy
/// holds it as blocked (or does not know it).
#[cfg(test)]
pub(crate) fn queued_on(v: &VcpuEntry) -> Option<usize> {
    sched().and_then(|s| s.cpu_of(v.sid).ok().flatten())
}

/// The policy's invariants ([`Credit::check_invariants`]), and that no
/// CPU runs a vCPU (tests call it between turns of the run loop).
#[cfg(test)]
pub(crate) fn check_idle_policy() -> Result<(), &'static str> {
    let s = sched().ok_or("no scheduler")?;
    s.check_invariants()?;
    match (0..s.cpus()).any(|c| s.current(c).is_some()) {
        true => Err("a CPU runs a vCPU between turns"),
        false => Ok(()),
    }
}

/// Queues `v` again (its state lock held by the caller): for a vCPU the
/// policy lost track of.
pub(crate) fn requeue(v: &VcpuEntry) {
    wake(v);
}

/// `wake` in the scheduler, and the IPI it asks for.
fn wake(v: &VcpuEntry) {
    let Some(s) = sched() else {
        return;
    };
    placed(s.wake(v.sid, now_ns()).ok().flatten());
}

/// After a wake-up queued a vCPU on `p.cpu`: ends that CPU's quiet
/// promises, then kicks it when the policy says so.
#[inline(always)]
fn placed(p: Option<crate::sched::Placed>) {
    if let Some(p) = p {
        queued_here(p.cpu);
        if p.kick {
            kick(p.cpu);
        }
    }
}

/// Chooses what `cpu` runs next.
pub(crate) fn pick(cpu: usize, now: u64) -> Pick {
    let Some(s) = sched() else {
        return Pick::Idle(u64::MAX);
    };
    match s.pick_next(cpu, now) {
        Ok(d) => match d.vcpu {
            Some(id) => match s.payload(id) {
                Some(e) => Pick::Run(e, d.slice_ns),
                None => {
                    // No entry (cannot happen): never pick it again.
                    let _ = s.descheduled(cpu, id, 0, now, false);
                    Pick::Idle(0)
                }
            },
            None => Pick::Idle(d.slice_ns),
        },
        Err(_) => Pick::Idle(u64::MAX),
    }
}

/// `v` stopped running on `cpu` after `ran_ns` (called under its state
/// lock, so a wake-up cannot slip between its state and the policy's).
pub(crate) fn descheduled(cpu: usize, v: &VcpuEntry, ran_ns: u64, runnable: bool) {
    descheduled_at(cpu, v, ran_ns, runnable, now_ns());
}

/// [`descheduled`] at system time `now` (the caller's clock read).
pub(crate) fn descheduled_at(cpu: usize, v: &VcpuEntry, ran_ns: u64, runnable: bool, now: u64) {
    // The policy and the vCPU's state must agree that it ran here; if they
    // ever do not, say so (a disagreement would strand the vCPU or CPU).
    if let Some(Err(e)) = sched().map(|s| s.descheduled(cpu, v.sid, ran_ns, now, runnable)) {
        log::warn!(
            "scheduler: vCPU {} of domain {} descheduled on CPU {cpu}: {e:?}",
            v.index,
            v.domain.id
        );
    }
}

/// `v` blocked on `cpu` after `ran_ns`, having woken `to`, at system time
/// `now` (called under `v`'s state lock, as [`descheduled`]): `to` with its slice when the
/// policy lets it run here at once ([`Credit::switch_to`]), else `None`
/// (the CPU picks as usual).
pub(crate) fn switch_to(
    cpu: usize,
    v: &VcpuEntry,
    ran_ns: u64,
    to: &Arc<VcpuEntry>,
    now: u64,
) -> Option<(Arc<VcpuEntry>, u64)> {
    let r = match sched()?.switch_to(cpu, v.sid, ran_ns, to.sid, now) {
        Ok(Some(d)) => Ok(d.vcpu.map(|_| d.slice_ns)),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    match r {
        Ok(slice) => slice.map(|ns| (to.clone(), ns)),
        Err(e) => {
            log::warn!(
                "scheduler: vCPU {} of domain {} descheduled on CPU {cpu}: {e:?}",
                v.index,
                v.domain.id
            );
            None
        }
    }
}

/// The timer (or a kick) interrupted `cpu`, which runs the vCPU whose run
/// `quiet` belongs to: whether to leave the guest. Without the scheduler
/// lock while the last answer that took it still holds: a guest timer or
/// an interrupt that changes nothing for the scheduler costs no global
/// lock on the exit path. Out of line (it runs only on a timer interrupt
/// or a kick): inlined into the run loop it cost the event round trip 4
/// more hypervisor instructions (`cargo xtask bench --only evtchn`).
#[inline(never)]
pub(crate) fn tick(cpu: usize, now: u64, quiet: &mut Quiet) -> bool {
    let queued = QUEUED.get(cpu).map_or(0, |q| q.load(Ordering::Relaxed));
    if now < quiet.until && queued == quiet.queued {
        return false;
    }
    let Some(s) = sched() else {
        return false;
    };
    // `queued` was read before the policy is asked: a vCPU queued here
    // after it moved the count, so the next tick asks again.
    let (leave, until) = s.tick_quiet(cpu, now).unwrap_or((false, 0));
    *quiet = Quiet { until, queued };
    leave
}

/// The vCPUs of `d` in the domain table (taken and let go here); on the
/// stack, so pausing or ending a domain never needs the heap.
fn vcpus_of(
    d: &Domain,
) -> arrayvec::ArrayVec<Arc<VcpuEntry>, { pvabi::DOMCTL_MAX_VCPUS as usize }> {
    DOMAINS
        .lock()
        .vcpus(d.id)
        .take(pvabi::DOMCTL_MAX_VCPUS as usize)
        .cloned()
        .collect()
}

/// domctl pause: no vCPU of `d` is picked any more (one running now stops
/// at its next exit: `run_slice` checks the flag).
pub(crate) fn pause(d: &Domain) {
    d.set_paused(true);
    // The flag before each vCPU's state is read: a deferred wake-up
    // (`handoff.rs`) claims the vCPU before it reads the flag, so one of
    // the two sees the other.
    core::sync::atomic::fence(Ordering::SeqCst);
    let Some(s) = sched() else {
        return;
    };
    for v in vcpus_of(d) {
        let _st = v.st.lock();
        let _ = s.block(v.sid, now_ns());
    }
}

/// domctl unpause: the runnable vCPUs of `d` are queued again.
pub(crate) fn unpause(d: &Domain) {
    d.set_paused(false);
    for v in vcpus_of(d) {
        let st = v.st.lock();
        if matches!(st.run, Run::Runnable | Run::Running) && !d.dying() {
            wake(&v);
        }
    }
}

/// The domain ended: every vCPU of it that is not running now is marked
/// dead and leaves the scheduler and the domain table; running ones follow when
/// their CPU notices (`retire`). Called by [`Domain::finish`], no lock held.
pub(crate) fn reap(d: &Domain) {
    for v in vcpus_of(d) {
        let dead = {
            let mut st = v.st.lock();
            if st.run != Run::Running {
                st.run = Run::Dead;
                if let Some(mut vc) = st.vcpu.take() {
                    vc.release();
                }
            }
            st.run == Run::Dead
        };
        if dead {
            retire(&v);
        }
    }
}

/// A dead vCPU (not running) leaves the scheduler, the timer list and the
/// domain table; the last one of its domain takes the domain's record with
/// it. If a CPU picked it meanwhile (the scheduler says it runs), that CPU
/// finds it dead and retires it again.
pub(crate) fn retire(v: &Arc<VcpuEntry>) {
    let Some(s) = sched() else {
        return;
    };
    let slot = s.take_vcpu(v.sid).ok().flatten();
    if slot.is_none() {
        return;
    }
    drop(slot);
    crate::sched::timers::cancel(v);
    // Dropped after the table's lock (the caller still holds `v`, so no
    // domain is freed here).
    let removed = DOMAINS.lock().remove_vcpu(v.domain.id, v.index);
    if removed.is_some_and(|r| r.domain.is_some()) {
        let _ = s.remove_domain(v.domain.sdom);
    }
}

pub(crate) mod handoff;
pub(crate) use handoff::{Handoff, defer, in_flight as handoff_in_flight};

#[cfg(test)]
pub(crate) mod tests;
