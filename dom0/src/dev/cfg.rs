//! virtio-drivers' [`ConfigurationAccess`] over the hypervisor's filtered
//! config-space hypercalls (`pvabi::guest::pci`, docs/pci.md).
//!
//! The hypervisor refuses every write to the BAR registers (EPERM): the
//! firmware's addresses stay, and it mapped the memory BARs it could at
//! GPA = HPA. virtio-drivers sizes a BAR the standard way (all ones
//! written, the mask read back, PCI Local Bus 3.0 6.2.5.1) before it maps
//! a capability's region, so the BAR registers are answered here from the
//! hypervisor's own record of the function (`PciDevice::bars`) and never
//! reach the device: a memory BAR that is mapped reads as its base (with
//! its type bits) and sizes to its length; an I/O BAR, an unmapped BAR and
//! an unused slot read as zero, so the transport treats them as absent and
//! never maps them. Everything else goes to the hypercalls (the
//! hypervisor filters what it must: MSI/MSI-X control, the status
//! register).
#![allow(unsafe_code)]

use pvabi::guest::pci;
use pvabi::{PCI_BAR_IO, PCI_BAR_MAPPED, PCI_BAR_MEM64, PCI_BAR_PREFETCH, PciDevice};
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};

/// First and last BAR register offsets (type 0 header).
const BAR0: u8 = 0x10;
const BAR_SLOTS: u8 = 6;

/// Config space of one function dom0 owns.
#[derive(Debug, Clone)]
pub struct PvConfig {
    dev: PciDevice,
    /// Bit `i`: BAR register `i` was written with all ones and reads as
    /// its size mask until written again.
    sizing: u8,
}

impl PvConfig {
    /// Access to `dev`'s config space (one of dom0's own devices).
    pub fn new(dev: &PciDevice) -> Self {
        Self {
            dev: *dev,
            sizing: 0,
        }
    }

    /// The `DeviceFunction` virtio-drivers names this function by.
    pub fn function(&self) -> DeviceFunction {
        let s = self.dev.sbdf;
        DeviceFunction {
            bus: (s >> 8) as u8,
            device: ((s >> 3) & 31) as u8,
            function: (s & 7) as u8,
        }
    }

    /// The SBDF word for a `DeviceFunction` on this function's segment.
    fn sbdf(&self, f: DeviceFunction) -> u32 {
        (self.dev.sbdf & 0xffff_0000)
            | u32::from(f.bus) << 8
            | u32::from(f.device & 31) << 3
            | u32::from(f.function & 7)
    }

    /// The emulated value of BAR register `slot` (module doc).
    fn bar_register(&self, slot: u8) -> u32 {
        let sizing = self.sizing & (1 << slot) != 0;
        let bars = self.dev.bars.iter().take(usize::from(self.dev.nr_bars));
        for b in bars {
            if b.kind == 0
                || b.kind == PCI_BAR_IO
                || b.flags & PCI_BAR_MAPPED == 0
                || !b.size.is_power_of_two()
            {
                continue;
            }
            let mask = !(b.size - 1);
            let value = if sizing { mask } else { b.base };
            if b.index == slot {
                // Memory BAR low dword: bits 2:1 type (10b = 64-bit),
                // bit 3 prefetchable (PCI Local Bus 3.0 6.2.5.1).
                let ty = if b.kind == PCI_BAR_MEM64 { 0b100 } else { 0 };
                let pf = if b.flags & PCI_BAR_PREFETCH != 0 {
                    0b1000
                } else {
                    0
                };
                return (value as u32 & !0xf) | ty | pf;
            }
            if b.kind == PCI_BAR_MEM64 && b.index + 1 == slot {
                return (value >> 32) as u32;
            }
        }
        0
    }
}

impl ConfigurationAccess for PvConfig {
    fn read_word(&self, f: DeviceFunction, off: u8) -> u32 {
        let slot = off.wrapping_sub(BAR0) / 4;
        if off >= BAR0 && slot < BAR_SLOTS && self.sbdf(f) == self.dev.sbdf {
            return self.bar_register(slot);
        }
        // A refused read (not dom0's function) reads as no device.
        pci::config_read(self.sbdf(f), u16::from(off & !3), 4).unwrap_or(u32::MAX)
    }

    fn write_word(&mut self, f: DeviceFunction, off: u8, data: u32) {
        let slot = off.wrapping_sub(BAR0) / 4;
        if off >= BAR0 && slot < BAR_SLOTS {
            if data == u32::MAX {
                self.sizing |= 1 << slot;
            } else {
                self.sizing &= !(1 << slot);
            }
            return;
        }
        // A refused write changes nothing; what the driver needs from it
        // (command register bits) it reads back.
        let _ = pci::config_write(self.sbdf(f), u16::from(off & !3), 4, data);
    }

    unsafe fn unsafe_clone(&self) -> Self {
        self.clone()
    }
}
