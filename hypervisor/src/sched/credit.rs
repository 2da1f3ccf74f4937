//! The credit scheduler's state and operations (policy and locking:
//! `mod.rs`).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU16, AtomicU32, AtomicU64, AtomicUsize};

use arrayvec::ArrayVec;

use super::{Error, MAX_CPUS, PERIOD_NS, RunQueue, SchedDom, VcpuId};
use crate::sync::{Mutex, MutexGuard};

/// Where a vCPU is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// In no queue (never woken, blocked, paused).
    Blocked,
    /// Claimed by a wake-up that is choosing its CPU (it holds no lock
    /// yet): no other wake-up queues it, and a pause meanwhile is noted
    /// in the same word for that wake-up to find.
    Placing,
    /// Waiting in this CPU's queue.
    Queued(usize),
    /// Running on this CPU.
    Running(usize),
    /// Removed (its slot is free).
    Gone,
}

const KIND: u32 = 0b111;
/// Blocked while running or being placed: takes effect when descheduled
/// or placed.
const PAUSE: u32 = 0b1000;
const CPU_SHIFT: u32 = 16;

impl State {
    #[inline(always)]
    fn word(self) -> u32 {
        match self {
            Self::Blocked => 0,
            Self::Placing => 1,
            Self::Queued(c) => 2 | (c as u32) << CPU_SHIFT,
            Self::Running(c) => 3 | (c as u32) << CPU_SHIFT,
            Self::Gone => 4,
        }
    }

    #[inline(always)]
    fn of(w: u32) -> Self {
        let c = (w >> CPU_SHIFT) as usize;
        match w & KIND {
            0 => Self::Blocked,
            1 => Self::Placing,
            2 => Self::Queued(c),
            3 => Self::Running(c),
            _ => Self::Gone,
        }
    }
}

/// Priority classes, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Prio {
    Boost,
    Under,
    Over,
}

/// A vCPU's record. Who may write what (the lock order: `mod.rs`):
/// - `word` (state and pause flag): while queued on or running on CPU c,
///   only under c's run-queue lock; a blocked vCPU is claimed for a
///   wake-up (blocked → placing) and a placing one marked paused by
///   compare-and-swap without any lock; the placing wake-up settles it
///   under its target's lock;
/// - `credit`, `boost`, `last_cpu`, `used_ns`, `ran`, `active`: by the CPU
///   that holds the vCPU (under that CPU's lock, or by the wake-up that
///   claimed it), and by the accounting with every lock held (so never two
///   writers at once: plain loads and stores);
/// - `generation`, `live`, `dom`: with every lock held (add, remove).
///
/// Relaxed order except for `word`: the locks order the rest.
pub(super) struct VcpuRec<P> {
    generation: AtomicU32,
    live: AtomicBool,
    dom: AtomicU32,
    word: AtomicU32,
    last_cpu: AtomicU32,
    /// Invariant: within ±`CREDIT_MAX`.
    credit: AtomicI64,
    boost: AtomicBool,
    /// In the active list. Invariant: not `Blocked` implies active.
    active: AtomicBool,
    /// Ran since the last accounting.
    ran: AtomicBool,
    used_ns: AtomicU64,
    /// The caller's value for this vCPU ([`Credit::set_payload`]), kept
    /// in its record so that a pick has it without another look-up.
    payload: spin::Mutex<Option<P>>,
}

const NO_CPU: u32 = u32::MAX;

impl<P> VcpuRec<P> {
    fn blank() -> Self {
        Self {
            generation: AtomicU32::new(0),
            live: AtomicBool::new(false),
            dom: AtomicU32::new(0),
            word: AtomicU32::new(State::Gone.word()),
            last_cpu: AtomicU32::new(NO_CPU),
            credit: AtomicI64::new(0),
            boost: AtomicBool::new(false),
            active: AtomicBool::new(false),
            ran: AtomicBool::new(false),
            used_ns: AtomicU64::new(0),
            payload: spin::Mutex::new(None),
        }
    }

