//! AMD-Vi interrupt remapping (AMD IOMMU spec 2.2.5): a table per
//! device, named by its DTE (IV = 1, IntCtl = 10b remapped, IntTabLen,
//! IntTableRootPtr: [`ir::amd_dte_intr`]), of [`ir::AMD_IRT_ENTRIES`]
//! 32-bit entries; a message's data bits 10:0 index it. An attached
//! device gets its table (every entry RemapEn = 0: every interrupt it
//! sends is blocked and logged) when it is attached; a bound message
//! fills one slot. A table is one zeroed frame, from the frames the DMA
//! tables come from, so an index past IntTabLen that a unit reads
//! anyway (QEMU 7.2 does not check IntTabLen) finds RemapEn = 0 too.
//!
//! Every change is followed by INVALIDATE_INTERRUPT_TABLE (2.4.5) and a
//! COMPLETION_WAIT: when a call returns, the unit uses what was written.

use core::sync::atomic::Ordering;

use super::super::encode_ir as ir;
use super::{AmdVi, AmdViError, word};
use crate::arch::frames;

/// One device's interrupt table.
pub(super) struct IntTable {
    frame: u64,
    /// The vector each slot delivers; 0 where free (vectors start at 0x40).
    slots: [u8; ir::AMD_IRT_ENTRIES as usize],
}

impl AmdVi {
    /// The DTE's interrupt word for `devid`: remapped through its table,
    /// or 0 (IV = 0: the DTE says nothing about interrupts; only used
    /// for devices no domain has, and for the I/O APIC and HPET, whose
    /// interrupts the hypervisor's own line uses).
    pub(super) fn intr_word(&self, devid: u16) -> u64 {
        self.irqs
            .get(&devid)
            .map_or(0, |t| ir::amd_dte_intr(t.frame))
    }

    /// Gives `devid` an empty interrupt table (every interrupt blocked)
    /// if it has none; the caller rewrites and invalidates its DTE.
    pub(super) fn ensure_int_table(&mut self, devid: u16) -> Result<bool, AmdViError> {
        if self.irqs.contains_key(&devid) {
            return Ok(false);
        }
        let frame = frames::alloc_zeroed_frame().ok_or(AmdViError::NoMemory)?;
        self.irqs.insert(
            devid,
            IntTable {
                frame,
                slots: [0; ir::AMD_IRT_ENTRIES as usize],
            },
        );
        Ok(true)
    }

    /// Takes `devid`'s table away (its DTE no longer names it): the frame
    /// to free once the unit has confirmed the invalidation.
    pub(super) fn take_int_table(&mut self, devid: u16) -> Option<u64> {
        self.irqs.remove(&devid).map(|t| t.frame)
    }

    /// Stores the 32-bit entry `slot` of `table` (read-modify-write of
    /// its 64-bit word: only this code writes the table).
    fn store_irte(table: u64, slot: usize, value: u32) {
        let at = table + (slot as u64 / 2) * 8;
        if let Some(w) = word(at) {
            let shift = (slot % 2) * 32;
            let old = w.load(Ordering::Acquire);
            let new = (old & !(0xffff_ffff << shift)) | (u64::from(value) << shift);
            w.store(new, Ordering::Release);
        }
    }

    /// Fills a free slot of `devid`'s table to deliver `vector` to APIC
    /// `dest` (fixed, physical), invalidated and completed; returns the
    /// slot (the message's data). A device with no table yet (not
    /// attached: `iommu=off-unsafe` beside a unit) gets one first.
    pub fn irq_bind(&mut self, devid: u16, vector: u8, dest: u8) -> Result<u16, AmdViError> {
        if self.ensure_int_table(devid)? {
            let at = self.dev_tab + u64::from(devid) * 32 + 16;
            if let Some(w) = word(at) {
                w.store(self.intr_word(devid), Ordering::Release);
            }
            self.submit(super::encode::amd_inv_devtab(devid))?;
        }
        let t = self.irqs.get_mut(&devid).ok_or(AmdViError::NoMemory)?;
        let slot = t
            .slots
            .iter()
            .position(|&v| v == 0)
            .ok_or(AmdViError::NoMemory)?;
        t.slots[slot] = vector;
        let frame = t.frame;
        Self::store_irte(frame, slot, ir::amd_irte(vector, dest));
        self.submit(ir::amd_inv_int_table(devid))?;
        self.complete()?;
        Ok(slot as u16)
    }

    /// Clears the slot of `devid`'s table that delivers `vector`,
    /// invalidated and completed (nothing to do if there is none).
    pub fn irq_unbind(&mut self, devid: u16, vector: u8) -> Result<(), AmdViError> {
        let Some(t) = self.irqs.get_mut(&devid) else {
            return Ok(());
        };
        let Some(slot) = t.slots.iter().position(|&v| v == vector) else {
            return Ok(());
        };
        let frame = t.frame;
        Self::store_irte(frame, slot, 0);
        self.submit(ir::amd_inv_int_table(devid))?;
        self.complete()?;
        // Free only once the unit has stopped using it.
        if let Some(t) = self.irqs.get_mut(&devid) {
            t.slots[slot] = 0;
        }
        Ok(())
    }
}
