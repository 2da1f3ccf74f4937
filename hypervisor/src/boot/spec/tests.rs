//! The choice of mitigations, from CPU reports of real parts and the
//! `spec-ctrl=` option.

use super::*;
use std::string::{String, ToString};
use std::vec::Vec;

/// A Skylake server before the 2018 microcode: Intel, TSX, nothing to
/// mitigate with.
const OLD_INTEL: CpuSpec = CpuSpec {
    intel: true,
    leaf7_ebx: leaf7::EBX_RTM,
    leaf7_edx: 0,
    ext8_ebx: 0,
    arch_caps: 0,
};

/// A Skylake server with current microcode: affected by L1TF, MDS and
/// TAA, and has every control.
const SKYLAKE: CpuSpec = CpuSpec {
    intel: true,
    leaf7_ebx: leaf7::EBX_RTM,
    leaf7_edx: leaf7::MD_CLEAR
        | leaf7::IBRS_IBPB
        | leaf7::STIBP
        | leaf7::L1D_FLUSH
        | leaf7::ARCH_CAPABILITIES
        | leaf7::SSBD,
    ext8_ebx: 0,
    arch_caps: 0,
};

/// An Ice Lake server: RDCL_NO, MDS_NO, TAA_NO, IBRS_ALL.
const ICELAKE: CpuSpec = CpuSpec {
    arch_caps: arch_cap::RDCL_NO
        | arch_cap::IBRS_ALL
        | arch_cap::SKIP_L1DFL_VMENTRY
        | arch_cap::MDS_NO
        | arch_cap::TAA_NO,
    ..SKYLAKE
};

/// A Zen 2 EPYC: AMD's enumeration of IBPB, IBRS, STIBP, SSBD.
const EPYC: CpuSpec = CpuSpec {
    intel: false,
    leaf7_ebx: 0,
    leaf7_edx: 0,
    ext8_ebx: ext8::IBPB | ext8::IBRS | ext8::STIBP | ext8::SSBD,
    arch_caps: 0,
};

fn lines(cpu: &CpuSpec, opts: &SpecOpts) -> Vec<String> {
    let mut v = Vec::new();
    plan(cpu, opts).describe(cpu, &mut |a| v.push(a.to_string()));
    v
}

fn has(v: &[String], needle: &str) {
    assert!(
        v.iter().any(|l| l == needle),
        "no line `{needle}` in {v:#?}"
    );
}

#[test]
fn skylake_gets_everything() {
    let p = plan(&SKYLAKE, &SpecOpts::default());
    assert!(
        p.ibpb.on && p.rsb.on && p.verw.on && p.l1d_flush.on,
        "{p:?}"
    );
    let v = lines(&SKYLAKE, &SpecOpts::default());
    has(&v, "IBPB on domain switch: on (CPU has IBPB)");
    has(&v, "RSB filling after VM exit: on (32 entries, every exit)");
    has(
        &v,
        "VERW before VM entry: on (CPU affected by MDS, has MD_CLEAR)",
    );
    has(
        &v,
        "L1D flush on VM entry: on (CPU affected by L1TF, has L1D_FLUSH)",
    );
    has(
        &v,
        "VERW is skipped on entries that flush the L1D (the flush clears the same buffers)",
    );
    has(
        &v,
        "CPU reports IBRS/IBPB STIBP SSBD MD_CLEAR L1D_FLUSH ARCH_CAPABILITIES; ARCH_CAPABILITIES 0x0 ()",
    );
    assert!(v.last().is_some_and(|l| l.starts_with("not done yet: ")));
}