    #[inline(always)]
    pub(super) fn generation(&self) -> u32 {
        self.generation.load(Relaxed)
    }
    #[inline(always)]
    pub(super) fn live(&self) -> bool {
        self.live.load(Relaxed)
    }
    #[inline(always)]
    pub(super) fn dom(&self) -> usize {
        self.dom.load(Relaxed) as usize
    }
    #[inline(always)]
    pub(super) fn state(&self) -> State {
        State::of(self.word.load(SeqCst))
    }
    /// Whether it runs on `cpu` (`state() == State::Running(cpu)`, one
    /// compare of the word without its pause flag).
    #[inline(always)]
    pub(super) fn runs_on(&self, cpu: usize) -> bool {
        self.word.load(SeqCst) & !PAUSE == State::Running(cpu).word()
    }
    /// Whether a pause waits for this vCPU's deschedule or placement.
    #[inline(always)]
    pub(super) fn paused(&self) -> bool {
        self.word.load(SeqCst) & PAUSE != 0
    }
    /// Sets the state, clearing a pause (only where the state may change
    /// without a compare-and-swap: see the type's doc).
    #[inline(always)]
    pub(super) fn set_state(&self, s: State) {
        self.word.store(s.word(), SeqCst);
    }
    /// Marks a running vCPU paused (under its CPU's lock).
    pub(super) fn set_paused(&self) {
        self.word.fetch_or(PAUSE, SeqCst);
    }
    /// Claims a blocked vCPU for a wake-up: `true` when it was blocked
    /// and now is placing.
    #[inline(always)]
    pub(super) fn claim(&self) -> bool {
        self.word
            .compare_exchange(State::Blocked.word(), State::Placing.word(), SeqCst, SeqCst)
            .is_ok()
    }
    /// Ends a claim without placing: blocked again (a pause noted
    /// meanwhile is then done, too).
    pub(super) fn unclaim(&self) {
        let _ = self.word.fetch_update(SeqCst, SeqCst, |w| {
            (State::of(w) == State::Placing).then_some(State::Blocked.word())
        });
    }
    /// Settles a claimed vCPU in `to` (under `to`'s CPU's lock): `false`
    /// when a pause came meanwhile (it is blocked now) or it was removed.
    #[inline(always)]
    pub(super) fn settle(&self, to: State) -> bool {
        match self
            .word
            .compare_exchange(State::Placing.word(), to.word(), SeqCst, SeqCst)
        {
            Ok(_) => true,
            Err(_) => {
                self.unclaim();
                false
            }
        }
    }
    /// Cancels a pause noted on a vCPU being placed (a wake-up came after
    /// it); nothing when it is not placing.
    pub(super) fn unpause_placing(&self) {
        let _ = self.word.fetch_update(SeqCst, SeqCst, |w| {
            (State::of(w) == State::Placing).then_some(w & !PAUSE)
        });
    }
    /// Notes a pause on a vCPU being placed: `false` when it is not
    /// (or no longer) placing.
    pub(super) fn pause_placing(&self) -> bool {
        self.word
            .fetch_update(SeqCst, SeqCst, |w| {
                (State::of(w) == State::Placing).then_some(w | PAUSE)
            })
            .is_ok()
    }
    #[inline(always)]
    pub(super) fn last_cpu(&self) -> Option<usize> {
        match self.last_cpu.load(Relaxed) {
            NO_CPU => None,
            c => Some(c as usize),
        }
    }
    /// Whether it last ran on `cpu` (`last_cpu() == Some(cpu)`, one
    /// compare: no CPU's index is `NO_CPU`).
    #[inline(always)]
    pub(super) fn last_ran_on(&self, cpu: usize) -> bool {
        self.last_cpu.load(Relaxed) as usize == cpu
    }
    #[inline(always)]
    pub(super) fn set_last_cpu(&self, cpu: Option<usize>) {
        self.last_cpu
            .store(cpu.map_or(NO_CPU, |c| c as u32), Relaxed);
    }
    #[inline(always)]
    pub(super) fn credit(&self) -> i64 {
        self.credit.load(Relaxed)
    }
    /// Changes the credit by `f`: a load and a store, since its writers
    /// (the CPU holding the vCPU, under its lock; the accounting, under
    /// every lock) exclude each other; a wake-up only reads it.
    #[inline(always)]
    pub(super) fn update_credit(&self, f: impl Fn(i64) -> i64) {
        self.credit.store(f(self.credit.load(Relaxed)), Relaxed);
    }
    #[inline(always)]
    pub(super) fn boost(&self) -> bool {
        self.boost.load(Relaxed)
    }
    #[inline(always)]
    pub(super) fn set_boost(&self, b: bool) {
        self.boost.store(b, Relaxed);
    }
    #[inline(always)]
    pub(super) fn active(&self) -> bool {
        self.active.load(Relaxed)
    }
    #[inline(always)]
    pub(super) fn set_active(&self, a: bool) {
        self.active.store(a, Relaxed);
    }
    #[inline(always)]
    pub(super) fn ran(&self) -> bool {
        self.ran.load(Relaxed)
    }
    #[inline(always)]
    pub(super) fn set_ran(&self, r: bool) {
        self.ran.store(r, Relaxed);
    }
    #[inline(always)]
    pub(super) fn used_ns(&self) -> u64 {
        self.used_ns.load(Relaxed)
    }
    /// Adds to the CPU time used (its writer, the CPU holding the vCPU,
    /// is one at a time: a load and a store).
    #[inline(always)]
    pub(super) fn add_used(&self, ns: u64) {
        let used = self.used_ns.load(Relaxed).saturating_add(ns);
        self.used_ns.store(used, Relaxed);
    }
}

