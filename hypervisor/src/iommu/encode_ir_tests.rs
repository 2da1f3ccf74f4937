//! The interrupt-remapping layouts against the specs' bit positions.

use super::*;

#[test]
fn vtd_irte_bits() {
    let (lo, hi) = vtd_irte(0x41, 3, 0x0030);
    assert_eq!(lo & 1, 1, "present");
    assert_eq!(lo & 0b1111_1110, 0, "FPD, DM, RH, TM 0; DLM 000 fixed");
    assert_eq!(lo & 1 << 15, 0, "IM 0: remapped, not posted");
    assert_eq!((lo >> 16) & 0xff, 0x41, "vector in bits 23:16");
    assert_eq!(lo >> 32, 3 << 8, "xAPIC id in DST bits 15:8");
    assert_eq!(lo & 0xff00_ff00, 0, "reserved and AVAIL bits clear");
    assert_eq!(hi & 0xffff, 0x30, "SID");
    assert_eq!((hi >> 16) & 3, 0, "SQ 00: every bit of SID compared");
    assert_eq!((hi >> 18) & 3, 1, "SVT 01: verify the requester");
    assert_eq!(hi >> 20, 0, "reserved");
}

#[test]
fn vtd_remappable_message() {
    let (addr, data) = vtd_remappable(0x41);
    assert_eq!(addr >> 20, 0xfee);
    assert_eq!(addr & 1 << 4, 1 << 4, "interrupt format: remappable");
    assert_eq!(addr & 1 << 3, 0, "SHV 0");
    assert_eq!((addr >> 5) & 0x7fff, 0x41, "handle[14:0] in bits 19:5");
    assert_eq!(data, 0);
    // handle[15] goes to bit 2.
    let (addr, _) = vtd_remappable(0x8001);
    assert_eq!((addr >> 2) & 1, 1);
    assert_eq!((addr >> 5) & 0x7fff, 1);
    for h in [0, 1, 0x41, 0xff, 0x7fff, 0x8000, 0xffff] {
        assert_eq!(vtd_handle(vtd_remappable(h).0), Some(h), "handle {h:#x}");
    }
    assert_eq!(vtd_handle(0xfee0_1000), None, "compatibility format");
}

#[test]
fn vtd_ioapic_entry() {
    // Entry bits 63:49 handle[14:0], bit 48 format: the high dword.
    let Some(hi) = vtd_ioapic_rte_high(0x31) else {
        panic!("a handle below 0x8000");
    };
    let entry = u64::from(hi) << 32;
    assert_eq!((entry >> 48) & 1, 1, "remappable format");
    assert_eq!((entry >> 49) & 0x7fff, 0x31);
    assert_eq!(entry & 0xffff_ffff, 0);
    // The I/O APIC sends entry bits 63:48 as address bits 19:4 (VT-d
    // 5.1.5.1): the remappable message naming the handle.
    let addr = 0xfee0_0000 | ((entry >> 48) & 0xffff) << 4;
    assert_eq!(vtd_handle(addr), Some(0x31));
    assert_eq!(vtd_ioapic_rte_high(0x8000), None, "needs low bit 11");
}

#[test]
fn vtd_irta_value() {
    assert_eq!(vtd_irta(0x5_5000), 0x5_5007, "S = 7: 256 entries");
    assert_eq!(vtd_irta(0x5_5000) & 1 << 11, 0, "EIME 0: xAPIC");
    assert_eq!(1u64 << (VTD_IRTA_S + 1), VTD_IRT_ENTRIES);
    assert_eq!(VTD_IRT_ENTRIES * 16, 4096, "one frame");
}

