//! The credit scheduler's state and operations (policy: `mod.rs`).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering::Relaxed};

use super::{Error, MAX_CPUS, PERIOD_NS, RunQueue, SchedDom, VcpuId};

/// Where a vCPU is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// In no queue (never woken, blocked, paused).
    Blocked,
    /// Waiting in this CPU's queue.
    Queued(usize),
    /// Running on this CPU.
    Running(usize),
}

/// Priority classes, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Prio {
    Boost,
    Under,
    Over,
}

pub(super) struct VcpuRec<P> {
    pub(super) generation: u32,
    pub(super) live: bool,
    pub(super) dom: u32,
    pub(super) state: State,
    pub(super) last_cpu: Option<usize>,
    /// Invariant: within ±`CREDIT_MAX`.
    pub(super) credit: i64,
    pub(super) boost: bool,
    /// Blocked while running: takes effect when descheduled.
    pub(super) pause: bool,
    /// In the active list. Invariant: not `Blocked` implies active.
    pub(super) active: bool,
    /// Ran since the last accounting.
    pub(super) ran: bool,
    pub(super) used_ns: u64,
    /// The caller's value for this vCPU ([`Credit::set_payload`]), kept
    /// in its record so that whoever holds the record (today the one
    /// scheduler lock; after issue 11's split the run-queue lock of the
    /// CPU it is queued or runs on) has it without another look-up.
    pub(super) payload: Option<P>,
}

/// A domain's record. The fields a start, a deschedule or a priority test
/// reads or writes are atomics: a domain's vCPUs run on several CPUs, and
/// after issue 11's split each CPU reaches them under its own run-queue
/// lock only. Counts change by read-modify-write ([`add_sat`], [`inc`],
/// [`dec_sat`]); `parked` is set by the one deschedule that swaps it;
/// `weight` and `cap` are written, and the accounting reads and writes
/// the rest, with every lock held (today: with `&mut`). Relaxed order
/// throughout: each is a value of its own, never a flag that publishes
/// other data.
pub(super) struct DomRec {
    pub(super) generation: u32,
    pub(super) live: bool,
    pub(super) weight: AtomicU16,
    pub(super) cap: AtomicU32,
    /// Live vCPUs, and how many of them run now.
    pub(super) vcpus: u32,
    pub(super) running: AtomicU32,
    pub(super) used_ns: AtomicU64,
    pub(super) period_used_ns: AtomicU64,
    /// Used its cap this period. Invariant: parked iff in the parked list
    /// or in one CPU's [`RunQueue::parks`].
    pub(super) parked: AtomicBool,
    /// Accounting scratch: active vCPUs, credit it can take, credit
    /// given (then per vCPU).
    pub(super) n_active: u64,
    pub(super) room: u64,
    pub(super) grant: u64,
}

/// Domains (and twice as many vCPUs) the scheduler has room for before
/// its first allocation on a running system (see [`Credit::new`]).
pub const RESERVED_DOMAINS: usize = 32;

