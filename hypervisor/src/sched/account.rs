//! The accounting: once per period, credit by weight to active vCPUs.

use core::sync::atomic::Ordering::Relaxed;

use super::credit::{Acct, Credit, DomAcct, DomRec, State, add_sat, cap_budget};
use super::{CREDIT_MAX, PERIOD_NS};

/// What a domain's use of the period carries into the next: nothing,
/// unless it is capped and ran past its budget (a slice ends when the
/// CPU's timer interrupt comes, which may be late: an emulator under
/// load, interrupts held off). Then the overrun is a debt the next
/// periods' budgets pay first (at most one period's worth), so over time
/// a capped domain stays at its cap, however late its slices end.
fn carried(rec: &DomRec) -> u64 {
    let cap = rec.cap.load(Relaxed);
    if cap == 0 {
        return 0;
    }
    rec.period_used_ns
        .load(Relaxed)
        .saturating_sub(cap_budget(cap))
        .min(PERIOD_NS)
}

impl<P> Credit<P> {
    /// When the next accounting is due (`None` before the first call).
    #[inline(always)]
    pub(super) fn next_acct(&self) -> Option<u64> {
        match self.next_acct.load(Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// Whether a call at `now` would run the accounting (or, the first
    /// call, set when it is due): the "not yet" test, which needs no lock.
    /// A call that finds it `true` takes every lock and asks again under
    /// them; one that finds it `false` needs only its own, since the clock
    /// never goes back and only the accounting moves the time, forward.
    #[inline(always)]
    pub fn due(&self, now: u64) -> bool {
        // 0 before the first call: due at any `now`.
        now >= self.next_acct.load(Relaxed)
    }

    /// Runs the accounting when its period is over (the caller holds no
    /// run-queue lock). The common answer, "not yet", is inlined (the
    /// release build optimizes for size and would call out for it, several
    /// times per event round trip).
    #[inline(always)]
    pub(super) fn account_if_due(&self, now: u64) {
        if self.due(now) {
            self.account_due(now);
        }
    }

    #[inline(never)]
    fn account_due(&self, now: u64) {
        let mut all = self.lock_all();
        match self.next_acct() {
            None => self.next_acct.store(now.saturating_add(PERIOD_NS), Relaxed),
            Some(t) if now >= t => {
                let burnt = Self::join_staged(&mut all);
                self.account(&mut all.acct, burnt);
                self.publish_all(&all);
                // After a long quiet time, no backlog of periods.
                let next = t.saturating_add(PERIOD_NS);
                self.next_acct.store(
                    if next <= now {
                        now.saturating_add(PERIOD_NS)
                    } else {
                        next
                    },
                    Relaxed,
                );
            }
            Some(_) => {}
        }
    }

    /// Hands out one period's credit to the active vCPUs by weight, drops
    /// vCPUs that blocked and did not run from the active list, unparks
    /// (every lock held: `acct` is the accounting's, under them). The
    /// credit handed out is the CPU time charged since the last pass
    /// (`burnt`): so the sum of all credit stays where it was. Handing out
    /// a whole period per CPU regardless let credit grow by whatever no
    /// vCPU was charged (the hypervisor's time between two guests, 3 % of
    /// each slice under an emulator), until every CPU-bound vCPU sat at the
    /// upper bound, UNDER, and took turns whatever its weight; capping the
    /// grant at a period per CPU shrank it instead when slices ended late
    /// and a pass came late with more than a period charged
    /// (`tests_sim::weights_hold_whatever_the_overhead_and_phase`).
    fn account(&self, acct: &mut Acct, burnt: u64) {
        let mut active = core::mem::take(&mut acct.active);
        let mut doms = core::mem::take(&mut acct.scratch);
        doms.clear();
        let vcpus = &self.vcpus;
        active.retain(|&a| {
            let r = &vcpus[a as usize];
            let keep = r.live() && (r.state() != State::Blocked || r.ran());
            r.set_active(keep);
            r.set_ran(false);
            keep
        });
        let da = &mut acct.doms;
        for &a in &active {
            let r = &self.vcpus[a as usize];
            // Room to grow before the credit bound: a vCPU that does not
            // use its credit (it sits at the bound) has none, so its share
            // goes to the others instead of being lost.
            let room = u64::try_from(CREDIT_MAX.saturating_sub(r.credit())).unwrap_or(0);
            let d = r.dom();
            let rec = &mut da[d];
            if rec.n_active == 0 {
                rec.grant = 0;
                doms.push(d as u32);
            }
            rec.n_active = rec.n_active.saturating_add(1);
            rec.grant = rec.grant.saturating_add(room);
        }
        // Water-filling: share `total` by weight among domains with room
        // left; what one cannot take (bound, cap, too few vCPUs) goes to
        // the rest in the next round.
        let mut remaining = burnt;
        for &d in &doms {
            let rec = &mut da[d as usize];
            let mut room = rec.grant.min(rec.n_active.saturating_mul(PERIOD_NS));
            let cap = self.doms[d as usize].cap.load(Relaxed);
            if cap != 0 {
                room = room.min(cap_budget(cap));
            }
            rec.room = room;
            rec.grant = 0;
        }
        let weight_of = |d: u32| u64::from(self.doms[d as usize].weight.load(Relaxed));
        for _round in 0..4 {
            let hungry = |r: &DomAcct| r.grant < r.room;
            let weight: u64 = doms
                .iter()
                .filter(|&&d| hungry(&da[d as usize]))
                .map(|&d| weight_of(d))
                .sum();
            if weight == 0 || remaining == 0 {
                break;
            }
            let mut handed = 0u64;
            for &d in &doms {
                let rec = &mut da[d as usize];
                if hungry(rec) {
                    let offer =
                        u128::from(remaining) * u128::from(weight_of(d)) / u128::from(weight);
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
            let rec = &mut da[d as usize];
            rec.grant /= rec.n_active.max(1);
            rec.n_active = 0;
            let dr = &self.doms[d as usize];
            // Parked ones are carried over below, once.
            if !dr.parked.load(Relaxed) {
                dr.period_used_ns.store(carried(dr), Relaxed);
            }
        }
        for &a in &active {
            let r = &self.vcpus[a as usize];
            let grant = i64::try_from(da[r.dom()].grant).unwrap_or(CREDIT_MAX);
            r.update_credit(|c| c.saturating_add(grant).min(CREDIT_MAX));
        }
        let recs = &self.doms;
        acct.parked.retain(|&p| {
            let rec = &recs[p as usize];
            let used = carried(rec);
            rec.period_used_ns.store(used, Relaxed);
            // Still in debt for a whole budget: parked one more period.
            let parked = used >= cap_budget(rec.cap.load(Relaxed));
            rec.parked.store(parked, Relaxed);
            parked
        });
        add_sat(&self.pass_steps, active.len() as u64);
        acct.active = active;
        acct.scratch = doms;
    }
}
