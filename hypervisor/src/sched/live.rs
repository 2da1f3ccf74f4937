//! The credit scheduler ([`crate::sched::Credit`]) wired to the machine:
//! one scheduler lock over the policy's state, which keeps each vCPU's
//! [`VcpuEntry`] in the vCPU's record (its payload); wake-ups with
//! reschedule IPIs; pause, unpause and the end of a domain's vCPUs.
//!
//! Lock order (see `domain/table.rs`): the domain table, then a vCPU's state, then the
//! scheduler lock [`SCHED`]. Nothing is taken under [`SCHED`], no IPI is
//! sent under it, and no [`VcpuEntry`] is dropped under it (an entry may
//! hold the last reference to its domain, whose drop frees memory and
//! prints): entries are taken out under the lock and dropped after it.
//!
//! One exit path does without [`SCHED`]: a timer interrupt or kick whose
//! [`tick`] finds the answer of the last `tick` that asked, in the same
//! run of the same vCPU, still good ([`Quiet`]; issue 11's first step off
//! the global lock). Pick, block and wake still take it once each; the
//! per-CPU run-queue locks that are to replace it are designed in
//! `sched/mod.rs`.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::sync::Mutex;

use crate::domain::lifecycle::{DOMAINS, Domain, Run, VState, VcpuEntry};
use crate::platform::{P, Platform};
use crate::sched::clock::now_ns;
use crate::sched::{Credit, SchedDom, VcpuId};

/// The policy, which keeps each of its vCPUs' [`VcpuEntry`] in the
/// vCPU's record ([`Credit::set_payload`]): a pick has it without a
/// separate table.
struct Sched {
    credit: Credit<Arc<VcpuEntry>>,
}

/// `None` until [`init`] (before any domain exists); CPUs that start
/// earlier idle until then.
static SCHED: Mutex<Option<Sched>> = Mutex::new(None);

/// Creates the scheduler for `cpus` CPUs (boot CPU, once, before the first
/// domain).
pub fn init(cpus: usize) {
    // Tests derive their latency bounds from this line (`boot/bounded.rs`).
    log::info!(
        "sched: credit scheduler, slice_us={} boost_slice_us={}",
        crate::sched::SLICE_NS / 1000,
        crate::sched::BOOST_SLICE_NS / 1000
    );
    *SCHED.lock() = Some(Sched {
        credit: Credit::with_payloads(cpus),
    });
}

fn with<R>(f: impl FnOnce(&mut Sched) -> R) -> Option<R> {
    #[cfg(test)]
    SCHED_LOCKS.fetch_add(1, Ordering::Relaxed);
    SCHED.lock().as_mut().map(f)
}

/// Times [`SCHED`] was taken (host tests count them per round trip).
#[cfg(test)]
pub(crate) static SCHED_LOCKS: core::sync::atomic::AtomicU64 =
    core::sync::atomic::AtomicU64::new(0);

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
    with(|s| {
        let d = s.credit.add_domain(w, 0).ok()?;
        let mut ids = Vec::new();
        for _ in 0..nr_vcpus {
            match s.credit.add_vcpu(d) {
                Ok(v) => ids.push(v),
                Err(_) => break,
            }
        }
        if ids.len() != nr_vcpus as usize || s.credit.set_params(d, w, cap).is_err() {
            let _ = s.credit.remove_domain(d);
            return None;
        }
        Some((d, ids))
    })
    .flatten()
}

/// Changes a live domain's weight and cap (`HC_DOMCTL_SET_SCHED`):
/// `EINVAL` when the policy refuses them (a cap over 100 × its vCPUs).
/// Takes effect at the next scheduling decision.
pub(crate) fn set_params(d: SchedDom, weight: u32, cap: u32) -> Result<(), pvabi::Error> {
    let w = u16::try_from(weight).map_err(|_| pvabi::Error::Invalid)?;
    with(|s| {
        // It may unpark the domain: vCPUs waiting anywhere may now win.
        for cpu in 0..s.credit.cpus() {
            queued_here(cpu);
        }
        s.credit.set_params(d, w, cap)
    })
    .ok_or(pvabi::Error::Invalid)?
    .map_err(|_| pvabi::Error::Invalid)
}

/// Keeps a new domain's vCPU entries with their records in the policy.
pub(crate) fn register(entries: &[Arc<VcpuEntry>]) {
    // A replaced entry (there is none: ids are not reused while their
    // vCPU lives) is dropped after the lock.
    let mut replaced = Vec::new();
    with(|s| {
        for e in entries {
            if let Ok(Some(old)) = s.credit.set_payload(e.sid, e.clone()) {
                replaced.push(old);
            }
        }
    });
    drop(replaced);
}

/// Per CPU: set (before a reschedule IPI) when a vCPU was queued there
/// that may be better than what runs; the CPU asks the scheduler at its
/// next exit.
static RESCHED: [AtomicBool; crate::sched::MAX_CPUS] =
    [const { AtomicBool::new(false) }; crate::sched::MAX_CPUS];

