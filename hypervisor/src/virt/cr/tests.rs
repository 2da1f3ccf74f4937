//! The CR0/CR4 rules, the decoder and the guest page walk.
#![allow(clippy::unwrap_used)]
use super::*;

const CR0: u64 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
const CR4: u64 = CR4_PAE | (1 << 9) | (1 << 10);

fn cpuid_basic(leaf: u32, _sub: u32) -> [u32; 4] {
    match leaf {
        0 => [7, 0, 0, 0],
        // EDX: DE 2, PSE 3, TSC 4, MCE 7, PGE 13, FXSR 24, SSE 25; no VME.
        1 => [
            0,
            0,
            0,
            (1 << 2) | (1 << 3) | (1 << 4) | (1 << 7) | (1 << 13) | (1 << 24) | (1 << 25),
        ],
        // EBX: FSGSBASE 0, SMEP 7; ECX: UMIP 2.
        7 => [0, 1 | (1 << 7), 1 << 2, 0],
        _ => [0; 4],
    }
}

#[test]
fn cr0_rules() {
    assert_eq!(check_cr0(CR0 | CR0_TS, CR4), Ok(CR0 | CR0_TS));
    assert_eq!(check_cr0(CR0 | (1 << 32), CR4), Err(Refused::Reserved));
    assert_eq!(check_cr0(CR0 | (1u64 << 63), CR4), Err(Refused::Reserved));
    // Reserved bits of 31:0 are ignored; ET stays 1.
    assert_eq!(
        check_cr0((CR0 | (1 << 7) | (1 << 20)) & !CR0_ET, CR4),
        Ok(CR0)
    );
    assert_eq!(check_cr0(CR0 | CR0_NW, CR4), Err(Refused::Invalid));
    assert_eq!(
        check_cr0(CR0 | CR0_NW | CR0_CD, CR4),
        Ok(CR0 | CR0_NW | CR0_CD)
    );
    assert_eq!(check_cr0(CR0 & !CR0_PG, CR4), Err(Refused::Invalid));
    assert_eq!(check_cr0(CR0 & !CR0_PE, CR4), Err(Refused::Invalid));
    assert_eq!(
        check_cr0(CR0 & !CR0_WP, CR4 | CR4_CET),
        Err(Refused::Invalid)
    );
    assert_eq!(check_cr0(CR0 & !CR0_WP, CR4), Ok(CR0 & !CR0_WP));
}

#[test]
fn cr4_rules() {
    let allowed = cr4_allowed(cpuid_basic);
    // PAE, PCE, DE, PSE, TSD, MCE, PGE, OSFXSR, OSXMMEXCPT, UMIP, FSGSBASE, SMEP.
    let want = CR4_PAE
        | (1 << 8)
        | (1 << 3)
        | (1 << 4)
        | (1 << 2)
        | (1 << 6)
        | (1 << 7)
        | (1 << 9)
        | (1 << 10)
        | (1 << 11)
        | (1 << 16)
        | (1 << 20);
    assert_eq!(allowed, want);
    assert_eq!(
        check_cr4(CR4, CR4 | (1 << 7), CR0, 0, allowed),
        Ok(CR4 | (1 << 7))
    );
    // VMXE (13), SMXE (14), a reserved bit (15), a high bit: never.
    for b in [13, 14, 15, 40, 63] {
        assert_eq!(
            check_cr4(CR4, CR4 | (1 << b), CR0, 0, !(1 << b)),
            Err(Refused::Reserved),
            "bit {b}"
        );
        assert_eq!(
            check_cr4(CR4, CR4 | (1 << b), CR0, 0, allowed),
            Err(Refused::Reserved),
            "bit {b}"
        );
    }
    // Not offered by this CPUID: VME, OSXSAVE, PKE, SMAP, PCIDE.
    for b in [0, 18, 21, 22, 17] {
        assert_eq!(
            check_cr4(CR4, CR4 | (1 << b), CR0, 0, allowed),
            Err(Refused::Reserved),
            "bit {b}"
        );
    }
    assert_eq!(
        check_cr4(CR4, CR4 & !CR4_PAE, CR0, 0, allowed),
        Err(Refused::Invalid)
    );
    let all = u64::MAX;
    assert_eq!(
        check_cr4(CR4, CR4 | CR4_LA57, CR0, 0, all),
        Err(Refused::Invalid)
    );
    assert_eq!(
        check_cr4(CR4, CR4 | CR4_PCIDE, CR0, 0x1001, all),
        Err(Refused::Invalid)
    );
    assert_eq!(
        check_cr4(CR4, CR4 | CR4_PCIDE, CR0, 0x1000, all),
        Ok(CR4 | CR4_PCIDE)
    );
    assert_eq!(
        check_cr4(CR4, CR4 | CR4_CET, CR0 & !CR0_WP, 0, all),
        Err(Refused::Invalid)
    );
}

