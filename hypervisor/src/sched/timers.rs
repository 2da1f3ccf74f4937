//! Guest timers and block deadlines: one list per CPU, ordered by
//! deadline, with at most one entry per vCPU (its earliest deadline) in
//! at most one list. A CPU looks at the head of its own list on each of
//! its timer interrupts and before it picks (one atomic load when nothing
//! is due) and arms its LAPIC timer for that head, so a timer fires on
//! time whether its vCPU runs, waits or is blocked; vCPUs without a timer
//! cost nothing, and no CPU takes a lock another CPU's timers use unless
//! a vCPU moved between them.
//!
//! Where an entry lives: on the list of the CPU that armed it last, which
//! is where its vCPU ran (a guest's `HC_SET_TIMER`), blocked (a deadline)
//! or where its previous entry fired. When a vCPU that moved to another
//! CPU arms again, its entry moves to that CPU's list with it (keeping the
//! earlier deadline). Until then the old CPU fires it: [`fire`] works on a
//! vCPU wherever it runs or waits (it wakes it through its state lock and
//! the scheduler, as an event does), so a timer is never lost for being on
//! the list of a CPU its vCPU left; it can be late only as long as that
//! CPU's own timer interrupt is, which is armed for its list's head.
//!
//! Lock order (`sched/mod.rs`): a list is a leaf, except that moving an
//! entry takes two lists in ascending CPU index. `VcpuEntry::armed_on`
//! names the list that holds the entry; it changes from "none" to a CPU
//! only by a compare-and-swap made under that CPU's list lock, and from a
//! CPU only under that CPU's list lock, so whoever holds the lock of the
//! list it names may change the entry. Firing takes the entry out under
//! its list's lock and then, without it, the vCPU's state lock and the
//! scheduler.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering, fence};

use crate::sync::{Mutex, MutexGuard};
use pvabi::EVENT_TIMER;

use crate::domain::lifecycle::{Run, VcpuEntry};
use crate::evtchn::live as events;
use crate::platform::{P, Platform};
use crate::sched::MAX_CPUS;
use crate::sched::live as policy;

/// Deadline and the entry's address (a unique key while it lives).
type Key = (u64, usize);
type List = BTreeMap<Key, Arc<VcpuEntry>>;

/// `VcpuEntry::armed_on` of an entry in no list.
const NONE: u32 = u32::MAX;

static LISTS: [Mutex<List>; MAX_CPUS] = [const { Mutex::new(BTreeMap::new()) }; MAX_CPUS];
/// Each list's head deadline, `u64::MAX` when it is empty.
static NEXT_DUE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];

/// Times a timer list was taken (host tests count them per exit).
#[cfg(test)]
pub(crate) static TIMER_LOCKS: AtomicU64 = AtomicU64::new(0);

fn lock(cpu: usize) -> MutexGuard<'static, List> {
    #[cfg(test)]
    TIMER_LOCKS.fetch_add(1, Ordering::Relaxed);
    LISTS[cpu].lock()
}

/// This CPU's list index (a CPU beyond the lists uses the last one: no
/// such machine boots, `sched::live::init` clamps to `MAX_CPUS`).
fn here() -> usize {
    P::cpu_index().min(MAX_CPUS - 1)
}

fn key(v: &Arc<VcpuEntry>, deadline: u64) -> Key {
    (deadline, Arc::as_ptr(v) as usize)
}

fn update_head(cpu: usize, t: &List) {
    let head = t.first_key_value().map_or(u64::MAX, |(k, _)| k.0);
    NEXT_DUE[cpu].store(head, Ordering::Release);
}

/// The earliest deadline in `cpu`'s list (`u64::MAX`: none).
pub(crate) fn next_due_on(cpu: usize) -> u64 {
    NEXT_DUE
        .get(cpu)
        .map_or(u64::MAX, |n| n.load(Ordering::Acquire))
}

/// The earliest deadline in any list (`u64::MAX`: none); tests.
#[cfg(test)]
pub(crate) fn next_due() -> u64 {
    NEXT_DUE
        .iter()
        .map(|n| n.load(Ordering::Acquire))
        .min()
        .unwrap_or(u64::MAX)
}

/// `v` has something due at `deadline` (0: nothing), armed on this CPU's
/// list. A later deadline than the one queued needs no new deadline: the
/// queued one fires first and re-arms with what is then left; an entry
/// on another CPU's list moves here either way. A dying domain's vCPUs
/// get none.
pub(crate) fn arm(v: &Arc<VcpuEntry>, deadline: u64) {
    arm_on(here(), v, deadline);
}

