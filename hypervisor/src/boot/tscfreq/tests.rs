//! Host tests of the CPUID clock-rate decoding.
#![allow(clippy::unwrap_used)]

use super::*;

/// A CPUID table: (leaf, [eax, ebx, ecx, edx]); missing leaves read 0.
fn table(leaves: &[(u32, [u32; 4])]) -> impl Fn(u32) -> [u32; 4] + '_ {
    move |leaf| {
        leaves
            .iter()
            .find(|(l, _)| *l == leaf)
            .map(|(_, r)| *r)
            .unwrap_or([0; 4])
    }
}

const HV_BIT: u32 = 1 << 31;

#[test]
fn qemu_tcg_qemu64_states_nothing() {
    // QEMU TCG `-cpu qemu64,+svm,+npt`: basic leaves to 0xd, the hypervisor
    // bit set, no hypervisor leaves: the PIT has to measure.
    let t = table(&[(0, [0xd, 0, 0, 0]), (1, [0x663, 0, HV_BIT, 0])]);
    assert_eq!(from_cpuid(&t, false), None);
}

#[test]
fn hypervisor_leaf_gives_tsc_and_bus() {
    // KVM/QEMU with `vmware-cpuid-freq=on`: 0x40000010 = TSC kHz, bus kHz.
    let t = table(&[
        (0, [0xd, 0, 0, 0]),
        (1, [0, 0, HV_BIT, 0]),
        (0x4000_0000, [0x4000_0010, 0, 0, 0]),
        (0x4000_0010, [2_400_000, 1_000_000, 0, 0]),
    ]);
    let c = from_cpuid(&t, true).unwrap();
    assert_eq!(c.tsc_hz, 2_400_000_000);
    assert_eq!(c.lapic_hz, Some(1_000_000_000));
    assert_eq!(c.source, Source::HypervisorLeaf);
}

#[test]
fn hypervisor_leaf_ignored_without_the_hypervisor_bit_or_range() {
    let leaves = |ecx1: u32, max_hv: u32| {
        [
            (0, [0xd, 0, 0, 0]),
            (1, [0, 0, ecx1, 0]),
            (0x4000_0000, [max_hv, 0, 0, 0]),
            (0x4000_0010, [2_400_000, 1_000_000, 0, 0]),
        ]
    };
    // Bare metal: no hypervisor bit (0x40000000 echoes a basic leaf).
    let l = leaves(0, 0x4000_0010);
    assert_eq!(from_cpuid(table(&l), true), None);
    // KVM without the timing leaf: highest hypervisor leaf 0x40000001.
    let l = leaves(HV_BIT, 0x4000_0001);
    assert_eq!(from_cpuid(table(&l), true), None);
    // Garbage beyond the hypervisor range.
    let l = leaves(HV_BIT, 0x0000_000d);
    assert_eq!(from_cpuid(table(&l), true), None);
}

#[test]
fn crystal_leaf_as_bochs_tigerlake_states_it() {
    // Bochs `model=tigerlake` copies a Core i5-1135G7: 38.4 MHz crystal,
    // ratio 126/2, base 2400 MHz. (Its real TSC counts instructions: the
    // caller's PIT check must reject this; see `agrees`.)
    let t = table(&[
        (0, [0x1b, 0, 0, 0]),
        (1, [0x806c1, 0, 0, 0]),
        (0x15, [2, 0x7e, 0x0249_f000, 0]),
        (0x16, [0x960, 0x1068, 0x64, 0]),
    ]);
    let c = from_cpuid(&t, true).unwrap();
    assert_eq!(c.tsc_hz, 2_419_200_000);
    assert_eq!(c.lapic_hz, Some(38_400_000));
    assert_eq!(c.source, Source::Crystal);
    // Not Intel: no claim about the APIC timer.
    assert_eq!(from_cpuid(&t, false).unwrap().lapic_hz, None);
}

