//! The VT-x bitmap bit by bit: the pass-through MSRs are clear for read
//! and write, every other guest-owned MSR and a sample of unknown ones are
//! set, against the manual's layout worked by hand.

use super::*;

fn vmx_exits(map: &[u8; VMX_BYTES], msr: u32, write: bool) -> bool {
    match vmx_read_bit(msr) {
        Some((byte, bit)) => map[byte + if write { 2048 } else { 0 }] & (1 << bit) != 0,
        None => true,
    }
}

#[test]
fn layout_matches_the_manual() {
    // SDM Vol. 3C 25.6.9: FS_BASE 0xC000_0100 is bit 0x100 of the high
    // read array at 1024: byte 1024 + 32, bit 0.
    assert_eq!(vmx_read_bit(0xc000_0100), Some((1024 + 32, 0)));
    assert_eq!(vmx_read_bit(0xc000_0102), Some((1024 + 32, 2)));
    assert_eq!(vmx_read_bit(0x1b), Some((3, 3)));
    assert_eq!(vmx_read_bit(0x1fff), Some((1023, 7)));
    assert_eq!(vmx_read_bit(0x2000), None);
    assert_eq!(vmx_read_bit(0xc001_0000), None);
}

#[test]
fn only_the_bases_pass_through() {
    let mut v = [0u8; VMX_BYTES];
    fill_vmx(&mut v);
    let others = [
        0x10u32,
        0x1b,
        0x3a,
        0x48,
        0x49,
        0xfe,
        0x1a0,
        0x1d9,
        0x2ff,
        0x6e0,
        0xc001_0117,
    ];
    for write in [false, true] {
        for m in GuestMsr::ALL {
            let pass = PASS_THROUGH.contains(&m);
            assert_eq!(
                !vmx_exits(&v, m.index(), write),
                pass,
                "{m:?} write={write}"
            );
        }
        for msr in others {
            assert!(vmx_exits(&v, msr, write), "{msr:#x} write={write}");
        }
    }
    // Exactly three MSRs, read and write: six clear bits.
    assert_eq!(v.iter().map(|b| b.count_zeros()).sum::<u32>(), 6);
}