/// [`arm`] on CPU `me`, the calling CPU (the run loop passes its index,
/// saving the look-up on every block). The two answers that need nothing
/// done are inlined into the caller: every block comes here, twice per
/// event round trip, and a call out with its register saves cost that
/// round trip about 55 instructions (`cargo xtask bench --only evprof`).
#[inline(always)]
pub(crate) fn arm_on(me: usize, v: &Arc<VcpuEntry>, deadline: u64) {
    if deadline == 0 {
        return;
    }
    let me = me.min(MAX_CPUS - 1);
    // Already on this CPU's list, due no later: nothing to do, and no
    // lock. Safe without the lock: an entry on this CPU's list is
    // changed only by this CPU (it alone fires and arms it: `arm` runs on
    // the CPU where the vCPU runs or blocks, `fire` on the CPU whose list
    // held it) or taken out by `cancel` for a dying domain, which gets no
    // timer anyway.
    if v.armed_on.load(Ordering::Acquire) == me as u32 {
        let cur = v.armed.load(Ordering::Relaxed);
        if cur != 0 && cur <= deadline {
            return;
        }
    }
    arm_locked(me, v, deadline);
}

/// The rest of [`arm_on`]: `v`'s entry made or moved under the lists'
/// locks.
#[inline(never)]
fn arm_locked(me: usize, v: &Arc<VcpuEntry>, deadline: u64) {
    loop {
        let on = v.armed_on.load(Ordering::Acquire);
        if on == NONE || on as usize == me {
            let mut t = lock(me);
            if on == NONE {
                // Claimed under this list's lock (module docs); lost to
                // another CPU's claim: look again.
                if v.armed_on
                    .compare_exchange(NONE, me as u32, Ordering::SeqCst, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                // After the claim: `cancel` either sees it or this sees
                // the domain dying (both sides fence; the end sets
                // `dying` first).
                fence(Ordering::SeqCst);
            } else if v.armed_on.load(Ordering::Acquire) != on {
                continue;
            }
            if v.domain.dying() {
                let cur = v.armed.swap(0, Ordering::Relaxed);
                let gone = (cur != 0).then(|| t.remove(&key(v, cur))).flatten();
                v.armed_on.store(NONE, Ordering::Release);
                update_head(me, &t);
                drop(t);
                drop(gone);
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
            update_head(me, &t);
            return;
        }
        // On another CPU's list: both lists, in ascending CPU index.
        let on = on as usize;
        let (mut lo, mut hi) = if on < me {
            let a = lock(on);
            (a, lock(me))
        } else {
            let a = lock(me);
            (a, lock(on))
        };
        if v.armed_on.load(Ordering::Acquire) != on as u32 {
            continue;
        }
        let (from, to) = if on < me {
            (&mut lo, &mut hi)
        } else {
            (&mut hi, &mut lo)
        };
        let cur = v.armed.load(Ordering::Relaxed);
        let moved = from.remove(&key(v, cur));
        let at = if cur != 0 {
            cur.min(deadline)
        } else {
            deadline
        };
        if let Some(e) = moved {
            to.insert(key(v, at), e);
        } else {
            to.insert(key(v, at), v.clone());
        }
        v.armed.store(at, Ordering::Relaxed);
        v.armed_on.store(me as u32, Ordering::Release);
        update_head(on, from);
        update_head(me, to);
        return;
    }
}

/// Takes `v` out of whichever list holds it (its domain ended).
pub(crate) fn cancel(v: &Arc<VcpuEntry>) {
    // Pairs with the fence in `arm`: a claim made after `dying` was set
    // sees it; one made before is seen here.
    fence(Ordering::SeqCst);
    loop {
        let on = v.armed_on.load(Ordering::Acquire);
        if on == NONE {
            return;
        }
        let removed = {
            let mut t = lock(on as usize);
            if v.armed_on.load(Ordering::Acquire) != on {
                continue;
            }
            let cur = v.armed.swap(0, Ordering::Relaxed);
            v.armed_on.store(NONE, Ordering::Release);
            let r = (cur != 0).then(|| t.remove(&key(v, cur))).flatten();
            update_head(on as usize, &t);
            r
        };
        drop(removed);
        return;
    }
}

/// Fires everything due by `now` on this CPU's list.
#[cfg(test)]
pub(crate) fn fire_due(now: u64) {
    fire_list(here(), now);
}

/// Fires everything due by `now` on `cpu`'s list: the calling CPU's (the
/// run loop passes its index, saving the look-up on every tick).
pub(crate) fn fire_list(cpu: usize, now: u64) {
    if next_due_on(cpu) > now {
        return;
    }
    loop {
        let due = {
            let mut t = lock(cpu);
            let e = match t.first_key_value() {
                Some((k, _)) if k.0 <= now => t.pop_first().map(|(_, v)| v),
                _ => None,
            };
            if let Some(v) = &e {
                v.armed.store(0, Ordering::Relaxed);
                v.armed_on.store(NONE, Ordering::Release);
            }
            update_head(cpu, &t);
            e
        };
        let Some(v) = due else {
            break;
        };
        fire(cpu, &v, now);
    }
}

/// `v`'s entry came due: its guest timer raises `EVENT_TIMER` (and
/// `VIRQ_TIMER`), a blocked vCPU with an event or a passed deadline is
/// woken (wherever it last ran: the scheduler places it and kicks that
/// CPU); whatever is still ahead is armed again, on this CPU's list.
fn fire(cpu: usize, v: &Arc<VcpuEntry>, now: u64) {
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
    arm_on(cpu, v, next);
}

#[cfg(test)]
mod tests;