/// Whether `cpu` was asked to reschedule since it last looked (and clears it).
pub(crate) fn take_resched(cpu: usize) -> bool {
    RESCHED
        .get(cpu)
        .is_some_and(|r| r.load(Ordering::Relaxed) && r.swap(false, Ordering::AcqRel))
}

/// `cpu` is about to ask the scheduler anyway.
pub(crate) fn clear_resched(cpu: usize) {
    if let Some(r) = RESCHED.get(cpu) {
        r.store(false, Ordering::Relaxed);
    }
}

/// Per CPU: moved (under [`SCHED`]) whenever a vCPU is queued there or
/// any domain's parameters change: it ends every [`Quiet`] promise made
/// on that CPU before.
static QUEUED: [AtomicU64; crate::sched::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::sched::MAX_CPUS];

/// A vCPU was queued on `cpu` (called under [`SCHED`], before any kick,
/// so a kicked CPU's [`tick`] asks the policy).
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

/// Sends `cpu` a reschedule IPI (or, for this CPU, marks it: it asks the
/// scheduler at its next exit).
fn kick(cpu: usize) {
    let Some(r) = RESCHED.get(cpu) else {
        return;
    };
    r.store(true, Ordering::Release);
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
    with(|s| matches!(s.credit.cpu_of(v.sid), Ok(None))).unwrap_or(false)
}

/// The CPU whose queue holds `v`, or that runs it; `None` when the policy
/// holds it as blocked (or does not know it).
#[cfg(test)]
pub(crate) fn queued_on(v: &VcpuEntry) -> Option<usize> {
    with(|s| s.credit.cpu_of(v.sid).ok().flatten()).flatten()
}

/// The policy's invariants ([`Credit::check_invariants`]), and that no
/// CPU runs a vCPU (tests call it between turns of the run loop).
#[cfg(test)]
pub(crate) fn check_idle_policy() -> Result<(), &'static str> {
    with(|s| {
        s.credit.check_invariants()?;
        let cpus = s.credit.cpus();
        match (0..cpus).any(|c| s.credit.run_queue(c).is_some_and(|q| q.current().is_some())) {
            true => Err("a CPU runs a vCPU between turns"),
            false => Ok(()),
        }
    })
    .unwrap_or(Err("no scheduler"))
}

/// Queues `v` again (its state lock held by the caller): for a vCPU the
/// policy lost track of.
pub(crate) fn requeue(v: &VcpuEntry) {
    wake(v);
}

/// `wake` in the scheduler, and the IPI it asks for.
fn wake(v: &VcpuEntry) {
    let now = now_ns();
    let placed = with(|s| {
        let placed = s.credit.wake(v.sid, now).ok().flatten();
        if let Some(p) = placed {
            queued_here(p.cpu);
        }
        placed
    })
    .flatten();
    if let Some(p) = placed
        && p.kick
    {
        kick(p.cpu);
    }
}

/// Chooses what `cpu` runs next.
pub(crate) fn pick(cpu: usize, now: u64) -> Pick {
    #[cfg(test)]
    SCHED_LOCKS.fetch_add(1, Ordering::Relaxed);
    let mut g = SCHED.lock();
    let Some(s) = g.as_mut() else {
        return Pick::Idle(u64::MAX);
    };
    match s.credit.pick_next(cpu, now) {
        Ok(d) => match d.vcpu {
            Some(id) => match s.credit.payload(id).cloned() {
                Some(e) => Pick::Run(e, d.slice_ns),
                None => {
                    // No entry (cannot happen): never pick it again.
                    let _ = s.credit.descheduled(cpu, id, 0, now, false);
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
    if let Some(Err(e)) = with(|s| s.credit.descheduled(cpu, v.sid, ran_ns, now, runnable)) {
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
    let r = with(
        |s| match s.credit.switch_to(cpu, v.sid, ran_ns, to.sid, now) {
            Ok(Some(d)) => Ok(d.vcpu.map(|_| d.slice_ns)),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        },
    )?;
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
    with(|s| {
        let leave = s.credit.tick(cpu, now).unwrap_or(false);
        *quiet = Quiet {
            until: if leave { 0 } else { s.credit.quiet_until(cpu) },
            queued: QUEUED.get(cpu).map_or(0, |q| q.load(Ordering::Relaxed)),
        };
        leave
    })
    .unwrap_or(false)
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
    for v in vcpus_of(d) {
        let _st = v.st.lock();
        let now = now_ns();
        with(|s| s.credit.block(v.sid, now));
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
    let slot = with(|s| s.credit.take_vcpu(v.sid).ok().flatten()).flatten();
    if slot.is_none() {
        return;
    }
    drop(slot);
    crate::sched::timers::cancel(v);
    // Dropped after the table's lock (the caller still holds `v`, so no
    // domain is freed here).
    let removed = DOMAINS.lock().remove_vcpu(v.domain.id, v.index);
    if removed.is_some_and(|r| r.domain.is_some()) {
        with(|s| s.credit.remove_domain(v.domain.sdom));
    }
}

pub(crate) mod handoff;
pub(crate) use handoff::{Handoff, defer, in_flight as handoff_in_flight};

#[cfg(test)]
pub(crate) mod tests;