/// A domain's record. The fields a start, a deschedule or a priority test
/// reads or writes are atomics: a domain's vCPUs run on several CPUs at
/// once, each reaching them under its own run-queue lock only. Counts
/// change by read-modify-write ([`add_sat`], [`inc`], [`dec_sat`]);
/// `parked` is set by the one deschedule that swaps it; `weight`, `cap`,
/// `generation`, `live` and `vcpus` are written, and the accounting reads
/// and writes the rest, with every lock held. Relaxed order throughout:
/// each is a value of its own, never a flag that publishes other data.
pub(super) struct DomRec {
    pub(super) generation: AtomicU32,
    pub(super) live: AtomicBool,
    pub(super) weight: AtomicU16,
    pub(super) cap: AtomicU32,
    /// Live vCPUs, and how many of them run now.
    pub(super) vcpus: AtomicU32,
    pub(super) running: AtomicU32,
    pub(super) used_ns: AtomicU64,
    pub(super) period_used_ns: AtomicU64,
    /// Used its cap this period. Invariant: parked iff in the parked list
    /// or in one CPU's [`RunQueue::parks`].
    pub(super) parked: AtomicBool,
}

impl DomRec {
    fn blank() -> Self {
        Self {
            generation: AtomicU32::new(0),
            live: AtomicBool::new(false),
            weight: AtomicU16::new(0),
            cap: AtomicU32::new(0),
            vcpus: AtomicU32::new(0),
            running: AtomicU32::new(0),
            used_ns: AtomicU64::new(0),
            period_used_ns: AtomicU64::new(0),
            parked: AtomicBool::new(false),
        }
    }
}

/// The accounting's scratch per domain: active vCPUs, credit it can take,
/// credit given (then per vCPU).
#[derive(Clone, Copy, Default)]
pub(super) struct DomAcct {
    pub(super) n_active: u64,
    pub(super) room: u64,
    pub(super) grant: u64,
}

/// Records in chunks that never move once made, so that a CPU may hold a
/// reference to one (under its own run-queue lock) while another, with
/// every lock held, adds a chunk. Slots are never freed, only reused.
pub(super) struct Table<T> {
    /// The first chunk, made with the table: room for a typical host's
    /// records, reached without the test whether its chunk is made (a
    /// look-up runs four times per direct switch).
    first: Box<[T; CHUNK]>,
    /// The other chunks (chunk `k` at `k - 1`), made as the table grows.
    /// Chunks of a fixed size, so that a slot's place in its chunk needs
    /// no bounds check.
    rest: Box<[spin::Once<Box<[T; CHUNK]>>]>,
    /// Slots in use or free for reuse (the high-water mark).
    len: AtomicUsize,
}

const CHUNK: usize = 64;
/// Domains, and vCPUs, one scheduler has room for.
pub const MAX_RECORDS: usize = 512 * CHUNK;

/// A chunk of `CHUNK` records made by `blank`.
fn chunk<T>(blank: &impl Fn() -> T) -> Box<[T; CHUNK]> {
    let slots: Box<[T]> = (0..CHUNK).map(|_| blank()).collect();
    match slots.try_into() {
        Ok(c) => c,
        Err(_) => unreachable!("a chunk is made with CHUNK records"),
    }
}

impl<T> Table<T> {
    fn new(blank: impl Fn() -> T) -> Self {
        Self {
            // The first chunk from the start: room for a typical host's
            // domains before the first allocation on a running system.
            first: chunk(&blank),
            rest: (1..MAX_RECORDS / CHUNK)
                .map(|_| spin::Once::new())
                .collect(),
            len: AtomicUsize::new(0),
        }
    }

    /// Slot `i`, also one past the high-water mark in a chunk already made
    /// (a blank record there: not live, so no id finds it valid).
    #[inline(always)]
    pub(super) fn get(&self, i: usize) -> Option<&T> {
        if i < CHUNK {
            return Some(&self.first[i]);
        }
        self.get_rest(i)
    }

    /// [`Self::get`] past the first chunk: out of line, so that the
    /// common look-up stays small where it is inlined.
    #[cold]
    #[inline(never)]
    fn get_rest(&self, i: usize) -> Option<&T> {
        Some(&self.rest.get(i / CHUNK - 1)?.get()?[i % CHUNK])
    }

    pub(super) fn len(&self) -> usize {
        self.len.load(Acquire)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// One more slot (with every lock held), made from `blank` with its
    /// chunk; `None` when the table is full.
    fn grow(&self, blank: impl Fn() -> T) -> Option<usize> {
        let i = self.len.load(Acquire);
        if i >= CHUNK {
            let chunk = self.rest.get(i / CHUNK - 1)?;
            chunk.call_once(|| self::chunk(&blank));
        }
        self.len.store(i + 1, Release);
        Some(i)
    }
}

impl<T> core::ops::Index<usize> for Table<T> {
    type Output = T;
    #[inline(always)]
    fn index(&self, i: usize) -> &T {
        match self.get(i) {
            Some(r) => r,
            None => panic!("scheduler record {i} out of range"),
        }
    }
}

/// One CPU: its run queue under its own lock, and what it publishes for
/// the others to read without that lock (placement, stealing).
pub(super) struct Cpu {
    pub(super) rq: Mutex<RunQueue>,
    /// It runs nothing and has nothing it could pick (written under `rq`'s
    /// lock at the end of every call that held it, and by the calls that
    /// park or unpark domains, which change it for other CPUs too).
    pub(super) idle: AtomicBool,
    /// Running plus waiting vCPUs (written as `idle`).
    pub(super) load: AtomicU32,
}

/// The accounting's state: lists and scratch that only the accounting and
/// adding or removing domains and vCPUs touch, with every run-queue lock
/// held.
pub(super) struct Acct {
    pub(super) free_doms: Vec<u32>,
    pub(super) free_vcpus: Vec<u32>,
    /// vCPUs runnable now or run this period: the only ones accounting
    /// visits (with those still in a CPU's [`RunQueue::joined`], which the
    /// accounting moves here first).
    pub(super) active: Vec<u32>,
    pub(super) parked: Vec<u32>,
    pub(super) scratch: Vec<u32>,
    /// Per domain (indexed as its record).
    pub(super) doms: Vec<DomAcct>,
}

/// Every run-queue lock (ascending), then the accounting's.
pub(super) struct All<'a> {
    pub(super) rqs: ArrayVec<MutexGuard<'a, RunQueue>, MAX_CPUS>,
    pub(super) acct: MutexGuard<'a, Acct>,
}

