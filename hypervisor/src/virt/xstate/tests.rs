//! XSETBV validation and the XSAVE CPUID leaves, against SDM Vol. 1 13.3.
use super::*;

/// A host with XSAVE and x87|SSE|AVX|AVX-512|PKRU|AMX enumerated, AVX at
/// 576 (256 bytes), opmask at 1088 (64), ZMM_Hi256 at 1152 (512),
/// Hi16_ZMM at 1664 (1024), PKRU at 2688 (8).
fn host(leaf: u32, sub: u32) -> [u32; 4] {
    match (leaf, sub) {
        (1, _) => [
            0,
            0,
            (1 << 26) | (1 << 28) | (1 << 27) | (1 << 12) | (1 << 29),
            0,
        ],
        (0xd, 0) => [0x602e7, 2696, 11008, 0],
        (0xd, 1) => [0b1111, 2696, 0x1800, 0],
        (0xd, 2) => [256, 576, 0, 0],
        (0xd, 5) => [64, 1088, 0, 0],
        (0xd, 6) => [512, 1152, 0, 0],
        (0xd, 7) => [1024, 1664, 0, 0],
        (0xd, 9) => [8, 2688, 0, 0],
        (0xd, 17) => [64, 2752, 0, 0],
        (0xd, 18) => [8192, 2816, 0, 0],
        (7, 0) => [0, (1 << 5) | (1 << 16), (1 << 3) | (1 << 4), 0],
        _ => [0; 4],
    }
}

fn no_xsave(leaf: u32, sub: u32) -> [u32; 4] {
    if leaf == 1 {
        [0, 0, 1 << 28, 0]
    } else {
        host(leaf, sub)
    }
}

#[test]
fn allowed_is_what_the_host_enumerates_of_what_kestrel_switches() {
    // AMX (17, 18) and MPX are enumerated by the host but never allowed.
    assert_eq!(allowed_xcr0(host), 0b10_1110_0111);
    assert_eq!(allowed_xcr0(no_xsave), 0);
    // AVX-512 without all three of its components is not offered.
    let partial = |l: u32, s: u32| {
        if (l, s) == (0xd, 0) {
            [0x67, 0, 0, 0]
        } else {
            host(l, s)
        }
    };
    assert_eq!(allowed_xcr0(partial), 0b111);
}

#[test]
fn xsetbv_follows_sdm_13_3() {
    let ok = allowed_xcr0(host);
    for good in [
        1,
        0b11,
        0b111,
        0b1110_0111,
        0b10_1110_0111,
        1 | PKRU,
        0b11 | PKRU,
    ] {
        assert_eq!(validate_xcr0(0, good, ok), Ok(()), "{good:#x}");
    }
    assert_eq!(validate_xcr0(1, 1, ok), Err(XcrError::NotXcr0));
    assert_eq!(validate_xcr0(0, 0, ok), Err(XcrError::NoX87));
    assert_eq!(validate_xcr0(0, 0b10, ok), Err(XcrError::NoX87));
    assert_eq!(validate_xcr0(0, 0b101, ok), Err(XcrError::AvxWithoutSse));
    assert_eq!(
        validate_xcr0(0, 0b111 | (1 << 5), ok),
        Err(XcrError::Avx512Partial)
    );
    assert_eq!(
        validate_xcr0(0, 0b11 | AVX512, ok),
        Err(XcrError::Avx512Partial)
    );
    for bad in [1 << 3, 1 << 4, 1 << 8, 1 << 17, 1 << 18, 1 << 63] {
        assert_eq!(
            validate_xcr0(0, 0b111 | bad, ok),
            Err(XcrError::Unsupported),
            "{bad:#x}"
        );
    }
    // Nothing at all without XSAVE.
    assert_eq!(validate_xcr0(0, 1, 0), Err(XcrError::Unsupported));
}

#[test]
fn leaf_0xd_shows_only_allowed_components() {
    let f = |sub| filter_xsave_leaves(0xd, sub, host(0xd, sub), host);
    // EBX (the size for the XCR0 loaded now) passes; ECX is PKRU's end.
    assert_eq!(f(0), [0x2e7, 2696, 2696, 0]);
    assert_eq!(f(1), [0b111, 2696, 0, 0]);
    assert_eq!(f(2), host(0xd, 2));
    assert_eq!(f(9), host(0xd, 9));
    assert_eq!(f(17), [0; 4]);
    assert_eq!(f(18), [0; 4]);
    assert_eq!(f(63), [0; 4]);
    let nx = |sub| filter_xsave_leaves(0xd, sub, host(0xd, sub), no_xsave);
    assert_eq!(nx(0), [0; 4]);
}

#[test]
fn leaf_1_and_7_agree_with_the_allowed_state() {
    let l1 = filter_xsave_leaves(1, 0, host(1, 0), host);
    assert_eq!(l1[2] & (1 << 26), 1 << 26, "XSAVE offered");
    assert_eq!(l1[2] & (1 << 27), 0, "OSXSAVE comes from the guest's CR4");
    assert_eq!(os_bits(1, 0, l1, 1 << 18)[2] & (1 << 27), 1 << 27);
    assert_eq!(os_bits(1, 0, l1, 0)[2] & (1 << 27), 0);
    let l1n = filter_xsave_leaves(1, 0, no_xsave(1, 0), no_xsave);
    assert_eq!(l1n[2] & ((1 << 26) | (1 << 28)), 0, "no XSAVE, no AVX");
    assert_eq!(os_bits(1, 0, l1n, 1 << 18)[2] & (1 << 27), 0);
    let l7 = filter_xsave_leaves(7, 0, host(7, 0), host);
    assert_eq!(l7[2] & 0b11000, 0b1000, "PKU offered, OSPKE from CR4");
    assert_eq!(os_bits(7, 0, l7, 1 << 22)[2] & (1 << 4), 1 << 4);
    let l7n = filter_xsave_leaves(7, 0, host(7, 0), no_xsave);
    assert_eq!(l7n[2] & (1 << 3), 0, "no PKRU switching, no PKU");
    assert_eq!(l7n[1] & ((1 << 5) | (1 << 16)), 0, "no AVX2 / AVX-512");
}
