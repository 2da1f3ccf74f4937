//! Interrupt remapping's bit layouts, as pure functions so the spec
//! facts are host-tested (`encode_ir_tests.rs`): VT-d interrupt-remapping
//! table entries, the remappable MSI format, the queued-invalidation
//! descriptors; AMD-Vi interrupt-table entries, the DTE's interrupt word
//! and INVALIDATE_INTERRUPT_TABLE.
//!
//! Sizing: a VT-d unit has one table for all its devices (IRTA is a
//! unit register, VT-d 9.10), indexed here by the host vector, which is
//! unique host-wide and below 256: [`VTD_IRT_ENTRIES`] entries of 16
//! bytes fill one 4 KiB frame. An AMD-Vi table is per device (DTE,
//! AMD IOMMU spec 2.2.5): [`AMD_IRT_ENTRIES`] = `PCI_MSI_MAX_BOUND`
//! slots of 4 bytes, as a domain can bind no more messages than that.

/// Entries of a VT-d interrupt-remapping table: one per host vector.
pub const VTD_IRT_ENTRIES: u64 = 256;
/// IRTA.S for [`VTD_IRT_ENTRIES`]: the table has 2^(S+1) entries (VT-d
/// 11.4.9.2).
pub const VTD_IRTA_S: u64 = 7;

/// The IRTA register (VT-d 11.4.9.2): the table's address (bits 63:12),
/// EIME (bit 11) 0 — xAPIC mode, 8-bit destinations, as the hypervisor
/// runs the local APIC in xAPIC mode — and S (bits 3:0).
pub fn vtd_irta(table: u64) -> u64 {
    (table & !0xfff) | VTD_IRTA_S
}

/// A VT-d IRTE for remapped interrupts (VT-d 9.10, 128 bits): (low
/// word, high word). Low: P (bit 0), FPD 0 (faults reported), DM 0
/// (physical destination), RH 0, TM 0 (edge), DLM 000 (fixed), IM 0
/// (remapped, not posted), V (bits 23:16) the vector, DST (bits 63:32)
/// with the 8-bit xAPIC id in bits 47:40 (DST bits 15:8, as EIME = 0).
/// High: SID (bits 79:64) the requester id, SQ 00 (all 16 bits
/// compared), SVT 01 (bits 83:82: verify the requester against SID and
/// SQ), so only that function's requests can use the entry.
pub fn vtd_irte(vector: u8, dest: u8, sid: u16) -> (u64, u64) {
    (
        1 | u64::from(vector) << 16 | u64::from(dest) << 40,
        u64::from(sid) | 0b01 << 18,
    )
}

/// The message of remappable format that names IRTE `handle` (VT-d
/// 5.1.2.2): address bits 31:20 0FEEh, 19:5 handle[14:0], bit 4 the
/// interrupt format (1: remappable), bit 3 SHV 0 (no subhandle: the data
/// is not used to compute the index), bit 2 handle[15]. Data 0.
pub fn vtd_remappable(handle: u16) -> (u64, u32) {
    let h = u64::from(handle);
    (0xfee0_0000 | (h & 0x7fff) << 5 | 1 << 4 | (h >> 15) << 2, 0)
}

/// The IRTE handle a remappable message names (the inverse of
/// [`vtd_remappable`]); `None` for a compatibility-format message.
pub fn vtd_handle(addr: u64) -> Option<u16> {
    (addr & 1 << 4 != 0).then_some(((addr >> 5) & 0x7fff | ((addr >> 2) & 1) << 15) as u16)
}

/// The high dword of an I/O APIC redirection entry in remappable format
/// naming IRTE `handle` (VT-d 5.1.5.1): entry bit 48 (here 16) the
/// interrupt format 1, bits 63:49 (here 31:17) handle[14:0]. Handle bit
/// 15 goes to the low dword's bit 11, which the caller keeps 0: `None`
/// for a handle that needs it.
pub fn vtd_ioapic_rte_high(handle: u16) -> Option<u32> {
    (handle & 0x8000 == 0).then_some(u32::from(handle) << 17 | 1 << 16)
}

/// Queued-invalidation descriptors, 128 bits each (VT-d 6.5.2), as
/// (low, high). The invalidation queue register values first.
///
/// IQA (VT-d 11.4.9.1): the queue's base (bits 63:12), DW 0 (128-bit
/// descriptors), QS 0 (one 4 KiB page: 256 descriptors).
pub fn vtd_iqa(queue: u64) -> u64 {
    queue & !0xfff
}

/// Descriptors a one-page queue holds.
pub const VTD_IQ_ENTRIES: u64 = 256;

/// Context-cache invalidation, global (6.5.2.1: type 1, G bits 5:4 = 01).
pub fn vtd_qi_context_global() -> [u64; 2] {
    [0x1 | 0b01 << 4, 0]
}

