//! The direct switch of `HC_EVTCHN_SEND_WAIT` without a run-queue round
//! trip (issue 11). A send that wakes a blocked vCPU which last ran on
//! the sender's CPU marks it runnable under its state lock, as any
//! wake-up does, but leaves the scheduler's part of the wake to the
//! sender's CPU: when the sender blocks, [`Handoff::switch`] deschedules
//! it and runs the woken vCPU there in one call under that CPU's
//! run-queue lock ([`crate::sched::Credit::wake_switch_if`]); whatever else happens to the
//! sender (its call returns at once, it is killed, its domain ends, it
//! stays runnable), dropping the [`Handoff`] wakes the vCPU the usual way.
//!
//! The hazards (docs/benchmarks.md, branch `perf`'s note):
//! - **A pause between the event and the switch.** `pause` sets the
//!   domain's flag, then (after a full fence) blocks each vCPU in the
//!   policy, which reads the vCPU's state word; the switch first claims
//!   the vCPU in that word (blocked → placing, a locked swap), then
//!   reads the flag. So either the switch sees the flag (and leaves the
//!   vCPU runnable but not queued, as `make_runnable` does for a paused
//!   domain: unpause queues it), or the block sees the claim: it marks
//!   the placing vCPU paused, and the switch's settling swap under its
//!   run-queue lock finds the mark and leaves it blocked; or the block
//!   comes after the switch started it (the vCPU then stops at its next
//!   exit, as any running vCPU of a domain being paused). Unpause queues
//!   a runnable vCPU; if it does so before the switch, the switch finds
//!   it claimed or queued and acts as `switch_to`; two wake-ups never
//!   both queue it (only one claim succeeds).
//! - **The sender dying with the handoff.** Every path that does not
//!   switch drops the [`Handoff`], and the drop wakes it.
//! - **The lost-wake-up check** (`run.rs`, `rescue_lost_wakeups`) sees a
//!   runnable vCPU the policy holds as blocked between the send and the
//!   switch. Such a vCPU carries a mark that its wake was deferred
//!   (`VcpuEntry::handoff_open`), cleared by whichever of the switch and the drop runs
//!   once the policy no longer holds it as blocked (or holds it so for a
//!   pause, which the check leaves alone too). The check leaves such a vCPU alone however
//!   long it waits: the wake belongs to a live [`Handoff`], which Rust
//!   drops on every path, so it cannot be lost, only late — and a time
//!   bound was wrong (100 ms: an emulator's host descheduled the sender's
//!   thread for longer, the check reported it lost and requeued it behind
//!   the switch's back; `a_late_switch_is_not_a_lost_wake_up_...`).

use alloc::sync::Arc;
use core::sync::atomic::{Ordering, fence};

use super::sched;
use crate::domain::lifecycle::{Run, VState, VcpuEntry};
use crate::sched::clock::now_ns;

/// Direct switches without a queue round trip so far (host tests count
/// them).
#[cfg(test)]
pub(crate) static SWITCHED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The vCPU a `HC_EVTCHN_SEND_WAIT` woke, which the run loop may switch
/// to when the sender blocks.
pub(crate) struct Handoff {
    to: Option<Arc<VcpuEntry>>,
    /// Its wake is left to this handoff (not queued in the policy).
    deferred: bool,
}

impl Handoff {
    /// A vCPU already woken the usual way (queued in the policy).
    pub(crate) fn queued(to: Arc<VcpuEntry>) -> Self {
        Self {
            to: Some(to),
            deferred: false,
        }
    }

    /// A vCPU that [`defer`] marked runnable, its wake left to this.
    pub(crate) fn deferred(to: Arc<VcpuEntry>) -> Self {
        Self {
            to: Some(to),
            deferred: true,
        }
    }