/// The scheduler: global accounting plus one [`RunQueue`] per CPU. `P` is
/// a value the caller keeps per vCPU (the live wiring: its `VcpuEntry`),
/// handed back with a pick; `()` in the pure tests.
pub struct Credit<P = ()> {
    pub(super) cpus: Vec<RunQueue>,
    pub(super) doms: Vec<DomRec>,
    pub(super) free_doms: Vec<u32>,
    pub(super) vcpus: Vec<VcpuRec<P>>,
    pub(super) free_vcpus: Vec<u32>,
    /// vCPUs runnable now or run this period: the only ones accounting
    /// visits (with those still in a CPU's [`RunQueue::joined`], which the
    /// accounting moves here first).
    pub(super) active: Vec<u32>,
    pub(super) parked: Vec<u32>,
    pub(super) scratch: Vec<u32>,
    /// When the next accounting is due; 0 before the first call (never a
    /// time the accounting sets: that is at least a period past a call's
    /// `now`). Atomic for [`Self::due`]'s test before any lock; written
    /// only where the accounting runs ([`Self::next_acct`] reads it).
    pub(super) next_acct: AtomicU64,
    /// Active-list entries the accounting has visited (the rest of
    /// [`Self::steps`] is counted per queue: [`RunQueue::steps`]).
    pub(super) pass_steps: u64,
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
        let n = cpus.clamp(1, MAX_CPUS);
        // Room for a typical host's domains and vCPUs from the start: these
        // vectors only ever grow to their high-water mark, and growing one
        // while guests run would show as a heap change that depends on how
        // many domains happened to be active at once (the budget storm test
        // compares the heap to the byte between rounds).
        let (doms, vcpus) = (RESERVED_DOMAINS, RESERVED_DOMAINS * 2);
        Self {
            cpus: (0..n)
                .map(|_| RunQueue {
                    queue: alloc::collections::VecDeque::with_capacity(vcpus),
                    joined: Vec::with_capacity(vcpus),
                    parks: Vec::with_capacity(doms),
                    ..RunQueue::default()
                })
                .collect(),
            doms: Vec::with_capacity(doms),
            free_doms: Vec::with_capacity(doms),
            vcpus: Vec::with_capacity(vcpus),
            free_vcpus: Vec::with_capacity(vcpus),
            active: Vec::with_capacity(doms),
            parked: Vec::with_capacity(doms),
            scratch: Vec::with_capacity(doms),
            next_acct: AtomicU64::new(0),
            pass_steps: 0,
        }
    }

    /// Number of CPUs.
    pub fn cpus(&self) -> usize {
        self.cpus.len()
    }

    /// A CPU's queue, for inspection.
    pub fn run_queue(&self, cpu: usize) -> Option<&RunQueue> {
        self.cpus.get(cpu)
    }

    /// Queue entries the scheduler has examined so far: a cost measure
    /// that tests compare (it must not grow with blocked vCPUs). The sum
    /// of the accounting's count and each queue's.
    pub fn steps(&self) -> u64 {
        self.cpus
            .iter()
            .fold(self.pass_steps, |sum, rq| sum.saturating_add(rq.steps))
    }

    /// Moves the vCPUs that joined on each CPU to the active list and the
    /// domains that parked there to the parked list, CPU by CPU (on one
    /// CPU: the order in which they came, as if pushed there at once; the
    /// accounting does not depend on the order).
    pub(super) fn join_staged(&mut self) {
        for rq in &mut self.cpus {
            self.active.append(&mut rq.joined);
            self.parked.append(&mut rq.parks);
        }
    }

    /// Takes domain `i` out of the parked list (or a CPU's staged parks).
    fn unpark_list(&mut self, i: usize) {
        self.parked.retain(|&p| p as usize != i);
        for rq in &mut self.cpus {
            rq.parks.retain(|&p| p as usize != i);
        }
    }

    pub(super) fn dom_index(&self, d: SchedDom) -> Result<usize, Error> {
        let i = d.index as usize;
        match self.doms.get(i) {
            Some(r) if r.live && r.generation == d.generation => Ok(i),
            _ => Err(Error::NoSuchDomain),
        }
    }

    pub(super) fn vcpu_index(&self, v: VcpuId) -> Result<usize, Error> {
        let i = v.index as usize;
        match self.vcpus.get(i) {
            Some(r) if r.live && r.generation == v.generation => Ok(i),
            _ => Err(Error::NoSuchVcpu),
        }
    }

    pub(super) fn id_of(&self, i: usize) -> VcpuId {
        VcpuId {
            index: i as u32,
            generation: self.vcpus[i].generation,
        }
    }

    fn check_params(weight: u16, cap: u32, vcpus: u32) -> Result<(), Error> {
        if weight == 0 || u64::from(cap) > 100 * u64::from(vcpus.max(1)) {
            return Err(Error::BadParam);
        }
        Ok(())
    }

    /// A new domain with no vCPUs; `cap` at most 100 until it has more.
    pub fn add_domain(&mut self, weight: u16, cap: u32) -> Result<SchedDom, Error> {
        Self::check_params(weight, cap, 0)?;
        let rec = |generation| DomRec {
            generation,
            live: true,
            weight: AtomicU16::new(weight),
            cap: AtomicU32::new(cap),
            vcpus: 0,
            running: AtomicU32::new(0),
            used_ns: AtomicU64::new(0),
            period_used_ns: AtomicU64::new(0),
            parked: AtomicBool::new(false),
            n_active: 0,
            room: 0,
            grant: 0,
        };
        let index = if let Some(i) = self.free_doms.pop() {
            let g = self.doms[i as usize].generation;
            self.doms[i as usize] = rec(g);
            i
        } else {
            let i = u32::try_from(self.doms.len()).map_err(|_| Error::Full)?;
            self.doms.push(rec(0));
            i
        };
        Ok(SchedDom {
            index,
            generation: self.doms[index as usize].generation,
        })
    }

    /// Changes weight and cap (cap at most 100 × the domain's vCPUs).
    pub fn set_params(&mut self, d: SchedDom, weight: u16, cap: u32) -> Result<(), Error> {
        let i = self.dom_index(d)?;
        let rec = &mut self.doms[i];
        Self::check_params(weight, cap, rec.vcpus)?;
        *rec.weight.get_mut() = weight;
        *rec.cap.get_mut() = cap;
        let parked = rec.parked.get_mut();
        if *parked && (cap == 0 || *rec.period_used_ns.get_mut() < cap_budget(cap)) {
            *parked = false;
            self.unpark_list(i);
        }
        Ok(())
    }

    /// Weight and cap of a domain.
    pub fn params(&self, d: SchedDom) -> Result<(u16, u32), Error> {
        let r = &self.doms[self.dom_index(d)?];
        Ok((r.weight.load(Relaxed), r.cap.load(Relaxed)))
    }

    /// A new vCPU of `d`, not runnable until [`Self::wake`].
    pub fn add_vcpu(&mut self, d: SchedDom) -> Result<VcpuId, Error> {
        let dom = self.dom_index(d)?;
        let vcpus = self.doms[dom].vcpus.checked_add(1).ok_or(Error::Full)?;
        let rec = |generation| VcpuRec {
            generation,
            live: true,
            dom: dom as u32,
            state: State::Blocked,
            last_cpu: None,
            credit: 0,
            boost: false,
            pause: false,
            active: false,
            ran: false,
            used_ns: 0,
            payload: None,
        };
        let index = if let Some(i) = self.free_vcpus.pop() {
            let g = self.vcpus[i as usize].generation;
            self.vcpus[i as usize] = rec(g);
            i
        } else {
            let i = u32::try_from(self.vcpus.len()).map_err(|_| Error::Full)?;
            self.vcpus.push(rec(0));
            i
        };
        self.doms[dom].vcpus = vcpus;
        Ok(self.id_of(index as usize))
    }

    /// Removes a vCPU that is not running; its id is never valid again.
    /// Its payload, if any, is dropped here ([`Self::take_vcpu`] hands it
    /// back instead).
    pub fn remove_vcpu(&mut self, v: VcpuId) -> Result<(), Error> {
        self.take_vcpu(v).map(drop)
    }

    /// [`Self::remove_vcpu`], handing back the vCPU's payload (for a
    /// caller whose payloads must not be dropped where it calls this).
    pub fn take_vcpu(&mut self, v: VcpuId) -> Result<Option<P>, Error> {
        let i = self.vcpu_index(v)?;
        let rec = &self.vcpus[i];
        match rec.state {
            State::Running(_) => return Err(Error::Running),
            State::Queued(c) => {
                self.cpus[c].remove(v);
            }
            State::Blocked => {}
        }
        if rec.active {
            self.active.retain(|&a| a as usize != i);
            for rq in &mut self.cpus {
                rq.joined.retain(|&a| a as usize != i);
            }
        }
        let dom = rec.dom as usize;
        self.doms[dom].vcpus = self.doms[dom].vcpus.saturating_sub(1);
        let rec = &mut self.vcpus[i];
        rec.live = false;
        rec.active = false;
        rec.state = State::Blocked;
        let payload = rec.payload.take();
        // A slot whose generation would wrap is retired, never reused.
        if let Some(g) = rec.generation.checked_add(1) {
            rec.generation = g;
            self.free_vcpus.push(i as u32);
        }
        Ok(payload)
    }

    /// Keeps `payload` with `v` (replacing and handing back the one it
    /// had): what [`Self::payload`] answers until the vCPU is removed.
    pub fn set_payload(&mut self, v: VcpuId, payload: P) -> Result<Option<P>, Error> {
        let i = self.vcpu_index(v)?;
        Ok(self.vcpus[i].payload.replace(payload))
    }

    /// The payload kept with `v`; `None` when it has none or `v` is not
    /// (or no longer) valid.
    #[inline(always)]
    pub fn payload(&self, v: VcpuId) -> Option<&P> {
        let i = self.vcpu_index(v).ok()?;
        self.vcpus[i].payload.as_ref()
    }

    /// Removes a domain and all its vCPUs, unless one of them runs (their
    /// payloads are dropped here: a caller that must not drop them under
    /// its lock takes its vCPUs out first with [`Self::take_vcpu`]).
    pub fn remove_domain(&mut self, d: SchedDom) -> Result<(), Error> {
        let dom = self.dom_index(d)?;
        let mine = |r: &VcpuRec<P>| r.live && r.dom as usize == dom;
        if self
            .vcpus
            .iter()
            .any(|r| mine(r) && matches!(r.state, State::Running(_)))
        {
            return Err(Error::Running);
        }
        for i in 0..self.vcpus.len() {
            if mine(&self.vcpus[i]) {
                self.remove_vcpu(self.id_of(i))?;
            }
        }
        self.unpark_list(dom);
        let rec = &mut self.doms[dom];
        rec.live = false;
        *rec.parked.get_mut() = false;
        if let Some(g) = rec.generation.checked_add(1) {
            rec.generation = g;
            self.free_doms.push(dom as u32);
        }
        Ok(())
    }

    /// The domain a vCPU belongs to.
    pub fn domain_of(&self, v: VcpuId) -> Result<SchedDom, Error> {
        let d = self.vcpus[self.vcpu_index(v)?].dom;
        Ok(SchedDom {
            index: d,
            generation: self.doms[d as usize].generation,
        })
    }

    /// CPU time a vCPU has used (ns, as reported to `descheduled`).
    pub fn vcpu_used_ns(&self, v: VcpuId) -> Result<u64, Error> {
        Ok(self.vcpus[self.vcpu_index(v)?].used_ns)
    }

    /// CPU time a domain's vCPUs have used (removed ones included).
    pub fn domain_used_ns(&self, d: SchedDom) -> Result<u64, Error> {
        Ok(self.doms[self.dom_index(d)?].used_ns.load(Relaxed))
    }

    /// A vCPU's credit (ns; negative = OVER).
    pub fn credit(&self, v: VcpuId) -> Result<i64, Error> {
        Ok(self.vcpus[self.vcpu_index(v)?].credit)
    }

    /// The CPU a runnable vCPU waits or runs on; `None` when blocked.
    pub fn cpu_of(&self, v: VcpuId) -> Result<Option<usize>, Error> {
        Ok(match self.vcpus[self.vcpu_index(v)?].state {
            State::Blocked => None,
            State::Queued(c) | State::Running(c) => Some(c),
        })
    }
}
