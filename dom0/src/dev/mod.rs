//! dom0's device drivers (issue 14): the base every driver shares.
//!
//! - [`hal`]: DMA memory and bus addresses (identity map + IOMMU: bus
//!   address = dom0 address, no bounce buffers), device registers through
//!   the BARs the hypervisor mapped (`pvabi::guest::mmio`).
//! - [`cfg`]: config space over the filtered hypercalls, with the BAR
//!   registers answered from the hypervisor's record.
//! - discovery: [`claim`] says which driver takes each of dom0's PCI
//!   functions; [`virtio_transport`] opens a virtio device's modern PCI
//!   transport (virtio-drivers' `PciTransport`).
//!
//! - [`irq`]: an MSI-X entry bound to an event port, and a virtio
//!   device's queues routed to it (the NIC and both disk drivers use it).
//! - [`completion`]: how a disk waits for a completion: asleep on its
//!   port, polling only as the fallback its boot line names. Every wait
//!   has a bound and ends with an error naming the device.

pub mod block;
pub mod canary;
pub mod cfg;
pub mod completion;
pub mod diskbench;
pub mod disks;
pub mod dma;
pub mod hal;
pub mod irq;
pub mod mark;
pub mod nvme;
pub mod virtio;
pub mod virtio_blk;

use alloc::format;
use alloc::string::String;
use core::fmt;

use pvabi::{PCI_BAR_IO, PCI_BAR_MAPPED, PciDevice};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{Command, PciRoot};

pub use hal::DomHal;

/// A device error: which device, and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevError {
    /// `SSSS:BB:DD.F kind` of the device.
    pub device: String,
    /// What failed.
    pub what: String,
}

impl DevError {
    /// An error of device `d`.
    pub fn new(d: &PciDevice, what: impl Into<String>) -> Self {
        Self {
            device: format!("{} {}", crate::pci::bdf(d.sbdf), crate::pci::kind(d)),
            what: what.into(),
        }
    }
}

impl fmt::Display for DevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.device, self.what)
    }
}

/// The drivers dom0 has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// virtio-blk (transitional 0x1001 or modern 0x1042).
    VirtioBlk,
    /// virtio-net (transitional 0x1000 or modern 0x1041).
    VirtioNet,
    /// NVMe: class 01h, subclass 08h, programming interface 02h (NVMe
    /// base specification 2.0, 3.1.1 / PCI code and ID assignment).
    Nvme,
}

/// Which driver takes `d`, if any.
pub fn claim(d: &PciDevice) -> Option<Driver> {
    match (d.vendor, d.device, d.class, d.subclass, d.prog_if) {
        (0x1af4, 0x1001 | 0x1042, ..) => Some(Driver::VirtioBlk),
        (0x1af4, 0x1000 | 0x1041, ..) => Some(Driver::VirtioNet),
        (_, _, 0x01, 0x08, 0x02) => Some(Driver::Nvme),
        _ => None,
    }
}

/// Records `d`'s mapped memory BARs as registers dom0 may map
/// ([`hal::map_registers`]).
pub fn allow_bars(d: &PciDevice) {
    for b in d.bars.iter().take(usize::from(d.nr_bars)) {
        if b.kind != 0 && b.kind != PCI_BAR_IO && b.flags & PCI_BAR_MAPPED != 0 {
            hal::allow_bar(b.base, b.size);
        }
    }
}

/// Turns on memory decode and bus mastering of `d` (the hypervisor lets
/// these command bits through, docs/pci.md), so that its mapped BARs
/// answer and it can DMA (through the IOMMU).
pub fn enable(d: &PciDevice) -> Result<(), DevError> {
    let cmd = pvabi::guest::pci::config_read(d.sbdf, 4, 2)
        .map_err(|e| DevError::new(d, format!("command register read refused: {e:?}")))?;
    let want = cmd | u32::from((Command::MEMORY_SPACE | Command::BUS_MASTER).bits());
    pvabi::guest::pci::config_write(d.sbdf, 4, 2, want)
        .map_err(|e| DevError::new(d, format!("command register write refused: {e:?}")))?;
    let now = pvabi::guest::pci::config_read(d.sbdf, 4, 2).unwrap_or(0);
    if now & 0b110 != 0b110 {
        return Err(DevError::new(
            d,
            format!("memory decode / bus master did not turn on (command {now:#06x})"),
        ));
    }
    Ok(())
}

/// Turns bus mastering of function `sbdf` off, so that it can issue no
/// more memory requests (PCI Local Bus 3.0 6.2.2, Command bit 2: "When
/// this bit is 0, the device is not allowed to issue memory requests"):
/// what a driver does when a command that DMAs into memory it does not
/// own timed out. `true` once the bit reads back clear.
pub fn stop_dma(sbdf: u32) -> bool {
    let Ok(cmd) = pvabi::guest::pci::config_read(sbdf, 4, 2) else {
        return false;
    };
    let off = cmd & !u32::from(Command::BUS_MASTER.bits());
    pvabi::guest::pci::config_write(sbdf, 4, 2, off).is_ok()
        && pvabi::guest::pci::config_read(sbdf, 4, 2)
            .is_ok_and(|now| now & u32::from(Command::BUS_MASTER.bits()) == 0)
}

/// Opens virtio device `d`'s PCI transport: decode and bus mastering on,
/// its BARs allowed, its virtio capabilities found and mapped.
pub fn virtio_transport(d: &PciDevice) -> Result<PciTransport, DevError> {
    enable(d)?;
    allow_bars(d);
    let access = cfg::PvConfig::new(d);
    let function = access.function();
    let mut root = PciRoot::new(access);
    PciTransport::new::<DomHal, _>(&mut root, function)
        .map_err(|e| DevError::new(d, format!("virtio transport: {e}")))
}
