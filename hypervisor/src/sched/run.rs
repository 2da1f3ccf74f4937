//! The per-CPU operations: wake, block, pick, deschedule, tick. Each
//! takes the run-queue lock of the one CPU it acts on (a steal try-locks
//! a second); the accounting, when due, runs first with every lock (the
//! caller holds none then). Placement reads the other CPUs' published
//! idleness and load instead of their queues.

use core::sync::atomic::Ordering::Relaxed;

use super::credit::{Credit, DomRec, Prio, State, VcpuRec, add_sat, cap_budget, dec_sat, inc};
use super::{
    BOOST_SLICE_NS, CREDIT_MAX, Decision, Error, MIN_SLICE_NS, Placed, RunQueue, SLICE_NS, VcpuId,
};
use crate::sync::MutexGuard;

// The small helpers here are inlined by force: the release build optimizes
// for size and would otherwise call out for each (a few instructions of
// work, as many again for the call), on every wake, pick and switch.
impl<P> Credit<P> {
    #[inline(always)]
    pub(super) fn prio(&self, i: usize) -> Prio {
        let r = &self.vcpus[i];
        if r.boost() {
            Prio::Boost
        } else if r.credit() >= 0 {
            Prio::Under
        } else {
            Prio::Over
        }
    }

    #[inline(always)]
    pub(super) fn parked_vcpu(&self, i: usize) -> bool {
        self.doms[self.vcpus[i].dom()].parked.load(Relaxed)
    }

