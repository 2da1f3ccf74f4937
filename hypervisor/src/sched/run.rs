//! The per-CPU operations: wake, block, pick, deschedule, tick.

use core::sync::atomic::Ordering::Relaxed;

use super::credit::{Credit, Prio, State, add_sat, cap_budget, dec_sat, inc};
use super::{BOOST_SLICE_NS, CREDIT_MAX, Decision, Error, MIN_SLICE_NS, Placed, SLICE_NS, VcpuId};

// The small helpers here are inlined by force: the release build optimizes
// for size and would otherwise call out for each (a few instructions of
// work, as many again for the call), on every wake, pick and switch.
impl<P> Credit<P> {
    #[inline(always)]
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

    #[inline(always)]
    fn parked_vcpu(&self, i: usize) -> bool {
        self.doms[self.vcpus[i].dom as usize].parked.load(Relaxed)
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
        let rq = &mut self.cpus[cpu];
        rq.steps = rq.steps.saturating_add(seen);
        best
    }

    /// `i` is runnable on `cpu` (queued or started there): active from
    /// now to the accounting at least, staged on `cpu`.
    #[inline(always)]
    pub(super) fn mark_active(&mut self, i: usize, cpu: usize) {
        if !self.vcpus[i].active {
            self.vcpus[i].active = true;
            self.cpus[cpu].joined.push(i as u32);
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
        self.mark_active(i, cpu);
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
    pub fn pick_next(&mut self, cpu: usize, now: u64) -> Result<Decision, Error> {
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
            let slice_ns = match self.next_acct() {
                Some(t) if parked_here => t.saturating_sub(now).max(MIN_SLICE_NS),
                _ => u64::MAX,
            };
            return Ok(Decision {
                vcpu: None,
                slice_ns,
            });
        };
        self.start(cpu, q, pos, now)
    }

    /// Runs the vCPU at `pos` of `q`'s queue on `cpu` (which runs nothing):
    /// its slice (boosted, cut to the accounting and its domain's cap).
    pub(super) fn start(
        &mut self,
        cpu: usize,
        q: usize,
        pos: usize,
        now: u64,
    ) -> Result<Decision, Error> {
        // The ends without `VecDeque::remove`'s general shuffle: a direct
        // switch takes the vCPU just woken (the back), a pick often the
        // front.
        let queue = &mut self.cpus[q].queue;
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
        let dom = self.vcpus[i].dom as usize;
        let running = inc(&self.doms[dom].running);
        let rec = &mut self.vcpus[i];
        rec.state = State::Running(cpu);
        rec.last_cpu = Some(cpu);
        let mut slice = if rec.boost { BOOST_SLICE_NS } else { SLICE_NS };
        self.mark_active(i, cpu);
        if let Some(t) = self.next_acct() {
            slice = slice.min(t.saturating_sub(now));
        }
        let d = &self.doms[dom];
        let cap = d.cap.load(Relaxed);
        if cap != 0 {
            let left = cap_budget(cap).saturating_sub(d.period_used_ns.load(Relaxed));
            slice = slice.min(left / u64::from(running.max(1)));
        }
        let slice_ns = slice.max(MIN_SLICE_NS);
        let rq = &mut self.cpus[cpu];
        rq.current = Some(v);
        rq.slice_end = now.saturating_add(slice_ns);
        Ok(Decision {
            vcpu: Some(v),
            slice_ns,
        })
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
        &mut self,
        cpu: usize,
        from: VcpuId,
        ran_ns: u64,
        to: VcpuId,
        now: u64,
    ) -> Result<Option<Decision>, Error> {
        self.descheduled(cpu, from, ran_ns, now, false)?;
        self.switch_queued(cpu, to, now)
    }

    /// The part of [`Credit::switch_to`] after the deschedule: runs `to`
    /// on the idle `cpu` when it waits in that CPU's queue and may go
    /// first (see there); `Ok(None)` otherwise.
    pub(super) fn switch_queued(
        &mut self,
        cpu: usize,
        to: VcpuId,
        now: u64,
    ) -> Result<Option<Decision>, Error> {
        let Ok(j) = self.vcpu_index(to) else {
            return Ok(None);
        };
        if self.vcpus[j].state != State::Queued(cpu) || self.parked_vcpu(j) {
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
        for (k, &id) in self.cpus[cpu].queue.iter().enumerate() {
            if id == to {
                pos = Some(k);
            } else {
                let i = id.index as usize;
                better |= !self.parked_vcpu(i) && self.prio(i) < p;
            }
        }
        let rq = &mut self.cpus[cpu];
        rq.steps = rq.steps.saturating_add(rq.queue.len() as u64);
        match pos {
            Some(pos) if !better => self.start(cpu, cpu, pos, now).map(Some),
            _ => Ok(None),
        }
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
        let d = &self.doms[dom];
        dec_sat(&d.running);
        add_sat(&d.used_ns, ran_ns);
        let period_used = add_sat(&d.period_used_ns, ran_ns);
        let cap = d.cap.load(Relaxed);
        // Parked by the one deschedule that finds it unparked (vCPUs of the
        // domain may reach its cap on several CPUs at once).
        if cap != 0 && period_used >= cap_budget(cap) && !d.parked.swap(true, Relaxed) {
            self.cpus[cpu].parks.push(dom as u32);
        }
        let rq = &mut self.cpus[cpu];
        rq.current = None;
        if runnable {
            rq.queue.push_back(v);
        }
        self.account_if_due(now);
        Ok(())
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
        let (Some(rq), Some(t)) = (self.cpus.get(cpu), self.next_acct()) else {
            return 0;
        };
        match rq.current {
            Some(v)
                if self.doms[self.vcpus[v.index as usize].dom as usize]
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
}
