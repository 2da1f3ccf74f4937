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
    if interrupt_ready(v) {
        return false;
    }
    v.halted.0.store(WAITING, Ordering::Release);
    true
}

/// Whether a blocked `v` must run (called under its state lock): for a
/// halted vCPU an interrupt or a fired timer, for one blocked by a
/// hypercall any pending event (the hypercall returns them).
pub(crate) fn wake_ready(v: &VcpuEntry) -> bool {
    match v.halted.0.load(Ordering::Acquire) {
        NONE => v.pending.load(Ordering::Acquire) != 0,
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

/// `v`'s guest timer fired (under its state lock): a halted vCPU must
/// wake for it.
pub(crate) fn timer_fired(v: &VcpuEntry) {
    let _ = v
        .halted
        .0
        .compare_exchange(WAITING, TIMER_FIRED, Ordering::AcqRel, Ordering::Acquire);
}

/// `v` runs again: `true` if it had halted (it resumes after its HLT with
/// every register as it was), `false` if a hypercall blocked it (the run
/// loop gives it its return value).
pub(crate) fn resumed(v: &VcpuEntry) -> bool {
    v.halted.0.swap(NONE, Ordering::AcqRel) != NONE
}