    /// The best pickable waiting vCPU of `rq`: its queue position and
    /// priority (first of the best class: FIFO within a class).
    fn best_in(&self, rq: &mut RunQueue) -> Option<(usize, Prio)> {
        let mut best: Option<(usize, Prio)> = None;
        let mut seen = 0;
        for (pos, id) in rq.queue.iter().enumerate() {
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
        rq.steps = rq.steps.saturating_add(seen);
        best
    }

    /// `i` is runnable on the CPU of `rq` (queued or started there): active
    /// from now to the accounting at least, staged on that CPU.
    #[inline(always)]
    pub(super) fn mark_active(&self, i: usize, rq: &mut RunQueue) {
        self.mark_active_rec(i, &self.vcpus[i], rq);
    }

    /// [`Self::mark_active`] with `i`'s record at hand.
    #[inline(always)]
    pub(super) fn mark_active_rec(&self, i: usize, r: &VcpuRec<P>, rq: &mut RunQueue) {
        if !r.active() {
            r.set_active(true);
            rq.joined.push(i as u32);
        }
    }

    /// Whether no CPU but `cpu` holds a vCPU (from what they published).
    #[inline(always)]
    pub(super) fn alone(&self, cpu: usize) -> bool {
        let n = self.cpus();
        // One CPU in use: the caller's (it checked `cpu`), no other.
        if n == 1 {
            return true;
        }
        for (c, other) in self.cpus[..n].iter().enumerate() {
            if c != cpu && other.load.load(Relaxed) != 0 {
                return false;
            }
        }
        true
    }

    #[inline(always)]
    fn idle_at(&self, cpu: usize) -> bool {
        self.cpus[cpu].idle.load(Relaxed)
    }

    /// Where a wake-up queues vCPU `i` (module docs of `mod.rs`), from
    /// what the CPUs published.
    pub(super) fn place_cpu(&self, i: usize) -> usize {
        let n = self.cpus();
        match self.vcpus[i].last_cpu() {
            Some(last) if last < n => {
                if self.idle_at(last) {
                    last
                } else {
                    (0..n)
                        .find(|&c| c != last && self.idle_at(c))
                        .unwrap_or(last)
                }
            }
            _ => (0..n)
                .min_by_key(|&c| self.cpus[c].load.load(Relaxed))
                .unwrap_or(0),
        }
    }

    /// Queues the claimed vCPU `i` (`v`) on `cpu`, whose lock the caller
    /// holds as `rq`: `None` when a pause came while it was being placed
    /// (it is blocked now) or it was removed.
    #[inline(always)]
    pub(super) fn place(
        &self,
        i: usize,
        v: VcpuId,
        cpu: usize,
        rq: &mut RunQueue,
    ) -> Option<Placed> {
        let r = &self.vcpus[i];
        if !r.settle(State::Queued(cpu)) {
            return None;
        }
        r.set_boost(r.credit() >= 0);
        self.mark_active(i, rq);
        rq.queue.push_back(v);
        let kick = !self.parked_vcpu(i)
            && match rq.current {
                None => true,
                Some(cur) => self.prio(i) < self.prio(cur.index as usize),
            };
        Some(Placed { cpu, kick })
    }

    /// Claims vCPU `i` for a wake-up (blocked to placing): `false` when
    /// it is runnable already (a pending pause is cancelled then) or
    /// removed.
    fn claim(&self, i: usize) -> bool {
        let r = &self.vcpus[i];
        loop {
            // The claim takes no lock: a test's interleaving search may
            // switch threads here as at a lock.
            crate::sync::point();
            if r.claim() {
                return true;
            }
            match r.state() {
                // Blocked again since the swap failed: try again.
                State::Blocked => {}
                // Another wake-up places it.
                State::Placing => {
                    r.unpause_placing();
                    return false;
                }
                State::Queued(c) | State::Running(c) => {
                    let _rq = self.lock(c);
                    let s = r.state();
                    if s == State::Queued(c) || s == State::Running(c) {
                        // Same state, pause cleared.
                        r.set_state(s);
                        return false;
                    }
                }
                State::Gone => return false,
            }
        }
    }

    /// Makes a blocked vCPU runnable and queues it (placement: module
    /// docs). `None` when it was already runnable (a pending pause is
    /// cancelled).
    pub fn wake(&self, v: VcpuId, now: u64) -> Result<Option<Placed>, Error> {
        self.wake_if(v, now, || true)
    }

    /// [`Self::wake`], asking `still` once the vCPU is claimed (no other
    /// wake-up and no pause can then slip by unseen): when it says
    /// `false`, the vCPU stays blocked and `None` is the answer. A caller
    /// that wakes without the lock that orders its wake-ups against
    /// pauses (`live/handoff.rs`) asks there whether the domain was
    /// paused.
    pub fn wake_if(
        &self,
        v: VcpuId,
        now: u64,
        still: impl FnOnce() -> bool,
    ) -> Result<Option<Placed>, Error> {
        let i = self.vcpu_index(v)?;
        self.account_if_due(now);
        if !self.claim(i) {
            return Ok(None);
        }
        crate::sync::point();
        if !still() {
            self.vcpus[i].unclaim();
            return Ok(None);
        }
        let cpu = self.place_cpu(i);
        let mut rq = self.lock(cpu);
        let placed = self.place(i, v, cpu, &mut rq);
        self.publish(cpu, &rq);
        Ok(placed)
    }

    /// Makes a vCPU not runnable (pause): out of its queue now, or, when
    /// it runs, at its next `descheduled`; a wake-up placing it meanwhile
    /// leaves it blocked.
    pub fn block(&self, v: VcpuId, now: u64) -> Result<(), Error> {
        let i = self.vcpu_index(v)?;
        self.account_if_due(now);
        let r = &self.vcpus[i];
        loop {
            crate::sync::point();
            match r.state() {
                State::Blocked | State::Gone => return Ok(()),
                State::Placing => {
                    if r.pause_placing() {
                        return Ok(());
                    }
                }
                State::Queued(c) | State::Running(c) => {
                    let mut rq = self.lock(c);
                    match r.state() {
                        State::Running(x) if x == c => {
                            r.set_paused();
                            return Ok(());
                        }
                        State::Queued(x) if x == c => {
                            rq.remove(v);
                            r.set_state(State::Blocked);
                            r.set_boost(false);
                            self.publish(c, &rq);
                            return Ok(());
                        }
                        // Moved meanwhile: look again.
                        _ => {}
                    }
                }
            }
        }
    }

    /// `cpu`'s lock, taken after the accounting when that is due (the
    /// caller holds no run-queue lock).
    #[inline(always)]
    fn lock_after_account(&self, cpu: usize, now: u64) -> MutexGuard<'_, RunQueue> {
        self.account_if_due(now);
        self.lock(cpu)
    }

