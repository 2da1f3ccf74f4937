//! NVMe behind [`BlockDevice`]: a small polled driver (why our own, and
//! the command encoding: the host-tested `kestrel-nvme` crate).
//!
//! Bring-up (NVMe 1.4 7.6.1): memory decode and bus mastering on, CAP
//! read (NVM command set and 4 KiB pages required), the controller
//! disabled (CC.EN = 0, then CSTS.RDY = 0 awaited), the admin queues set
//! (AQA, ASQ, ACQ), CC written with EN = 1 and CSTS.RDY = 1 awaited (both
//! waits bounded by CAP.TO; CSTS.CFS is an error). Then Identify
//! Controller (model, MDTS) and Identify Namespace 1 (size, LBA format),
//! Set Features Number of Queues (one pair), Create I/O Completion Queue 1
//! (interrupts through MSI-X vector [`IO_VECTOR`], or off when polled) and
//! Create I/O Submission Queue 1.
//!
//! I/O: one command in flight, its completion found by its phase tag with
//! a bound ([`CMD_TIMEOUT_NS`]), its command id and status checked. The
//! I/O completion queue interrupts: MSI-X entry [`IO_VECTOR`] is bound to
//! an event port before the queue is created with that vector, and the
//! wait sleeps on the port between looks ([`super::completion`]). The
//! admin queue always signals vector 0 (NVMe 1.4 3.1.10, ACQ: "always
//! associated with interrupt vector 0"), which stays masked (the
//! hypervisor masks every entry it did not bind): admin commands run only
//! at bring-up and are polled, so they wake nothing. Where the entry cannot
//! be bound (no MSI-X, the hypervisor refuses) or `disk=poll` / `wake=poll`
//! is on dom0's command line, the I/O queue is created with interrupts off
//! and polled, as the disk's boot line says. Data goes straight to or
//! from the caller's buffer where it can, else through a bounce buffer
//! ([`xfer`]). On a timeout bus mastering is turned off (the device may
//! hold the caller's buffer), every queue and buffer of the driver is
//! leaked and the disk refuses further requests.
//!
//! Registers are reached with 32-bit accesses only (the 64-bit CAP, ASQ
//! and ACQ as two halves, low first; NVMe 1.4 3.1 allows 32-bit access to
//! them).

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{Ordering, fence};

use kestrel_nvme::cmd::{CNS_CONTROLLER, CNS_NAMESPACE, Cqe, PAGE, Sqe};
use kestrel_nvme::identify::{Controller, Namespace};
use kestrel_nvme::queue::Ring;
use kestrel_nvme::regs::{self, Cap};
use pvabi::guest::{mmio, time};
use pvabi::{PCI_BAR_IO, PCI_BAR_MAPPED, PciDevice};

use super::block::BlockDevice;
use super::completion::Completions;
use super::dma::DmaBuf;
use super::irq::Irq;
use super::{DevError, enable};

mod xfer;

/// Longest wait for one command's completion.
pub const CMD_TIMEOUT_NS: u64 = 10_000_000_000;
/// Bounce buffer, for buffers a device cannot use in place ([`xfer`]):
/// the largest such transfer in one command (MDTS may lower it), bounded
/// by dom0's 4 MiB heap, which holds this buffer.
pub const BOUNCE: usize = 256 * 1024;
/// The largest in-place transfer in one command (MDTS may lower it;
/// QEMU's default MDTS 7 allows 512 KiB): 512 pages, so that PRP1 and
/// one list page (512 entries) describe it even from an offset within a
/// page (NVMe 1.4 4.3).
pub const DIRECT_MAX: usize = 512 * PAGE as usize;
/// Admin queue entries.
const ADMIN_ENTRIES: u16 = 32;
/// I/O queue entries (64 x 64 bytes: one page of submission entries).
const IO_ENTRIES: u16 = 64;
/// The namespace used: QEMU's `nvme,drive=` creates namespace 1.
const NSID: u32 = 1;
/// The MSI-X entry of I/O completion queue 1 (entry 0 is the admin
/// queue's, module doc).
pub const IO_VECTOR: u16 = 1;

/// One submission/completion queue pair.
struct Queue {
    qid: u16,
    ring: Ring,
    sq: DmaBuf,
    cq: DmaBuf,
}

impl Queue {
    fn new(qid: u16, entries: u16) -> Option<Self> {
        let pages = |bytes: usize| bytes.div_ceil(PAGE as usize);
        Some(Self {
            qid,
            ring: Ring::new(entries),
            sq: DmaBuf::new(pages(usize::from(entries) * 64))?,
            cq: DmaBuf::new(pages(usize::from(entries) * 16))?,
        })
    }
}

