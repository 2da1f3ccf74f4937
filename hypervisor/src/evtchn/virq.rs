//! Virq and ipi ports, and which vCPU a port notifies (their ops on the
//! table).

use pvabi::Error;

use super::{EventBits, EventTable, NR_VIRQS, Notify, PortState};

impl<B: EventBits> EventTable<B> {
    /// **bind_virq**: a new port for virq `virq` of vCPU `vcpu`.
    /// Errors: `Invalid` (virq or vCPU out of range), `Exists` (already
    /// bound on that vCPU), `NoMem`.
    pub fn bind_virq(&mut self, virq: u32, vcpu: u32) -> Result<u32, Error> {
        if virq >= NR_VIRQS {
            return Err(Error::Invalid);
        }
        self.check_vcpu(vcpu)?;
        let bound = self.virq_port(vcpu, virq);
        if bound != 0 {
            return Err(Error::Exists);
        }
        let port = self.alloc(PortState::Virq { virq }, vcpu)?;
        self.set_virq_port(vcpu, virq, port);
        Ok(port)
    }

    /// Whether vCPU `vcpu` has a port bound to virq `virq`.
    pub fn virq_bound(&self, vcpu: u32, virq: u32) -> bool {
        self.virq_port(vcpu, virq) != 0
    }

    fn virq_port(&self, vcpu: u32, virq: u32) -> u32 {
        self.virqs
            .get(vcpu as usize)
            .and_then(|v| v.get(virq as usize))
            .copied()
            .unwrap_or(0)
    }

    pub(super) fn set_virq_port(&mut self, vcpu: u32, virq: u32, port: u32) {
        if let Some(slot) = self
            .virqs
            .get_mut(vcpu as usize)
            .and_then(|v| v.get_mut(virq as usize))
        {
            *slot = port;
        }
    }

    /// **bind_ipi**: a new port that notifies vCPU `vcpu` of this domain
    /// when any vCPU of the domain sends on it.
    /// Errors: `Invalid` (vCPU out of range), `NoMem`.
    pub fn bind_ipi(&mut self, vcpu: u32) -> Result<u32, Error> {
        self.check_vcpu(vcpu)?;
        self.alloc(PortState::Ipi, vcpu)
    }

    /// **bind_vcpu**: makes an unbound, interdomain or device-message port
    /// notify `vcpu` (virq and ipi ports keep the vCPU they were bound to).
    /// Errors: `NoEntry`, `Invalid` (vCPU out of range, or a virq or ipi
    /// port).
    pub fn bind_vcpu(&mut self, port: u32, vcpu: u32) -> Result<(), Error> {
        let p = self.bound(port)?;
        self.check_vcpu(vcpu)?;
        match p.state {
            PortState::Unbound { .. } | PortState::Interdomain { .. } | PortState::Msi => {
                if let Some(slot) = self.slot_mut(port) {
                    slot.vcpu = vcpu;
                }
                Ok(())
            }
            _ => Err(Error::Invalid),
        }
    }

    /// The hypervisor raises virq `virq` on `vcpu`: the upcall to make, if
    /// the domain bound a port to it and the port was not pending or
    /// masked.
    pub fn raise_virq(&mut self, vcpu: u32, virq: u32) -> Option<Notify> {
        match self.virq_port(vcpu, virq) {
            0 => None,
            port => self.raise(port),
        }
    }
}
