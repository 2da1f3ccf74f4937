//! The credit scheduler: weights, caps, per-CPU run queues, load
//! balancing. Pure logic, host-tested; the caller supplies time and CPUs.
//!
//! # The policy
//! The scheduling unit is the vCPU; every vCPU belongs to a domain with a
//! **weight** (1..=65535, default 256) and a **cap** (percent of one CPU,
//! 0 = none, at most 100 per vCPU the domain has). Every [`PERIOD_NS`] the
//! accounting hands out `CPUs × PERIOD_NS` of credit (credit is in ns of CPU
//! time) to the *active* domains in proportion to weight, each share split
//! evenly among the domain's active vCPUs. The sharing is water-filling:
//! what a domain cannot take (its cap, its vCPUs' credit already at the
//! bound because they do not use it, fewer vCPUs than its share of CPUs)
//! goes to the others by weight, so an idle-ish domain's share is not lost
//! and CPU-bound ones do not all sink to the lower bound. Active means runnable now or
//! run during the period, so a blocked vCPU earns nothing and costs
//! nothing. Running burns credit ns for ns. A vCPU with credit ≥ 0 is
//! UNDER and runs before any OVER one; over time each CPU-bound domain gets
//! its weighted share, and spare time still goes to OVER vCPUs (work
//! conserving). Credit stays within ±[`CREDIT_MAX`], so nobody hoards.
//!
//! A capped domain may use `cap% × PERIOD_NS` per period: slices are cut to
//! what is left, and when it is used up the domain is **parked** (its vCPUs
//! stay queued but are not picked) until the next accounting.
//!
//! **Wake boost** (responsiveness of I/O-bound guests): a vCPU woken with
//! credit ≥ 0 runs at BOOST priority, ahead of UNDER, for one slice of at
//! most [`BOOST_SLICE_NS`]; the boost ends when it is descheduled. It
//! cannot be gamed to starve others: it needs non-negative credit, which
//! only weight-proportional accounting gives, and every boosted ns burns
//! credit; so a domain that blocks and wakes in a loop gets at most its
//! weighted share plus one boost slice per period.
//!
//! **Placement and balancing.** A woken vCPU goes to its last CPU, unless
//! that CPU is busy and another is idle (then to the lowest-numbered idle
//! one); a vCPU that never ran goes to the least-loaded CPU. When a CPU
//! has nothing better than OVER work to run, it steals the best waiting
//! vCPU of strictly higher priority from the busiest other queue (an idle
//! CPU steals anything runnable). That moves CPU-bound vCPUs around so
//! that, e.g., three of them on two CPUs each get about two thirds.
//!
//! # Cost
//! Blocked vCPUs are in no queue and not in the active list: `pick_next`,
//! `tick` and the accounting never look at them. `pick_next` is
//! O(runnable vCPUs on all queues) at worst (when it looks for work to
//! steal), `descheduled`, `wake` and `block` O(queue length + CPUs), the
//! accounting (once per period) O(active vCPUs + domains with parked
//! state). Nothing allocates except `add_domain`/`add_vcpu` (and the
//! active list and each CPU's list of vCPUs that joined it since the last
//! accounting growing to their high-water marks).
//!
//! Files: `credit.rs` (records, ids, add/remove/params, queries),
//! `run.rs` (wake, block, pick, deschedule, tick, stealing), `account.rs`
//! (the period), `check.rs` (invariants, also usable in debug builds).
//!
//! # Locking (for the caller; there are no locks in here)
//! State is split: [`RunQueue`] is per-CPU (the queue and the vCPU running
//! there), the rest of [`Credit`] is global accounting (domain and vCPU
//! records, the active list, the period). Every call touches the global
//! part, so the live wiring (`live.rs`) holds **one scheduler lock** for
//! the length of each call and never across a guest run; calls are short
//! and bounded as listed under Cost.
//!
//! **The runtime's lock order, in one place** (each line: what may be
//! held when taking the next; nothing is taken in the other direction):
//! 1. the domain table (`domain::lifecycle::DOMAINS`);
//! 2. a vCPU's state lock (`VcpuEntry::st`); two vCPUs' state locks are
//!    never held together;
//! 3. the scheduler lock (`live.rs`, `SCHED`); nothing is taken under it,
//!    no IPI is sent under it, no `VcpuEntry` is dropped under it;
//! 4. the timer lists (`timers.rs`, one per CPU): leaves, taken with none
//!    of the above or under them; two lists only to move a vCPU's entry
//!    between CPUs, in ascending CPU index.
//!
//! The exit path of a plain hypercall takes none of these (host test
//! `run::tests_locks`); a timer interrupt takes this CPU's timer list, and
//! the scheduler lock to ask whether to switch only when the last answer
//! that asked, in the same run of the same vCPU, no longer holds
//! ([`Credit::quiet_until`]: the slice or the period ended, a vCPU was
//! queued here, parameters changed; none for a capped domain's vCPU;
//! `live.rs`, `Quiet`; host tests
//! `run::tests_locks::a_quiet_tick_takes_no_global_lock_until_a_wake_up_must_preempt`
//! and `tests_prop::a_quiet_tick_answers_as_the_policy_would`); a CPU's
//! timer pass takes only its own list. A wake-up, a block and a pick take
//! the scheduler lock once each
//! (`run::tests_locks::global_lock_takes_per_path`).
//!
//! # Per-CPU locks (issue 11; designed, partly built)
//! The target is Xen's credit1 (`sched/credit.c`): a lock per CPU over
//! that CPU's queue and the vCPUs on it. Unlike Xen, no private lock for
//! the accounting: the pass (and add, remove, `set_params`) takes every
//! run-queue lock in ascending order and runs `account.rs` as it is, at
//! today's call points, so on one CPU it is today's code by construction
//! (`tests_sim::weights_1_to_3_on_one_cpu_grant_the_same_as_before`); the
//! pass is once per period, so N locks then are cheap. Rows marked
//! **built** are in place under today's one lock. Who touches what, and
//! where it goes:
//!
//! | state | touched by | owner after the split |
//! |---|---|---|
//! | `RunQueue` (queue, current, slice end) | wake, block, pick, start, deschedule, tick, steal | that CPU's **run-queue lock** |
//! | `VcpuRec::{state, last_cpu, boost, pause}` | the same | queued or running on CPU c: c's run-queue lock, found as Xen's `vcpu_schedule_lock` does (read c, lock it, re-check: a steal may move it); blocked: the vCPU's state lock, which every wake, block and deschedule in `live.rs` already holds, and no run-queue lock (so a wake placed on any CPU takes that CPU's lock alone) |
//! | `VcpuRec::credit` | burnt by deschedule (owner CPU), granted by the accounting | with the record: burnt under the owner's lock, granted by the pass with every lock held; `prio` of another CPU's vCPU is read only under that CPU's lock (a wake's kick: the target's; a steal: the victim's, try-locked) |
//! | `VcpuRec::{ran, active, used_ns}` | deschedule, start, wake; the accounting | the flags with the record (its owner's lock); joining the active list goes through the CPU's `RunQueue::joined` (**built**: a wake, start or direct switch pushes there, never to the shared list), which the accounting moves to the active list before its pass |
//! | `DomRec::{running, used_ns, period_used_ns, parked}` | start, deschedule (any CPU); the accounting | atomics (a domain's vCPUs run on several CPUs at once; **built**: counts by read-modify-write, `parked` set by the one deschedule that swaps it from false), read and written by the pass with every run-queue lock held, so its code stays as it is; a domain that parks is staged on the CPU whose deschedule parked it (**built**: `RunQueue::parks`, moved to the parked list with the joined vCPUs before the pass) |
//! | `DomRec::{weight, cap}` | `set_params`; start (cap slices), the accounting | atomics, written with every run-queue lock held (**built**) |
//! | `DomRec::{n_active, room, grant}`, `active`, `parked`, `scratch`, the record tables' growth | the accounting, add/remove | **every run-queue lock** (ascending) |
//! | `next_acct` | every call (`account_if_due`) | an atomic (**built**: `Credit::due`, 0 before the first call), written only where the pass runs, for the "not yet" test before any lock; when due, the call takes every run-queue lock and runs as today (the pass where it runs today); the clock never goes back and the pass only moves `next_acct` forward, so "not yet" stays true once the caller's own lock is held |
//! | the step count (`Credit::steps`, a cost measure) | a queue's scan (pick, tick, placement, steal, the direct switch), the accounting | **built**: counted per queue (`RunQueue::steps`, under that queue's lock; a steal's scan of a victim under the victim's) and by the pass with every lock held; summed when read |
//! | `live.rs`'s `VcpuEntry` per vCPU | pick, the direct switch, retire | **built**: the vCPU record's payload (`Credit<P>`, `()` in the pure tests; `set_payload`, `payload`, `take_vcpu`), so it goes with the record's owner and a pick or steal needs no separate table or lock |
//!
//! Placement reads the other CPUs' idleness from per-CPU atomics
//! published under their run-queue locks (Xen's `idlers` mask), so a
//! wake-up locks only the CPU it queues on. A blocked vCPU's record is
//! not always under its state lock: `live/handoff.rs`'s deferred wake
//! runs without it and may race unpause's wake, so the record's state
//! must be claimed atomically (blocked to "being placed") before the
//! target's lock, or two wakes queue it twice. Stealing *try-locks* the
//! victim's queue while holding its own and skips a victim it cannot
//! lock (Xen's `csched_load_balance`). Moving a queued vCPU from one
//! CPU's queue to another's other than by a steal (none does today; a
//! rebalance would) takes both in ascending CPU index.
//!
//! **The lock order after the split** (replaces item 3 above): the
//! domain table; a vCPU's state lock; run-queue locks (all of them, in
//! ascending index, for add, remove, `set_params` and a call that finds
//! the pass due; two only to migrate, lower index first; a steal's
//! second one only by try-lock); the timer lists. A plain exit, a
//! same-CPU wake, block or pick take only this CPU's run-queue lock; a
//! remote wake only the target CPU's. `run::tests_locks` counts the global lock
//! per path (`global_lock_takes_per_path`: it says 1 today where the
//! split must say 0); the interleaving search `sched::live::tests::remote`
//! is the race the split must keep (a remote wake against a block and a
//! steal on the target CPU).
//!
//! # Wiring plan for `arch/sched/mod.rs`
//! - Boot: `Credit::new(cpus)`; per domain `add_domain(weight, cap)`, per
//!   vCPU `add_vcpu(dom)` kept in its `VcpuEntry`; `HC_VCPU_UP` and vCPU 0's
//!   start call `wake`.
//! - `run_cpu` loop: `pick_next(cpu, now)`. `Some(v)`: arm the one-shot
//!   timer (LAPIC; on VT-x also the VMX-preemption timer) for `slice_ns`,
//!   run the vCPU until the timer, a yield, a block or its end, then
//!   `descheduled(cpu, v, ran_ns, now, still_runnable)` with `ran_ns`
//!   measured by TSC (this is the `info` CPU time too). `None`: arm the
//!   timer for `slice_ns` unless it is `u64::MAX`, then STI;HLT.
//! - Timer interrupt: `tick(cpu, now)`; `true` means leave the guest now.
//! - Block hypercall: `descheduled(.., still_runnable = false)`. Events,
//!   timers firing, `HC_VCPU_UP`: `wake(v, now)`; when it returns
//!   `kick: true` and the CPU is not this one, send it a reschedule IPI
//!   (it halts or runs a lower-priority vCPU). Guest timers of blocked
//!   vCPUs move from the list scan to a per-CPU timer list (they are the
//!   only per-blocked-vCPU cost left, paid only when due).
//! - Domain pause/destroy: `block` / `remove_vcpu` (retry after the CPU
//!   running it deschedules it: `Error::Running`), then `remove_domain`.
//! - `domctl` query / `vcpu_info`: `vcpu_used_ns`, `domain_used_ns`.
#![forbid(unsafe_code)]