#[test]
fn icelake_needs_no_verw_nor_flush() {
    let p = plan(&ICELAKE, &SpecOpts::default());
    assert!(p.ibpb.on && p.rsb.on);
    assert_eq!(
        p.verw,
        off("not affected: ARCH_CAPABILITIES.MDS_NO, and TAA_NO or no TSX")
    );
    assert_eq!(p.l1d_flush, off("not affected: ARCH_CAPABILITIES.RDCL_NO"));
    let v = lines(&ICELAKE, &SpecOpts::default());
    has(
        &v,
        "CPU reports IBRS/IBPB STIBP SSBD MD_CLEAR L1D_FLUSH ARCH_CAPABILITIES; ARCH_CAPABILITIES 0x12b (RDCL_NO IBRS_ALL SKIP_L1DFL_VMENTRY MDS_NO TAA_NO)",
    );
}

#[test]
fn taa_without_mds() {
    // Cascade Lake: MDS_NO but TSX without TAA_NO: VERW still needed.
    let cpu = CpuSpec {
        arch_caps: arch_cap::RDCL_NO | arch_cap::MDS_NO,
        ..SKYLAKE
    };
    assert_eq!(
        plan(&cpu, &SpecOpts::default()).verw,
        on("CPU affected by TAA, has MD_CLEAR")
    );
    // The same without TSX: nothing to clear.
    let cpu = CpuSpec {
        leaf7_ebx: 0,
        ..cpu
    };
    assert!(!plan(&cpu, &SpecOpts::default()).verw.on);
}

#[test]
fn skip_l1d_flush_when_told() {
    let cpu = CpuSpec {
        arch_caps: arch_cap::SKIP_L1DFL_VMENTRY,
        ..SKYLAKE
    };
    assert_eq!(
        plan(&cpu, &SpecOpts::default()).l1d_flush,
        off("not needed: ARCH_CAPABILITIES.SKIP_L1DFL_VMENTRY")
    );
    // ARCH_CAPABILITIES bits count only where CPUID says the MSR exists.
    let cpu = CpuSpec {
        leaf7_edx: SKYLAKE.leaf7_edx & !leaf7::ARCH_CAPABILITIES,
        ..cpu
    };
    assert!(plan(&cpu, &SpecOpts::default()).l1d_flush.on);
}

#[test]
fn old_microcode_is_reported_unmitigated() {
    let p = plan(&OLD_INTEL, &SpecOpts::default());
    assert_eq!(p.ibpb, off("CPU lacks IBPB: not mitigated"));
    assert_eq!(
        p.verw,
        off("CPU affected by MDS/TAA but lacks MD_CLEAR: not mitigated")
    );
    assert_eq!(
        p.l1d_flush,
        off("CPU affected by L1TF but lacks L1D_FLUSH: not mitigated")
    );
    assert!(p.rsb.on);
    let v = lines(&OLD_INTEL, &SpecOpts::default());
    has(
        &v,
        "CPU reports none of IBRS/IBPB, STIBP, SSBD, MD_CLEAR, L1D_FLUSH, ARCH_CAPABILITIES",
    );
}

#[test]
fn amd_gets_ibpb_and_rsb_only() {
    let p = plan(&EPYC, &SpecOpts::default());
    assert_eq!(p.ibpb, on("CPU has IBPB"));
    assert!(p.rsb.on);
    assert_eq!(p.verw, off("not affected: not an Intel CPU"));
    assert_eq!(p.l1d_flush, off("not affected: not an Intel CPU"));
    // Even if a (virtual) AMD CPU claimed MD_CLEAR and L1D_FLUSH.
    let cpu = CpuSpec {
        leaf7_edx: leaf7::MD_CLEAR | leaf7::L1D_FLUSH,
        ..EPYC
    };
    let p = plan(&cpu, &SpecOpts::default());
    assert!(!p.verw.on && !p.l1d_flush.on);
    has(
        &lines(&EPYC, &SpecOpts::default()),
        "CPU reports AMD-IBPB AMD-IBRS AMD-STIBP AMD-SSBD",
    );
}

