//! The credit scheduler's state and operations (policy: `mod.rs`).

use alloc::vec::Vec;

use super::{
    BOOST_SLICE_NS, CREDIT_MAX, DomId, Error, MAX_CPUS, MIN_SLICE_NS, PERIOD_NS, Placed, RunQueue,
    SLICE_NS, VcpuId,
};

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

pub(super) struct VcpuRec {
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
}

pub(super) struct DomRec {
    pub(super) generation: u32,
    pub(super) live: bool,
    pub(super) weight: u16,
    pub(super) cap: u32,
    /// Live vCPUs, and how many of them run now.
    pub(super) vcpus: u32,
    pub(super) running: u32,
    pub(super) used_ns: u64,
    pub(super) period_used_ns: u64,
    /// Used its cap this period. Invariant: parked iff in the parked list.
    pub(super) parked: bool,
    /// Accounting scratch: active vCPUs, credit it can take, credit
    /// given (then per vCPU).
    pub(super) n_active: u64,
    pub(super) room: u64,
    pub(super) grant: u64,
}

/// The scheduler: global accounting plus one [`RunQueue`] per CPU.
pub struct Credit {
    pub(super) cpus: Vec<RunQueue>,
    pub(super) doms: Vec<DomRec>,
    pub(super) free_doms: Vec<u32>,
    pub(super) vcpus: Vec<VcpuRec>,
    pub(super) free_vcpus: Vec<u32>,
    /// vCPUs runnable now or run this period: the only ones accounting visits.
    pub(super) active: Vec<u32>,
    pub(super) parked: Vec<u32>,
    scratch: Vec<u32>,
    /// When the next accounting is due (`None` before the first call).
    next_acct: Option<u64>,
    steps: u64,
}

fn cap_budget(cap: u32) -> u64 {
    u64::from(cap).saturating_mul(PERIOD_NS) / 100
}

