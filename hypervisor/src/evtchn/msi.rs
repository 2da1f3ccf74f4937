//! Ports bound to a device's message (pvabi `HC_PCI_MSI_BIND`): made and
//! freed only by `pci/msi_live.rs`, which disables the message at the
//! device before it frees the port.

use pvabi::Error;

use super::{EventBits, EventTable, PortState};

impl<B: EventBits> EventTable<B> {
    /// A new port for a device's message, notifying vCPU 0, unmasked and
    /// not pending. Errors: `NoMem` (the table is full).
    pub fn bind_msi(&mut self) -> Result<u32, Error> {
        let port = self.alloc(PortState::Msi, 0)?;
        // A port number reused from an earlier binding may still carry
        // that binding's mask: a new binding starts unmasked.
        self.bits.set_masked(port, false);
        Ok(port)
    }

    /// Frees `port` if it is bound to a message. Errors: `NoEntry` (not
    /// allocated, or not such a port).
    pub fn close_msi(&mut self, port: u32) -> Result<(), Error> {
        match self.bound(port)?.state {
            PortState::Msi => {
                self.release(port);
                Ok(())
            }
            _ => Err(Error::NoEntry),
        }
    }

    /// Whether `port` is bound to a message.
    pub fn is_msi(&self, port: u32) -> bool {
        matches!(self.bound(port), Ok(p) if p.state == PortState::Msi)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::evtchn::{Closed, DomainId, Notify};

    #[test]
    fn msi_port_is_raised_only_by_the_hypervisor_and_freed_only_by_unbind() {
        let mut t = EventTable::new(DomainId(0), 2);
        let p = t.bind_msi().unwrap();
        assert!(t.is_msi(p));
        let st = t.status(p).unwrap();
        assert_eq!(st.state, PortState::Msi);
        assert_eq!(st.to_abi().state, pvabi::EVTCHN_STATE_MSI);
        assert!(!st.masked && !st.pending && st.vcpu == 0);
        assert_eq!(t.send(p), Err(Error::Invalid), "a guest cannot fake it");
        assert_eq!(t.close(p), Err(Error::Busy), "unbind frees it");
        assert!(t.is_msi(p), "nothing changed");
        t.bind_vcpu(p, 1).unwrap();
        let n = t.raise(p);
        assert_eq!(
            n,
            Some(Notify {
                domain: DomainId(0),
                vcpu: 1,
                port: p
            })
        );
        assert_eq!(t.raise(p), None, "merged while pending");
        // Masked: pending without an upcall; unmask notifies.
        t.clear_pending(p).unwrap();
        t.mask(p).unwrap();
        assert_eq!(t.raise(p), None);
        assert!(t.unmask(p).unwrap().is_some());
        let other = t.bind_ipi(0).unwrap();
        assert_eq!(
            t.close_msi(other),
            Err(Error::NoEntry),
            "not a message port"
        );
        t.close_msi(p).unwrap();
        assert_eq!(t.status(p).unwrap().state, PortState::Free);
        // A reused number starts unmasked.
        let q = t.bind_msi().unwrap();
        t.mask(q).unwrap();
        t.close_msi(q).unwrap();
        let r = t.bind_msi().unwrap();
        assert_eq!(r, q);
        assert!(!t.status(r).unwrap().masked);
        // A dying domain's table frees it too.
        assert_eq!(t.close_all(), Vec::<Closed>::new());
        assert_eq!(t.ports_in_use(), 0);
    }
}