#[test]
fn off_turns_everything_off_and_says_why() {
    let opts = SpecOpts::parse("off").unwrap();
    assert_eq!(opts, SpecOpts::NONE);
    let v = lines(&SKYLAKE, &opts);
    has(&v, "IBPB on domain switch: off (spec-ctrl=no-ibpb)");
    has(&v, "RSB filling after VM exit: off (spec-ctrl=no-rsb)");
    has(&v, "VERW before VM entry: off (spec-ctrl=no-verw)");
    has(&v, "L1D flush on VM entry: off (spec-ctrl=no-l1d-flush)");
    // What the CPU lacks is still said as such, not as the option.
    let v = lines(&OLD_INTEL, &opts);
    has(
        &v,
        "IBPB on domain switch: off (CPU lacks IBPB: not mitigated)",
    );
}

#[test]
fn each_can_be_turned_off_alone() {
    for (word, which) in [
        ("no-ibpb", 0),
        ("no-rsb", 1),
        ("no-verw", 2),
        ("no-l1d-flush", 3),
    ] {
        let p = plan(&SKYLAKE, &SpecOpts::parse(word).unwrap());
        let ons = [p.ibpb.on, p.rsb.on, p.verw.on, p.l1d_flush.on];
        for (i, o) in ons.into_iter().enumerate() {
            assert_eq!(o, i != which, "{word}: {p:?}");
        }
    }
}

#[test]
fn parse_lists() {
    let o = SpecOpts::parse("no-ibpb,no-rsb,no-verw,no-l1d-flush").unwrap();
    assert_eq!(o, SpecOpts::NONE);
    let o = SpecOpts::parse("off,rsb").unwrap();
    assert_eq!(
        o,
        SpecOpts {
            rsb: true,
            ..SpecOpts::NONE
        }
    );
    assert_eq!(SpecOpts::parse("on").unwrap(), SpecOpts::ALL);
    assert!(!SpecOpts::parse("No-IBPB").unwrap().ibpb);
    assert_eq!(SpecOpts::parse("no-rsb,rsb").unwrap(), SpecOpts::ALL);
}

#[test]
fn parse_errors_name_the_item() {
    assert_eq!(SpecOpts::parse("no-ibpb,no-foo"), Err("no-foo"));
    assert_eq!(SpecOpts::parse("no-ibpb,,no-rsb"), Err(""));
    assert_eq!(SpecOpts::parse("no-on"), Err("no-on"));
    assert_eq!(SpecOpts::parse("no-"), Err("no-"));
    assert_eq!(SpecOpts::parse("é"), Err("é"));
}

#[test]
fn guests_do_not_see_refused_msrs() {
    let all = u32::MAX;
    let [_, _, _, d] = guest_cpuid(7, 0, [0, all, all, all]);
    assert_eq!(d & leaf7::IBRS_IBPB, 0);
    assert_eq!(d & leaf7::STIBP, 0);
    assert_eq!(d & leaf7::SSBD, 0);
    assert_eq!(d & leaf7::L1D_FLUSH, 0);
    assert_eq!(d & leaf7::ARCH_CAPABILITIES, 0);
    assert_ne!(d & leaf7::MD_CLEAR, 0, "VERW needs no MSR");
    // Other subleaves and the other registers pass.
    assert_eq!(guest_cpuid(7, 1, [1, 2, 3, all]), [1, 2, 3, all]);
    assert_eq!(guest_cpuid(7, 0, [1, 2, 3, 0])[..3], [1, 2, 3]);
    let [_, b, _, _] = guest_cpuid(0x8000_0008, 0, [0, all, 0, 0]);
    assert_eq!(b & (ext8::IBPB | ext8::IBRS | ext8::STIBP | ext8::SSBD), 0);
    assert_eq!(b & ext8::VIRT_SSBD, 0);
    assert_ne!(b & (1 << 26), 0, "SSB_NO is a hint, no MSR");
    assert_eq!(guest_cpuid(1, 0, [all; 4]), [all; 4]);
}
