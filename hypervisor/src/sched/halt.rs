//! HLT with interrupts on: the vCPU blocks until something would
//! interrupt it, as a real CPU's HLT waits for an interrupt (Intel SDM
//! Vol. 2A "HLT"; AMD APM Vol. 3 "HLT"). An idle Linux vCPU runs
//! `sti; hlt` (`default_idle`), so without this every idle pass is an
//! exit and a yield: an HLT storm.
//!
//! What wakes a halted vCPU:
//! - an upcall it can take now (its `upcall_pending` set and
//!   `upcall_mask` clear in the control area), the PV counterpart of an
//!   interrupt; a domain without a control area has no upcall, so any
//!   event bit in its pending mask;
//! - its one-shot guest timer firing (`timers.rs`), even when no
//!   `VIRQ_TIMER` is bound (so a guest that halts to wait for its timer
//!   wakes, as it would for a LAPIC timer interrupt);
//! - nothing at all when that timer already fired since its last HLT
//!   (set in the past, so raised inside `HC_SET_TIMER`, or fired by a
//!   timer pass while the vCPU ran) and no `VIRQ_TIMER` port carries it
//!   as an upcall: the HLT does not block. A LAPIC timer interrupt that
//!   came while interrupts were off likewise stays pending and ends the
//!   next `sti; hlt` at once (Intel SDM Vol. 3A 11.5.4, "APIC Timer";
//!   HLT "resumes on an unmasked interrupt"), and Xen's
//!   `set_timer_op` with a past deadline raises the timer at once.
//!   Without this latch such a vCPU halted for good (issue 13;
//!   `halt/tests.rs`). With a port, the upcall it raised is what ends the
//!   HLT (or, port masked, the HLT waits, as for a masked LVT entry);
//! - any event sent to it (`evtchn/live.rs::kick` wakes every blocked
//!   vCPU; a wake for a masked port is spurious and the guest halts again,
//!   which real HLT also allows after an NMI or SMI).
//!
//! Unlike `HC_SCHED_BLOCK` nothing is consumed and no register changes:
//! the pending mask stays for `HC_SCHED_POLL`, RAX is the guest's.
//!
//! No lost wake-up: the state below and the checks of [`wake_ready`] are
//! made under the vCPU's state lock by the run loop (`run.rs`,
//! `run_picked`) before it marks the vCPU blocked, by the timer list
//! (`fire`) and by senders (`kick`), so whatever arrives between the HLT
//! exit and "blocked" is seen by one of them (issue 11's rule for
//! `HC_SCHED_BLOCK`, applied to HLT).
//!
//! HLT with RFLAGS.IF = 0 is not handled here: no upcall could end it,
//! so on real hardware the CPU would stop for good. Kestrel keeps its old
//! answer (a yield, `hypercall/mod.rs`): the guest's bug costs it exits,
//! never a stuck vCPU that a later pause or destroy has to find.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::domain::lifecycle::VcpuEntry;

/// Not halted (running, or blocked by a hypercall).
const NONE: u8 = 0;
/// Blocked by HLT, nothing to wake for yet.
const WAITING: u8 = 1;
/// Blocked by HLT and its guest timer fired since.
const TIMER_FIRED: u8 = 2;
/// Not halted, and its guest timer fired since its last HLT with no
/// `VIRQ_TIMER` port to carry it: the next HLT returns at once.
const LATCHED: u8 = 3;

/// A vCPU's HLT state (one per [`VcpuEntry`]).
#[derive(Debug, Default)]
pub(crate) struct HaltState(AtomicU8);

impl HaltState {
    /// Not halted.
    pub(crate) const fn new() -> Self {
        Self(AtomicU8::new(NONE))
    }
}

/// Whether `v` has an interrupt it could take now: an upcall that is
/// pending and not masked, or (no control area) any pending event.
pub(crate) fn interrupt_ready(v: &VcpuEntry) -> bool {
    match v.domain.control.get() {
        Some((area, _)) => crate::evtchn::upcall_ready(area, v.index),
        None => v.pending.load(Ordering::Acquire) != 0,
    }
}

/// An HLT exit with RFLAGS.IF = 1: `true` when `v` must block (it is now
/// marked halted), `false` when an interrupt is ready and it runs on.
pub(crate) fn halt(v: &VcpuEntry) -> bool {
    let h = &v.halted.0;
    // A timer latched since the last HLT ends this one (and is spent).
    if h.compare_exchange(LATCHED, NONE, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
        || interrupt_ready(v)
    {
        return false;
    }
    // A timer pass on another CPU may latch between the two steps: then
    // this exchange fails and the HLT ends too ([`timer_fired`] updates
    // in a loop, so it sees either NONE, and latches, or WAITING).
    if h.compare_exchange(NONE, WAITING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        h.store(NONE, Ordering::Release);
        return false;
    }
    true
}

/// Whether a blocked `v` must run (called under its state lock): for a
/// halted vCPU an interrupt or a fired timer, for one blocked by a
/// hypercall any pending event (the hypercall returns them).
pub(crate) fn wake_ready(v: &VcpuEntry) -> bool {
    match v.halted.0.load(Ordering::Acquire) {
        NONE | LATCHED => v.pending.load(Ordering::Acquire) != 0,
        TIMER_FIRED => true,
        _ => interrupt_ready(v),
    }
}

/// What the idle CPUs' check for lost wake-ups (`run.rs`,
/// `rescue_lost_wakeups`) may count as "blocked with something to wake
/// for", under `v`'s state lock: only what changes under that lock. A
/// halted vCPU's upcall is raised in the guest's area before the sender
/// takes the lock to wake it (`evtchn/live.rs::kick`), so between the two
/// (longer than the check's 1 ms when the emulator's host thread is
/// descheduled, seen under QEMU TCG) a halted vCPU looks blocked with an
/// upcall pending while its wake-up is on the way. So for it only a fired
/// timer counts (or, with no control area, its pending mask, which
/// senders set under the lock).
pub(crate) fn wake_missed(v: &VcpuEntry) -> bool {
    match v.halted.0.load(Ordering::Acquire) {
        TIMER_FIRED => true,
        WAITING if v.domain.control.get().is_some() => false,
        _ => v.pending.load(Ordering::Acquire) != 0,
    }
}

/// `v`'s guest timer fired: a halted vCPU must wake for it; one that is
/// not halted keeps it for its next HLT unless a `VIRQ_TIMER` port
/// carries it (`carried`: the upcall ends that HLT). Called by the timer
/// list under `v`'s state lock, and by `HC_SET_TIMER` with a past
/// deadline on `v`'s own exit; a loop, not one exchange, so an HLT that
/// starts meanwhile sees the latch or is marked fired.
pub(crate) fn timer_fired(v: &VcpuEntry, carried: bool) {
    let _ = v
        .halted
        .0
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| match s {
            WAITING => Some(TIMER_FIRED),
            NONE if !carried => Some(LATCHED),
            _ => None,
        });
}

/// `v` runs again: `true` if it had halted (it resumes after its HLT with
/// every register as it was), `false` if a hypercall blocked it (the run
/// loop gives it its return value).
pub(crate) fn resumed(v: &VcpuEntry) -> bool {
    // A latch is no halt: a vCPU blocked by a hypercall gets its result
    // (which holds `EVENT_TIMER`), and the latch is spent with it.
    matches!(
        v.halted.0.swap(NONE, Ordering::AcqRel),
        WAITING | TIMER_FIRED
    )
}

#[cfg(test)]
mod tests;