    /// The sender `from` blocked on `cpu` after `ran_ns` (its state lock
    /// held, as for `descheduled`): the woken vCPU with its slice when it
    /// runs here next, else `None` (the CPU picks as usual).
    pub(crate) fn switch(
        mut self,
        cpu: usize,
        from: &VcpuEntry,
        ran_ns: u64,
        now: u64,
    ) -> Option<(Arc<VcpuEntry>, u64)> {
        let to = self.to.take()?;
        if !self.deferred {
            return super::switch_to(cpu, from, ran_ns, &to, now);
        }
        let Some(s) = sched() else {
            // No scheduler (cannot happen once a vCPU runs).
            wake_deferred(&to);
            return None;
        };
        // As `make_runnable` for a paused or ending domain: left blocked
        // in the policy (unpause queues it). Asked once the vCPU is
        // claimed: see `pause`.
        // Paused or ending in one load (`Domain::stopping`).
        let still = || {
            fence(Ordering::SeqCst);
            !to.domain.stopping()
        };
        let r = s.wake_switch_if(cpu, from.sid, ran_ns, to.sid, now, still);
        // Cleared once the policy holds the vCPU as runnable (or it stays
        // blocked for a pause), so the lost-wake-up check never sees it
        // runnable, blocked in the policy and not in flight.
        to.handoff_open.store(false, Ordering::Relaxed);
        match r {
            Ok(h) => {
                super::placed(h.placed);
                // The vCPU to run: the woken one (handed on as it is, no
                // second reference), or what the pick chose.
                let d = h.run?;
                let id = d.vcpu?;
                if id == to.sid {
                    #[cfg(test)]
                    SWITCHED.fetch_add(1, Ordering::Relaxed);
                    return Some((to, d.slice_ns));
                }
                let e = s.payload(id);
                if e.is_none() {
                    // No entry (cannot happen, as in `pick`): never run it.
                    let _ = s.descheduled(cpu, id, 0, now, false);
                }
                e.map(|e| (e, d.slice_ns))
            }
            Err(e) => {
                log::warn!(
                    "scheduler: vCPU {} of domain {} descheduled on CPU {cpu}: {e:?}",
                    from.index,
                    from.domain.id
                );
                // The sender's part failed; the woken one is still owed
                // its wake.
                wake_deferred(&to);
                None
            }
        }
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        if self.deferred
            && let Some(to) = self.to.take()
        {
            wake_deferred(&to);
        }
    }
}

/// Under `v`'s state lock, with `v` blocked and about to be woken by a
/// send from the vCPU running on `cpu` (the calling CPU: the sender's
/// own index, no per-CPU look-up) that may switch to it: marks it
/// runnable with its wake deferred, when it last ran on this CPU and its
/// domain is neither paused nor ending. `false`: wake it the usual way.
pub(crate) fn defer(v: &VcpuEntry, st: &mut VState, cpu: u32) -> bool {
    if v.last_cpu.load(Ordering::Relaxed) != cpu || v.domain.stopping() {
        return false;
    }
    st.run = Run::Runnable;
    v.handoff_open.store(true, Ordering::Relaxed);
    true
}

/// The scheduler's part of a deferred wake-up, done late: as
/// `make_runnable` once its vCPU is runnable (not for a paused or ending
/// domain), without `v`'s state lock (the caller may hold another vCPU's;
/// the domain's flags are read once the vCPU is claimed, see the module
/// doc).
fn wake_deferred(v: &VcpuEntry) {
    let Some(s) = sched() else {
        v.handoff_open.store(false, Ordering::Relaxed);
        return;
    };
    let still = || {
        fence(Ordering::SeqCst);
        !v.domain.stopping()
    };
    let placed = s.wake_if(v.sid, now_ns(), still).ok().flatten();
    v.handoff_open.store(false, Ordering::Relaxed);
    super::placed(placed);
}

/// Whether the lost-wake-up check should leave `v` alone: its wake is
/// deferred to a switch (or the drop of its [`Handoff`]) still to come.
pub(crate) fn in_flight(v: &VcpuEntry) -> bool {
    v.handoff_open.load(Ordering::Relaxed)
}
