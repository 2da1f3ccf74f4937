//! One interface for dom0's disks, whatever the controller (virtio-blk,
//! NVMe): whole blocks read and written by logical block address, and a
//! flush. Every error names the device (`DevError`).

use alloc::format;
use alloc::string::String;

use super::DevError;

/// A disk dom0 drives.
pub trait BlockDevice {
    /// `SSSS:BB:DD.F` of the controller.
    fn bdf(&self) -> &str;
    /// `virtio-blk` or `nvme`.
    fn kind(&self) -> &'static str;
    /// The model (NVMe Identify Controller MN) or serial/id string
    /// (virtio-blk GET_ID), trimmed; empty if the device has none.
    fn model(&self) -> &str;
    /// Bytes per logical block.
    fn block_size(&self) -> usize;
    /// Number of logical blocks.
    fn blocks(&self) -> u64;
    /// Reads `buf.len() / block_size()` whole blocks from `lba` on.
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DevError>;
    /// Writes `buf.len() / block_size()` whole blocks from `lba` on.
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), DevError>;
    /// How this disk's completions are waited for (interrupt or poll),
    /// and how many interrupts came.
    fn completions(&self) -> &super::completion::Completions;
    /// The same, to count a pending interrupt
    /// ([`super::completion::Completions::drain`]).
    fn completions_mut(&mut self) -> &mut super::completion::Completions;
    /// Makes every completed write durable (a no-op where the device
    /// has no volatile cache).
    fn flush(&mut self) -> Result<(), DevError>;

    /// An error of this device.
    fn error(&self, what: String) -> DevError {
        DevError {
            device: format!("{} {}", self.bdf(), self.kind()),
            what,
        }
    }

    /// Checks a transfer of `len` bytes at `lba`: a non-zero whole number
    /// of blocks, all inside the disk. Returns the number of blocks.
    fn check(&self, lba: u64, len: usize) -> Result<u64, DevError> {
        let bs = self.block_size();
        if len == 0 || bs == 0 || !len.is_multiple_of(bs) {
            return Err(self.error(format!(
                "transfer of {len} bytes is not a non-zero multiple of the {bs}-byte block"
            )));
        }
        let n = (len / bs) as u64;
        match lba.checked_add(n) {
            Some(end) if end <= self.blocks() => Ok(n),
            _ => Err(self.error(format!(
                "blocks {lba}..+{n} are beyond the disk's {} blocks",
                self.blocks()
            ))),
        }
    }

    /// Capacity in bytes.
    fn bytes(&self) -> u64 {
        self.blocks().saturating_mul(self.block_size() as u64)
    }
}