/// IOTLB invalidation, global, draining reads and writes (6.5.2.3: type
/// 2, G bits 5:4 = 01, DW bit 6, DR bit 7).
pub fn vtd_qi_iotlb_global() -> [u64; 2] {
    [0x2 | 0b01 << 4 | 1 << 6 | 1 << 7, 0]
}

/// Interrupt-entry-cache invalidation (6.5.2.7: type 4): of the one
/// entry `index` (G bit 4 = 1, IM bits 31:27 = 0, IIDX bits 47:32), or
/// of every entry (`None`: G = 0).
pub fn vtd_qi_iec(index: Option<u16>) -> [u64; 2] {
    match index {
        Some(i) => [0x4 | 1 << 4 | u64::from(i) << 32, 0],
        None => [0x4, 0],
    }
}

/// Invalidation wait (6.5.2.8: type 5): SW (bit 5) — the unit writes
/// `data` (bits 63:32) to `addr` (bits 127:66, 4-byte aligned) once
/// every earlier descriptor has completed; FN (bit 6) — later
/// descriptors wait for it too. IF 0: no interrupt.
pub fn vtd_qi_wait(addr: u64, data: u32) -> [u64; 2] {
    [0x5 | 1 << 5 | 1 << 6 | u64::from(data) << 32, addr & !3]
}

/// Whether a VT-d fault reason is an interrupt-remapping one (VT-d 7.1.3,
/// reasons 20h-27h); its record's bits 63:48 then hold the interrupt
/// index rather than a page address.
pub fn vtd_is_ir_fault(reason: u8) -> bool {
    (0x20..=0x27).contains(&reason)
}

/// The interrupt index of an interrupt-remapping fault's record (its
/// first word's bits 63:48, as [`super::encode::VtdFault::addr`] keeps
/// them).
pub fn vtd_ir_fault_index(addr: u64) -> u16 {
    (addr >> 48) as u16
}

/// What an interrupt-remapping fault reason means (VT-d 7.1.3), for the
/// log.
pub fn vtd_ir_reason_text(r: u8) -> &'static str {
    match r {
        0x20 => "reserved field set in the remappable request",
        0x21 => "interrupt index beyond the table",
        0x22 => "entry not present",
        0x23 => "the table could not be read",
        0x24 => "reserved field set in the entry",
        0x25 => "compatibility-format interrupt blocked",
        0x26 => "requester is not the entry's source id",
        _ => "see VT-d 7.1.3",
    }
}

/// Entries of an AMD-Vi per-device interrupt table: as many messages as
/// a domain may bind (pvabi `PCI_MSI_MAX_BOUND`).
pub const AMD_IRT_ENTRIES: u64 = pvabi::PCI_MSI_MAX_BOUND as u64;
/// IntTabLen for [`AMD_IRT_ENTRIES`]: the table has 2^IntTabLen entries
/// (AMD IOMMU spec 2.2.2.2, 2.2.5).
pub const AMD_INT_TAB_LEN: u64 = AMD_IRT_ENTRIES.trailing_zeros() as u64;

/// An AMD-Vi IRTE, 32-bit legacy format (2.2.5.1): RemapEn (bit 0),
/// SupIOPF 0 (a blocked request is logged), IntType 000 (fixed, bits
/// 4:2), RqEoi 0, DM 0 (physical), GuestMode 0, Destination (bits 15:8)
/// the APIC id, Vector (bits 23:16).
pub fn amd_irte(vector: u8, dest: u8) -> u32 {
    1 | u32::from(dest) << 8 | u32::from(vector) << 16
}

/// The DTE's third word (bits 191:128, 2.2.2.1) for a device whose
/// interrupts are remapped through `table` (128-byte aligned): IV (bit
/// 128), IntTabLen (bits 132:129), IG 0 (a blocked interrupt is logged),
/// IntTableRootPtr (bits 179:134), IntCtl 10b (bits 189:188: fixed and
/// arbitrated interrupts remapped); INITPass, EIntPass, NMIPass,
/// Lint0Pass, Lint1Pass 0 (those are blocked).
pub fn amd_dte_intr(table: u64) -> u64 {
    1 | AMD_INT_TAB_LEN << 1 | (table & 0x000f_ffff_ffff_ffc0) | 0b10 << 60
}

/// The message whose data names slot `index` of its device's AMD-Vi
/// interrupt table (2.2.5: the data's bits 10:0 index the table). The
/// address stays the ordinary 0FEEx_xxxxh one: the unit takes the
/// destination and vector from the entry.
pub fn amd_remapped(index: u16) -> (u64, u32) {
    (0xfee0_0000, u32::from(index) & 0x7ff)
}

/// INVALIDATE_INTERRUPT_TABLE (opcode 05h, 2.4.5): the device id in bits
/// 15:0.
pub fn amd_inv_int_table(devid: u16) -> [u64; 2] {
    [u64::from(devid) | 5 << 60, 0]
}

#[cfg(test)]
#[path = "encode_ir_tests.rs"]
mod tests;
