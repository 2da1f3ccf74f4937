//! The credit scheduler: weights, caps, per-CPU run queues, load
//! balancing. Pure logic, host-tested; the caller supplies time and CPUs.
//!
//! # The policy
//! The scheduling unit is the vCPU; every vCPU belongs to a domain with a
//! **weight** (1..=65535, default 256) and a **cap** (percent of one CPU,
//! 0 = none, at most 100 per vCPU the domain has). Every [`PERIOD_NS`] the
//! accounting hands out the CPU time charged to vCPUs since the last one
//! (credit is in ns of CPU time, so the sum of all credit is conserved:
//! time charged to nobody, the hypervisor's own between guests or idle
//! time, never inflates it, and slices that end late never shrink it) to
//! the *active*
//! domains in proportion to weight, each share split
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
//! # Locking: a lock per CPU
//! As Xen's credit1 (`sched/credit.c`): each CPU's [`RunQueue`] (its
//! queue, the vCPU it runs, its slice end, its staged lists and step
//! count) is under that CPU's own **run-queue lock**, inside [`Credit`]
//! (every call takes `&self`). Unlike Xen, no private lock for the
//! accounting: the pass (and adding or removing domains and vCPUs,
//! `set_params`) takes every run-queue lock in ascending order, then the
//! accounting's own lock over its lists, and runs `account.rs` as before,
//! at the same call points, so on one CPU it is the old code by
//! construction (`tests_sim::weights_1_to_3_on_one_cpu_grant_the_same_as_before`;
//! on 1-4 CPUs, `tests_sim::random_ops_answer_as_before`, whose digest
//! of every answer over 80,000 random calls was pinned on the one-lock
//! code). The pass is once per period, so all the locks then are cheap.
//!
//! | state | who writes it, under what |
//! |---|---|
//! | `RunQueue` | its CPU's lock (a steal: the victim's, try-locked, with the thief's own) |
//! | `VcpuRec` state word (`credit.rs`: blocked, placing, queued on c, running on c, gone; and the pause flag) | queued or running on c: c's lock; blocked → placing: a wake-up's compare-and-swap (the **claim**), with no lock, so that two wake-ups (a deferred one runs without the vCPU's state lock) never queue a vCPU twice; the claiming wake-up settles it under its target's lock; a pause finding it placing sets the flag in the same word, which the settling swap sees |
//! | `VcpuRec::{credit, boost, last_cpu, used_ns, ran, active}` | the CPU that holds the vCPU (its lock) or the wake-up that claimed it; the accounting with every lock; credit by read-modify-write |
//! | `VcpuRec` payload (`live.rs`'s `VcpuEntry`) | a small lock of its own, taken alone (set once at registration, cloned by a pick, taken by removal) |
//! | `DomRec` counts and `parked` | atomics by read-modify-write (a domain's vCPUs run on several CPUs at once); `parked` set by the one deschedule that swaps it, cleared by the pass or `set_params` with every lock |
//! | `DomRec::{weight, cap, vcpus, generation, live}`, the accounting's lists and scratch, record slots | every lock |
//! | each CPU's published idleness and load (`credit.rs`, `Cpu`) | written under that CPU's lock at the end of each call that held it, and by the calls that park or unpark a domain (which changes it for other CPUs too): placement reads them instead of scanning other queues, so a wake-up locks only the CPU it queues on |
//! | `next_acct` | an atomic, written only by the pass; a call reads it before any lock ("not yet": [`Credit::due`]), since the clock never goes back and only the pass moves it, forward |
//!
//! Records live in chunked tables whose chunks never move
//! (`credit.rs`, `Table`), so a CPU holds a reference to a record under
//! its own lock while another, with every lock, adds a chunk.
//!
//! **The runtime's lock order, in one place** (each line: what may be
//! held when taking the next; nothing is taken in the other direction):
//! 1. the domain table (`domain::lifecycle::DOMAINS`);
//! 2. a vCPU's state lock (`VcpuEntry::st`); two vCPUs' state locks are
//!    never held together;
//! 3. the run-queue locks: one at a time, except every one in ascending
//!    order (the pass, add, remove, `set_params`, with the accounting's
//!    lock after them) and a steal's second one, taken only by try-lock
//!    (a CPU whose lock is taken is passed over, as Xen's
//!    `csched_load_balance` does); nothing else is taken under them, no
//!    IPI is sent under them, no `VcpuEntry` is dropped under them;
//! 4. the timer lists (`timers.rs`, one per CPU): leaves, taken with none
//!    of the above or under them; two lists only to move a vCPU's entry
//!    between CPUs, in ascending CPU index.
//!
//! The exit path of a plain hypercall takes none of these (host test
//! `run::tests_locks`); a timer interrupt takes this CPU's timer list, and
//! its run-queue lock to ask whether to switch only when the last answer
//! that asked, in the same run of the same vCPU, no longer holds
//! ([`Credit::quiet_until`]: the slice or the period ended, a vCPU was
//! queued here, parameters changed; none for a capped domain's vCPU;
//! `live.rs`, `Quiet`; host tests
//! `run::tests_locks::a_quiet_tick_takes_no_global_lock_until_a_wake_up_must_preempt`
//! and `tests_prop::a_quiet_tick_answers_as_the_policy_would`); a CPU's
//! timer pass takes only its own list. A pick, a block and a wake-up take
//! one run-queue lock each and no global one
//! (`run::tests_locks::global_lock_takes_per_path`), a direct switch one
//! (`run::tests_handoff`: two per event round trip). The interleaving
//! searches under `sched::live::tests` run the real code through every
//! order of these locks and of the claim (a remote wake against a block
//! and a steal; a pause, a deferred wake-up and the sender's death
//! against the direct switch).
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
    /// than this from now, because a parked domain may run then, or a
    /// queue with work was passed over for its lock ([`MIN_SLICE_NS`]);
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
