//! virtio devices behind the IOMMU: the transport dom0's virtio drivers
//! use.
//!
//! A virtio device that does not negotiate `VIRTIO_F_ACCESS_PLATFORM`
//! (bit 33, virtio 1.1 6 "Reserved Feature Bits") uses physical addresses
//! and bypasses the platform's IOMMU (QEMU: its DMA goes straight to
//! machine memory). dom0's bus addresses are its guest-physical ones,
//! which only the IOMMU turns into machine addresses (`hal.rs`), so such
//! a device would read and write the wrong memory. virtio-drivers never
//! accepts the bit, so [`Platform`] wraps the PCI transport: it refuses a
//! device that does not offer it (with an error naming the device) and
//! adds it to the features the driver accepts.

use pvabi::PciDevice;
use virtio_drivers::PhysAddr;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::DevError;
use super::irq::{Common, NO_VECTOR};

/// `VIRTIO_F_ACCESS_PLATFORM`.
pub const ACCESS_PLATFORM: u64 = 1 << 33;

/// The PCI transport of a device that translates its DMA through the
/// IOMMU (module doc), and where its queues' interrupts go
/// ([`Platform::route`]).
#[derive(Debug)]
pub struct Platform {
    t: PciTransport,
    /// Queues `i` with bit `i` set signal through MSI-X entry 0, the
    /// others not at all (`irq.rs`).
    route: Option<(Common, u32)>,
}

impl Platform {
    /// Opens `d`'s transport and checks that the device offers
    /// `VIRTIO_F_ACCESS_PLATFORM`.
    pub fn open(d: &PciDevice) -> Result<Self, DevError> {
        let mut t = super::virtio_transport(d)?;
        if t.read_device_features() & ACCESS_PLATFORM == 0 {
            return Err(DevError::new(
                d,
                "does not offer VIRTIO_F_ACCESS_PLATFORM: its DMA would bypass the IOMMU \
                 (QEMU: iommu_platform=on)",
            ));
        }
        Ok(Self { t, route: None })
    }

    /// From now on, the queues in `queues` (bit `i`: queue `i`) are set up
    /// to signal through MSI-X entry 0, the others and configuration
    /// changes through none. Call after binding the entry and before the
    /// driver sets the queues up.
    pub fn route(&mut self, common: Common, queues: u32) {
        common.set_config_vector(NO_VECTOR);
        self.route = Some((common, queues));
    }
}

impl Transport for Platform {
    fn device_type(&self) -> DeviceType {
        self.t.device_type()
    }
    fn read_device_features(&mut self) -> u64 {
        self.t.read_device_features()
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        // Checked offered in `open`.
        self.t
            .write_driver_features(driver_features | ACCESS_PLATFORM);
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.t.max_queue_size(queue)
    }
    fn notify(&mut self, queue: u16) {
        self.t.notify(queue);
    }
    fn get_status(&self) -> DeviceStatus {
        self.t.get_status()
    }
    fn set_status(&mut self, status: DeviceStatus) {
        self.t.set_status(status);
    }
    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.t.set_guest_page_size(guest_page_size);
    }
    fn requires_legacy_layout(&self) -> bool {
        self.t.requires_legacy_layout()
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        // The vector before the queue is enabled (virtio 1.2, 4.1.5.1.3);
        // the inner `queue_set` selects the same queue again.
        if let Some((common, queues)) = self.route {
            let on = u32::from(queue) < 32 && queues & (1 << queue) != 0;
            common.set_queue_vector(queue, if on { 0 } else { NO_VECTOR });
        }
        self.t
            .queue_set(queue, size, descriptors, driver_area, device_area);
    }
    fn queue_unset(&mut self, queue: u16) {
        self.t.queue_unset(queue);
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.t.queue_used(queue)
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.t.ack_interrupt()
    }
    fn read_config_generation(&self) -> u32 {
        self.t.read_config_generation()
    }
    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        self.t.read_config_space(offset)
    }
    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> virtio_drivers::Result<()> {
        self.t.write_config_space(offset, value)
    }
}
