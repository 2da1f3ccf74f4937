//! Device interrupts for dom0's drivers: one MSI-X table entry bound to an
//! event port (`HC_PCI_MSI_BIND`, docs/pci.md "Interrupts: MSI and MSI-X
//! as events"), and, for virtio, the device told which queues signal
//! through that entry.
//!
//! virtio over PCI routes each virtqueue to an MSI-X table entry through
//! the common configuration's `queue_msix_vector` (after `queue_select`)
//! and configuration changes through `msix_config`; `NO_VECTOR` (0xffff)
//! means no interrupt. A device that cannot use an entry reads back
//! `NO_VECTOR` (virtio 1.2, 4.1.4.3 and 4.1.5.1.2). virtio-drivers 0.13
//! keeps its common configuration private (`CommonCfg` is `pub(crate)`),
//! so [`Common`] finds the capability itself (vendor-specific capability
//! 09h with `cfg_type` 1, virtio 1.2, 4.1.4) and writes those two 16-bit
//! fields with 16-bit accesses: the spec has the driver use each field's
//! natural width (4.1.3.1), and a 32-bit write at 0x10 or 0x18 would also
//! hit the next field (`num_queues`, `queue_size`).
//!
//! The hypervisor enables MSI-X on the first bind with every other entry
//! masked, so the routing is written after the bind and before the queues
//! are enabled (`virtio::Platform::queue_set`), as 4.1.5.1.3 orders it.
#![allow(unsafe_code)]

use alloc::format;
use alloc::string::String;
use core::ptr::NonNull;

use pvabi::guest::pci;
use pvabi::{PCI_BAR_IO, PCI_BAR_MAPPED, PCI_CAP_MSIX, PCI_MSIX, PciDevice};

/// "No interrupt" in `msix_config` / `queue_msix_vector`.
pub const NO_VECTOR: u16 = 0xffff;
/// Vendor-specific capability id (PCI Local Bus 3.0, appendix H).
const CAP_VENDOR: u32 = 0x09;
/// `VIRTIO_PCI_CAP_COMMON_CFG`.
const COMMON_CFG: u32 = 1;
/// Offsets in `virtio_pci_common_cfg` (virtio 1.2, 4.1.4.3).
const MSIX_CONFIG: usize = 0x10;
const QUEUE_SELECT: usize = 0x16;
const QUEUE_MSIX_VECTOR: usize = 0x1a;
/// The structure up to and including `queue_enable`.
const COMMON_LEN: u32 = 0x1e;
/// Most capabilities followed (48 fit in 192 bytes of config space; a
/// list that loops is cut).
const MAX_CAPS: usize = 48;

/// An MSI-X entry of a device bound to one of dom0's event ports.
#[derive(Debug)]
pub struct Irq {
    pub port: u32,
    pub entry: u16,
}

impl Irq {
    /// Binds MSI-X entry `entry` of `d` to a new port; why not otherwise.
    pub fn bind_msix(d: &PciDevice, entry: u16) -> Result<Self, String> {
        if d.caps & PCI_CAP_MSIX == 0 {
            return Err(String::from("the device has no MSI-X capability"));
        }
        let port = pci::msi_bind(d.sbdf, PCI_MSIX, entry.into())
            .map_err(|e| format!("binding MSI-X entry {entry} refused: {e}"))?;
        Ok(Self { port, entry })
    }

    /// Disables the message at the device and frees the port.
    pub fn unbind(self) {
        if let Err(e) = pci::msi_unbind(self.port) {
            crate::say(&format!("dev: unbinding port {} failed: {e}", self.port));
        }
    }
}

/// A virtio device's common configuration structure, mapped.
#[derive(Debug, Clone, Copy)]
pub struct Common {
    base: NonNull<u8>,
}

fn cfg8(d: &PciDevice, off: u32) -> Option<u32> {
    pci::config_read(d.sbdf, u16::try_from(off).ok()?, 1).ok()
}

fn cfg32(d: &PciDevice, off: u32) -> Option<u32> {
    pci::config_read(d.sbdf, u16::try_from(off).ok()?, 4).ok()
}

impl Common {
    /// Finds and maps `d`'s common configuration (module doc).
    pub fn find(d: &PciDevice) -> Result<Self, String> {
        // Status bit 4: capabilities list (PCI Local Bus 3.0, 6.2.3).
        if cfg32(d, 4).is_none_or(|w| w & (1 << 20) == 0) {
            return Err(String::from("no capability list"));
        }
        let mut at = cfg8(d, 0x34).unwrap_or(0) & 0xfc;
        for _ in 0..MAX_CAPS {
            if at < 0x40 {
                break;
            }
            let id = cfg8(d, at).unwrap_or(0);
            let next = cfg8(d, at + 1).unwrap_or(0) & 0xfc;
            if id == CAP_VENDOR && cfg8(d, at + 3) == Some(COMMON_CFG) {
                let bar = cfg8(d, at + 4).unwrap_or(u32::MAX);
                let off = cfg32(d, at + 8).unwrap_or(0);
                let len = cfg32(d, at + 12).unwrap_or(0);
                return Self::map(d, bar, off, len);
            }
            at = next;
        }
        Err(String::from("no virtio common configuration capability"))
    }

    fn map(d: &PciDevice, bar: u32, off: u32, len: u32) -> Result<Self, String> {
        if len < COMMON_LEN {
            return Err(format!(
                "common configuration of {len} bytes, under {COMMON_LEN}"
            ));
        }
        let b = d
            .bars
            .iter()
            .take(usize::from(d.nr_bars))
            .find(|b| u32::from(b.index) == bar && b.kind != 0 && b.kind != PCI_BAR_IO)
            .filter(|b| b.flags & PCI_BAR_MAPPED != 0)
            .ok_or_else(|| format!("common configuration in BAR {bar}, not a mapped memory BAR"))?;
        let addr = b
            .base
            .checked_add(off.into())
            .ok_or_else(|| String::from("common configuration offset overflows"))?;
        // `map_registers` checks the range lies inside that BAR.
        let base = super::hal::map_registers(addr, u64::from(COMMON_LEN))
            .ok_or_else(|| format!("common configuration at {addr:#x} not mappable"))?;
        Ok(Self { base })
    }

    fn read16(&self, off: usize) -> u16 {
        // SAFETY: `off` + 2 <= COMMON_LEN, inside the range `map` mapped
        // uncached (device registers); an aligned 16-bit access, the
        // field's natural width (module doc).
        unsafe { self.base.as_ptr().add(off).cast::<u16>().read_volatile() }
    }

    fn write16(&self, off: usize, v: u16) {
        // SAFETY: as in `read16`.
        unsafe { self.base.as_ptr().add(off).cast::<u16>().write_volatile(v) }
    }

    /// Routes configuration-change interrupts to `vector`; what the
    /// device took.
    pub fn set_config_vector(&self, vector: u16) -> u16 {
        self.write16(MSIX_CONFIG, vector);
        self.read16(MSIX_CONFIG)
    }

    /// Routes queue `queue`'s interrupts to `vector`; what the device
    /// took (leaves `queue` selected).
    pub fn set_queue_vector(&self, queue: u16, vector: u16) -> u16 {
        self.write16(QUEUE_SELECT, queue);
        self.write16(QUEUE_MSIX_VECTOR, vector);
        self.read16(QUEUE_MSIX_VECTOR)
    }

    /// The entry queue `queue` signals through.
    pub fn queue_vector(&self, queue: u16) -> u16 {
        self.write16(QUEUE_SELECT, queue);
        self.read16(QUEUE_MSIX_VECTOR)
    }
}
