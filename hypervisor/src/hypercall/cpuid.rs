//! The per-vCPU part of the CPUID a guest sees: on top of the machine-wide
//! filter (`filter_cpuid` in this module's parent), the vCPU's own APIC id
//! and a flat topology (one thread per package), the start-info leaf
//! 0x4000_0002, and the features Kestrel does not virtualize hidden, so a
//! guest (Linux in particular) never takes a #GP or #UD for using what
//! CPUID promised.
//!
//! What is hidden and why (Intel SDM Vol. 2A, CPUID; AMD APM Vol. 3,
//! Appendix E):
//! - MTRR, MCE, MCA (leaf 1 and 0x8000_0001 EDX 12, 7, 14): their MSRs are
//!   refused (`hypercall/msr.rs`); Linux then skips MTRR and machine-check
//!   set-up instead of warning about unchecked MSR accesses.
//! - DS, ACPI thermal, TM, PBE, DTES64, DS-CPL, EST, TM2, PDCM, and leaves
//!   6 (power) and 0xA (architectural perfmon): MSR-based facilities with no
//!   virtual counterpart.
//! - HTT, leaves 0xB and 0x1F, leaf 4's core and sharing counts, AMD
//!   CmpLegacy/TopoExt and 0x8000_0008 ECX: a vCPU is a package of one
//!   thread; its APIC id (leaf 1 EBX[31:24]) is the vCPU id.
//! - TSC_ADJUST (leaf 7 EBX 1): its MSR (0x3b) is not virtualized.
//! - INVPCID (leaf 7 EBX 10) and WAITPKG (ECX 5): under VT-x they raise #UD
//!   unless a secondary control enables them (SDM Vol. 3C 26.6.2), which
//!   the backend does not; hidden on both vendors so the guest sees one CPU
//!   model.
//! - AMD perf counter extensions, IBS, LWP, WDT (0x8000_0001 ECX 23, 24,
//!   28, 10, 15, 13): MSRs the model refuses.
#![forbid(unsafe_code)]

/// CPUID leaf with the start-info page's address (EAX low, EBX high 32
/// bits) and size (ECX); EDX 0.
pub const START_INFO_LEAF: u32 = 0x4000_0002;

/// What the CPUID of one vCPU depends on besides the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VcpuFacts {
    /// The vCPU's index in its domain (its APIC id).
    pub vcpu: u32,
    /// Guest-physical address of the domain's start-info page.
    pub start_info: u64,
}

const fn bits(list: &[u32]) -> u32 {
    let mut m = 0;
    let mut i = 0;
    while i < list.len() {
        m |= 1 << list[i];
        i += 1;
    }
    m
}

/// Leaf 1 ECX: DTES64 2, DS-CPL 4, EST 7, TM2 8, PDCM 15.
const L1_ECX_HIDE: u32 = bits(&[2, 4, 7, 8, 15]);
/// Leaf 1 EDX: MCE 7, MTRR 12, MCA 14, DS 21, ACPI 22, HTT 28, TM 29, PBE 31.
const L1_EDX_HIDE: u32 = bits(&[7, 12, 14, 21, 22, 28, 29, 31]);
/// Leaf 7.0 EBX: TSC_ADJUST 1 (MSR 0x3b, which the MSR model refuses:
/// Linux reads it unchecked in `tsc_store_and_check_tsc_adjust` when the
/// bit is set, seen under Bochs Haswell), INVPCID 10.
const L7_EBX_HIDE: u32 = bits(&[1, 10]);
/// Leaf 7.0 ECX: WAITPKG 5.
const L7_ECX_HIDE: u32 = bits(&[5]);
/// 0x8000_0001 ECX: CmpLegacy 1, IBS 10, WDT 13, LWP 15, TopoExt 22,
/// PerfCtrExtCore 23, PerfCtrExtNB 24, PerfCtrExtLLC 28.
const E1_ECX_HIDE: u32 = bits(&[1, 10, 13, 15, 22, 23, 24, 28]);
/// 0x8000_0001 EDX: MCE 7, MTRR 12, MCA 14.
const E1_EDX_HIDE: u32 = bits(&[7, 12, 14]);

