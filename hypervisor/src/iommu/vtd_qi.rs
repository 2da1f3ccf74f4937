//! VT-d queued invalidation (VT-d 6.5.2) and the interrupt-remapping
//! table (VT-d 5.1, 9.10) of one unit.
//!
//! Queued invalidation replaces the CCMD/IOTLB registers wherever the
//! unit has it (ECAP.QI): once GSTS.QIES is set, register-based
//! invalidation must not be used (VT-d 6.5.2), and interrupt remapping
//! can only be invalidated through the queue (the interrupt-entry-cache
//! descriptor has no register form), so remapping is enabled only on a
//! unit whose queue runs. Every batch of descriptors ends with an
//! invalidation-wait descriptor whose status write is polled: when
//! [`Qi::run`] returns, the unit has finished everything before it.

use core::sync::atomic::{AtomicU64, Ordering};

use super::super::encode_ir as ir;
use super::{Vtd, VtdError};
use crate::arch::frames;
use crate::domain::memory::FrameTables;
use crate::mm::gpt::TableMemory;

// Registers (VT-d 11.4.9).
const FSTS: u64 = 0x34;
const IQH: u64 = 0x80;
const IQT: u64 = 0x88;
const IQA: u64 = 0x90;
const IRTA: u64 = 0xb8;

// GCMD/GSTS bits (VT-d 11.4.4, 11.4.5).
pub(super) const QIE: u32 = 1 << 26;
const IRE: u32 = 1 << 25;
const SIRTP: u32 = 1 << 24;
const CFI: u32 = 1 << 23;

/// FSTS.IQE (VT-d 11.4.7): the unit found an invalid descriptor and
/// stopped fetching (IQH names it).
const FSTS_IQE: u32 = 1 << 4;

/// A unit's invalidation queue: one page of 128-bit descriptors.
pub(super) struct Qi {
    queue: u64,
    /// The frame whose first dword the wait descriptors write.
    status: u64,
    seq: u32,
}

/// The 64-bit word whose low dword (little endian) the wait descriptor
/// writes (VT-d 6.5.2.8: a 32-bit store at a 4-byte aligned address).
fn status_word(addr: u64) -> Option<&'static AtomicU64> {
    use crate::platform::Platform;
    crate::platform::P::phys_word(addr)
}

impl Vtd {
    /// Starts the invalidation queue (VT-d 6.5.2: queue disabled while
    /// IQA is written, IQT = 0, then GCMD.QIE and wait for GSTS.QIES).
    pub(super) fn start_qi(&mut self) -> Result<(), VtdError> {
        if self.regs.r32(super::GSTS) & QIE != 0 {
            // Firmware left it on: off first, so IQA may change.
            let keep = self.regs.r32(super::GSTS) & super::GSTS_KEEP & !QIE;
            self.regs.w32(super::GCMD, keep);
            self.wait(
                || self.regs.r32(super::GSTS) & QIE == 0,
                "disable queued invalidation",
            )?;
        }
        let queue = frames::alloc_zeroed_frame().ok_or(VtdError::NoMemory)?;
        let status = frames::alloc_zeroed_frame().ok_or(VtdError::NoMemory)?;
        self.regs.w64(IQT, 0);
        self.regs.w64(IQA, ir::vtd_iqa(queue));
        self.command(QIE, QIE, true, "enable queued invalidation")?;
        self.qi = Some(Qi {
            queue,
            status,
            seq: 0,
        });
        Ok(())
    }

