//! Interrupt remapping on the running units: one remapping-table entry
//! per bound message, filled at bind and cleared (with the unit's cache
//! of it invalidated, completed) at unbind, before the vector is reused.
//!
//! VT-d: one table per unit, the entry's index is the host vector (unique
//! host-wide, < 256), the entry names the function's requester id (SVT
//! 01), so a message naming it from any other requester faults (reason
//! 26h). AMD-Vi: see `amdvi_ir.rs`.

use super::super::encode::VtdFault;
use super::super::encode_ir as ir;
use super::super::vtd::Vtd;
use super::{Bdf, Hw, IommuError, STATE, amd_err, unit_of, vtd_err};

/// Logs whether `hw` (VT-d unit `i`) remaps interrupts.
pub(super) fn log_vtd(i: usize, hw: &Vtd) {
    if hw.remapping() {
        log::info!(
            "iommu: interrupt remapping on: VT-d unit {i}, {}-entry table, compatibility-format interrupts blocked",
            ir::VTD_IRT_ENTRIES
        );
    } else {
        log::warn!(
            "iommu: interrupt remapping off on VT-d unit {i} (it lacks queued invalidation or interrupt remapping): its devices' messages reach the APIC unchecked"
        );
    }
}

/// Logs `f` when it is an interrupt-remapping fault (true), else leaves
/// it to the DMA-fault line (false).
pub(super) fn log_vtd_fault(i: usize, seg: u16, f: &VtdFault) -> bool {
    if !ir::vtd_is_ir_fault(f.reason) {
        return false;
    }
    log::warn!(
        "iommu: interrupt-remapping fault on VT-d unit {i}: device {} index {:#x}: reason {:#x} ({}); interrupt blocked",
        Bdf(seg, f.source),
        ir::vtd_ir_fault_index(f.addr),
        f.reason,
        ir::vtd_ir_reason_text(f.reason)
    );
    true
}

/// Makes the unit covering `(seg, rid)` deliver `vector` to APIC `dest`
/// for that function alone, and returns the message (address, data) the
/// function must send for it. `Ok(None)`: no unit covers the function or
/// its unit does not remap, so the ordinary message is to be written.
pub fn irq_bind(
    seg: u16,
    rid: u16,
    vector: u8,
    dest: u8,
) -> Result<Option<(u64, u32)>, IommuError> {
    let mut guard = STATE.lock();
    let Some(st) = guard.as_mut() else {
        return Ok(None);
    };
    let Some(u) = unit_of(st, seg, rid) else {
        return Ok(None);
    };
    let source = st.units[u].source(rid);
    match &mut st.units[u].hw {
        Hw::Vtd(v) if v.remapping() => {
            let index = u16::from(vector);
            v.set_irte(index, Some(ir::vtd_irte(vector, dest, source)))
                .map_err(vtd_err)?;
            Ok(Some(ir::vtd_remappable(index)))
        }
        Hw::Vtd(_) => Ok(None),
        Hw::Amd(a, _) => a
            .irq_bind(source, vector, dest)
            .map(|slot| Some(ir::amd_remapped(slot)))
            .map_err(amd_err),
    }
}

/// Undoes [`irq_bind`]: the entry cleared and the unit's cached copy
/// invalidated, completed, so the vector may be given to another
/// message. The caller has disabled the message at the device first.
pub fn irq_unbind(seg: u16, rid: u16, vector: u8) -> Result<(), IommuError> {
    let mut guard = STATE.lock();
    let Some(st) = guard.as_mut() else {
        return Ok(());
    };
    let Some(u) = unit_of(st, seg, rid) else {
        return Ok(());
    };
    let source = st.units[u].source(rid);
    match &mut st.units[u].hw {
        Hw::Vtd(v) if v.remapping() => v.set_irte(u16::from(vector), None).map_err(vtd_err),
        Hw::Vtd(_) => Ok(()),
        Hw::Amd(a, _) => a.irq_unbind(source, vector).map_err(amd_err),
    }
}

/// Switches the I/O APIC pins the hypervisor routed to `vector` (the
/// management line's) to remapping entries on the VT-d unit whose DMAR
/// scope names their I/O APIC (type 03h, enumeration id = the MADT's
/// I/O APIC id; its path gives the source id the entry checks): with
/// CFI = 0 that unit would block them in compatibility format. The
/// entry's index is the vector (outside the MSI range 0x40-0xdf). An
/// AMD-Vi unit leaves the I/O APIC's device id unremapped (IV = 0), so
/// nothing is needed there. Level-triggered pins are left (and logged):
/// their entry would need TM = 1 and EOI handling this code lacks.
pub fn remap_ioapic(topo: &crate::arch::acpi::Topology, vector: u8) {
    use super::super::dmar::ScopeKind;
    let mut guard = STATE.lock();
    let Some(st) = guard.as_mut() else { return };
    // (unit index, I/O APIC id, source id) for each remapping VT-d unit.
    let mut scopes = alloc::vec::Vec::new();
    if let Some(d) = st.dmar.as_ref() {
        for drhd in &d.units {
            let Some(u) = st.units.iter().position(|u| {
                u.base() == drhd.base && matches!(&u.hw, Hw::Vtd(v) if v.remapping())
            }) else {
                continue;
            };
            for s in drhd.scopes.iter().filter(|s| s.kind == ScopeKind::IoApic) {
                if let Some(sid) = s.direct_rid() {
                    scopes.push((u, s.enum_id, sid));
                }
            }
        }
    }
    if scopes.is_empty() {
        return;
    }
    crate::arch::ioapic::remap_unmasked(topo, vector, |p| {
        let Some(&(u, _, sid)) = scopes.iter().find(|s| s.1 == p.ioapic_id) else {
            log::warn!(
                "iommu: I/O APIC {} GSI {} not remapped: no DMAR scope names it; a unit that blocks compatibility-format interrupts drops it",
                p.ioapic_id,
                p.gsi
            );
            return None;
        };
        if p.level {
            log::warn!(
                "iommu: I/O APIC {} GSI {} not remapped: level-triggered",
                p.ioapic_id,
                p.gsi
            );
            return None;
        }
        let Hw::Vtd(v) = &mut st.units[u].hw else {
            return None;
        };
        let index = u16::from(p.vector);
        let high = ir::vtd_ioapic_rte_high(index)?;
        match v.set_irte(index, Some(ir::vtd_irte(p.vector, p.dest, sid))) {
            Ok(()) => {
                log::info!(
                    "iommu: I/O APIC {} GSI {} remapped: VT-d unit {u} entry {index:#x}, source {}",
                    p.ioapic_id,
                    p.gsi,
                    Bdf(st.units[u].segment, sid)
                );
                Some(high)
            }
            Err(e) => {
                log::error!(
                    "iommu: I/O APIC {} GSI {} not remapped: {e:?}",
                    p.ioapic_id,
                    p.gsi
                );
                None
            }
        }
    });
}
