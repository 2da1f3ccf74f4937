//! `console-stamp` (a measuring knob, off by default): each guest console
//! line the hypervisor prints carries the time since its domain's creation
//! began and the domain's exits so far, `[dom1 linux +12345678ns 2143x]
//! text`. The Linux benchmark (`cargo xtask bench --only linux`) reads the
//! `Run /init` line's stamp: domain creation (memory, image and initramfs
//! copied, boot parameters, nested tables) to `/init`, which the kernel's
//! own clock (started at its `tsc_early_init`) does not hold (issue 13).
//!
//! The time is the system clock's (`sched/clock.rs`) at print time: a
//! line is printed by the exit that wrote it unless the domain's output
//! queue is behind (`console/out.rs`), so a stamp may be late by the
//! queue's lag, never early. Off, nothing is recorded and nothing costs.
#![forbid(unsafe_code)]

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::domain::ids::DomainId;
use crate::domain::lifecycle::Domain;
use crate::sync::Mutex;

static ON: AtomicBool = AtomicBool::new(false);

/// Live stamped domains: id, creation start (system ns), the domain.
static CREATED: Mutex<Vec<(DomainId, u64, Weak<Domain>)>> = Mutex::new(Vec::new());

/// Turns stamping on (the `console-stamp` option, at boot).
pub fn enable() {
    ON.store(true, Ordering::Release);
}

/// Whether lines are stamped.
pub fn on() -> bool {
    ON.load(Ordering::Acquire)
}

/// The start of a domain's creation (0 when stamping is off).
pub(crate) fn begin() -> u64 {
    if on() {
        crate::sched::clock::now_ns()
    } else {
        0
    }
}

/// `d` was created, its creation having begun at `t0` ([`begin`]).
pub(crate) fn created(d: &Arc<Domain>, t0: u64) {
    if on() {
        let mut c = CREATED.lock();
        c.retain(|(_, _, w)| w.strong_count() > 0);
        c.push((d.id, t0, Arc::downgrade(d)));
    }
}

/// Nanoseconds since domain `id`'s creation began and its exits so far,
/// if it is stamped and alive.
pub(crate) fn stamp(id: DomainId) -> Option<(u64, u64)> {
    if !on() {
        return None;
    }
    let now = crate::sched::clock::now_ns();
    let c = CREATED.lock();
    let (_, t0, w) = c.iter().find(|(i, _, _)| *i == id)?;
    let d = w.upgrade()?;
    Some((now.saturating_sub(*t0), d.exits.load(Ordering::Relaxed)))
}