    /// Queues `descs` and an invalidation wait after them, then polls
    /// the wait's status write. `Err` names what did not complete.
    pub(super) fn run(&mut self, descs: &[[u64; 2]], what: &'static str) -> Result<(), VtdError> {
        let Some(q) = self.qi.as_mut() else {
            return Err(VtdError::Timeout("queued invalidation not running"));
        };
        q.seq = q.seq.wrapping_add(1).max(1);
        let (queue, status, seq) = (q.queue, q.status, q.seq);
        let wait = ir::vtd_qi_wait(status, seq);
        let n = ir::VTD_IQ_ENTRIES;
        for d in descs.iter().chain(core::iter::once(&wait)) {
            let tail = (self.regs.r64(IQT) >> 4) % n;
            let next = (tail + 1) % n;
            self.wait(
                || (self.regs.r64(IQH) >> 4) % n != next,
                "invalidation queue space",
            )?;
            let mut mem = FrameTables::default();
            mem.write_entry(queue, (tail * 2 + 1) as usize, d[1]);
            mem.write_entry(queue, (tail * 2) as usize, d[0]);
            self.sync(queue + tail * 16, 16);
            // IQT holds the next free descriptor's offset (bits 18:4).
            self.regs.w64(IQT, next << 4);
        }
        let word = status_word(status).ok_or(VtdError::NoMemory)?;
        let regs = self.regs;
        self.wait(
            || word.load(Ordering::Acquire) as u32 == seq || regs.r32(FSTS) & FSTS_IQE != 0,
            what,
        )?;
        if self.regs.r32(FSTS) & FSTS_IQE != 0 {
            // Cleared so a later batch may run; the batch did not.
            self.regs.w32(FSTS, FSTS_IQE);
            return Err(VtdError::Timeout("invalidation queue error (FSTS.IQE)"));
        }
        Ok(())
    }

    /// Turns interrupt remapping on, with every entry not present: IRTA,
    /// GCMD.SIRTP, a global interrupt-entry-cache invalidation, then
    /// GCMD.IRE (VT-d 5.1, 11.4.4). GCMD.CFI is left (or made) 0, so
    /// compatibility-format interrupts are blocked (fault reason 25h).
    pub(super) fn start_ir(&mut self) -> Result<(), VtdError> {
        let table = frames::alloc_zeroed_frame().ok_or(VtdError::NoMemory)?;
        self.sync(table, 4096);
        self.regs.w64(IRTA, ir::vtd_irta(table));
        self.command(SIRTP, SIRTP, true, "set interrupt remapping table pointer")?;
        self.irt = table;
        self.run(
            &[ir::vtd_qi_iec(None)],
            "interrupt entry cache invalidation",
        )?;
        self.command(IRE, IRE, true, "enable interrupt remapping")?;
        if self.regs.r32(super::GSTS) & CFI != 0 {
            let keep = self.regs.r32(super::GSTS) & super::GSTS_KEEP & !CFI;
            self.regs.w32(super::GCMD, keep);
            self.wait(
                || self.regs.r32(super::GSTS) & CFI == 0,
                "block compatibility-format interrupts",
            )?;
        }
        Ok(())
    }

    /// Whether interrupts through this unit are remapped.
    pub fn remapping(&self) -> bool {
        self.irt != 0
    }

    /// Writes IRTE `index` (< [`ir::VTD_IRT_ENTRIES`]) or clears it
    /// (`None`), then invalidates the unit's cached copy of it and waits:
    /// when this returns, the unit uses the new entry.
    pub fn set_irte(&mut self, index: u16, entry: Option<(u64, u64)>) -> Result<(), VtdError> {
        if self.irt == 0 || u64::from(index) >= ir::VTD_IRT_ENTRIES {
            return Err(VtdError::Timeout("interrupt remapping not running"));
        }
        let mut mem = FrameTables::default();
        let at = u64::from(index) * 2;
        match entry {
            // High word first: the entry is whole once P is set.
            Some((lo, hi)) => {
                mem.write_entry(self.irt, (at + 1) as usize, hi);
                mem.write_entry(self.irt, at as usize, lo);
            }
            // P cleared first: never a present entry with a stale half.
            None => {
                mem.write_entry(self.irt, at as usize, 0);
                mem.write_entry(self.irt, (at + 1) as usize, 0);
            }
        }
        self.sync(self.irt + at * 8, 16);
        self.run(
            &[ir::vtd_qi_iec(Some(index))],
            "interrupt entry cache invalidation",
        )
    }
}