    /// Chooses what `cpu` runs next (it must run nothing now): the best
    /// local vCPU, or one stolen from another queue when the best local
    /// one is OVER or there is none.
    pub fn pick_next(&self, cpu: usize, now: u64) -> Result<Decision, Error> {
        if cpu >= self.cpus() {
            return Err(Error::NoSuchCpu);
        }
        let mut rq = self.lock(cpu);
        if rq.current.is_some() {
            return Err(Error::CpuBusy);
        }
        if self.due(now) {
            drop(rq);
            rq = self.lock_after_account(cpu, now);
            if rq.current.is_some() {
                return Err(Error::CpuBusy);
            }
        }
        self.pick_locked(cpu, &mut rq, now)
    }

    /// [`Self::pick_next`] with `cpu`'s lock held (as `rq`), the
    /// accounting not due.
    pub(super) fn pick_locked(
        &self,
        cpu: usize,
        rq: &mut RunQueue,
        now: u64,
    ) -> Result<Decision, Error> {
        let local = self.best_in(rq);
        let mut missed = false;
        if local.is_none_or(|(_, p)| p == Prio::Over) {
            let (found, m) = self.find_steal(cpu, local.map(|(_, p)| p));
            missed = m;
            if let Some((q, mut victim, pos)) = found {
                let d = self.start(cpu, rq, Some(&mut victim), pos, now);
                self.publish(q, &victim);
                return d;
            }
        }
        let Some((pos, _)) = local else {
            // Idle. A parked domain may run at the next accounting; a
            // queue passed over because its lock was taken (another CPU
            // was in it, or is adding a domain with every lock) is looked
            // at again soon: a wake-up placed there kicks that CPU, not
            // this one, so nothing else would wake this CPU for it.
            let parked_here = !rq.queue.is_empty();
            let mut slice_ns = match self.next_acct() {
                Some(t) if parked_here => t.saturating_sub(now).max(MIN_SLICE_NS),
                _ => u64::MAX,
            };
            if missed {
                slice_ns = slice_ns.min(MIN_SLICE_NS);
            }
            self.publish(cpu, rq);
            return Ok(Decision {
                vcpu: None,
                slice_ns,
            });
        };
        self.start(cpu, rq, None, pos, now)
    }

    /// Runs on `cpu` (which runs nothing; its lock held as `rq`) the vCPU
    /// at `pos` of the queue `from` (another CPU's, its lock held), or of
    /// `cpu`'s own: its slice (boosted, cut to the accounting and its
    /// domain's cap).
    pub(super) fn start(
        &self,
        cpu: usize,
        rq: &mut RunQueue,
        from: Option<&mut RunQueue>,
        pos: usize,
        now: u64,
    ) -> Result<Decision, Error> {
        // The ends without `VecDeque::remove`'s general shuffle: a direct
        // switch takes the vCPU just woken (the back), a pick often the
        // front.
        let queue = match from {
            Some(q) => &mut q.queue,
            None => &mut rq.queue,
        };
        let taken = if pos + 1 == queue.len() {
            queue.pop_back()
        } else if pos == 0 {
            queue.pop_front()
        } else {
            queue.remove(pos)
        };
        let Some(v) = taken else {
            return Err(Error::NoSuchVcpu);
        };
        let i = v.index as usize;
        let r = &self.vcpus[i];
        r.set_state(State::Running(cpu));
        Ok(self.run_here(cpu, rq, i, r, &self.doms[r.dom()], v, now))
    }