#[test]
fn no_crystal_falls_back_to_base_frequency() {
    // Skylake client leaves ECX of 0x15 at 0 (SDM Vol. 2A Table 3-8 note).
    let t = table(&[
        (0, [0x16, 0, 0, 0]),
        (1, [0, 0, 0, 0]),
        (0x15, [2, 0xd8, 0, 0]),
        (0x16, [3400, 3900, 100, 0]),
    ]);
    let c = from_cpuid(&t, true).unwrap();
    assert_eq!(c.tsc_hz, 3_400_000_000);
    assert_eq!(c.lapic_hz, None);
    assert_eq!(c.source, Source::BaseFrequency);
}

#[test]
fn leaves_beyond_the_highest_basic_leaf_are_not_read() {
    // Haswell: highest basic leaf 0xd; whatever 0x15/0x16 would echo is
    // not a frequency.
    let t = table(&[
        (0, [0xd, 0, 0, 0]),
        (0x15, [2, 0x7e, 0x0249_f000, 0]),
        (0x16, [0x960, 0, 0, 0]),
    ]);
    assert_eq!(from_cpuid(&t, true), None);
}

#[test]
fn implausible_values_are_refused() {
    // A 0 kHz hypervisor leaf, a crystal ratio giving 40 GHz, 0 MHz base.
    let t = table(&[
        (0, [0x16, 0, 0, 0]),
        (1, [0, 0, HV_BIT, 0]),
        (0x4000_0000, [0x4000_0010, 0, 0, 0]),
        (0x15, [1, 1000, 40_000_000, 0]),
    ]);
    assert_eq!(from_cpuid(&t, true), None);
}

#[test]
fn agreement_tolerance() {
    assert!(agrees(1_000_000_000, 1_000_000_000, 25));
    assert!(agrees(1_000_000_000, 1_250_000_000, 25));
    assert!(agrees(1_000_000_000, 750_000_000, 25));
    assert!(!agrees(1_000_000_000, 1_260_000_000, 25));
    // Bochs tigerlake: 2.42 GHz stated, ~50 MHz measured.
    assert!(!agrees(2_419_200_000, 50_000_000, 25));
    assert!(agrees(u64::MAX, u64::MAX, 25));
}

#[test]
fn least_disturbed_window_counts() {
    // Session 17's isolation run: one 1 ms window stretched to 286 ms by a
    // host stall; four undisturbed ones about 2.29 M TSC ticks.
    let stalled = (Some(656_280_315), 182_656);
    let w = [
        stalled,
        (Some(2_293_400), 640),
        (Some(2_293_200), 638),
        (Some(2_295_000), 641),
    ];
    assert_eq!(least_disturbed(&w), (Some(2_293_200), 638));
    assert_eq!(least_disturbed(&[stalled]), stalled);
    // No PIT: no ticks, the first window's APIC counts kept.
    assert_eq!(least_disturbed(&[(None, 7), (None, 0)]), (None, 7));
    assert_eq!(least_disturbed(&[]), (None, 0));
    // A window without ticks beside ones with them does not count.
    assert_eq!(least_disturbed(&[(None, 0), (Some(10), 3)]), (Some(10), 3));
}

#[test]
fn two_agreeing_windows_settle_the_measurement() {
    let stalled = (Some(656_280_315), 182_656);
    // One window is never enough; a stalled one beside a good one neither.
    assert!(!settled(&[(Some(2_293_400), 640)]));
    assert!(!settled(&[stalled, (Some(2_293_400), 640)]));
    // Two within 2 per mille settle it, whatever came before them.
    assert!(settled(&[(Some(2_293_400), 640), (Some(2_293_200), 638)]));
    assert!(settled(&[
        stalled,
        (Some(2_293_400), 640),
        (Some(2_295_000), 641)
    ]));
    // 0.3 % apart: not yet.
    assert!(!settled(&[(Some(2_000_000), 0), (Some(2_006_000), 0)]));
    // No PIT: nothing to settle.
    assert!(!settled(&[(None, 7), (None, 0)]));
}
