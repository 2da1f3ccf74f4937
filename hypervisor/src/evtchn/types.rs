//! The values event-channel ops take and return.

use super::DomainId;
#[cfg(doc)]
use super::EventTable;

/// What a port is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    /// Not allocated.
    Free,
    /// Allocated; `remote` may connect to it with
    /// [`EventTable::bind_interdomain`].
    Unbound {
        /// The domain allowed to connect.
        remote: DomainId,
    },
    /// Connected to `remote_port` of `remote`.
    Interdomain {
        /// The peer domain (may be this domain).
        remote: DomainId,
        /// The peer's port.
        remote_port: u32,
    },
    /// Bound to a virtual interrupt of the vCPU the port notifies.
    Virq {
        /// The virq number, `0..NR_VIRQS`.
        virq: u32,
    },
    /// An inter-processor port of this domain: a send notifies the vCPU
    /// the port is bound to.
    Ipi,
    /// Bound to a device's message (pvabi `HC_PCI_MSI_BIND`): only the
    /// hypervisor raises it, and only `pci/msi_live.rs` frees it (after
    /// disabling the message at the device).
    Msi,
}

/// A port's state, for the status op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortStatus {
    /// What the port is.
    pub state: PortState,
    /// The vCPU the port notifies.
    pub vcpu: u32,
    /// Whether the port is pending.
    pub pending: bool,
    /// Whether the port is masked.
    pub masked: bool,
}

/// An upcall to make: `port` of `domain` became pending and unmasked, so
/// `vcpu` must get the upcall (and be woken if blocked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notify {
    /// The domain.
    pub domain: DomainId,
    /// The vCPU to interrupt.
    pub vcpu: u32,
    /// The port that became pending.
    pub port: u32,
}

/// Where a send goes ([`EventTable::send`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A port of the sender's own domain: call [`EventTable::raise`] on it.
    Local(u32),
    /// `port` of another domain, from the sender's `from` port: call
    /// [`EventTable::deliver`] on that domain's table.
    Remote {
        /// The receiving domain.
        domain: DomainId,
        /// The receiving port.
        port: u32,
        /// The sending port (the receiver checks the connection).
        from: u32,
    },
}

/// What a close leaves for the caller to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// Nothing more.
    Done,
    /// The port was connected: call [`EventTable::peer_closed`] on
    /// `domain`'s table (or this table, for a loopback) for `port`.
    Peer {
        /// The peer domain.
        domain: DomainId,
        /// The peer's port.
        port: u32,
        /// The port that was closed.
        from: u32,
    },
}

impl PortStatus {
    /// The ABI's report of this status ([`pvabi::HC_EVTCHN_STATUS`]).
    pub fn to_abi(self) -> pvabi::EvtchnStatus {
        let mut s = pvabi::EvtchnStatus {
            vcpu: self.vcpu,
            pending: u32::from(self.pending),
            masked: u32::from(self.masked),
            ..Default::default()
        };
        match self.state {
            PortState::Free => s.state = pvabi::EVTCHN_STATE_FREE,
            PortState::Unbound { remote } => {
                s.state = pvabi::EVTCHN_STATE_UNBOUND;
                s.remote_domain = remote.0;
            }
            PortState::Interdomain {
                remote,
                remote_port,
            } => {
                s.state = pvabi::EVTCHN_STATE_INTERDOMAIN;
                s.remote_domain = remote.0;
                s.remote_port = remote_port;
            }
            PortState::Virq { virq } => {
                s.state = pvabi::EVTCHN_STATE_VIRQ;
                s.virq = virq;
            }
            PortState::Ipi => s.state = pvabi::EVTCHN_STATE_IPI,
            PortState::Msi => s.state = pvabi::EVTCHN_STATE_MSI,
        }
        s
    }
}
