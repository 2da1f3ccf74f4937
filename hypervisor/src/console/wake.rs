//! What wakes an idle control domain (issue 15, "an idle host is idle"):
//! pvabi `VIRQ_MGMT_RX` when the management line's receive interrupt came,
//! `VIRQ_CONSOLE_OUT` when another domain's console ring went from empty to
//! holding output. With those (and `VIRQ_DOM_EXC`) bound, dom0 blocks
//! without a deadline while nothing happens, instead of polling every few
//! milliseconds.
//!
//! `VIRQ_DOM_EXC` is raised twice for an ending domain: when it is marked
//! ended (`Domain::finish`), and again once its end report is kept
//! (`domain/ended.rs`), which happens only when its last reference goes
//! (`Drop for Domain`), possibly on another CPU and later. dom0 records an
//! end from that report: woken only by the first raise, it may find the
//! domain still listed (or gone with no report yet) and block again with
//! nothing left to wake it (`dom0_qemu_console` saw the end 59 s late,
//! when the next `hvctl` request came). The drop only sets a flag
//! ([`note_end_recorded`]: it may run with any lock held); [`poll`]
//! raises the virq.
//!
//! The interrupt handler only sets a flag (`arch/serial.rs`): raising a
//! virq takes the domain table and event locks, which interrupted code may
//! hold. The run loop calls [`poll`] after every exit and before every
//! scheduling decision, so the virq is raised at the next of those on any
//! CPU: the interrupt itself ends a halt or exits a guest.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use pvabi::{Error, VIRQ_CONSOLE_OUT, VIRQ_DOM_EXC, VIRQ_MGMT_RX};

use crate::domain::lifecycle::{DOMAINS, Domain};
use crate::evtchn::live::raise_virq_everywhere;
use crate::platform::{P, Platform};

/// Raises `virq` in every live privileged domain that bound it.
fn raise_privileged(virq: u32) {
    let doms: Vec<Arc<Domain>> = DOMAINS
        .lock()
        .domains()
        .filter(|&(_, d)| d.privileged && !d.dying())
        .map(|(_, d)| d.clone())
        .collect();
    for d in doms {
        raise_virq_everywhere(&d, virq);
    }
}

/// A domain's end report was kept since [`poll`] last looked.
static END_RECORDED: AtomicBool = AtomicBool::new(false);

/// A domain's end report is now kept (`domain/ended.rs`): the next
/// [`poll`] raises `VIRQ_DOM_EXC`. Only a flag: the caller (the last drop
/// of a domain) may hold any lock.
pub(crate) fn note_end_recorded() {
    END_RECORDED.store(true, Ordering::Release);
    crate::hostwork::note(crate::hostwork::END_RECORDED);
}

/// Raises `VIRQ_MGMT_RX` if the management line's interrupt came, and
/// `VIRQ_DOM_EXC` if a domain's end report was kept.
#[inline]
pub fn poll() {
    if P::take_mgmt_rx() {
        raise_privileged(VIRQ_MGMT_RX);
    }
    if END_RECORDED.load(Ordering::Relaxed) && END_RECORDED.swap(false, Ordering::AcqRel) {
        raise_privileged(VIRQ_DOM_EXC);
    }
}

/// A console ring went from empty to holding output (no lock held).
pub(crate) fn console_out() {
    raise_privileged(VIRQ_CONSOLE_OUT);
}

/// Whether `d` may bind `virq`: the control domain's wake-ups are for
/// privileged domains only, and `VIRQ_MGMT_RX` only where the interrupt
/// exists (else `ENOENT`: the caller polls the line).
pub(crate) fn may_bind(d: &Domain, virq: u32) -> Result<(), Error> {
    match virq {
        VIRQ_MGMT_RX | VIRQ_CONSOLE_OUT if !d.privileged => Err(Error::Perm),
        VIRQ_MGMT_RX if !P::mgmt_irq() => Err(Error::NoEntry),
        _ => Ok(()),
    }
}