/// What the device may touch: dropped normally, leaked after a timeout.
struct Dma {
    admin: Queue,
    io: Option<Queue>,
    /// Identify data, then the PRP list page.
    page: DmaBuf,
    bounce: DmaBuf,
}

/// An NVMe disk (namespace 1 of one controller).
pub struct Nvme {
    bdf: String,
    /// SBDF of the controller (to turn bus mastering off on a timeout).
    sbdf: u32,
    model: String,
    regs: mmio::Mmio,
    stride: u64,
    /// `None` once a command timed out (module doc).
    dma: Option<Dma>,
    blocks: u64,
    block_size: usize,
    /// Largest transfer per command through the bounce buffer, bytes (a
    /// multiple of the block).
    max_xfer: usize,
    /// The same, in place ([`DIRECT_MAX`], MDTS).
    max_direct: usize,
    /// Whether the command in flight points into the caller's buffer.
    in_place: bool,
    /// How I/O completions are waited for.
    done: Completions,
}

impl core::fmt::Debug for Nvme {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Nvme({})", self.bdf)
    }
}

/// Which queue a command goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Q {
    Admin,
    Io,
}

impl Nvme {
    /// Brings controller `d` up and opens namespace 1 (module doc);
    /// `poll`: the command-line option that forces polled completions.
    pub fn open(d: &PciDevice, poll: Option<&str>) -> Result<Self, DevError> {
        let err = |what: String| DevError::new(d, what);
        let bar = d
            .bars
            .iter()
            .take(usize::from(d.nr_bars))
            .find(|b| b.index == 0 && b.kind != PCI_BAR_IO && b.flags & PCI_BAR_MAPPED != 0)
            .ok_or_else(|| err("BAR0 is not a mapped memory BAR".into()))?;
        enable(d)?;
        // Registers and the doorbells of queues 0 and 1 (stride up to
        // 4 << 15 in principle; checked against the BAR below).
        let map = |len: u64| {
            mmio::map(bar.base, len).map_err(|e| err(format!("BAR0 {:#x}: {e}", bar.base)))
        };
        let r = map(PAGE)?;
        let cap = u64::from(r.read32(regs::CAP).unwrap_or(0))
            | u64::from(r.read32(regs::CAP + 4).unwrap_or(0)) << 32;
        let cap = Cap::decode(cap);
        if !cap.nvm {
            return Err(err(
                "the controller does not support the NVM command set".into()
            ));
        }
        if cap.page_min > PAGE || cap.page_max < PAGE {
            return Err(err(format!(
                "the controller does not support 4 KiB pages (min {}, max {})",
                cap.page_min, cap.page_max
            )));
        }
        let regs_len = (regs::cq_doorbell(1, cap.doorbell_stride) + 4).next_multiple_of(PAGE);
        if regs_len > bar.size {
            return Err(err(format!(
                "doorbell stride {} puts queue 1's doorbells beyond BAR0 ({:#x} bytes)",
                cap.doorbell_stride, bar.size
            )));
        }
        let regs = map(regs_len)?;
        let oom = || err("no heap left for queues and buffers".into());
        let dma = Dma {
            admin: Queue::new(0, ADMIN_ENTRIES).ok_or_else(oom)?,
            io: None,
            page: DmaBuf::new(1).ok_or_else(oom)?,
            bounce: DmaBuf::new(BOUNCE / PAGE as usize).ok_or_else(oom)?,
        };
        let mut n = Self {
            bdf: crate::pci::bdf(d.sbdf),
            sbdf: d.sbdf,
            model: String::new(),
            regs,
            stride: cap.doorbell_stride,
            dma: Some(dma),
            blocks: 0,
            block_size: 512,
            max_xfer: BOUNCE,
            max_direct: BOUNCE,
            in_place: false,
            done: Completions::polled("not set up yet"),
        };
        n.reset(&cap)?;
        n.identify(&cap)?;
        n.done = match poll {
            Some(why) => Completions::polled(format!("{why} on the command line")),
            None => match Irq::bind_msix(d, IO_VECTOR) {
                Ok(i) => Completions::by(i),
                Err(why) => Completions::polled(why),
            },
        };
        if let Err(e) = n.create_io_queues(cap.max_entries) {
            core::mem::replace(&mut n.done, Completions::polled("closed")).release();
            return Err(e);
        }
        Ok(n)
    }

    fn reg(&self, off: u64) -> u32 {
        self.regs.read32(off).unwrap_or(0)
    }

    fn set_reg(&self, off: u64, v: u32) {
        let _ = self.regs.write32(off, v);
    }

