//! AMD-Vi (AMD I/O Virtualization Technology (IOMMU) Specification,
//! rev. 3.x): one unit. A device table of 65,536 entries (DTE, 2.2.2),
//! indexed by requester id, every one valid (V = 1, TV = 1) and blocking:
//! IR = IW = 0, so every DMA is refused and logged as IO_PAGE_FAULT.
//! Attaching points the DTE at the domain's page table ([`super::pt`]).
//!
//! Changes reach the unit through the command buffer (2.4):
//! INVALIDATE_DEVTAB_ENTRY, INVALIDATE_IOMMU_PAGES, then COMPLETION_WAIT,
//! whose store tells us every earlier command has completed. Faults
//! arrive in the event log (2.5), read by [`AmdVi::take_events`].

use alloc::collections::BTreeMap;
use core::sync::atomic::{AtomicU64, Ordering};

use super::encode;
use super::encode_ir;
use super::mmio::Regs;
use crate::arch::frames;
use crate::domain::memory::FrameTables;
use crate::mm::gpt::TableMemory;

#[path = "amdvi_ir.rs"]
mod intr;

// MMIO registers (3.4).
const DEV_TAB: u64 = 0x0000;
const CMD_BUF: u64 = 0x0008;
const EVT_LOG: u64 = 0x0010;
const CONTROL: u64 = 0x0018;
const EFR: u64 = 0x0030;
const CMD_HEAD: u64 = 0x2000;
const CMD_TAIL: u64 = 0x2008;
const EVT_HEAD: u64 = 0x2010;
const EVT_TAIL: u64 = 0x2018;
const STATUS: u64 = 0x2020;
/// The register block reaches past the status register (3.4).
const REGS_LEN: u64 = 0x4000;

// Control register bits (3.4.4).
const IOMMU_EN: u64 = 1 << 0;
const EVENT_LOG_EN: u64 = 1 << 2;
const COHERENT: u64 = 1 << 10;
const CMD_BUF_EN: u64 = 1 << 12;

/// 256 entries of 16 bytes: one 4 KiB frame each for commands and events
/// (ComLen/EventLen = 8, the minimum, 3.4.2).
const RING_ENTRIES: u64 = 256;
const LEN_256: u64 = 8 << 56;
/// Device table: 65,536 entries of 32 bytes = 512 frames (Size = 511).
const DEV_TAB_PAGES: u64 = 512;

/// Polls of a completion before giving up (QEMU completes at once).
const SPIN: u64 = 50_000_000;

/// Why a unit could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmdViError {
    Map(u64),
    NoMemory,
    Timeout(&'static str),
}

pub use super::encode::AmdEvent as Event;

/// What an event code means (2.5, table 45).
pub fn event_text(code: u8) -> &'static str {
    match code {
        1 => "ILLEGAL_DEV_TABLE_ENTRY",
        2 => "IO_PAGE_FAULT",
        3 => "DEV_TAB_HARDWARE_ERROR",
        4 => "PAGE_TAB_HARDWARE_ERROR",
        5 => "ILLEGAL_COMMAND_ERROR",
        6 => "COMMAND_HARDWARE_ERROR",
        7 => "IOTLB_INV_TIMEOUT",
        8 => "INVALID_DEVICE_REQUEST",
        _ => "see AMD IOMMU spec table 45",
    }
}

/// One AMD-Vi unit, running.
pub struct AmdVi {
    regs: Regs,
    pub efr: u64,
    dev_tab: u64,
    cmd: u64,
    evt: u64,
    /// A frame the unit writes COMPLETION_WAIT data into.
    sem: u64,
    seq: u64,
    /// The empty table every blocked DTE points at (never written).
    empty: u64,
    /// Interrupt tables by device id (`amdvi_ir.rs`).
    irqs: BTreeMap<u16, intr::IntTable>,
}

fn mem() -> FrameTables {
    FrameTables::default()
}

fn word(addr: u64) -> Option<&'static AtomicU64> {
    use crate::platform::Platform;
    crate::platform::P::phys_word(addr)
}

impl AmdVi {
    /// Takes over the unit at `base`: every device blocked, then enabled.
    pub fn start(base: u64) -> Result<Self, AmdViError> {
        let regs = Regs::map(base, REGS_LEN).map_err(|_| AmdViError::Map(base))?;
        // Off while its tables change (firmware may have left it on).
        regs.w64(CONTROL, 0);
        let dev_tab = frames::alloc_frames(DEV_TAB_PAGES).ok_or(AmdViError::NoMemory)?;
        let take = || frames::alloc_zeroed_frame().ok_or(AmdViError::NoMemory);
        let (cmd, evt, sem, empty) = (take()?, take()?, take()?, take()?);
        let mut unit = AmdVi {
            regs,
            efr: regs.r64(EFR),
            dev_tab,
            cmd,
            evt,
            sem,
            seq: 0,
            empty,
            irqs: BTreeMap::new(),
        };
        // The empty table's entries are "not present" in the form QEMU
        // reports (see `pt::Format::empty`).
        for i in 0..512 {
            mem().write_entry(empty, i, 1 << 9);
        }
        for devid in 0..=u16::MAX {
            unit.write_dte(devid, None, 0);
        }
        regs.w64(DEV_TAB, dev_tab | (DEV_TAB_PAGES - 1));
        regs.w64(CMD_BUF, cmd | LEN_256);
        regs.w64(EVT_LOG, evt | LEN_256);
        for r in [CMD_HEAD, CMD_TAIL, EVT_HEAD, EVT_TAIL] {
            regs.w64(r, 0);
        }
        regs.w64(CONTROL, IOMMU_EN | EVENT_LOG_EN | CMD_BUF_EN | COHERENT);
        // Nothing was cached while it was off with our tables, but entries
        // from before (firmware) may be: drop them all.
        unit.invalidate_all_devices()?;
        Ok(unit)
    }