/// Applies the per-vCPU view to `out`, the machine-wide filtered answer
/// for `leaf`/`subleaf`.
pub fn per_vcpu(leaf: u32, subleaf: u32, out: [u32; 4], f: VcpuFacts) -> [u32; 4] {
    let [a, b, c, d] = out;
    match (leaf, subleaf) {
        (0x4000_0000, _) => [a.max(START_INFO_LEAF), b, c, d],
        (START_INFO_LEAF, _) => [
            f.start_info as u32,
            (f.start_info >> 32) as u32,
            pvabi::START_INFO_SIZE as u32,
            0,
        ],
        (1, _) => {
            // EBX: initial APIC id 31:24, one logical processor 23:16,
            // CLFLUSH size and brand index kept.
            let b = (b & 0xffff) | (1 << 16) | ((f.vcpu & 0xff) << 24);
            [a, b, c & !L1_ECX_HIDE, d & !L1_EDX_HIDE]
        }
        // Cache parameters: one core per package, one thread per cache.
        (4, _) => [a & 0x3fff, b, c, d],
        (6 | 0xa | 0xb | 0x1f, _) => [0; 4],
        (7, 0) => [a, b & !L7_EBX_HIDE, c & !L7_ECX_HIDE, d],
        (0x8000_0001, _) => [a, b, c & !E1_ECX_HIDE, d & !E1_EDX_HIDE],
        // Number of cores - 1 (7:0) and APIC id size (15:12): 0.
        (0x8000_0008, _) => [a, b, c & !0xf0ff, d],
        (0x8000_001e, _) => [0; 4],
        _ => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: VcpuFacts = VcpuFacts {
        vcpu: 3,
        start_info: 0x1_2345_f000,
    };

    #[test]
    fn start_info_leaf_and_max() {
        assert_eq!(
            per_vcpu(0x4000_0000, 0, [0x4000_0001, 1, 2, 3], F),
            [0x4000_0002, 1, 2, 3]
        );
        assert_eq!(
            per_vcpu(START_INFO_LEAF, 0, [0; 4], F),
            [0x2345_f000, 1, pvabi::START_INFO_SIZE as u32, 0]
        );
    }

    #[test]
    fn apic_id_and_flat_topology() {
        let host = [0x806e9, 0x0810_0800, u32::MAX, u32::MAX];
        let [_, b, c, d] = per_vcpu(1, 0, host, F);
        assert_eq!(b >> 24, 3, "APIC id = vCPU id");
        assert_eq!((b >> 16) & 0xff, 1, "one logical processor");
        assert_eq!(b & 0xffff, 0x0800, "CLFLUSH line kept");
        for bit in [7, 12, 14, 28] {
            assert_eq!(d & (1 << bit), 0, "leaf 1 EDX bit {bit}");
        }
        assert_eq!(c & (1 << 15), 0, "PDCM");
        assert_eq!(per_vcpu(0xb, 0, [1, 2, 3, 4], F), [0; 4]);
        assert_eq!(per_vcpu(0xa, 0, [1, 2, 3, 4], F), [0; 4]);
        assert_eq!(per_vcpu(4, 0, [u32::MAX; 4], F)[0], 0x3fff);
        assert_eq!(per_vcpu(0x8000_0008, 0, [0, 0, 0xf00f, 0], F)[2], 0);
    }

    #[test]
    fn unvirtualized_features_hidden() {
        let [_, b, c, _] = per_vcpu(7, 0, [u32::MAX; 4], F);
        assert_eq!(b & (1 << 10), 0, "INVPCID");
        assert_eq!(b & (1 << 1), 0, "TSC_ADJUST");
        assert_eq!(c & (1 << 5), 0, "WAITPKG");
        let [_, _, c, d] = per_vcpu(0x8000_0001, 0, [u32::MAX; 4], F);
        assert_eq!(c & (1 << 22), 0, "TopoExt");
        assert_eq!(c & (1 << 23), 0, "PerfCtrExtCore");
        assert_eq!(d & (1 << 12), 0, "MTRR");
        // Other leaves and subleaves pass through.
        assert_eq!(per_vcpu(7, 1, [5; 4], F), [5; 4]);
        assert_eq!(per_vcpu(0xd, 0, [9; 4], F), [9; 4]);
    }
}