/// Domains (and twice as many vCPUs) the scheduler has room for before
/// its first allocation on a running system (see [`Credit::new`]).
pub const RESERVED_DOMAINS: usize = 32;

/// The scheduler: one [`RunQueue`] per CPU under its own lock, records
/// reached from any CPU, and the accounting. `P` is a value the caller
/// keeps per vCPU (the live wiring: its `VcpuEntry`), handed back with a
/// pick; `()` in the pure tests. Every call takes `&self`: the locks are
/// inside (`mod.rs`, "Per-CPU locks").
pub struct Credit<P = ()> {
    pub(super) cpus: Box<[Cpu]>,
    /// CPUs in use (at most `cpus.len()`; [`Self::reset`] changes it).
    pub(super) n: AtomicUsize,
    pub(super) doms: Table<DomRec>,
    pub(super) vcpus: Table<VcpuRec<P>>,
    pub(super) acct: Mutex<Acct>,
    /// When the next accounting is due; 0 before the first call (never a
    /// time the accounting sets: that is at least a period past a call's
    /// `now`). Atomic for [`Self::due`]'s test before any lock; written
    /// only where the accounting runs ([`Self::next_acct`] reads it).
    pub(super) next_acct: AtomicU64,
    /// Active-list entries the accounting has visited (the rest of
    /// [`Self::steps`] is counted per queue: [`RunQueue::steps`]).
    pub(super) pass_steps: AtomicU64,
    /// Times every lock was taken at once (tests count them per path).
    #[cfg(test)]
    pub(crate) all_locks: AtomicU64,
    /// Times a run-queue lock was taken alone.
    #[cfg(test)]
    pub(crate) rq_locks: AtomicU64,
}

/// Adds `n` to `a`, stopping at `u64::MAX` as `saturating_add` would;
/// the sum. Past the top the count wraps for a moment before it is set to
/// the top: only with a CPU time beyond 584 years.
#[inline(always)]
pub(super) fn add_sat(a: &AtomicU64, n: u64) -> u64 {
    match a.fetch_add(n, Relaxed).checked_add(n) {
        Some(sum) => sum,
        None => {
            a.store(u64::MAX, Relaxed);
            u64::MAX
        }
    }
}

/// Adds one to `a` (a count of running vCPUs: never near the top); the
/// new count.
#[inline(always)]
pub(super) fn inc(a: &AtomicU32) -> u32 {
    a.fetch_add(1, Relaxed).wrapping_add(1)
}

/// Takes one from `a`, stopping at 0 as `saturating_sub` would (which a
/// count that matches its vCPUs never needs).
#[inline(always)]
pub(super) fn dec_sat(a: &AtomicU32) {
    if a.fetch_sub(1, Relaxed) == 0 {
        a.store(0, Relaxed);
    }
}

pub(super) fn cap_budget(cap: u32) -> u64 {
    u64::from(cap).saturating_mul(PERIOD_NS) / 100
}

fn new_queue(cap: usize) -> RunQueue {
    RunQueue {
        queue: alloc::collections::VecDeque::with_capacity(cap * 2),
        joined: Vec::with_capacity(cap * 2),
        parks: Vec::with_capacity(cap),
        ..RunQueue::default()
    }
}

impl Credit {
    /// A scheduler for `cpus` CPUs (at least 1, at most [`MAX_CPUS`]),
    /// without per-vCPU payloads.
    pub fn new(cpus: usize) -> Self {
        Self::with_payloads(cpus)
    }
}

impl<P> Credit<P> {
    /// A scheduler for `cpus` CPUs (at least 1, at most [`MAX_CPUS`]) that
    /// keeps a `P` per vCPU ([`Self::set_payload`]).
    pub fn with_payloads(cpus: usize) -> Self {
        Self::with_room(cpus, cpus)
    }