#[test]
fn vtd_queue_descriptors() {
    assert_eq!(vtd_iqa(0x7000), 0x7000, "DW 0, QS 0");
    assert_eq!(VTD_IQ_ENTRIES * 16, 4096);
    let c = vtd_qi_context_global();
    assert_eq!((c[0] & 0xf, (c[0] >> 4) & 3), (1, 1));
    let t = vtd_qi_iotlb_global();
    assert_eq!((t[0] & 0xf, (t[0] >> 4) & 3), (2, 1));
    assert_eq!(t[0] & 0xc0, 0xc0, "DR and DW");
    let one = vtd_qi_iec(Some(0x41));
    assert_eq!(one[0] & 0xf, 4);
    assert_eq!(one[0] & 1 << 4, 1 << 4, "index-selective");
    assert_eq!((one[0] >> 27) & 0x1f, 0, "IM 0: one entry");
    assert_eq!((one[0] >> 32) & 0xffff, 0x41, "IIDX");
    assert_eq!(vtd_qi_iec(None), [4, 0], "global");
    let w = vtd_qi_wait(0x9008, 0xabcd);
    assert_eq!(w[0] & 0xf, 5);
    assert_eq!(w[0] & 0x70, 0x60, "SW and FN, IF 0");
    assert_eq!(w[0] & 0xffff_ff80, 0, "reserved bits 31:7");
    assert_eq!(w[0] >> 32, 0xabcd);
    assert_eq!(w[1], 0x9008);
    assert_eq!(vtd_qi_wait(0x9006, 1)[1] & 3, 0, "4-byte aligned");
    for d in [c, t, one, w] {
        assert_eq!(d[0] & 0xe00, 0, "bits 11:9 (type[6:4]) 0");
    }
}

#[test]
fn vtd_ir_fault_decode() {
    // A record for index 0x41, reason 26h: bits 63:48 hold the index.
    let Some(f) = crate::iommu::encode::vtd_fault(0x41 << 48, (1 << 63) | (0x26 << 32) | 0x30)
    else {
        panic!("F set: a fault");
    };
    assert!(vtd_is_ir_fault(f.reason));
    assert_eq!(vtd_ir_fault_index(f.addr), 0x41);
    assert_eq!(f.source, 0x30);
    assert!(!vtd_is_ir_fault(5), "a DMA fault");
    assert_eq!(
        vtd_ir_reason_text(0x25),
        "compatibility-format interrupt blocked"
    );
}

#[test]
fn amd_irte_bits() {
    let e = amd_irte(0x41, 3);
    assert_eq!(e & 1, 1, "RemapEn");
    assert_eq!(
        e & 0b1111_1110,
        0,
        "SupIOPF 0, fixed, RqEoi 0, DM 0, GuestMode 0"
    );
    assert_eq!((e >> 8) & 0xff, 3, "destination");
    assert_eq!((e >> 16) & 0xff, 0x41, "vector");
    assert_eq!(e >> 24, 0, "reserved");
}

#[test]
fn amd_dte_interrupt_word() {
    let w = amd_dte_intr(0x12_3480);
    assert_eq!(w & 1, 1, "IV");
    assert_eq!((w >> 1) & 0xf, 5, "IntTabLen: 2^5 = 32 entries");
    assert_eq!(1 << AMD_INT_TAB_LEN, AMD_IRT_ENTRIES);
    assert_eq!(w & 1 << 5, 0, "IG 0");
    assert_eq!(
        w & 0x000f_ffff_ffff_ffc0,
        0x12_3480,
        "root, 128-byte aligned"
    );
    assert_eq!((w >> 60) & 3, 0b10, "IntCtl: remapped");
    assert_eq!(
        w & 0x0ff0_0000_0000_0000,
        0,
        "pass bits 0 and reserved bits clear"
    );
    assert_eq!(w >> 62, 0, "Lint0Pass, Lint1Pass 0");
    assert_eq!(AMD_IRT_ENTRIES * 4, 128, "fits the 128-byte alignment");
}

#[test]
fn amd_message_and_command() {
    assert_eq!(amd_remapped(7), (0xfee0_0000, 7));
    assert_eq!(amd_remapped(0x801).1, 1, "bits 10:0 only");
    assert_eq!(amd_inv_int_table(0x30), [0x5000_0000_0000_0030, 0]);
}
