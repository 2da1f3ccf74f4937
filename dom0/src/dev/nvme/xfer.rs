//! Moving data for Read and Write: in place where the device can use the
//! caller's buffer, else through the driver's bounce buffer.
//!
//! In place: dom0 runs on an identity map (guest-virtual = guest-physical)
//! and the IOMMU maps all of dom0's memory for its devices (`hal.rs`), so
//! a buffer's address is its bus address and its bytes are contiguous in
//! bus-address space. PRP1 is the buffer's address, the following entries
//! (PRP2, or the list in the driver's page) the starts of the next pages
//! (`kestrel_nvme::cmd::Prp`). NVMe 1.4 4.3 requires PRP1's offset to be
//! dword-aligned and every later entry page-aligned, which a contiguous
//! buffer meets whenever its start is a multiple of 4; a buffer that is
//! not, or that overlaps a device's registers (`hal::dma_target_ok`),
//! goes through the bounce buffer. This saves the copy of every byte
//! (`cargo xtask bench --only disk`, docs/benchmarks.md) and the
//! transfer's size limit is MDTS rather than the bounce buffer.
//!
//! While the command runs the device writes (Read) or reads (Write) the
//! caller's slice, which this driver holds borrowed for the whole call:
//! nothing else touches it. Its address is handed over as an integer
//! through volatile writes, and `run` fences (SeqCst) before the doorbell
//! and after seeing the completion, so the compiler neither keeps the
//! written bytes in registers past the doorbell nor reads the slice
//! before the completion. A command that times out turns bus mastering
//! off before the borrow ends (`run`).

use alloc::format;

use kestrel_nvme::cmd::{Prp, Sqe};

use super::super::block::BlockDevice;
use super::super::hal;
use super::{DevError, NSID, Nvme, Q};

impl Nvme {
    /// Whether `len` bytes at `addr` can be the device's target in place
    /// (module doc).
    fn in_place_ok(addr: u64, len: usize) -> bool {
        addr.is_multiple_of(4) && hal::dma_target_ok(addr, len as u64)
    }

    /// Reads whole blocks (checked by the caller) into `buf`.
    pub(super) fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DevError> {
        let mut lba = lba;
        if Self::in_place_ok(buf.as_ptr() as u64, buf.len()) {
            for chunk in buf.chunks_mut(self.max_direct) {
                self.transfer(false, lba, chunk.len(), Some(chunk.as_mut_ptr() as u64))?;
                lba += (chunk.len() / self.block_size) as u64;
            }
            return Ok(());
        }
        for chunk in buf.chunks_mut(self.max_xfer) {
            self.transfer(false, lba, chunk.len(), None)?;
            if let Some(d) = &self.dma {
                d.bounce.copy_out(0, chunk);
            }
            lba += (chunk.len() / self.block_size) as u64;
        }
        Ok(())
    }

    /// Writes whole blocks (checked by the caller) from `buf`.
    pub(super) fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), DevError> {
        let mut lba = lba;
        if Self::in_place_ok(buf.as_ptr() as u64, buf.len()) {
            for chunk in buf.chunks(self.max_direct) {
                self.transfer(true, lba, chunk.len(), Some(chunk.as_ptr() as u64))?;
                lba += (chunk.len() / self.block_size) as u64;
            }
            return Ok(());
        }
        for chunk in buf.chunks(self.max_xfer) {
            if let Some(d) = &mut self.dma {
                d.bounce.copy_in(0, chunk);
            }
            self.transfer(true, lba, chunk.len(), None)?;
            lba += (chunk.len() / self.block_size) as u64;
        }
        Ok(())
    }

    /// One Read or Write of `len` bytes at `lba`: at `at` in place (at
    /// most `max_direct` bytes), or through the bounce buffer when `None`
    /// (at most `max_xfer`).
    fn transfer(
        &mut self,
        write: bool,
        lba: u64,
        len: usize,
        at: Option<u64>,
    ) -> Result<(), DevError> {
        let what = format!(
            "{} of {} blocks at {lba}",
            if write { "Write" } else { "Read" },
            len / self.block_size
        );
        let limit = if at.is_some() {
            self.max_direct
        } else {
            self.max_xfer
        };
        if len > limit || !len.is_multiple_of(self.block_size) {
            return Err(self.error(format!(
                "{what}: {len} bytes is not whole blocks of at most {limit} bytes"
            )));
        }
        let dma = self.dma_ref()?;
        let (data, list) = (at.unwrap_or(dma.bounce.addr(0)), dma.page.addr(0));
        let prp = Prp::build(data, len as u64, list)
            .ok_or_else(|| self.error(format!("{what}: no PRP list fits")))?;
        if let Some(d) = &mut self.dma {
            for (i, e) in prp.list[..prp.list_len].iter().enumerate() {
                d.page.write64(i * 8, *e);
            }
        }
        let blocks = (len / self.block_size) as u32;
        self.in_place = at.is_some();
        let r = self.run(
            Q::Io,
            Sqe::rw(write, 0, NSID, lba, blocks, prp.prp1, prp.prp2),
            &what,
        );
        self.in_place = false;
        r.map(|_| ())
    }
}
