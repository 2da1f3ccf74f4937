//! The store's view of a disk: whole device blocks by address and a
//! flush. dom0 adapts its `BlockDevice` (virtio-blk, NVMe) to it; host
//! tests use [`MemDisk`] and the crash-recording disk in `tests/`.
//!
//! The store works in 4096-byte store blocks; the device's block size
//! must divide 4096 (512 and 4096 do, which is what virtio-blk and NVMe
//! report).

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::error::{Result, StoreError};

/// Bytes in a store block: the unit of allocation, of metadata and of
/// the root slots.
pub const BLOCK: usize = 4096;

/// A block device as the store needs it.
pub trait Disk {
    /// Bytes per device block (must divide [`BLOCK`]).
    fn block_size(&self) -> usize;
    /// Number of device blocks.
    fn blocks(&self) -> u64;
    /// Reads `buf.len() / block_size()` whole blocks from `lba` on.
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> core::result::Result<(), String>;
    /// Writes `buf.len() / block_size()` whole blocks from `lba` on. The
    /// write may sit in a volatile cache until [`Disk::flush`].
    fn write(&mut self, lba: u64, buf: &[u8]) -> core::result::Result<(), String>;
    /// Makes every completed write durable. The store's crash
    /// consistency rests on it: nothing written after a flush may reach
    /// the medium before what was written before it is durable.
    fn flush(&mut self) -> core::result::Result<(), String>;
}

/// Store-block I/O over a [`Disk`].
#[derive(Debug)]
pub(crate) struct Blocks<D> {
    pub(crate) disk: D,
    /// Device blocks per store block.
    per: u64,
    /// Store blocks on the disk.
    pub(crate) count: u64,
}

impl<D: Disk> Blocks<D> {
    /// Fails (giving the disk back) when its block size does not
    /// divide [`BLOCK`].
    pub(crate) fn new(disk: D) -> core::result::Result<Self, (StoreError, D)> {
        let bs = disk.block_size();
        if bs == 0 || bs > BLOCK || !BLOCK.is_multiple_of(bs) {
            let e = StoreError::BadDisk(format!(
                "device block size {bs} does not divide the store's {BLOCK}-byte block"
            ));
            return Err((e, disk));
        }
        let per = (BLOCK / bs) as u64;
        Ok(Blocks {
            count: disk.blocks() / per,
            disk,
            per,
        })
    }

    fn check(&self, block: u64, len: usize) -> Result<u64> {
        if len == 0 || !len.is_multiple_of(BLOCK) {
            return Err(StoreError::Invalid(format!(
                "store I/O of {len} bytes is not a whole number of blocks"
            )));
        }
        let n = (len / BLOCK) as u64;
        match block.checked_add(n) {
            Some(end) if end <= self.count => Ok(block * self.per),
            _ => Err(StoreError::Corrupt(format!(
                "blocks {block}..+{n} are beyond the disk's {} store blocks",
                self.count
            ))),
        }
    }

    pub(crate) fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<()> {
        let lba = self.check(block, buf.len())?;
        self.disk
            .read(lba, buf)
            .map_err(|e| StoreError::Disk(format!("read of store block {block}: {e}")))
    }

    pub(crate) fn write(&mut self, block: u64, buf: &[u8]) -> Result<()> {
        let lba = self.check(block, buf.len())?;
        self.disk
            .write(lba, buf)
            .map_err(|e| StoreError::Disk(format!("write of store block {block}: {e}")))
    }

    pub(crate) fn flush(&mut self) -> Result<()> {
        self.disk
            .flush()
            .map_err(|e| StoreError::Disk(format!("flush: {e}")))
    }
}

/// A disk in memory whose writes are durable at once (tests, and the
/// qcow2 round trip on the host).
#[derive(Debug, Clone)]
pub struct MemDisk {
    /// The bytes of the disk.
    pub bytes: Vec<u8>,
    /// Bytes per block.
    pub block_size: usize,
}

impl MemDisk {
    /// A zeroed disk of `blocks` blocks of `block_size` bytes.
    pub fn new(block_size: usize, blocks: usize) -> Self {
        MemDisk {
            bytes: vec![0; block_size * blocks],
            block_size,
        }
    }

    fn range(&self, lba: u64, len: usize) -> core::result::Result<core::ops::Range<usize>, String> {
        let start = usize::try_from(lba)
            .ok()
            .and_then(|l| l.checked_mul(self.block_size))
            .ok_or_else(|| format!("lba {lba} out of range"))?;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= self.bytes.len() && len.is_multiple_of(self.block_size))
            .ok_or_else(|| format!("{len} bytes at lba {lba} out of range"))?;
        Ok(start..end)
    }
}

impl Disk for MemDisk {
    fn block_size(&self) -> usize {
        self.block_size
    }
    fn blocks(&self) -> u64 {
        (self.bytes.len() / self.block_size) as u64
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> core::result::Result<(), String> {
        let r = self.range(lba, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> core::result::Result<(), String> {
        let r = self.range(lba, buf.len())?;
        self.bytes[r].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> core::result::Result<(), String> {
        Ok(())
    }
}
