//! Which op group a hypercall number belongs to, in one `match` (Xen's
//! `hypercall_table` indexed by number is the model): the dispatch in
//! `mod.rs` runs the one decoder of that group instead of trying each
//! group's decoder in turn (an unknown number, `ENOSYS`, went through five
//! of them). The numbers are pvabi's; `tests/group.rs` checks that every
//! group's decoder knows exactly the numbers given to it here.
#![forbid(unsafe_code)]

use pvabi::{
    HC_DOMCTL_CONSOLE_WRITE, HC_DOMCTL_CREATE, HC_DOMCTL_HOST_INFO, HC_DOMCTL_SET_SCHED,
    HC_DOMCTL_SHUTDOWN_REQUEST, HC_EVTCHN_ALLOC_UNBOUND, HC_EVTCHN_BIND_VIRQ,
    HC_EVTCHN_INIT_CONTROL, HC_EVTCHN_POLL, HC_EVTCHN_SEND_WAIT, HC_GRANT_ACCESS, HC_GRANT_COPY,
    HC_GRANT_SET_MAX, HC_GRANT_UNMAP, HC_MGMT_WRITE, HC_PCI_LIST, HC_PCI_MSI_UNBIND,
};

/// An op group with its own decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// `evtchn/ops.rs`.
    Evtchn,
    /// `grant/ops.rs`.
    Grant,
    /// `domain/ctl_ops.rs` and `domain/ctl_life.rs` (privileged).
    Domctl,
    /// `hypercall/mgmt.rs` (privileged).
    Mgmt,
    /// `pci/config.rs`.
    Pci,
    /// No such hypercall: `ENOSYS`.
    None,
}

/// Numbers below this are looked up in [`TABLE`]; every number at or above
/// it is [`Group::None`] (checked when the table is built).
const TABLE_LEN: usize = 64;

/// [`by_match`] for each number below [`TABLE_LEN`], built at compile time:
/// the exit path's dispatch is one compare and one load, where the
/// `match`'s ranges cost a compare and branch each (the unknown number
/// passed them all).
static TABLE: [Group; TABLE_LEN] = {
    let mut t = [Group::None; TABLE_LEN];
    let mut nr = 0;
    while nr < TABLE_LEN {
        t[nr] = by_match(nr as u64);
        nr += 1;
    }
    // No group number lies past the table.
    assert!(matches!(by_match(TABLE_LEN as u64), Group::None));
    assert!(pvabi::HC_DOMCTL_PCI_ASSIGN < TABLE_LEN as u64);
    assert!(HC_PCI_MSI_UNBIND < TABLE_LEN as u64);
    assert!(HC_DOMCTL_CONSOLE_WRITE < TABLE_LEN as u64);
    assert!(pvabi::HC_DOMCTL_STAGE_ABORT < TABLE_LEN as u64);
    t
};

/// The group of `nr` (the numbers the dispatch in `mod.rs` answers itself
/// before asking this are [`Group::None`] here too).
#[inline(always)]
pub(crate) fn of(nr: u64) -> Group {
    match usize::try_from(nr).ok().and_then(|i| TABLE.get(i)) {
        Some(g) => *g,
        None => Group::None,
    }
}

/// The assignment itself, one `match` over pvabi's numbers ([`TABLE`] is
/// built from it; `tests/group.rs` checks the two agree on every number).
pub(crate) const fn by_match(nr: u64) -> Group {
    match nr {
        HC_EVTCHN_ALLOC_UNBOUND..=HC_EVTCHN_POLL
        | HC_EVTCHN_BIND_VIRQ..=HC_EVTCHN_INIT_CONTROL
        | HC_EVTCHN_SEND_WAIT => Group::Evtchn,
        HC_GRANT_ACCESS..=HC_GRANT_UNMAP | HC_GRANT_COPY..=HC_GRANT_SET_MAX => Group::Grant,
        HC_DOMCTL_CREATE..=HC_DOMCTL_HOST_INFO
        | HC_DOMCTL_SHUTDOWN_REQUEST
        | HC_DOMCTL_SET_SCHED
        | pvabi::HC_DOMCTL_MEM_TARGET
        | pvabi::HC_DOMCTL_STAGE_BEGIN..=pvabi::HC_DOMCTL_STAGE_ABORT
        | pvabi::HC_DOMCTL_PCI_ASSIGN => Group::Domctl,
        HC_MGMT_WRITE..=HC_DOMCTL_CONSOLE_WRITE => Group::Mgmt,
        HC_PCI_LIST..=HC_PCI_MSI_UNBIND => Group::Pci,
        _ => Group::None,
    }
}
