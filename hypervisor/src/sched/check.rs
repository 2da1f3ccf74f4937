//! The scheduler's invariants, checked from outside (tests, debug builds).

use alloc::vec;
use core::sync::atomic::Ordering::Relaxed;

use super::CREDIT_MAX;
use super::credit::{Credit, State};

impl<P> Credit<P> {
    /// Checks every invariant; O(vCPUs + domains + queued). The first one
    /// broken is named.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        // Where each vCPU slot was found: queue appearances, current-of.
        let mut queued = vec![0u32; self.vcpus.len()];
        let mut running = vec![None; self.vcpus.len()];
        for (c, rq) in self.cpus.iter().enumerate() {
            for id in &rq.queue {
                let r = self
                    .vcpus
                    .get(id.index as usize)
                    .ok_or("queue: bad index")?;
                if !r.live || r.generation != id.generation {
                    return Err("queue holds a removed vCPU");
                }
                if r.state != State::Queued(c) {
                    return Err("queued vCPU not in the state Queued(this CPU)");
                }
                queued[id.index as usize] += 1;
            }
            if let Some(id) = rq.current {
                let r = self
                    .vcpus
                    .get(id.index as usize)
                    .ok_or("current: bad index")?;
                if !r.live || r.generation != id.generation {
                    return Err("a CPU runs a removed vCPU");
                }
                if r.state != State::Running(c) {
                    return Err("current vCPU not in the state Running(this CPU)");
                }
                running[id.index as usize] = Some(c);
            }
        }
        let mut vcpus_of = vec![0u32; self.doms.len()];
        let mut running_of = vec![0u32; self.doms.len()];
        let mut in_active = vec![0u32; self.vcpus.len()];
        let joined = self.cpus.iter().flat_map(|rq| &rq.joined);
        for &a in self.active.iter().chain(joined) {
            *in_active.get_mut(a as usize).ok_or("active: bad index")? += 1;
        }
        for (i, r) in self.vcpus.iter().enumerate() {
            if in_active[i] > 1 || (in_active[i] == 1) != r.active {
                return Err("active flag and active list disagree");
            }
            if !r.live {
                if queued[i] != 0 || running[i].is_some() || r.active {
                    return Err("a removed vCPU is still somewhere");
                }
                continue;
            }
            let d = self.doms.get(r.dom as usize).ok_or("vCPU of no domain")?;
            if !d.live {
                return Err("live vCPU of a removed domain");
            }
            vcpus_of[r.dom as usize] += 1;
            match r.state {
                State::Blocked if queued[i] != 0 || running[i].is_some() => {
                    return Err("blocked vCPU in a queue or running");
                }
                State::Queued(_) if queued[i] != 1 || running[i].is_some() => {
                    return Err("queued vCPU not in exactly one queue");
                }
                State::Running(_) if queued[i] != 0 || running[i].is_none() => {
                    return Err("running vCPU not current on exactly its CPU");
                }
                State::Running(_) => running_of[r.dom as usize] += 1,
                _ => {}
            }
            if r.state != State::Blocked && !r.active {
                return Err("runnable vCPU not in the active list");
            }
            if r.credit > CREDIT_MAX || r.credit < -CREDIT_MAX {
                return Err("credit out of bounds");
            }
        }
        let mut in_parked = vec![0u32; self.doms.len()];
        let parks = self.cpus.iter().flat_map(|rq| &rq.parks);
        for &p in self.parked.iter().chain(parks) {
            *in_parked.get_mut(p as usize).ok_or("parked: bad index")? += 1;
        }
        for (i, d) in self.doms.iter().enumerate() {
            if in_parked[i] > 1 || (in_parked[i] == 1) != d.parked.load(Relaxed) {
                return Err("parked flag and parked list disagree");
            }
            if d.live && (d.vcpus != vcpus_of[i] || d.running.load(Relaxed) != running_of[i]) {
                return Err("domain vCPU counts wrong");
            }
            if d.live && (d.weight.load(Relaxed) == 0) {
                return Err("weight 0");
            }
        }
        Ok(())
    }
}
