//! A routed I/O APIC pin switched to the remappable format (VT-d 5.1.5.1)
//! once an IOMMU unit remaps interrupts: with GCMD.CFI = 0 the unit
//! blocks compatibility-format interrupts, the I/O APIC's included, so
//! the pins the hypervisor routed (`route_isa_irq`) must name a
//! remapping entry instead. Redirection entry, remappable format: bit
//! 48 the interrupt format (1), bits 63:49 the handle's bits 14:0, bit
//! 11 its bit 15; vector, trigger, polarity and mask as before, delivery
//! mode 000.

use super::{LOCK, REG_REDTBL, REG_VERSION, TRIGGER_LEVEL, in_window, read, write};
use crate::arch::acpi::Topology;

/// Redirection entry: masked (bit 16), and the low dword's delivery
/// mode and destination mode (bits 11:8), 0 for a fixed physical entry.
const MASKED: u32 = 1 << 16;
const MODE_BITS: u32 = 0xf << 8;
/// The high dword's interrupt format bit (entry bit 48).
const FORMAT_REMAPPABLE: u32 = 1 << 16;

/// An unmasked pin in compatibility format, as the remapping unit needs
/// to know it.
#[derive(Debug, Clone, Copy)]
pub struct Pin {
    /// The I/O APIC's id (MADT).
    pub ioapic_id: u8,
    /// The pin's GSI.
    pub gsi: u32,
    pub vector: u8,
    /// The destination APIC id (bits 63:56).
    pub dest: u8,
    /// Level triggered (else edge).
    pub level: bool,
}

/// Offers every unmasked, fixed, physical pin in compatibility format
/// that carries `vector` to `entry`, and writes the high dword `entry`
/// returns (the IOMMU's: `iommu::encode_ir::vtd_ioapic_rte_high`, a
/// handle below 0x8000). Only the high dword changes, in one write: with
/// the low dword's bits 11:8 already 0 (handle bit 15 is 0), the entry
/// switches from the old form to the new at once, so no interrupt is
/// lost while it changes. Returns how many pins changed.
pub fn remap_unmasked(
    topo: &Topology,
    vector: u8,
    mut entry: impl FnMut(&Pin) -> Option<u32>,
) -> usize {
    let _guard = LOCK.lock();
    let mut n = 0;
    for io in &topo.io_apic_list {
        if !in_window(io.address) {
            continue;
        }
        let entries = (read(io.address, REG_VERSION) >> 16 & 0xff) + 1;
        for pin in 0..entries {
            let reg = REG_REDTBL + 2 * pin;
            let (low, high) = (read(io.address, reg), read(io.address, reg + 1));
            if low & MASKED != 0
                || low & MODE_BITS != 0
                || high & FORMAT_REMAPPABLE != 0
                || low as u8 != vector
            {
                continue;
            }
            let p = Pin {
                ioapic_id: io.id,
                gsi: io.gsi_base + pin,
                vector,
                dest: (high >> 24) as u8,
                level: low & TRIGGER_LEVEL != 0,
            };
            if let Some(h) = entry(&p).filter(|h| h & FORMAT_REMAPPABLE != 0) {
                write(io.address, reg + 1, h);
                n += 1;
            }
        }
    }
    n
}