    /// The register block's physical base.
    pub fn base(&self) -> u64 {
        self.regs.base()
    }

    /// Writes the DTE of `devid`: blocking (`None`) or translating through
    /// the table `(root, levels)` under domain id `did`, with `intr` as
    /// its interrupt word (2). Words 1..3 first, word 0 (V, TV, the root)
    /// last, so the entry is whole when read.
    fn write_dte(&mut self, devid: u16, to: Option<(u64, u32, u16)>, intr: u64) {
        let at = self.dev_tab + u64::from(devid) * 32;
        let mut dte = encode::amd_dte(to, self.empty);
        dte[2] = intr;
        for i in [1usize, 2, 3, 0] {
            if let Some(w) = word(at + i as u64 * 8) {
                w.store(dte[i], Ordering::Release);
            }
        }
    }

    /// Appends one command and rings the doorbell (tail), waiting while
    /// the ring is full.
    fn submit(&mut self, cmd: [u64; 2]) -> Result<(), AmdViError> {
        let tail = self.regs.r64(CMD_TAIL) & 0x7fff0;
        let next = (tail + 16) % (RING_ENTRIES * 16);
        self.wait(
            |s| s.regs.r64(CMD_HEAD) & 0x7fff0 != next,
            "command buffer space",
        )?;
        for (i, v) in cmd.iter().enumerate() {
            if let Some(w) = word(self.cmd + tail + i as u64 * 8) {
                w.store(*v, Ordering::Release);
            }
        }
        self.regs.w64(CMD_TAIL, next);
        Ok(())
    }

    fn wait(
        &self,
        mut done: impl FnMut(&Self) -> bool,
        what: &'static str,
    ) -> Result<(), AmdViError> {
        for _ in 0..SPIN {
            if done(self) {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(AmdViError::Timeout(what))
    }

    /// COMPLETION_WAIT with a store (2.4.1): returns once the unit has
    /// finished every command before it.
    fn complete(&mut self) -> Result<(), AmdViError> {
        self.seq += 1;
        let seq = self.seq;
        self.submit(encode::amd_completion_wait(self.sem, seq))?;
        let sem = word(self.sem).ok_or(AmdViError::NoMemory)?;
        self.wait(|_| sem.load(Ordering::Acquire) == seq, "COMPLETION_WAIT")
    }

    /// INVALIDATE_DEVTAB_ENTRY (opcode 02h, 2.4.2) and INVALIDATE_IOMMU_PAGES
    /// (03h, 2.4.3: S = 1, PDE = 1 and address 7FFF_FFFF_FFFF_F000h = every
    /// page of domain `did`), then wait for both.
    pub fn invalidate(&mut self, devid: u16, did: u16) -> Result<(), AmdViError> {
        self.submit([u64::from(devid) | (2 << 60), 0])?;
        self.submit([
            (u64::from(did) << 32) | (3 << 60),
            0x7fff_ffff_ffff_f000 | 3,
        ])?;
        self.complete()
    }

    /// Drops every cached DTE and translation: INVALIDATE_IOMMU_ALL
    /// (opcode 08h, 2.4.8) where EFR.IASup (bit 6) says the unit has it,
    /// else one INVALIDATE_DEVTAB_ENTRY per device id.
    fn invalidate_all_devices(&mut self) -> Result<(), AmdViError> {
        if self.efr & (1 << 6) != 0 {
            self.submit(encode::amd_inv_all())?;
        } else {
            for devid in 0..=u16::MAX {
                self.submit(encode::amd_inv_devtab(devid))?;
            }
        }
        self.submit(encode::amd_inv_pages(0))?;
        self.complete()
    }

    /// Points `devid` at `(root, levels)` under domain id `did`, or blocks
    /// it; returns after the unit has dropped what it cached. Attached,
    /// its interrupts are remapped through its own table (every entry
    /// blocked until a message is bound: `amdvi_ir.rs`); blocked again,
    /// its interrupts are aborted (IV = 1, IntCtl = 00b) and its table is
    /// freed once the unit has confirmed.
    pub fn set_dte(
        &mut self,
        devid: u16,
        to: Option<(u64, u32, u16)>,
        old_did: u16,
    ) -> Result<(), AmdViError> {
        let mut gone = None;
        let intr = if to.is_some() {
            self.ensure_int_table(devid)?;
            self.intr_word(devid)
        } else {
            gone = self.take_int_table(devid);
            1
        };
        self.write_dte(devid, to, intr);
        self.submit(encode_ir::amd_inv_int_table(devid))?;
        self.invalidate(devid, to.map_or(old_did, |t| t.2))?;
        if let Some(frame) = gone {
            frames::free_frames(frame, 1);
        }
        Ok(())
    }

    /// Reads every new event-log entry and moves the head past it.
    pub fn take_events(&self, mut each: impl FnMut(Event)) {
        let len = RING_ENTRIES * 16;
        let mut head = self.regs.r64(EVT_HEAD) & 0x7fff0;
        let tail = self.regs.r64(EVT_TAIL) & 0x7fff0;
        while head != tail && head < len {
            let w = |i: u64| word(self.evt + head + i * 8).map_or(0, |w| w.load(Ordering::Acquire));
            each(encode::amd_event(w(0), w(1)));
            head = (head + 16) % len;
        }
        self.regs.w64(EVT_HEAD, head);
        // Event overflow is write-1-to-clear (3.4.13); the log was emptied.
        if self.regs.r64(STATUS) & 1 != 0 {
            self.regs.w64(STATUS, 1);
        }
    }
}