mod account;
mod block;
mod check;
pub mod clock;
mod credit;
mod direct;
pub(crate) mod halt;
pub mod live;
mod run;
mod runq;

#[cfg(test)]
mod tests_prop;
#[cfg(test)]
mod tests_sim;
#[cfg(test)]
mod tests_switch;
pub mod timers;

use core::fmt;

pub use block::resume_value;
pub use credit::Credit;
pub use direct::Handed;
pub use runq::RunQueue;

/// Length of one accounting period.
pub const PERIOD_NS: u64 = 30_000_000;
/// Longest time slice.
pub const SLICE_NS: u64 = 10_000_000;
/// Shortest time slice handed out (cut slices never get shorter).
pub const MIN_SLICE_NS: u64 = 100_000;
/// Longest slice of a boosted (just woken) vCPU.
pub const BOOST_SLICE_NS: u64 = 1_000_000;
/// Bound on a vCPU's credit, both ways.
pub const CREDIT_MAX: i64 = PERIOD_NS as i64;
/// Weight of a domain unless set.
pub const DEFAULT_WEIGHT: u16 = 256;
/// Most CPUs one scheduler serves.
pub const MAX_CPUS: usize = 256;

/// The policy's handle on a domain (a generational slot), not a domain id:
/// domains are named by [`crate::domain::ids::DomainId`] everywhere else,
/// and `Domain::sdom` keeps this handle. Handles of removed domains never
/// become valid again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SchedDom {
    index: u32,
    generation: u32,
}

