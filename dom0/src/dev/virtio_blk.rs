//! virtio-blk behind [`BlockDevice`]: virtio-drivers' `VirtIOBlk` on the
//! IOMMU-translated PCI transport ([`super::virtio::Platform`]).
//!
//! Requests go one at a time through the non-blocking calls so that the
//! wait for each completion is bounded ([`TIMEOUT_NS`]); the blocking ones
//! spin forever on a device that never answers. The request header, the
//! status byte and the data go through buffers the driver owns (one
//! [`MAX_REQUEST`] bounce buffer): after a timeout the device may still
//! write them, so they are leaked, never reused, and the disk refuses
//! further requests; the caller's buffer is never handed to the device. virtio-blk addresses 512-
//! byte sectors whatever the device's preferred block size (virtio 1.1
//! 5.2.6), so that is the block size here.
//!
//! Completions interrupt: the request queue (queue 0, virtio 1.2 5.2.2)
//! signals through MSI-X entry 0, bound to an event port before the queue
//! is set up (`irq.rs`), and the wait sleeps on that port
//! ([`super::completion`]). virtio-drivers leaves used-buffer
//! notifications on (with `VIRTIO_F_EVENT_IDX` it moves `used_event` to
//! each completion it takes, virtio 1.2 2.7.10), so every completion
//! signals. Where the entry cannot be bound or the queue does not take it
//! (it reads back `NO_VECTOR`), completions are polled, as before.
#![allow(unsafe_code)]

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use pvabi::PciDevice;
use pvabi::guest::time;
use virtio_drivers::device::blk::{BlkReq, BlkResp, SECTOR_SIZE, VirtIOBlk};

use super::block::BlockDevice;
use super::completion::Completions;
use super::irq::{Common, Irq};
use super::virtio::Platform;
use super::{DevError, DomHal};

/// Longest wait for one request's completion.
pub const TIMEOUT_NS: u64 = 10_000_000_000;

/// Largest transfer in one request (bigger ones are split). Each request
/// costs a completion interrupt and a sleep, so a 1 MiB transfer in 4
/// requests rather than 16 (`cargo xtask bench --only disk`: 64 KiB made
/// dom0's sequential throughput half Linux's, which sends about 512 KiB per
/// request); bounded by dom0's 4 MiB heap, which holds this buffer.
const MAX_REQUEST: usize = 256 * 1024;

/// The request queue (virtio 1.2, 5.2.2).
const REQUEST_QUEUE: u16 = 0;

/// The buffers one request hands the device.
struct Bufs {
    req: BlkReq,
    resp: BlkResp,
    data: Vec<u8>,
}

/// A virtio-blk disk.
pub struct VirtioBlk {
    bdf: String,
    model: String,
    blocks: u64,
    blk: VirtIOBlk<DomHal, Platform>,
    /// `None` once a request timed out (module doc).
    bufs: Option<Box<Bufs>>,
    /// How completions are waited for.
    done: Completions,
}

impl core::fmt::Debug for VirtioBlk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "VirtioBlk({})", self.bdf)
    }
}

impl VirtioBlk {
    /// Opens virtio-blk function `d`; `poll`: the command-line option
    /// that forces polled completions, if any.
    pub fn open(d: &PciDevice, poll: Option<&str>) -> Result<Self, DevError> {
        let mut t = Platform::open(d)?;
        let irq = match poll {
            Some(why) => Err(format!("{why} on the command line")),
            None => bind_irq(d, &mut t),
        };
        let mut blk = match VirtIOBlk::<DomHal, _>::new(t) {
            Ok(b) => b,
            Err(e) => {
                if let Ok((i, _)) = irq {
                    i.unbind();
                }
                return Err(DevError::new(d, format!("virtio-blk init: {e}")));
            }
        };
        // The device reads back NO_VECTOR for a vector it could not take.
        let done = match irq {
            Ok((i, common)) => match common.queue_vector(REQUEST_QUEUE) {
                v if v == i.entry => Completions::by(i),
                v => {
                    i.unbind();
                    Completions::polled(format!(
                        "the request queue did not take MSI-X entry 0 (reads {v:#06x})"
                    ))
                }
            },
            Err(why) => Completions::polled(why),
        };
        let mut id = [0u8; 20];
        // GET_ID is optional for the device: no id, empty model.
        let model = match blk.device_id(&mut id) {
            Ok(n) => String::from_utf8_lossy(&id[..n.min(20)])
                .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .to_string(),
            Err(_) => String::new(),
        };
        Ok(Self {
            bdf: crate::pci::bdf(d.sbdf),
            model,
            blocks: blk.capacity(),
            blk,
            bufs: Some(Box::new(Bufs {
                req: BlkReq::default(),
                resp: BlkResp::default(),
                data: vec![0; MAX_REQUEST],
            })),
            done,
        })
    }

