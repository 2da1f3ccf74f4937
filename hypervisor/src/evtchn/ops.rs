//! Decoding the event-channel hypercalls (`HC_EVTCHN_*`): the
//! guest's registers become a typed [`EvtchnOp`] here, so that no value a
//! guest passes reaches the port tables unchecked. Port numbers and domain
//! ids must fit in 32 bits (`EINVAL`); the rest (does the port exist, may
//! this domain bind it) is the table's job ([`crate::evtchn`]).

use pvabi::Error;
use pvabi::{
    HC_EVTCHN_ALLOC_UNBOUND, HC_EVTCHN_BIND_INTERDOMAIN, HC_EVTCHN_BIND_IPI, HC_EVTCHN_BIND_VCPU,
    HC_EVTCHN_BIND_VIRQ, HC_EVTCHN_CLOSE, HC_EVTCHN_INIT_CONTROL, HC_EVTCHN_MASK, HC_EVTCHN_POLL,
    HC_EVTCHN_SEND, HC_EVTCHN_SEND_WAIT, HC_EVTCHN_STATUS, HC_EVTCHN_UNMASK, PAGE_SIZE,
    UPCALL_VECTOR_MIN,
};

use crate::domain::ids::DomainId;

/// One event-channel op with validated arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvtchnOp {
    /// A new port `remote` may connect to.
    AllocUnbound { remote: DomainId },
    /// Connect a new port to `port` of `remote`.
    BindInterdomain { remote: DomainId, port: u32 },
    /// Notify the peer of a port.
    Send(u32),
    /// Free a port.
    Close(u32),
    /// Let a port notify again.
    Unmask(u32),
    /// Hold back a port's notifications.
    Mask(u32),
    /// Take the next pending port (0: none).
    Poll,
    /// A new port for `virq` on `vcpu`.
    BindVirq { virq: u32, vcpu: u32 },
    /// A new ipi port notifying `vcpu`.
    BindIpi { vcpu: u32 },
    /// Report `port`'s status at `gpa` (the address is checked when
    /// written).
    Status { port: u32, gpa: u64 },
    /// Make `port` notify `vcpu`.
    BindVcpu { port: u32, vcpu: u32 },
    /// Register the control area at `gpa` (page aligned) and upcall
    /// `vector` (`32..=255`).
    InitControl { gpa: u64, vector: u8 },
    /// Send on `send` (0: none), then block until `wait` is pending or
    /// `deadline` (system ns, 0: none) passes (1.4). `wait` is not 0.
    SendWait { send: u32, wait: u32, deadline: u64 },
}

fn u32_arg(v: u64) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Invalid)
}

impl EvtchnOp {
    /// The op for hypercall `nr` with arguments `a`; `None` when `nr` is
    /// not an event-channel hypercall, `EINVAL` for an argument that is no
    /// port number or domain id.
    pub fn decode(nr: u64, a: [u64; 6]) -> Option<Result<Self, Error>> {
        let op = match nr {
            HC_EVTCHN_ALLOC_UNBOUND => u32_arg(a[0]).map(|d| Self::AllocUnbound {
                remote: DomainId(d),
            }),
            HC_EVTCHN_BIND_INTERDOMAIN => u32_arg(a[0]).and_then(|d| {
                Ok(Self::BindInterdomain {
                    remote: DomainId(d),
                    port: u32_arg(a[1])?,
                })
            }),
            HC_EVTCHN_SEND => u32_arg(a[0]).map(Self::Send),
            HC_EVTCHN_CLOSE => u32_arg(a[0]).map(Self::Close),
            HC_EVTCHN_UNMASK => u32_arg(a[0]).map(Self::Unmask),
            HC_EVTCHN_MASK => u32_arg(a[0]).map(Self::Mask),
            HC_EVTCHN_POLL => Ok(Self::Poll),
            HC_EVTCHN_BIND_VIRQ => u32_arg(a[0]).and_then(|virq| {
                Ok(Self::BindVirq {
                    virq,
                    vcpu: u32_arg(a[1])?,
                })
            }),
            HC_EVTCHN_BIND_IPI => u32_arg(a[0]).map(|vcpu| Self::BindIpi { vcpu }),
            HC_EVTCHN_STATUS => u32_arg(a[0]).map(|port| Self::Status { port, gpa: a[1] }),
            HC_EVTCHN_BIND_VCPU => u32_arg(a[0]).and_then(|port| {
                Ok(Self::BindVcpu {
                    port,
                    vcpu: u32_arg(a[1])?,
                })
            }),
            HC_EVTCHN_INIT_CONTROL => init_control(a[0], a[1]),
            HC_EVTCHN_SEND_WAIT => send_wait(a[0], a[1], a[2]),
            _ => return None,
        };
        Some(op)
    }
}

/// Checks in the documented order: the vector, then the alignment.
fn init_control(gpa: u64, vector: u64) -> Result<EvtchnOp, Error> {
    let vector = u8::try_from(vector)
        .ok()
        .filter(|&v| u64::from(v) >= UPCALL_VECTOR_MIN)
        .ok_or(Error::Invalid)?;
    if !gpa.is_multiple_of(PAGE_SIZE) {
        return Err(Error::Invalid);
    }
    Ok(EvtchnOp::InitControl { gpa, vector })
}

fn send_wait(send: u64, wait: u64, deadline: u64) -> Result<EvtchnOp, Error> {
    let (send, wait, deadline) = decode_send_wait(send, wait, deadline)?;
    Ok(EvtchnOp::SendWait {
        send,
        wait,
        deadline,
    })
}

/// `HC_EVTCHN_SEND_WAIT`'s arguments (the dispatcher decodes this op
/// apart: it may block): `EINVAL` when either port does not fit in 32
/// bits or the wait port is 0 (no port); the deadline is any value (0:
/// none; one already passed means "do not block").
#[inline(always)]
pub(crate) fn decode_send_wait(
    send: u64,
    wait: u64,
    deadline: u64,
) -> Result<(u32, u32, u64), Error> {
    // One test for all three: each is the same `EINVAL`.
    if (send | wait) > u64::from(u32::MAX) || wait == 0 {
        return Err(Error::Invalid);
    }
    Ok((send as u32, wait as u32, deadline))
}