    /// The rest of a start: vCPU `i` (`v`, its record `r`, its domain's
    /// `d`), taken out of its queue or settled here by a direct switch and
    /// marked running on `cpu` (its lock held as `rq`), is `cpu`'s current
    /// with its slice.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn run_here(
        &self,
        cpu: usize,
        rq: &mut RunQueue,
        i: usize,
        r: &VcpuRec<P>,
        d: &DomRec,
        v: VcpuId,
        now: u64,
    ) -> Decision {
        let running = inc(&d.running);
        r.set_last_cpu(Some(cpu));
        let mut slice = if r.boost() { BOOST_SLICE_NS } else { SLICE_NS };
        self.mark_active_rec(i, r, rq);
        if let Some(t) = self.next_acct() {
            slice = slice.min(t.saturating_sub(now));
        }
        let cap = d.cap.load(Relaxed);
        if cap != 0 {
            let left = cap_budget(cap).saturating_sub(d.period_used_ns.load(Relaxed));
            slice = slice.min(left / u64::from(running.max(1)));
        }
        let slice_ns = slice.max(MIN_SLICE_NS);
        rq.current = Some(v);
        rq.slice_end = now.saturating_add(slice_ns);
        self.publish(cpu, rq);
        Decision {
            vcpu: Some(v),
            slice_ns,
        }
    }

    /// Direct switch (seL4's Call / ReplyRecv handoff): `from` blocks on
    /// `cpu` after `ran_ns`, having just woken `to`. Deschedules `from` (as
    /// [`Credit::descheduled`] with `still_runnable = false`) and, when `to`
    /// waits in `cpu`'s own queue, is not parked, is not OVER (an OVER best
    /// would make `pick_next` look for work to steal) and nothing waiting
    /// there has a better priority, runs `to` at once: `Some` with its
    /// slice, the choice `pick_next` would make except that `to` goes ahead
    /// of others of its own class (the time is handed to the vCPU the
    /// caller is waiting on). `Ok(None)`: `from` is descheduled and the
    /// caller picks as usual. Errors as for `descheduled`; `to` unknown or
    /// stale is `None`, not an error.
    pub fn switch_to(
        &self,
        cpu: usize,
        from: VcpuId,
        ran_ns: u64,
        to: VcpuId,
        now: u64,
    ) -> Result<Option<Decision>, Error> {
        let mut rq = self.deschedule_for_switch(cpu, from, ran_ns, now)?;
        let d = self.switch_queued(cpu, &mut rq, to, now);
        self.publish(cpu, &rq);
        d
    }

    /// The first part of a direct switch: `from` descheduled as blocked
    /// on `cpu`, the accounting run if that made it due; `cpu`'s lock held
    /// for the rest (the other CPUs' published idleness brought up to date
    /// when the deschedule parked a domain). `cpu`'s own is not published
    /// yet: the caller does, before it lets the lock go or places a vCPU
    /// (a switch that starts one publishes in `start`).
    #[inline(always)]
    pub(super) fn deschedule_for_switch(
        &self,
        cpu: usize,
        from: VcpuId,
        ran_ns: u64,
        now: u64,
    ) -> Result<MutexGuard<'_, RunQueue>, Error> {
        let (_, r) = self.vcpu_rec(from)?;
        if cpu >= self.cpus() {
            return Err(Error::NoSuchCpu);
        }
        let mut rq = self.lock(cpu);
        let parked = self.deschedule_locked(cpu, &mut rq, r, from, ran_ns, false)?;
        if parked || self.due(now) {
            self.publish(cpu, &rq);
            drop(rq);
            if parked {
                self.publish_others(cpu);
            }
            rq = self.lock_after_account(cpu, now);
        }
        Ok(rq)
    }

    /// The part of [`Credit::switch_to`] after the deschedule: runs `to`
    /// on the idle `cpu` (its lock held as `rq`) when it waits in that
    /// CPU's queue and may go first (see there); `Ok(None)` otherwise.
    pub(super) fn switch_queued(
        &self,
        cpu: usize,
        rq: &mut RunQueue,
        to: VcpuId,
        now: u64,
    ) -> Result<Option<Decision>, Error> {
        let Ok(j) = self.vcpu_index(to) else {
            return Ok(None);
        };
        if self.vcpus[j].state() != State::Queued(cpu) || self.parked_vcpu(j) {
            return Ok(None);
        }
        let p = self.prio(j);
        if p == Prio::Over {
            return Ok(None);
        }
        // One pass over the queue: where `to` waits, and whether anything
        // there that may run has a better priority (what `best_in` and a
        // search for `to` would find in two).
        let mut pos = None;
        let mut better = false;
        for (k, &id) in rq.queue.iter().enumerate() {
            if id == to {
                pos = Some(k);
            } else {
                let i = id.index as usize;
                better |= !self.parked_vcpu(i) && self.prio(i) < p;
            }
        }
        rq.steps = rq.steps.saturating_add(rq.queue.len() as u64);
        match pos {
            Some(pos) if !better => self.start(cpu, rq, None, pos, now).map(Some),
            _ => Ok(None),
        }
    }

    /// A waiting vCPU elsewhere better than `than` (`None`: anything),
    /// from the queue with the best candidate, the longest on ties: that
    /// CPU, its queue's lock (try-locked: `cpu`'s own is held, so a CPU
    /// whose lock is taken is passed over, as one whose published load is
    /// 0) and the position; and whether a queue with vCPUs was passed
    /// over for its lock.
    #[allow(clippy::type_complexity)]
    fn find_steal(
        &self,
        cpu: usize,
        than: Option<Prio>,
    ) -> (Option<(usize, MutexGuard<'_, RunQueue>, usize)>, bool) {
        let mut best: Option<(Prio, usize, MutexGuard<'_, RunQueue>, usize, usize)> = None;
        let mut missed = false;
        for q in 0..self.cpus() {
            if q == cpu || self.cpus[q].load.load(Relaxed) == 0 {
                continue;
            }
            #[cfg(test)]
            self.rq_locks.fetch_add(1, Relaxed);
            let Some(mut g) = self.cpus[q].rq.try_lock() else {
                missed = true;
                continue;
            };
            let Some((pos, p)) = self.best_in(&mut g) else {
                continue;
            };
            if than.is_some_and(|t| p >= t) {
                continue;
            }
            let len = g.queue.len();
            if best
                .as_ref()
                .is_none_or(|&(bp, _, _, _, blen)| p < bp || (p == bp && len > blen))
            {
                best = Some((p, q, g, pos, len));
            }
        }
        (best.map(|(_, q, g, pos, _)| (q, g, pos)), missed)
    }

    /// `v` stopped running on `cpu` after `ran_ns`: burn its credit, charge
    /// its domain (parking it at its cap), queue it again if it is still
    /// runnable (and not paused meanwhile).
    pub fn descheduled(
        &self,
        cpu: usize,
        v: VcpuId,
        ran_ns: u64,
        now: u64,
        still_runnable: bool,
    ) -> Result<(), Error> {
        let (_, r) = self.vcpu_rec(v)?;
        if cpu >= self.cpus() {
            return Err(Error::NoSuchCpu);
        }
        let mut rq = self.lock(cpu);
        let parked = self.deschedule_locked(cpu, &mut rq, r, v, ran_ns, still_runnable)?;
        self.publish(cpu, &rq);
        drop(rq);
        if parked {
            self.publish_others(cpu);
        }
        self.account_if_due(now);
        Ok(())
    }

    /// [`Self::descheduled`] under `cpu`'s lock (`rq`), without the
    /// accounting, `r` being `v`'s record: whether it parked `v`'s domain
    /// (the other CPUs' idleness then changes, [`Self::publish_others`]).
    #[inline(always)]
    pub(super) fn deschedule_locked(
        &self,
        cpu: usize,
        rq: &mut RunQueue,
        r: &VcpuRec<P>,
        v: VcpuId,
        ran_ns: u64,
        still_runnable: bool,
    ) -> Result<bool, Error> {
        if !r.runs_on(cpu) {
            return Err(Error::NotRunningHere);
        }
        let burn = i64::try_from(ran_ns).unwrap_or(i64::MAX);
        r.update_credit(|c| c.saturating_sub(burn).max(-CREDIT_MAX));
        r.add_used(ran_ns);
        r.set_ran(true);
        rq.burnt = rq.burnt.saturating_add(ran_ns);
        r.set_boost(false);
        let runnable = still_runnable && !r.paused();
        r.set_state(if runnable {
            State::Queued(cpu)
        } else {
            State::Blocked
        });
        let dom = r.dom();
        let d = &self.doms[dom];
        dec_sat(&d.running);
        add_sat(&d.used_ns, ran_ns);
        let period_used = add_sat(&d.period_used_ns, ran_ns);
        let cap = d.cap.load(Relaxed);
        // Parked by the one deschedule that finds it unparked (vCPUs of the
        // domain may reach its cap on several CPUs at once).
        let parked = cap != 0 && period_used >= cap_budget(cap) && !d.parked.swap(true, Relaxed);
        if parked {
            rq.parks.push(dom as u32);
        }
        rq.current = None;
        if runnable {
            rq.queue.push_back(v);
        }
        Ok(parked)
    }

    /// Publishes every CPU but `cpu` again (a domain parked: CPUs whose
    /// waiting vCPUs are all its own are idle now). The caller holds no
    /// lock; rare (a capped domain, once per period at most).
    pub(super) fn publish_others(&self, cpu: usize) {
        for c in (0..self.cpus()).filter(|&c| c != cpu) {
            let rq = self.lock(c);
            self.publish(c, &rq);
        }
    }

    /// Right after [`Credit::tick`] on `cpu` answered `false`: until when
    /// (system time, exclusive) every later `tick` on `cpu` answers
    /// `false` too, with nothing to do (no accounting due), as long as
    /// `cpu` goes on running the same vCPU and none of these happens
    /// meanwhile: a vCPU is queued on `cpu` (a wake-up placed there), a
    /// domain's parameters change. It is the end of the running vCPU's
    /// slice or the next accounting, whichever comes first; 0 (no such
    /// time) when `cpu` runs nothing or runs a vCPU of a capped domain.
    ///
    /// Why that holds: `tick` says `true` for a running vCPU only when its
    /// slice is over, its domain is parked, or a waiting vCPU has a better
    /// priority. Only a capped domain parks (in a deschedule on any CPU,
    /// hence no promise for one); unparking happens only in the
    /// accounting and in `set_params`. Until the accounting, the
    /// priorities of the running vCPU and of those waiting here change
    /// only by their own deschedule or a wake-up (which queues);
    /// everything else (a steal, a pause, a removal) only takes vCPUs out
    /// of this queue.
    pub fn quiet_until(&self, cpu: usize) -> u64 {
        if cpu >= self.cpus() {
            return 0;
        }
        let rq = self.lock(cpu);
        self.quiet_locked(&rq)
    }

    fn quiet_locked(&self, rq: &RunQueue) -> u64 {
        let Some(t) = self.next_acct() else {
            return 0;
        };
        match rq.current {
            Some(v)
                if self.doms[self.vcpus[v.index as usize].dom()]
                    .cap
                    .load(Relaxed)
                    == 0 =>
            {
                rq.slice_end.min(t)
            }
            _ => 0,
        }
    }

    /// The periodic timer on `cpu`: runs the accounting when due and says
    /// whether `cpu` should reschedule now (its slice is over, its domain
    /// got parked, or better work waits; when idle: work waits).
    pub fn tick(&self, cpu: usize, now: u64) -> Result<bool, Error> {
        self.tick_quiet(cpu, now).map(|(leave, _)| leave)
    }

    /// [`Self::tick`] and, under the same lock, [`Self::quiet_until`]
    /// when it says `false` (0 when it says `true`).
    pub fn tick_quiet(&self, cpu: usize, now: u64) -> Result<(bool, u64), Error> {
        if cpu >= self.cpus() {
            return Err(Error::NoSuchCpu);
        }
        let mut rq = self.lock_after_account(cpu, now);
        let best = self.best_in(&mut rq).map(|(_, p)| p);
        let leave = match rq.current {
            None => best.is_some(),
            Some(cur) => {
                let c = cur.index as usize;
                now >= rq.slice_end || self.parked_vcpu(c) || best.is_some_and(|p| p < self.prio(c))
            }
        };
        let quiet = if leave { 0 } else { self.quiet_locked(&rq) };
        Ok((leave, quiet))
    }
}