#[test]
fn decodes_cr_writes() {
    let none = |_: u8| 0;
    // mov cr4, rax
    assert_eq!(
        decode(&[0x0f, 0x22, 0xe0], none),
        Some(Decoded {
            cr: 4,
            source: CrSource::Gpr(0),
            len: 3
        })
    );
    // mov cr0, r9 (REX.B); mov cr8, rax (REX.R)
    assert_eq!(
        decode(&[0x41, 0x0f, 0x22, 0xc1], none),
        Some(Decoded {
            cr: 0,
            source: CrSource::Gpr(9),
            len: 4
        })
    );
    assert_eq!(
        decode(&[0x44, 0x0f, 0x22, 0xc0], none).map(|d| d.cr),
        Some(8)
    );
    // clts; lmsw ax; lmsw [rax] (not decoded); a prefix; other opcodes.
    assert_eq!(
        decode(&[0x0f, 0x06], none).map(|d| (d.source, d.len)),
        Some((CrSource::Clts, 2))
    );
    assert_eq!(
        decode(&[0x0f, 0x01, 0xf0], |r| if r == 0 { 0x1234 } else { 0 }),
        Some(Decoded {
            cr: 0,
            source: CrSource::Lmsw(0x1234),
            len: 3
        })
    );
    assert_eq!(decode(&[0x0f, 0x01, 0x30], none), None);
    assert_eq!(
        decode(&[0x66, 0x0f, 0x22, 0xe3], none).map(|d| d.len),
        Some(4)
    );
    assert_eq!(decode(&[0x0f, 0x20, 0xe0], none), None);
    assert_eq!(decode(&[0x90], none), None);
    assert_eq!(decode(&[0x66; 15], none), None);
    assert_eq!(decode(&[], none), None);
    assert_eq!(decode(&[0x0f], none), None);
}

#[test]
fn lmsw_and_clts_values() {
    let old = CR0 | CR0_TS;
    assert_eq!(requested(old, CrSource::Clts, |_| 0), Some(CR0));
    // LMSW sets MP/EM/TS from the operand, cannot clear PE.
    assert_eq!(
        requested(old, CrSource::Lmsw(0x4), |_| 0),
        Some((CR0 & !CR0_MP) | CR0_EM)
    );
    assert_eq!(requested(old, CrSource::Decode, |_| 0), None);
    assert_eq!(
        requested(old, CrSource::Gpr(3), |r| u64::from(r) * 7),
        Some(21)
    );
}

#[test]
fn walks_guest_page_tables() {
    use std::collections::HashMap;
    let mut m: HashMap<u64, u64> = HashMap::new();
    // PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000: entry 1 a 2 MiB page
    // at 0x40_0000, entry 2 -> PT 0x4000 whose entry 5 maps 0x9000.
    m.insert(0x1000, 0x2003);
    m.insert(0x2000, 0x3003);
    m.insert(0x3000 + 8, 0x40_0083);
    m.insert(0x3000 + 16, 0x4003);
    m.insert(0x4000 + 5 * 8, 0x9003);
    // PDPT entry 1: a 1 GiB page at 1 GiB.
    m.insert(0x2008, 0x4000_0083);
    let read = |a: u64| Some(*m.get(&a).unwrap_or(&0));
    assert_eq!(translate(0x1000, 0x20_1234, read), Some(0x40_1234));
    assert_eq!(translate(0x1000, 0x40_5678, read), Some(0x9678));
    assert_eq!(
        translate(0x1000, 0x4000_0000 + 0x12_3456, read),
        Some(0x4012_3456)
    );
    assert_eq!(translate(0x1000, 0x40_6000, read), None);
    assert_eq!(translate(0x1000, 1 << 39, read), None);
}