impl Credit {
    /// A scheduler for `cpus` CPUs (at least 1, at most [`MAX_CPUS`]).
    pub fn new(cpus: usize) -> Self {
        let n = cpus.clamp(1, MAX_CPUS);
        Self {
            cpus: (0..n).map(|_| RunQueue::default()).collect(),
            doms: Vec::new(),
            free_doms: Vec::new(),
            vcpus: Vec::new(),
            free_vcpus: Vec::new(),
            active: Vec::new(),
            parked: Vec::new(),
            scratch: Vec::new(),
            next_acct: None,
            steps: 0,
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
    /// that tests compare (it must not grow with blocked vCPUs).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn dom_index(&self, d: DomId) -> Result<usize, Error> {
        let i = d.index as usize;
        match self.doms.get(i) {
            Some(r) if r.live && r.generation == d.generation => Ok(i),
            _ => Err(Error::NoSuchDomain),
        }
    }

    fn vcpu_index(&self, v: VcpuId) -> Result<usize, Error> {
        let i = v.index as usize;
        match self.vcpus.get(i) {
            Some(r) if r.live && r.generation == v.generation => Ok(i),
            _ => Err(Error::NoSuchVcpu),
        }
    }

    fn id_of(&self, i: usize) -> VcpuId {
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
    pub fn add_domain(&mut self, weight: u16, cap: u32) -> Result<DomId, Error> {
        Self::check_params(weight, cap, 0)?;
        let rec = |generation| DomRec {
            generation,
            live: true,
            weight,
            cap,
            vcpus: 0,
            running: 0,
            used_ns: 0,
            period_used_ns: 0,
            parked: false,
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
        Ok(DomId {
            index,
            generation: self.doms[index as usize].generation,
        })
    }

    /// Changes weight and cap (cap at most 100 × the domain's vCPUs).
    pub fn set_params(&mut self, d: DomId, weight: u16, cap: u32) -> Result<(), Error> {
        let i = self.dom_index(d)?;
        let rec = &mut self.doms[i];
        Self::check_params(weight, cap, rec.vcpus)?;
        rec.weight = weight;
        rec.cap = cap;
        if rec.parked && (cap == 0 || rec.period_used_ns < cap_budget(cap)) {
            rec.parked = false;
            self.parked.retain(|&p| p as usize != i);
        }
        Ok(())
    }

    /// Weight and cap of a domain.
    pub fn params(&self, d: DomId) -> Result<(u16, u32), Error> {
        let r = &self.doms[self.dom_index(d)?];
        Ok((r.weight, r.cap))
    }

    /// A new vCPU of `d`, not runnable until [`Self::wake`].
    pub fn add_vcpu(&mut self, d: DomId) -> Result<VcpuId, Error> {
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
    pub fn remove_vcpu(&mut self, v: VcpuId) -> Result<(), Error> {
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
        }
        let dom = rec.dom as usize;
        self.doms[dom].vcpus = self.doms[dom].vcpus.saturating_sub(1);
        let rec = &mut self.vcpus[i];
        rec.live = false;
        rec.active = false;
        rec.state = State::Blocked;
        // A slot whose generation would wrap is retired, never reused.
        if let Some(g) = rec.generation.checked_add(1) {
            rec.generation = g;
            self.free_vcpus.push(i as u32);
        }
        Ok(())
    }

    /// Removes a domain and all its vCPUs, unless one of them runs.
    pub fn remove_domain(&mut self, d: DomId) -> Result<(), Error> {
        let dom = self.dom_index(d)?;
        let mine = |r: &VcpuRec| r.live && r.dom as usize == dom;
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
        self.parked.retain(|&p| p as usize != dom);
        let rec = &mut self.doms[dom];
        rec.live = false;
        rec.parked = false;
        if let Some(g) = rec.generation.checked_add(1) {
            rec.generation = g;
            self.free_doms.push(dom as u32);
        }
        Ok(())
    }

    /// The domain a vCPU belongs to.
    pub fn domain_of(&self, v: VcpuId) -> Result<DomId, Error> {
        let d = self.vcpus[self.vcpu_index(v)?].dom;
        Ok(DomId {
            index: d,
            generation: self.doms[d as usize].generation,
        })
    }

    /// CPU time a vCPU has used (ns, as reported to `descheduled`).
    pub fn vcpu_used_ns(&self, v: VcpuId) -> Result<u64, Error> {
        Ok(self.vcpus[self.vcpu_index(v)?].used_ns)
    }

    /// CPU time a domain's vCPUs have used (removed ones included).
    pub fn domain_used_ns(&self, d: DomId) -> Result<u64, Error> {
        Ok(self.doms[self.dom_index(d)?].used_ns)
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

    pub(super) fn prio(&self, i: usize) -> Prio {
        let r = &self.vcpus[i];
        if r.boost {
            Prio::Boost
        } else if r.credit >= 0 {
            Prio::Under
        } else {
            Prio::Over
        }
    }

    fn parked_vcpu(&self, i: usize) -> bool {
        self.doms[self.vcpus[i].dom as usize].parked
    }

    /// The best pickable waiting vCPU of `cpu`: its queue position and
    /// priority (first of the best class: FIFO within a class).
    fn best_in(&mut self, cpu: usize) -> Option<(usize, Prio)> {
        let mut best: Option<(usize, Prio)> = None;
        let mut seen = 0;
        for (pos, id) in self.cpus[cpu].queue.iter().enumerate() {
            seen += 1;
            let i = id.index as usize;
            if self.parked_vcpu(i) {
                continue;
            }
            let p = self.prio(i);
            if best.is_none_or(|(_, b)| p < b) {
                best = Some((pos, p));
            }
        }
        self.steps = self.steps.saturating_add(seen);
        best
    }

    fn mark_active(&mut self, i: usize) {
        if !self.vcpus[i].active {
            self.vcpus[i].active = true;
            self.active.push(i as u32);
        }
    }

    /// Whether `cpu` runs nothing and has nothing it could pick.
    fn idle(&mut self, cpu: usize) -> bool {
        self.cpus[cpu].current.is_none() && self.best_in(cpu).is_none()
    }

    /// Makes a blocked vCPU runnable and queues it (placement: module
    /// docs). `None` when it was already runnable (a pending pause is
    /// cancelled).
    pub fn wake(&mut self, v: VcpuId, now: u64) -> Result<Option<Placed>, Error> {
        let i = self.vcpu_index(v)?;
        self.account_if_due(now);
        if self.vcpus[i].state != State::Blocked {
            self.vcpus[i].pause = false;
            return Ok(None);
        }
        let n = self.cpus.len();
        let cpu = match self.vcpus[i].last_cpu {
            Some(last) if last < n => {
                if self.idle(last) {
                    last
                } else {
                    (0..n).find(|&c| c != last && self.idle(c)).unwrap_or(last)
                }
            }
            _ => (0..n).min_by_key(|&c| self.cpus[c].load()).unwrap_or(0),
        };
        let rec = &mut self.vcpus[i];
        rec.boost = rec.credit >= 0;
        rec.state = State::Queued(cpu);
        rec.pause = false;
        self.mark_active(i);
        self.cpus[cpu].queue.push_back(v);
        let kick = !self.parked_vcpu(i)
            && match self.cpus[cpu].current {
                None => true,
                Some(cur) => self.prio(i) < self.prio(cur.index as usize),
            };
        Ok(Some(Placed { cpu, kick }))
    }

    /// Makes a vCPU not runnable (pause): out of its queue now, or, when
    /// it runs, at its next `descheduled`.
    pub fn block(&mut self, v: VcpuId, now: u64) -> Result<(), Error> {
        let i = self.vcpu_index(v)?;
        self.account_if_due(now);
        match self.vcpus[i].state {
            State::Blocked => {}
            State::Running(_) => self.vcpus[i].pause = true,
            State::Queued(c) => {
                self.cpus[c].remove(v);
                let rec = &mut self.vcpus[i];
                rec.state = State::Blocked;
                rec.boost = false;
            }
        }
        Ok(())
    }

    /// Chooses what `cpu` runs next (it must run nothing now): the best
    /// local vCPU, or one stolen from another queue when the best local
    /// one is OVER or there is none.
    pub fn pick_next(&mut self, cpu: usize, now: u64) -> Result<super::Decision, Error> {
        let rq = self.cpus.get(cpu).ok_or(Error::NoSuchCpu)?;
        if rq.current.is_some() {
            return Err(Error::CpuBusy);
        }
        self.account_if_due(now);
        let local = self.best_in(cpu);
        let mut from = local.map(|(pos, _)| (cpu, pos));
        if local.is_none_or(|(_, p)| p == Prio::Over)
            && let Some(victim) = self.find_steal(cpu, local.map(|(_, p)| p))
        {
            from = Some(victim);
        }
        let Some((q, pos)) = from else {
            // Idle. A parked domain may run at the next accounting.
            let parked_here = !self.cpus[cpu].queue.is_empty();
            let slice_ns = match self.next_acct {
                Some(t) if parked_here => t.saturating_sub(now).max(MIN_SLICE_NS),
                _ => u64::MAX,
            };
            return Ok(super::Decision {
                vcpu: None,
                slice_ns,
            });
        };
        let Some(v) = self.cpus[q].queue.remove(pos) else {
            return Err(Error::NoSuchVcpu);
        };
        let i = v.index as usize;
        let dom = self.vcpus[i].dom as usize;
        self.doms[dom].running = self.doms[dom].running.saturating_add(1);
        let rec = &mut self.vcpus[i];
        rec.state = State::Running(cpu);
        rec.last_cpu = Some(cpu);
        let mut slice = if rec.boost { BOOST_SLICE_NS } else { SLICE_NS };
        self.mark_active(i);
        if let Some(t) = self.next_acct {
            slice = slice.min(t.saturating_sub(now));
        }
        let d = &self.doms[dom];
        if d.cap != 0 {
            let left = cap_budget(d.cap).saturating_sub(d.period_used_ns);
            slice = slice.min(left / u64::from(d.running.max(1)));
        }
        let slice_ns = slice.max(MIN_SLICE_NS);
        let rq = &mut self.cpus[cpu];
        rq.current = Some(v);
        rq.slice_end = now.saturating_add(slice_ns);
        Ok(super::Decision {
            vcpu: Some(v),
            slice_ns,
        })
    }

    /// A waiting vCPU elsewhere better than `than` (`None`: anything),
    /// from the queue with the best candidate, the longest on ties.
    fn find_steal(&mut self, cpu: usize, than: Option<Prio>) -> Option<(usize, usize)> {
        let mut best: Option<(Prio, usize, usize, usize)> = None;
        for q in 0..self.cpus.len() {
            if q == cpu {
                continue;
            }
            let Some((pos, p)) = self.best_in(q) else {
                continue;
            };
            if than.is_some_and(|t| p >= t) {
                continue;
            }
            let len = self.cpus[q].queue.len();
            if best.is_none_or(|(bp, _, _, blen)| p < bp || (p == bp && len > blen)) {
                best = Some((p, q, pos, len));
            }
        }
        best.map(|(_, q, pos, _)| (q, pos))
    }

    /// `v` stopped running on `cpu` after `ran_ns`: burn its credit, charge
    /// its domain (parking it at its cap), queue it again if it is still
    /// runnable (and not paused meanwhile).
    pub fn descheduled(
        &mut self,
        cpu: usize,
        v: VcpuId,
        ran_ns: u64,
        now: u64,
        still_runnable: bool,
    ) -> Result<(), Error> {
        let i = self.vcpu_index(v)?;
        if cpu >= self.cpus.len() {
            return Err(Error::NoSuchCpu);
        }
        if self.vcpus[i].state != State::Running(cpu) {
            return Err(Error::NotRunningHere);
        }
        let rec = &mut self.vcpus[i];
        let burn = i64::try_from(ran_ns).unwrap_or(i64::MAX);
        rec.credit = rec.credit.saturating_sub(burn).max(-CREDIT_MAX);
        rec.used_ns = rec.used_ns.saturating_add(ran_ns);
        rec.ran = true;
        rec.boost = false;
        let runnable = still_runnable && !rec.pause;
        rec.pause = false;
        rec.state = if runnable {
            State::Queued(cpu)
        } else {
            State::Blocked
        };
        let dom = rec.dom as usize;
        let d = &mut self.doms[dom];
        d.running = d.running.saturating_sub(1);
        d.used_ns = d.used_ns.saturating_add(ran_ns);
        d.period_used_ns = d.period_used_ns.saturating_add(ran_ns);
        if d.cap != 0 && !d.parked && d.period_used_ns >= cap_budget(d.cap) {
            d.parked = true;
            self.parked.push(dom as u32);
        }
        let rq = &mut self.cpus[cpu];
        rq.current = None;
        if runnable {
            rq.queue.push_back(v);
        }
        self.account_if_due(now);
        Ok(())
    }

    /// The periodic timer on `cpu`: runs the accounting when due and says
    /// whether `cpu` should reschedule now (its slice is over, its domain
    /// got parked, or better work waits; when idle: work waits).
    pub fn tick(&mut self, cpu: usize, now: u64) -> Result<bool, Error> {
        if cpu >= self.cpus.len() {
            return Err(Error::NoSuchCpu);
        }
        self.account_if_due(now);
        let best = self.best_in(cpu).map(|(_, p)| p);
        let rq = &self.cpus[cpu];
        Ok(match rq.current {
            None => best.is_some(),
            Some(cur) => {
                let c = cur.index as usize;
                now >= rq.slice_end || self.parked_vcpu(c) || best.is_some_and(|p| p < self.prio(c))
            }
        })
    }

    fn account_if_due(&mut self, now: u64) {
        match self.next_acct {
            None => self.next_acct = Some(now.saturating_add(PERIOD_NS)),
            Some(t) if now >= t => {
                self.account();
                // After a long quiet time, no backlog of periods.
                let next = t.saturating_add(PERIOD_NS);
                self.next_acct = Some(if next <= now {
                    now.saturating_add(PERIOD_NS)
                } else {
                    next
                });
            }
            Some(_) => {}
        }
    }

    /// Hands out one period's credit to the active vCPUs by weight, drops
    /// vCPUs that blocked and did not run from the active list, unparks.
    fn account(&mut self) {
        let mut active = core::mem::take(&mut self.active);
        let mut doms = core::mem::take(&mut self.scratch);
        doms.clear();
        let vcpus = &mut self.vcpus;
        active.retain(|&a| {
            let r = &mut vcpus[a as usize];
            let keep = r.live && (r.state != State::Blocked || r.ran);
            r.active = keep;
            r.ran = false;
            keep
        });
        for &a in &active {
            let r = &self.vcpus[a as usize];
            // Room to grow before the credit bound: a vCPU that does not
            // use its credit (it sits at the bound) has none, so its share
            // goes to the others instead of being lost.
            let room = u64::try_from(CREDIT_MAX.saturating_sub(r.credit)).unwrap_or(0);
            let rec = &mut self.doms[r.dom as usize];
            if rec.n_active == 0 {
                rec.grant = 0;
                doms.push(r.dom);
            }
            rec.n_active = rec.n_active.saturating_add(1);
            rec.grant = rec.grant.saturating_add(room);
        }
        // Water-filling: share `total` by weight among domains with room
        // left; what one cannot take (bound, cap, too few vCPUs) goes to
        // the rest in the next round.
        let mut remaining = PERIOD_NS.saturating_mul(self.cpus.len() as u64);
        for &d in &doms {
            let rec = &mut self.doms[d as usize];
            let mut room = rec.grant.min(rec.n_active.saturating_mul(PERIOD_NS));
            if rec.cap != 0 {
                room = room.min(cap_budget(rec.cap));
            }
            rec.room = room;
            rec.grant = 0;
        }
        for _round in 0..4 {
            let hungry = |r: &DomRec| r.grant < r.room;
            let weight: u64 = doms
                .iter()
                .map(|&d| &self.doms[d as usize])
                .filter(|r| hungry(r))
                .map(|r| u64::from(r.weight))
                .sum();
            if weight == 0 || remaining == 0 {
                break;
            }
            let mut handed = 0u64;
            for &d in &doms {
                let rec = &mut self.doms[d as usize];
                if hungry(rec) {
                    let offer = u128::from(remaining) * u128::from(rec.weight) / u128::from(weight);
                    let give = u64::try_from(offer)
                        .unwrap_or(u64::MAX)
                        .min(rec.room.saturating_sub(rec.grant));
                    rec.grant = rec.grant.saturating_add(give);
                    handed = handed.saturating_add(give);
                }
            }
            remaining = remaining.saturating_sub(handed);
            if handed == 0 {
                break;
            }
        }
        for &d in &doms {
            let rec = &mut self.doms[d as usize];
            rec.grant /= rec.n_active.max(1);
            rec.n_active = 0;
            rec.period_used_ns = 0;
        }
        for &a in &active {
            let r = &mut self.vcpus[a as usize];
            let grant = i64::try_from(self.doms[r.dom as usize].grant).unwrap_or(CREDIT_MAX);
            r.credit = r.credit.saturating_add(grant).min(CREDIT_MAX);
        }
        for &p in &self.parked {
            let rec = &mut self.doms[p as usize];
            rec.parked = false;
            rec.period_used_ns = 0;
        }
        self.parked.clear();
        self.steps = self.steps.saturating_add(active.len() as u64);
        self.active = active;
        self.scratch = doms;
    }
}