    /// Waits (bounded by CAP.TO) for CSTS.RDY to become `ready`.
    fn wait_ready(&self, cap: &Cap, ready: bool, what: &str) -> Result<(), DevError> {
        let bound = cap.timeout_ms.max(500) * 1_000_000;
        let start = time::now_ns();
        loop {
            let csts = self.reg(regs::CSTS);
            if csts & regs::CSTS_CFS != 0 && ready {
                return Err(self.error(format!("{what}: controller fatal status (CSTS {csts:#x})")));
            }
            if (csts & regs::CSTS_RDY != 0) == ready {
                return Ok(());
            }
            if time::now_ns().saturating_sub(start) > bound {
                return Err(self.error(format!(
                    "{what}: CSTS.RDY not {} within CAP.TO = {} ms (CSTS {csts:#x})",
                    u8::from(ready),
                    cap.timeout_ms
                )));
            }
            core::hint::spin_loop();
        }
    }

    /// Disables the controller, sets the admin queues, enables it.
    fn reset(&mut self, cap: &Cap) -> Result<(), DevError> {
        if self.reg(regs::CC) & regs::CC_EN != 0 {
            self.set_reg(regs::CC, 0);
        }
        self.wait_ready(cap, false, "disable")?;
        let Some(dma) = &self.dma else {
            return Err(self.error("no queues".into()));
        };
        let (asq, acq) = (dma.admin.sq.addr(0), dma.admin.cq.addr(0));
        self.set_reg(regs::AQA, regs::aqa(ADMIN_ENTRIES, ADMIN_ENTRIES));
        self.set_reg(regs::ASQ, asq as u32);
        self.set_reg(regs::ASQ + 4, (asq >> 32) as u32);
        self.set_reg(regs::ACQ, acq as u32);
        self.set_reg(regs::ACQ + 4, (acq >> 32) as u32);
        self.set_reg(regs::CC, regs::cc_enable());
        self.wait_ready(cap, true, "enable")
    }

    /// Identify Controller and Namespace 1.
    fn identify(&mut self, cap: &Cap) -> Result<(), DevError> {
        let page = self.dma_ref()?.page.addr(0);
        self.run(
            Q::Admin,
            Sqe::identify(0, 0, CNS_CONTROLLER, page),
            "Identify Controller",
        )?;
        let mut data = [0u8; 4096];
        self.dma_ref()?.page.copy_out(0, &mut data);
        let c = Controller::parse(&data);
        self.model = c.model_str().collect();
        self.run(
            Q::Admin,
            Sqe::identify(0, NSID, CNS_NAMESPACE, page),
            "Identify Namespace 1",
        )?;
        self.dma_ref()?.page.copy_out(0, &mut data);
        let ns = Namespace::parse(&data).ok_or_else(|| {
            self.error("namespace 1: LBA format not usable (beyond NLBAF or block size outside 512 B..64 KiB)".into())
        })?;
        if ns.blocks == 0 {
            return Err(self.error("namespace 1 is not active (size 0)".into()));
        }
        if ns.metadata != 0 {
            return Err(self.error(format!(
                "namespace 1 has {} metadata bytes per block: not supported",
                ns.metadata
            )));
        }
        self.blocks = ns.blocks;
        self.block_size = ns.block_size as usize;
        let max = c.max_transfer(cap.page_min, BOUNCE as u64) as usize;
        self.max_xfer = max - max % self.block_size;
        let max = c.max_transfer(cap.page_min, DIRECT_MAX as u64) as usize;
        self.max_direct = max - max % self.block_size;
        if self.max_xfer == 0 || self.max_direct == 0 {
            return Err(self.error(format!(
                "MDTS {} allows less than one {}-byte block per command",
                c.mdts, self.block_size
            )));
        }
        Ok(())
    }

    /// One I/O queue pair, its completions on [`IO_VECTOR`] if bound.
    fn create_io_queues(&mut self, max_entries: u32) -> Result<(), DevError> {
        let entries = IO_ENTRIES.min(u16::try_from(max_entries).unwrap_or(u16::MAX));
        let q = Queue::new(1, entries)
            .ok_or_else(|| self.error("no heap left for the I/O queues".into()))?;
        let (sq, cq) = (q.sq.addr(0), q.cq.addr(0));
        self.run(
            Q::Admin,
            Sqe::set_queues(0, 1),
            "Set Features (Number of Queues)",
        )?;
        let create = match self.done.irq() {
            Some(i) => Sqe::create_cq_irq(0, 1, entries, cq, i.entry),
            None => Sqe::create_cq(0, 1, entries, cq),
        };
        self.run(Q::Admin, create, "Create I/O Completion Queue")?;
        self.run(
            Q::Admin,
            Sqe::create_sq(0, 1, entries, sq, 1),
            "Create I/O Submission Queue",
        )?;
        if let Some(d) = &mut self.dma {
            d.io = Some(q);
        }
        Ok(())
    }

