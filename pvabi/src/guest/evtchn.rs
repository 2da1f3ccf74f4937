//! The evtchn op group (ABI 1.1): [`crate::HC_EVTCHN_ALLOC_UNBOUND`],
//! [`crate::HC_EVTCHN_BIND_INTERDOMAIN`], [`crate::HC_EVTCHN_SEND`],
//! [`crate::HC_EVTCHN_CLOSE`], [`crate::HC_EVTCHN_MASK`],
//! [`crate::HC_EVTCHN_UNMASK`], [`crate::HC_EVTCHN_POLL`]; and (1.3)
//! [`crate::HC_EVTCHN_BIND_VIRQ`], [`crate::HC_EVTCHN_BIND_IPI`],
//! [`crate::HC_EVTCHN_STATUS`], [`crate::HC_EVTCHN_BIND_VCPU`]; and (1.4)
//! [`crate::HC_EVTCHN_SEND_WAIT`] ([`send_wait`]). Upcalls
//! ([`crate::HC_EVTCHN_INIT_CONTROL`]) are in [`super::upcall`].
//!
//! A receiver waits for [`crate::EVENT_CHANNEL`] (e.g. with
//! [`super::sched::wait_for`]) and then calls [`poll`] until it returns
//! `None`: a port raised again while still pending is not notified twice.

use zerocopy::{FromZeros, IntoBytes};

use super::{hypercall6, status};
use crate::{
    Error, EvtchnStatus, HC_EVTCHN_ALLOC_UNBOUND, HC_EVTCHN_BIND_INTERDOMAIN, HC_EVTCHN_BIND_IPI,
    HC_EVTCHN_BIND_VCPU, HC_EVTCHN_BIND_VIRQ, HC_EVTCHN_CLOSE, HC_EVTCHN_MASK, HC_EVTCHN_POLL,
    HC_EVTCHN_SEND, HC_EVTCHN_SEND_WAIT, HC_EVTCHN_STATUS, HC_EVTCHN_UNMASK,
};

fn call(nr: u64, a: u64, b: u64) -> Result<u64, Error> {
    status(hypercall6(nr, [a, b, 0, 0, 0, 0]))
}

/// A port number from RAX (the hypervisor's ports fit in 32 bits).
fn port(v: u64) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Invalid)
}

/// Allocates a port that domain `remote` may connect to; returns it.
pub fn alloc_unbound(remote: u32) -> Result<u32, Error> {
    port(call(HC_EVTCHN_ALLOC_UNBOUND, remote.into(), 0)?)
}

/// Connects a new local port to `remote_port` of domain `remote` (which
/// allocated it unbound for this domain); returns the local port.
pub fn bind_interdomain(remote: u32, remote_port: u32) -> Result<u32, Error> {
    port(call(
        HC_EVTCHN_BIND_INTERDOMAIN,
        remote.into(),
        remote_port.into(),
    )?)
}

/// Notifies the peer of `port`.
pub fn send(port: u32) -> Result<(), Error> {
    call(HC_EVTCHN_SEND, port.into(), 0).map(|_| ())
}

/// Sends on `send` (`None`: nothing), then sleeps until port `wait` is
/// pending or `deadline` (system ns) passes, in one hypercall
/// ([`crate::HC_EVTCHN_SEND_WAIT`]). `Ok(true)`: `wait` was pending and is
/// taken (cleared). `Ok(false)`: the deadline passed or another event woke
/// this vCPU; take ports with [`poll`] and events with
/// [`super::sched::poll`]. On an error nothing was sent.
pub fn send_wait(send: Option<u32>, wait: u32, deadline: Option<u64>) -> Result<bool, Error> {
    let got = status(hypercall6(
        HC_EVTCHN_SEND_WAIT,
        [
            send.map_or(0, u64::from),
            wait.into(),
            deadline.unwrap_or(0),
            0,
            0,
            0,
        ],
    ))?;
    Ok(got == u64::from(wait))
}

/// Frees `port` (its peer's port becomes unbound and pending).
pub fn close(port: u32) -> Result<(), Error> {
    call(HC_EVTCHN_CLOSE, port.into(), 0).map(|_| ())
}

/// Holds back notifications of `port` (it still becomes pending).
pub fn mask(port: u32) -> Result<(), Error> {
    call(HC_EVTCHN_MASK, port.into(), 0).map(|_| ())
}

/// Lets `port` notify again (at once if it is pending).
pub fn unmask(port: u32) -> Result<(), Error> {
    call(HC_EVTCHN_UNMASK, port.into(), 0).map(|_| ())
}

/// Takes the next pending, unmasked port (round-robin), clearing it;
/// `None` when no port is pending.
pub fn poll() -> Result<Option<u32>, Error> {
    let p = port(call(HC_EVTCHN_POLL, 0, 0)?)?;
    Ok((p != 0).then_some(p))
}

/// A new port the hypervisor raises for virq `virq` ([`crate::VIRQ_TIMER`],
/// ...) of vCPU `vcpu`; returns it.
pub fn bind_virq(virq: u32, vcpu: u32) -> Result<u32, Error> {
    port(call(HC_EVTCHN_BIND_VIRQ, virq.into(), vcpu.into())?)
}

/// A new ipi port: a send on it (from any vCPU of this domain) notifies
/// vCPU `vcpu`; returns it.
pub fn bind_ipi(vcpu: u32) -> Result<u32, Error> {
    port(call(HC_EVTCHN_BIND_IPI, vcpu.into(), 0)?)
}

/// Makes `port` notify vCPU `vcpu` (unbound and interdomain ports).
pub fn bind_vcpu(port: u32, vcpu: u32) -> Result<(), Error> {
    call(HC_EVTCHN_BIND_VCPU, port.into(), vcpu.into()).map(|_| ())
}

/// The state of `port`.
pub fn status_of(port: u32) -> Result<EvtchnStatus, Error> {
    let mut st = EvtchnStatus::new_zeroed();
    let at = st.as_mut_bytes().as_mut_ptr() as u64;
    call(HC_EVTCHN_STATUS, port.into(), at)?;
    Ok(st)
}
