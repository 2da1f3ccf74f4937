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

/// `VIRTIO_F_ACCESS_PLATFORM`.
pub const ACCESS_PLATFORM: u64 = 1 << 33;

/// The PCI transport of a device that translates its DMA through the
/// IOMMU (module doc).
#[derive(Debug)]
pub struct Platform(PciTransport);

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
        Ok(Self(t))
    }
}

impl Transport for Platform {
    fn device_type(&self) -> DeviceType {
        self.0.device_type()
    }
    fn read_device_features(&mut self) -> u64 {
        self.0.read_device_features()
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        // Checked offered in `open`.
        self.0
            .write_driver_features(driver_features | ACCESS_PLATFORM);
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.0.max_queue_size(queue)
    }
    fn notify(&mut self, queue: u16) {
        self.0.notify(queue);
    }
    fn get_status(&self) -> DeviceStatus {
        self.0.get_status()
    }
    fn set_status(&mut self, status: DeviceStatus) {
        self.0.set_status(status);
    }
    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.0.set_guest_page_size(guest_page_size);
    }
    fn requires_legacy_layout(&self) -> bool {
        self.0.requires_legacy_layout()
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.0
            .queue_set(queue, size, descriptors, driver_area, device_area);
    }
    fn queue_unset(&mut self, queue: u16) {
        self.0.queue_unset(queue);
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.0.queue_used(queue)
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.0.ack_interrupt()
    }
    fn read_config_generation(&self) -> u32 {
        self.0.read_config_generation()
    }
    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        self.0.read_config_space(offset)
    }
    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> virtio_drivers::Result<()> {
        self.0.write_config_space(offset, value)
    }
}
