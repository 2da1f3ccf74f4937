//! The scheduler's invariants, checked from outside (tests, debug builds).

use alloc::vec;
use core::sync::atomic::Ordering::Relaxed;

use super::CREDIT_MAX;
use super::credit::{Credit, State};

impl<P> Credit<P> {
    /// Checks every invariant with every lock held; O(vCPUs + domains +
    /// queued). The first one broken is named.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        let all = self.lock_all();
        let nv = self.vcpus.len();
        let nd = self.doms.len();
        // Where each vCPU slot was found: queue appearances, current-of.
        let mut queued = vec![0u32; nv];
        let mut running = vec![None; nv];
        for (c, rq) in all.rqs.iter().enumerate() {
            for id in &rq.queue {
                let r = self
                    .vcpus
                    .get(id.index as usize)
                    .ok_or("queue: bad index")?;
                if !r.live() || r.generation() != id.generation {
                    return Err("queue holds a removed vCPU");
                }
                if r.state() != State::Queued(c) {
                    return Err("queued vCPU not in the state Queued(this CPU)");
                }
                queued[id.index as usize] += 1;
            }
            if let Some(id) = rq.current {
                let r = self
                    .vcpus
                    .get(id.index as usize)
                    .ok_or("current: bad index")?;
                if !r.live() || r.generation() != id.generation {
                    return Err("a CPU runs a removed vCPU");
                }
                if r.state() != State::Running(c) {
                    return Err("current vCPU not in the state Running(this CPU)");
                }
                running[id.index as usize] = Some(c);
            }
            let cpu = &self.cpus[c];
            if cpu.load.load(Relaxed) as usize != rq.load() {
                return Err("published load and queue disagree");
            }
            let idle = rq.current.is_none()
                && rq
                    .queue
                    .iter()
                    .all(|id| self.parked_vcpu(id.index as usize));
            if cpu.idle.load(Relaxed) != idle {
                return Err("published idleness and queue disagree");
            }
        }
        let mut vcpus_of = vec![0u32; nd];
        let mut running_of = vec![0u32; nd];
        let mut in_active = vec![0u32; nv];
        let joined = all.rqs.iter().flat_map(|rq| rq.joined.iter());
        for &a in all.acct.active.iter().chain(joined) {
            *in_active.get_mut(a as usize).ok_or("active: bad index")? += 1;
        }
        for i in 0..nv {
            let r = &self.vcpus[i];
            if in_active[i] > 1 || (in_active[i] == 1) != r.active() {
                return Err("active flag and active list disagree");
            }
            if !r.live() {
                if queued[i] != 0 || running[i].is_some() || r.active() {
                    return Err("a removed vCPU is still somewhere");
                }
                continue;
            }
            let d = self.doms.get(r.dom()).ok_or("vCPU of no domain")?;
            if !d.live.load(Relaxed) {
                return Err("live vCPU of a removed domain");
            }
            vcpus_of[r.dom()] += 1;
            match r.state() {
                State::Blocked if queued[i] != 0 || running[i].is_some() => {
                    return Err("blocked vCPU in a queue or running");
                }
                State::Queued(_) if queued[i] != 1 || running[i].is_some() => {
                    return Err("queued vCPU not in exactly one queue");
                }
                State::Running(_) if queued[i] != 0 || running[i].is_none() => {
                    return Err("running vCPU not current on exactly its CPU");
                }
                State::Running(_) => running_of[r.dom()] += 1,
                State::Placing => return Err("a vCPU is still being placed"),
                State::Gone => return Err("a live vCPU in the state Gone"),
                _ => {}
            }
            if r.state() != State::Blocked && !r.active() {
                return Err("runnable vCPU not in the active list");
            }
            if r.credit() > CREDIT_MAX || r.credit() < -CREDIT_MAX {
                return Err("credit out of bounds");
            }
        }
        let mut in_parked = vec![0u32; nd];
        let parks = all.rqs.iter().flat_map(|rq| rq.parks.iter());
        for &p in all.acct.parked.iter().chain(parks) {
            *in_parked.get_mut(p as usize).ok_or("parked: bad index")? += 1;
        }
        for i in 0..nd {
            let d = &self.doms[i];
            if in_parked[i] > 1 || (in_parked[i] == 1) != d.parked.load(Relaxed) {
                return Err("parked flag and parked list disagree");
            }
            let live = d.live.load(Relaxed);
            if live
                && (d.vcpus.load(Relaxed) != vcpus_of[i]
                    || d.running.load(Relaxed) != running_of[i])
            {
                return Err("domain vCPU counts wrong");
            }
            if live && (d.weight.load(Relaxed) == 0) {
                return Err("weight 0");
            }
        }
        Ok(())
    }
}