    /// As [`Self::with_payloads`], with room for up to `max_cpus` CPUs
    /// ([`Self::reset`] may change the count within it later).
    pub fn with_room(cpus: usize, max_cpus: usize) -> Self {
        let n = cpus.clamp(1, MAX_CPUS);
        let max = max_cpus.clamp(n, MAX_CPUS);
        // Room for a typical host's domains and vCPUs from the start: these
        // only ever grow to their high-water mark, and growing one while
        // guests run would show as a heap change that depends on how many
        // domains happened to be active at once (the budget storm test
        // compares the heap to the byte between rounds).
        let doms = RESERVED_DOMAINS;
        Self {
            cpus: (0..max)
                .map(|c| Cpu {
                    rq: Mutex::new(if c < n {
                        new_queue(doms)
                    } else {
                        RunQueue::default()
                    }),
                    idle: AtomicBool::new(true),
                    load: AtomicU32::new(0),
                })
                .collect(),
            n: AtomicUsize::new(n),
            doms: Table::new(DomRec::blank),
            vcpus: Table::new(VcpuRec::blank),
            acct: Mutex::new(Acct {
                free_doms: Vec::with_capacity(doms),
                free_vcpus: Vec::with_capacity(doms * 2),
                active: Vec::with_capacity(doms),
                parked: Vec::with_capacity(doms),
                scratch: Vec::with_capacity(doms),
                doms: Vec::with_capacity(doms),
            }),
            next_acct: AtomicU64::new(0),
            pass_steps: AtomicU64::new(0),
            #[cfg(test)]
            all_locks: AtomicU64::new(0),
            #[cfg(test)]
            rq_locks: AtomicU64::new(0),
        }
    }

    /// Empties the scheduler (no domain, no vCPU, no accounting yet) for
    /// `cpus` CPUs (within the room it was made with), handing back the
    /// payloads it held, for the caller to drop after. For a caller that
    /// keeps one scheduler for its whole life (the live wiring's tests
    /// start afresh many times); nothing may run meanwhile.
    pub fn reset(&self, cpus: usize) -> Vec<P> {
        let mut payloads = Vec::new();
        {
            let mut rqs: ArrayVec<_, MAX_CPUS> = self.cpus.iter().map(|c| c.rq.lock()).collect();
            let mut acct = self.acct.lock();
            let n = cpus.clamp(1, self.cpus.len());
            for (c, rq) in rqs.iter_mut().enumerate() {
                **rq = if c < n {
                    new_queue(RESERVED_DOMAINS)
                } else {
                    RunQueue::default()
                };
                self.cpus[c].idle.store(true, Relaxed);
                self.cpus[c].load.store(0, Relaxed);
            }
            self.n.store(n, Relaxed);
            for r in self.vcpus.iter() {
                if let Some(p) = r.payload.lock().take() {
                    payloads.push(p);
                }
                r.live.store(false, Relaxed);
                r.set_state(State::Gone);
                r.active.store(false, Relaxed);
            }
            for d in self.doms.iter() {
                d.live.store(false, Relaxed);
                d.parked.store(false, Relaxed);
            }
            // Every slot free for reuse, with its generation moved on.
            acct.free_vcpus.clear();
            for i in (0..self.vcpus.len()).rev() {
                let r = &self.vcpus[i];
                if let Some(g) = r.generation().checked_add(1) {
                    r.generation.store(g, Relaxed);
                    acct.free_vcpus.push(i as u32);
                }
            }
            acct.free_doms.clear();
            for i in (0..self.doms.len()).rev() {
                let d = &self.doms[i];
                if let Some(g) = d.generation.load(Relaxed).checked_add(1) {
                    d.generation.store(g, Relaxed);
                    acct.free_doms.push(i as u32);
                }
            }
            acct.active.clear();
            acct.parked.clear();
            self.next_acct.store(0, Relaxed);
            self.pass_steps.store(0, Relaxed);
        }
        payloads
    }

    /// Number of CPUs.
    #[inline(always)]
    pub fn cpus(&self) -> usize {
        self.n.load(Relaxed)
    }