/// A vCPU as the scheduler knows it; stale ids are rejected like
/// [`SchedDom`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VcpuId {
    index: u32,
    generation: u32,
}

impl VcpuId {
    /// A small number unique among live vCPUs (reused after removal):
    /// lets the caller keep its own per-vCPU table beside the scheduler.
    pub fn slot(self) -> usize {
        self.index as usize
    }
}

/// What a CPU does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The vCPU to run, or `None`: halt until an interrupt.
    pub vcpu: Option<VcpuId>,
    /// Run it at most this long. When idle: wake up (by timer) no later
    /// than this from now, because a parked domain may run then;
    /// `u64::MAX` when there is no such reason.
    pub slice_ns: u64,
}

/// Where a woken vCPU was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The CPU whose queue it joined.
    pub cpu: usize,
    /// Send that CPU a reschedule IPI: it is idle, or runs something of
    /// lower priority than the woken vCPU.
    pub kick: bool,
}

/// Why a call was refused; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The domain id is not (or no longer) valid.
    NoSuchDomain,
    /// The vCPU id is not (or no longer) valid.
    NoSuchVcpu,
    /// No such CPU.
    NoSuchCpu,
    /// Weight 0, or a cap above 100 per vCPU.
    BadParam,
    /// The vCPU runs (on some CPU); deschedule it first.
    Running,
    /// The vCPU is not running on that CPU.
    NotRunningHere,
    /// The CPU already runs a vCPU.
    CpuBusy,
    /// Too many domains or vCPUs for 32-bit ids.
    Full,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoSuchDomain => "no such domain",
            Self::NoSuchVcpu => "no such vCPU",
            Self::NoSuchCpu => "no such CPU",
            Self::BadParam => "weight must be 1..=65535, cap at most 100 per vCPU",
            Self::Running => "the vCPU is running",
            Self::NotRunningHere => "the vCPU is not running on that CPU",
            Self::CpuBusy => "the CPU already runs a vCPU",
            Self::Full => "too many domains or vCPUs",
        })
    }
}