    /// Waits (bounded) for request `token` to complete.
    fn wait(&mut self, token: u16, what: &str) -> Result<(), DevError> {
        let deadline = time::now_ns().saturating_add(TIMEOUT_NS);
        loop {
            match self.blk.peek_used() {
                Some(t) if t == token => return Ok(()),
                Some(t) => {
                    return Err(self.error(format!(
                        "{what}: completion for token {t}, expected {token}"
                    )));
                }
                None if time::now_ns() > deadline => {
                    return Err(self.error(format!(
                        "{what}: no completion within {} s",
                        TIMEOUT_NS / 1_000_000_000
                    )));
                }
                None => self.done.pause(deadline),
            }
        }
    }

    /// One request of at most [`MAX_REQUEST`] bytes at `lba`: a read into
    /// the first `len` bytes of the bounce buffer, or a write of them.
    fn request(&mut self, lba: u64, len: usize, write: bool) -> Result<(), DevError> {
        let what = format!(
            "{} of {} blocks at {lba}",
            if write { "write" } else { "read" },
            len / SECTOR_SIZE
        );
        let Some(mut b) = self.bufs.take() else {
            return Err(self.error(format!(
                "{what}: refused, an earlier request timed out (the device may still own its buffers)"
            )));
        };
        let lba_us =
            usize::try_from(lba).map_err(|_| self.error(format!("{what}: LBA too large")))?;
        let Bufs { req, resp, data } = &mut *b;
        let data = &mut data[..len];
        // SAFETY: `req`, `data` and `resp` live in `b`, which nothing
        // touches until the request completes; if it never does, `b` is
        // leaked below, so the device can never write freed memory.
        let started = unsafe {
            if write {
                self.blk.write_blocks_nb(lba_us, req, data, resp)
            } else {
                self.blk.read_blocks_nb(lba_us, req, data, resp)
            }
        };
        let token = match started {
            Ok(t) => t,
            Err(e) => {
                self.bufs = Some(b);
                return Err(self.error(format!("{what}: {e}")));
            }
        };
        if let Err(e) = self.wait(token, &what) {
            Box::leak(b);
            return Err(e);
        }
        // SAFETY: the same buffers as passed to `*_blocks_nb` for `token`.
        let done = unsafe {
            if write {
                self.blk.complete_write_blocks(token, req, data, resp)
            } else {
                self.blk.complete_read_blocks(token, req, data, resp)
            }
        };
        self.bufs = Some(b);
        done.map_err(|e| self.error(format!("{what}: {e}")))
    }
}

/// Binds `d`'s MSI-X entry 0 and has `t` route the request queue to it
/// (as the NIC does, `net/mod.rs`).
fn bind_irq(d: &PciDevice, t: &mut Platform) -> Result<(Irq, Common), String> {
    let irq = Irq::bind_msix(d, 0)?;
    match Common::find(d) {
        Ok(common) => {
            t.route(common, 1 << REQUEST_QUEUE);
            Ok((irq, common))
        }
        Err(e) => {
            irq.unbind();
            Err(e)
        }
    }
}

impl BlockDevice for VirtioBlk {
    fn bdf(&self) -> &str {
        &self.bdf
    }
    fn kind(&self) -> &'static str {
        "virtio-blk"
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn block_size(&self) -> usize {
        SECTOR_SIZE
    }
    fn blocks(&self) -> u64 {
        self.blocks
    }
    fn completions(&self) -> &Completions {
        &self.done
    }
    fn completions_mut(&mut self) -> &mut Completions {
        &mut self.done
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DevError> {
        self.check(lba, buf.len())?;
        let mut lba = lba;
        for chunk in buf.chunks_mut(MAX_REQUEST) {
            self.request(lba, chunk.len(), false)?;
            if let Some(b) = &self.bufs {
                chunk.copy_from_slice(&b.data[..chunk.len()]);
            }
            lba += (chunk.len() / SECTOR_SIZE) as u64;
        }
        Ok(())
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), DevError> {
        self.check(lba, buf.len())?;
        let mut lba = lba;
        for chunk in buf.chunks(MAX_REQUEST) {
            if let Some(b) = &mut self.bufs {
                b.data[..chunk.len()].copy_from_slice(chunk);
            }
            self.request(lba, chunk.len(), true)?;
            lba += (chunk.len() / SECTOR_SIZE) as u64;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DevError> {
        // Blocking in virtio-drivers (it has no non-blocking flush); a
        // flush follows writes that completed, on a device that answers.
        self.blk
            .flush()
            .map_err(|e| self.error(format!("flush: {e}")))
    }
}
