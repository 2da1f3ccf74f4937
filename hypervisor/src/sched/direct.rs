//! The direct switch to a vCPU whose wake-up was left to it (issue 11):
//! a `HC_EVTCHN_SEND_WAIT` on one CPU wakes a vCPU that last ran on that
//! CPU and then blocks; instead of [`Credit::wake`] queueing the woken
//! vCPU (placement over every CPU) and [`Credit::switch_to`] taking it out
//! of the queue again, both under the scheduler's lock, one call
//! deschedules the sender and starts the woken vCPU here. seL4's
//! Call / ReplyRecv hands the CPU over in the same way.

use core::sync::atomic::Ordering::Relaxed;

use super::credit::{Credit, State};
use super::{Decision, Error, Placed, VcpuId};

/// What [`Credit::wake_switch`] did with the woken vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handed {
    /// What the calling CPU runs now (the woken vCPU, or what
    /// `pick_next` chose when the woken one had no boost); `None`: the
    /// CPU picks as usual.
    pub run: Option<Decision>,
    /// Was woken the usual way instead and queued there (kick that CPU if
    /// it says so).
    pub placed: Option<Placed>,
}

impl<P> Credit<P> {
    /// `from` blocks on `cpu` after `ran_ns`, having woken `to`, whose
    /// wake the caller did not hand to [`Credit::wake`]. Deschedules
    /// `from` (as [`Credit::descheduled`] with `still_runnable = false`);
    /// then, when `to` is blocked here (its wake left to this call), has
    /// credit (it would get the wake boost, so nothing waiting can be
    /// better: `pick_next` would choose it, or an equal one ahead of it in
    /// FIFO order) and its domain is not parked, runs it on `cpu` at once
    /// with a boosted slice. Otherwise `to` is woken as by
    /// [`Credit::wake`]; when that places it on `cpu`, `cpu`'s
    /// [`Credit::pick_next`] is made here too (its decision in
    /// [`Handed::run`], `None` when it would idle), else the caller kicks
    /// the CPU it was placed on as `wake` says and picks as usual.
    /// A `to` that was woken meanwhile by someone else (so it is queued)
    /// is handled as [`Credit::switch_to`] would; `to` unknown or stale is
    /// no error (nothing is done with it).
    pub fn wake_switch(
        &self,
        cpu: usize,
        from: VcpuId,
        ran_ns: u64,
        to: VcpuId,
        now: u64,
    ) -> Result<Handed, Error> {
        self.wake_switch_if(cpu, from, ran_ns, to, now, || true)
    }

    /// [`Self::wake_switch`], asking `still` once `to` is claimed, as
    /// [`Credit::wake_if`] does: when it says `false`, `to` stays blocked
    /// and only `from` is descheduled.
    pub fn wake_switch_if(
        &self,
        cpu: usize,
        from: VcpuId,
        ran_ns: u64,
        to: VcpuId,
        now: u64,
        still: impl FnOnce() -> bool,
    ) -> Result<Handed, Error> {
        let mut rq = self.deschedule_for_switch(cpu, from, ran_ns, now)?;
        let none = Handed {
            run: None,
            placed: None,
        };
        let Ok((j, r)) = self.vcpu_rec(to) else {
            self.publish(cpu, &rq);
            return Ok(none);
        };
        crate::sync::point();
        if !r.claim() {
            // Not blocked: woken meanwhile by someone else.
            let run = self.switch_queued(cpu, &mut rq, to, now);
            self.publish(cpu, &rq);
            return Ok(Handed {
                run: run?,
                placed: None,
            });
        }
        crate::sync::point();
        if !still() {
            r.unclaim();
            self.publish(cpu, &rq);
            return Ok(none);
        }
        let d = &self.doms[r.dom()];
        let parked = d.parked.load(Relaxed);
        let boost = r.credit() >= 0;
        // Run here at once, as the usual wake and pick would:
        // - boosted (credit >= 0, its domain not parked): `wake` places it
        //   here (this CPU runs nothing now; its last CPU or an idle one),
        //   boosted, at the back of the queue, and nothing waiting can be
        //   better (`pick_next` would choose it, or an equal one ahead of
        //   it in FIFO order: the time goes to the vCPU the sender waits
        //   on);
        // - OVER, alone here, and no other CPU holds a vCPU: placed on its
        //   idle last CPU, unboosted, picked as the only candidate, nothing
        //   to steal.
        // Either way without going through the queue: settled as running
        // here under this CPU's lock, which a pause or a second wake-up
        // takes before it looks at a vCPU queued or running here, so none
        // can tell the difference.
        if !parked && (boost || (r.last_ran_on(cpu) && rq.queue.is_empty() && self.alone(cpu))) {
            if !r.settle(State::Running(cpu)) {
                self.publish(cpu, &rq);
                return Ok(none);
            }
            r.set_boost(boost);
            return Ok(Handed {
                run: Some(self.run_here(cpu, &mut rq, j, r, d, to, now)),
                placed: None,
            });
        }
        self.publish(cpu, &rq);
        // No boost: woken as usual. Placed here (this CPU runs nothing
        // now, so unless others wait here it is where the placement puts
        // it), this CPU's next pick is made at once, under the same lock;
        // it may choose another vCPU.
        let target = self.place_cpu(j);
        if target == cpu {
            let _ = self.place(j, to, cpu, &mut rq);
            let d = self.pick_locked(cpu, &mut rq, now)?;
            return Ok(Handed {
                run: Some(d).filter(|d| d.vcpu.is_some()),
                placed: None,
            });
        }
        drop(rq);
        let mut there = self.lock(target);
        let placed = self.place(j, to, target, &mut there);
        self.publish(target, &there);
        Ok(Handed { run: None, placed })
    }
}