    /// `cpu`'s run-queue lock (the caller checked `cpu`).
    #[inline(always)]
    pub(super) fn lock(&self, cpu: usize) -> MutexGuard<'_, RunQueue> {
        #[cfg(test)]
        self.rq_locks.fetch_add(1, Relaxed);
        self.cpus[cpu].rq.lock()
    }

    /// Every run-queue lock in ascending order, then the accounting's.
    /// The caller holds none of them.
    pub(super) fn lock_all(&self) -> All<'_> {
        #[cfg(test)]
        self.all_locks.fetch_add(1, Relaxed);
        let rqs = self.cpus[..self.cpus()]
            .iter()
            .map(|c| c.rq.lock())
            .collect();
        All {
            rqs,
            acct: self.acct.lock(),
        }
    }

    /// The vCPU `cpu` runs now.
    pub fn current(&self, cpu: usize) -> Option<VcpuId> {
        if cpu >= self.cpus() {
            return None;
        }
        self.lock(cpu).current
    }

    /// How many vCPUs wait on `cpu` (parked ones included).
    pub fn waiting(&self, cpu: usize) -> usize {
        if cpu >= self.cpus() {
            return 0;
        }
        self.lock(cpu).queue.len()
    }

    /// Queue entries the scheduler has examined so far: a cost measure
    /// that tests compare (it must not grow with blocked vCPUs). The sum
    /// of the accounting's count and each queue's.
    pub fn steps(&self) -> u64 {
        (0..self.cpus()).fold(self.pass_steps.load(Relaxed), |sum, c| {
            sum.saturating_add(self.lock(c).steps)
        })
    }

    /// Moves the vCPUs that joined on each CPU to the active list and the
    /// domains that parked there to the parked list, CPU by CPU (on one
    /// CPU: the order in which they came, as if pushed there at once; the
    /// accounting does not depend on the order); the CPU time charged on
    /// all CPUs since the last call.
    pub(super) fn join_staged(all: &mut All<'_>) -> u64 {
        let acct = &mut *all.acct;
        let mut burnt = 0u64;
        for rq in &mut all.rqs {
            acct.active.append(&mut rq.joined);
            acct.parked.append(&mut rq.parks);
            burnt = burnt.saturating_add(core::mem::take(&mut rq.burnt));
        }
        burnt
    }

    /// Takes domain `i` out of the parked list (or a CPU's staged parks).
    fn unpark_list(all: &mut All<'_>, i: usize) {
        all.acct.parked.retain(|&p| p as usize != i);
        for rq in &mut all.rqs {
            rq.parks.retain(|&p| p as usize != i);
        }
    }

    pub(super) fn dom_index(&self, d: SchedDom) -> Result<usize, Error> {
        let i = d.index as usize;
        match self.doms.get(i) {
            Some(r) if r.live.load(Relaxed) && r.generation.load(Relaxed) == d.generation => Ok(i),
            _ => Err(Error::NoSuchDomain),
        }
    }

    #[inline(always)]
    pub(super) fn vcpu_index(&self, v: VcpuId) -> Result<usize, Error> {
        self.vcpu_rec(v).map(|(i, _)| i)
    }

    /// [`Self::vcpu_index`] and the record it found, for a caller that
    /// goes on to use it (one look-up in the chunk table, not one per
    /// use).
    #[inline(always)]
    pub(super) fn vcpu_rec(&self, v: VcpuId) -> Result<(usize, &VcpuRec<P>), Error> {
        let i = v.index as usize;
        match self.vcpus.get(i) {
            Some(r) if r.live() && r.generation() == v.generation => Ok((i, r)),
            _ => Err(Error::NoSuchVcpu),
        }
    }

    pub(super) fn id_of(&self, i: usize) -> VcpuId {
        VcpuId {
            index: i as u32,
            generation: self.vcpus[i].generation(),
        }
    }

    fn check_params(weight: u16, cap: u32, vcpus: u32) -> Result<(), Error> {
        if weight == 0 || u64::from(cap) > 100 * u64::from(vcpus.max(1)) {
            return Err(Error::BadParam);
        }
        Ok(())
    }

    /// A new domain with no vCPUs; `cap` at most 100 until it has more.
    pub fn add_domain(&self, weight: u16, cap: u32) -> Result<SchedDom, Error> {
        Self::check_params(weight, cap, 0)?;
        let mut all = self.lock_all();
        let acct = &mut *all.acct;
        let i = match acct.free_doms.pop() {
            Some(i) => i as usize,
            None => self.doms.grow(DomRec::blank).ok_or(Error::Full)?,
        };
        if acct.doms.len() <= i {
            acct.doms.resize(i + 1, DomAcct::default());
        }
        acct.doms[i] = DomAcct::default();
        let r = &self.doms[i];
        r.weight.store(weight, Relaxed);
        r.cap.store(cap, Relaxed);
        r.vcpus.store(0, Relaxed);
        r.running.store(0, Relaxed);
        r.used_ns.store(0, Relaxed);
        r.period_used_ns.store(0, Relaxed);
        r.parked.store(false, Relaxed);
        r.live.store(true, Relaxed);
        Ok(SchedDom {
            index: i as u32,
            generation: r.generation.load(Relaxed),
        })
    }

    /// Changes weight and cap (cap at most 100 × the domain's vCPUs).
    pub fn set_params(&self, d: SchedDom, weight: u16, cap: u32) -> Result<(), Error> {
        let mut all = self.lock_all();
        let i = self.dom_index(d)?;
        let rec = &self.doms[i];
        Self::check_params(weight, cap, rec.vcpus.load(Relaxed))?;
        rec.weight.store(weight, Relaxed);
        rec.cap.store(cap, Relaxed);
        if rec.parked.load(Relaxed)
            && (cap == 0 || rec.period_used_ns.load(Relaxed) < cap_budget(cap))
        {
            rec.parked.store(false, Relaxed);
            Self::unpark_list(&mut all, i);
            self.publish_all(&all);
        }
        Ok(())
    }

    /// Weight and cap of a domain.
    pub fn params(&self, d: SchedDom) -> Result<(u16, u32), Error> {
        let r = &self.doms[self.dom_index(d)?];
        Ok((r.weight.load(Relaxed), r.cap.load(Relaxed)))
    }

    /// A new vCPU of `d`, not runnable until [`Self::wake`].
    pub fn add_vcpu(&self, d: SchedDom) -> Result<VcpuId, Error> {
        let mut all = self.lock_all();
        let dom = self.dom_index(d)?;
        let vcpus = self.doms[dom]
            .vcpus
            .load(Relaxed)
            .checked_add(1)
            .ok_or(Error::Full)?;
        let i = match all.acct.free_vcpus.pop() {
            Some(i) => i as usize,
            None => self.vcpus.grow(VcpuRec::blank).ok_or(Error::Full)?,
        };
        let r = &self.vcpus[i];
        r.dom.store(dom as u32, Relaxed);
        r.set_state(State::Blocked);
        r.set_last_cpu(None);
        r.credit.store(0, Relaxed);
        r.set_boost(false);
        r.set_active(false);
        r.set_ran(false);
        r.used_ns.store(0, Relaxed);
        r.live.store(true, Relaxed);
        self.doms[dom].vcpus.store(vcpus, Relaxed);
        Ok(self.id_of(i))
    }

    /// Removes a vCPU that is not running; its id is never valid again.
    /// Its payload, if any, is dropped here ([`Self::take_vcpu`] hands it
    /// back instead).
    pub fn remove_vcpu(&self, v: VcpuId) -> Result<(), Error> {
        self.take_vcpu(v).map(drop)
    }

    /// [`Self::remove_vcpu`], handing back the vCPU's payload (for a
    /// caller whose payloads must not be dropped where it calls this).
    pub fn take_vcpu(&self, v: VcpuId) -> Result<Option<P>, Error> {
        let mut all = self.lock_all();
        self.take_locked(&mut all, v)
    }

    fn take_locked(&self, all: &mut All<'_>, v: VcpuId) -> Result<Option<P>, Error> {
        let i = self.vcpu_index(v)?;
        let rec = &self.vcpus[i];
        // Queued and running vCPUs stay so under the locks held; a wake-up
        // may still claim a blocked one, or place a claimed one: the swap
        // to `Gone` settles the race (the wake-up's own swap then fails).
        loop {
            match rec.state() {
                State::Running(_) => return Err(Error::Running),
                State::Queued(c) => {
                    all.rqs[c].remove(v);
                    self.publish(c, &all.rqs[c]);
                    rec.set_state(State::Gone);
                    break;
                }
                s @ (State::Blocked | State::Placing) => {
                    let w = rec.word.load(SeqCst);
                    if State::of(w) == s
                        && rec
                            .word
                            .compare_exchange(w, State::Gone.word(), SeqCst, SeqCst)
                            .is_ok()
                    {
                        break;
                    }
                }
                State::Gone => break,
            }
        }
        if rec.active() {
            all.acct.active.retain(|&a| a as usize != i);
            for rq in &mut all.rqs {
                rq.joined.retain(|&a| a as usize != i);
            }
        }
        dec_sat(&self.doms[rec.dom()].vcpus);
        rec.live.store(false, Relaxed);
        rec.set_active(false);
        let payload = rec.payload.lock().take();
        // A slot whose generation would wrap is retired, never reused.
        if let Some(g) = rec.generation().checked_add(1) {
            rec.generation.store(g, Relaxed);
            all.acct.free_vcpus.push(i as u32);
        }
        Ok(payload)
    }

    /// Keeps `payload` with `v` (replacing and handing back the one it
    /// had): what [`Self::payload`] answers until the vCPU is removed.
    pub fn set_payload(&self, v: VcpuId, payload: P) -> Result<Option<P>, Error> {
        let i = self.vcpu_index(v)?;
        Ok(self.vcpus[i].payload.lock().replace(payload))
    }

    /// A copy of the payload kept with `v`; `None` when it has none or `v`
    /// is not (or no longer) valid.
    #[inline(always)]
    pub fn payload(&self, v: VcpuId) -> Option<P>
    where
        P: Clone,
    {
        let i = self.vcpu_index(v).ok()?;
        self.vcpus[i].payload.lock().clone()
    }

    /// Removes a domain and all its vCPUs, unless one of them runs (their
    /// payloads are dropped here: a caller that must not drop them under
    /// its lock takes its vCPUs out first with [`Self::take_vcpu`]).
    pub fn remove_domain(&self, d: SchedDom) -> Result<(), Error> {
        let mut gone = Vec::new();
        {
            let mut all = self.lock_all();
            let dom = self.dom_index(d)?;
            // The live wiring takes each vCPU out first (`take_vcpu`), so
            // the usual domain has none left here and needs no look at
            // every record (its last CPU does this while the domain's
            // memory waits to be freed).
            if self.doms[dom].vcpus.load(Relaxed) != 0 {
                let mine = |r: &VcpuRec<P>| r.live() && r.dom() == dom;
                if self
                    .vcpus
                    .iter()
                    .any(|r| mine(r) && matches!(r.state(), State::Running(_)))
                {
                    return Err(Error::Running);
                }
                for i in 0..self.vcpus.len() {
                    if mine(&self.vcpus[i]) {
                        gone.push(self.take_locked(&mut all, self.id_of(i))?);
                    }
                }
            }
            Self::unpark_list(&mut all, dom);
            let rec = &self.doms[dom];
            rec.live.store(false, Relaxed);
            rec.parked.store(false, Relaxed);
            if let Some(g) = rec.generation.load(Relaxed).checked_add(1) {
                rec.generation.store(g, Relaxed);
                all.acct.free_doms.push(dom as u32);
            }
        }
        drop(gone);
        Ok(())
    }

    /// The domain a vCPU belongs to.
    pub fn domain_of(&self, v: VcpuId) -> Result<SchedDom, Error> {
        let d = self.vcpus[self.vcpu_index(v)?].dom();
        Ok(SchedDom {
            index: d as u32,
            generation: self.doms[d].generation.load(Relaxed),
        })
    }

    /// CPU time a vCPU has used (ns, as reported to `descheduled`).
    pub fn vcpu_used_ns(&self, v: VcpuId) -> Result<u64, Error> {
        Ok(self.vcpus[self.vcpu_index(v)?].used_ns())
    }

    /// CPU time a domain's vCPUs have used (removed ones included).
    pub fn domain_used_ns(&self, d: SchedDom) -> Result<u64, Error> {
        Ok(self.doms[self.dom_index(d)?].used_ns.load(Relaxed))
    }

    /// A vCPU's credit (ns; negative = OVER).
    pub fn credit(&self, v: VcpuId) -> Result<i64, Error> {
        Ok(self.vcpus[self.vcpu_index(v)?].credit())
    }

    /// The CPU a runnable vCPU waits or runs on; `None` when blocked (or
    /// being placed by a wake-up on another CPU just now).
    pub fn cpu_of(&self, v: VcpuId) -> Result<Option<usize>, Error> {
        Ok(match self.vcpus[self.vcpu_index(v)?].state() {
            State::Queued(c) | State::Running(c) => Some(c),
            _ => None,
        })
    }

    /// Whether `v` is blocked: in no queue, not running, and no wake-up is
    /// placing it.
    pub fn is_blocked(&self, v: VcpuId) -> Result<bool, Error> {
        Ok(self.vcpus[self.vcpu_index(v)?].state() == State::Blocked)
    }

    /// Publishes `cpu`'s idleness and load from its queue (its lock held).
    #[inline(always)]
    pub(super) fn publish(&self, cpu: usize, rq: &RunQueue) {
        let c = &self.cpus[cpu];
        c.load.store(rq.load() as u32, Relaxed);
        let idle = rq.current.is_none() && !self.any_pickable(rq);
        c.idle.store(idle, Relaxed);
    }

    /// Publishes every CPU's idleness and load (every lock held).
    pub(super) fn publish_all(&self, all: &All<'_>) {
        for (c, rq) in all.rqs.iter().enumerate() {
            self.publish(c, rq);
        }
    }

    /// Whether a vCPU waiting in `rq` could be picked (not parked). Not
    /// counted in [`Self::steps`]: it keeps the published idleness that
    /// spares every wake-up the scan of other CPUs' queues, and looks at
    /// entries only while they belong to parked domains.
    fn any_pickable(&self, rq: &RunQueue) -> bool {
        rq.queue.iter().any(|id| {
            !self.doms[self.vcpus[id.index as usize].dom()]
                .parked
                .load(Relaxed)
        })
    }

    /// Sets the credit of `v` (tests that need a vCPU in a given class).
    #[cfg(test)]
    pub(crate) fn set_credit(&self, v: VcpuId, credit: i64) {
        self.vcpus[v.index as usize].credit.store(credit, Relaxed);
    }

    /// Sets the boost of `v` (tests).
    #[cfg(test)]
    pub(crate) fn set_boost(&self, v: VcpuId, boost: bool) {
        self.vcpus[v.index as usize].set_boost(boost);
    }

    /// Sets the last CPU of `v` (tests).
    #[cfg(test)]
    pub(crate) fn set_last_cpu(&self, v: VcpuId, cpu: usize) {
        self.vcpus[v.index as usize].set_last_cpu(Some(cpu));
    }

    /// Parks domain `d` as its cap would (tests).
    #[cfg(test)]
    pub(crate) fn park(&self, d: SchedDom) {
        let mut all = self.lock_all();
        self.doms[d.index as usize].parked.store(true, Relaxed);
        all.acct.parked.push(d.index);
        self.publish_all(&all);
    }

    /// The staged joins of `cpu` (tests).
    #[cfg(test)]
    pub(crate) fn joined(&self, cpu: usize) -> Vec<u32> {
        self.lock(cpu).joined.clone()
    }

    /// The staged parks of `cpu` (tests).
    #[cfg(test)]
    pub(crate) fn parks(&self, cpu: usize) -> Vec<u32> {
        self.lock(cpu).parks.clone()
    }

    /// The shared active list (tests).
    #[cfg(test)]
    pub(crate) fn active_list(&self) -> Vec<u32> {
        self.acct.lock().active.clone()
    }

    /// The shared parked list (tests).
    #[cfg(test)]
    pub(crate) fn parked_list(&self) -> Vec<u32> {
        self.acct.lock().parked.clone()
    }
}
