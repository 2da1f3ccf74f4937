//! Guest timers and block deadlines: one list, ordered by deadline, with
//! at most one entry per vCPU (its earliest deadline). A CPU looks at the
//! head on each of its timer interrupts and before it picks (one atomic
//! load when nothing is due) and arms its LAPIC timer for the head, so a
//! timer fires on time whether its vCPU runs, waits or is blocked; vCPUs
//! without a timer cost nothing.
//!
//! Lock: [`TIMERS`] is a leaf. Firing takes the entry out under it and
//! then, without it, the vCPU's state lock and the scheduler lock.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::sync::Mutex;
use pvabi::EVENT_TIMER;

use crate::domain::lifecycle::{Run, VcpuEntry};
use crate::evtchn::live as events;
use crate::sched::live as policy;

/// Deadline and the entry's address (a unique key while it lives).
type Key = (u64, usize);

static TIMERS: Mutex<BTreeMap<Key, Arc<VcpuEntry>>> = Mutex::new(BTreeMap::new());
/// The head's deadline, `u64::MAX` when the list is empty.
static NEXT_DUE: AtomicU64 = AtomicU64::new(u64::MAX);

fn key(v: &Arc<VcpuEntry>, deadline: u64) -> Key {
    (deadline, Arc::as_ptr(v) as usize)
}

fn update_head(t: &BTreeMap<Key, Arc<VcpuEntry>>) {
    let head = t.first_key_value().map_or(u64::MAX, |(k, _)| k.0);
    NEXT_DUE.store(head, Ordering::Release);
}

/// The earliest deadline in the list (`u64::MAX`: none).
pub(crate) fn next_due() -> u64 {
    NEXT_DUE.load(Ordering::Acquire)
}

/// `v` has something due at `deadline` (0: nothing). A later deadline
/// than the one queued needs no entry: the queued one fires first and
/// re-arms with what is then left. A dying domain's vCPUs get none.
pub(crate) fn arm(v: &Arc<VcpuEntry>, deadline: u64) {
    if deadline == 0 {
        return;
    }
    let mut t = TIMERS.lock();
    if v.domain.dying() {
        return;
    }
    let cur = v.armed.load(Ordering::Relaxed);
    if cur != 0 && cur <= deadline {
        return;
    }
    if cur != 0 {
        t.remove(&key(v, cur));
    }
    t.insert(key(v, deadline), v.clone());
    v.armed.store(deadline, Ordering::Relaxed);
    update_head(&t);
}

/// Takes `v` out of the list (its domain ended).
pub(crate) fn cancel(v: &Arc<VcpuEntry>) {
    let removed = {
        let mut t = TIMERS.lock();
        let cur = v.armed.swap(0, Ordering::Relaxed);
        let r = if cur != 0 {
            t.remove(&key(v, cur))
        } else {
            None
        };
        update_head(&t);
        r
    };
    drop(removed);
}

/// Fires everything due by `now`.
pub(crate) fn fire_due(now: u64) {
    if next_due() > now {
        return;
    }
    loop {
        let due = {
            let mut t = TIMERS.lock();
            let e = match t.first_key_value() {
                Some((k, _)) if k.0 <= now => t.pop_first().map(|(_, v)| v),
                _ => None,
            };
            if let Some(v) = &e {
                v.armed.store(0, Ordering::Relaxed);
            }
            update_head(&t);
            e
        };
        let Some(v) = due else {
            break;
        };
        fire(&v, now);
    }
}

/// `v`'s entry came due: its guest timer raises `EVENT_TIMER` (and
/// `VIRQ_TIMER`), a blocked vCPU with an event or a passed deadline is
/// woken; whatever is still ahead is armed again.
fn fire(v: &Arc<VcpuEntry>, now: u64) {
    let mut next;
    {
        // Events are raised under the state lock (see `events::kick`).
        let mut st = v.st.lock();
        let t = v.timer.load(Ordering::Acquire);
        if t != 0
            && now >= t
            && v.timer
                .compare_exchange(t, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            v.pending.fetch_or(EVENT_TIMER, Ordering::AcqRel);
            let carried = events::raise_timer_virq(v);
            crate::sched::halt::timer_fired(v, carried);
        }
        next = v.timer.load(Ordering::Acquire);
        if let Run::Blocked { deadline } = st.run {
            if crate::sched::halt::wake_ready(v) || (deadline != 0 && now >= deadline) {
                st.resume = Some(deadline);
                policy::make_runnable(v, &mut st);
            } else if deadline != 0 && (next == 0 || deadline < next) {
                next = deadline;
            }
        }
    }
    arm(v, next);
}

#[cfg(test)]
mod tests;