    fn dma_ref(&self) -> Result<&Dma, DevError> {
        self.dma.as_ref().ok_or_else(|| {
            self.error(
                "refused: an earlier command timed out (the controller may still own its buffers)"
                    .into(),
            )
        })
    }

    /// Submits `sqe` (its command id replaced) to queue `q` and waits for
    /// its completion (module doc).
    fn run(&mut self, q: Q, mut sqe: Sqe, what: &str) -> Result<Cqe, DevError> {
        let stride = self.stride;
        let regs = self.regs;
        let Some(dma) = self.dma.as_mut() else {
            return Err(self.error(format!(
                "{what}: refused, an earlier command timed out (the controller may still own its buffers)"
            )));
        };
        let queue = match q {
            Q::Admin => &mut dma.admin,
            Q::Io => match dma.io.as_mut() {
                Some(io) => io,
                None => return Err(self.error(format!("{what}: no I/O queue"))),
            },
        };
        let (slot, tail, cid) = queue.ring.submit();
        sqe.0[0] = (sqe.0[0] & 0xffff) | u32::from(cid) << 16;
        for (i, dw) in sqe.0.iter().enumerate() {
            queue.sq.write32(usize::from(slot) * 64 + i * 4, *dw);
        }
        // The entry must be in memory before the doorbell (x86 keeps
        // stores in order; this keeps the compiler from moving them).
        fence(Ordering::SeqCst);
        let _ = regs.write32(regs::sq_doorbell(queue.qid, stride), u32::from(tail));
        let deadline = time::now_ns().saturating_add(CMD_TIMEOUT_NS);
        loop {
            let at = usize::from(queue.ring.head()) * 16;
            let dw3 = queue.cq.read32(at + 12);
            if queue.ring.is_new((dw3 >> 16) & 1 != 0) {
                fence(Ordering::SeqCst);
                let e = Cqe::decode([
                    queue.cq.read32(at),
                    queue.cq.read32(at + 4),
                    queue.cq.read32(at + 8),
                    dw3,
                ]);
                let head = queue.ring.consume();
                let _ = regs.write32(regs::cq_doorbell(queue.qid, stride), u32::from(head));
                if e.cid != cid {
                    return Err(self.error(format!(
                        "{what}: completion for command {}, expected {cid}",
                        e.cid
                    )));
                }
                if !e.ok() {
                    return Err(self.error(format!(
                        "{what}: {} (status type {}, code {:#04x})",
                        e.status(),
                        e.sct,
                        e.sc
                    )));
                }
                return Ok(e);
            }
            if time::now_ns() > deadline {
                let csts = self.reg(regs::CSTS);
                // The command may point into the caller's buffer, which
                // the caller reuses once this returns: the device must
                // not write it later. Nothing else stops it, so a failure
                // then is fatal rather than silent corruption (the
                // driver's own buffers are leaked below).
                if !super::stop_dma(self.sbdf) && self.in_place {
                    panic!(
                        "{} nvme: {what}: no completion and bus mastering cannot be turned off; the controller could still write memory dom0 reuses",
                        self.bdf
                    );
                }
                if let Some(d) = self.dma.take() {
                    let Dma {
                        admin,
                        io,
                        page,
                        bounce,
                    } = d;
                    admin.sq.leak();
                    admin.cq.leak();
                    if let Some(io) = io {
                        io.sq.leak();
                        io.cq.leak();
                    }
                    page.leak();
                    bounce.leak();
                }
                return Err(self.error(format!(
                    "{what}: no completion within {} s (CSTS {csts:#x}); bus mastering off, disk disabled",
                    CMD_TIMEOUT_NS / 1_000_000_000
                )));
            }
            if q == Q::Io {
                self.done.pause(deadline);
            } else {
                core::hint::spin_loop();
            }
        }
    }
}

impl BlockDevice for Nvme {
    fn bdf(&self) -> &str {
        &self.bdf
    }
    fn kind(&self) -> &'static str {
        "nvme"
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn block_size(&self) -> usize {
        self.block_size
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
        self.read_blocks(lba, buf)
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), DevError> {
        self.check(lba, buf.len())?;
        self.write_blocks(lba, buf)
    }

    fn flush(&mut self) -> Result<(), DevError> {
        self.run(Q::Io, Sqe::flush(0, NSID), "Flush").map(|_| ())
    }
}
