//! Host tests of what a guest sees of the speculation controls through the
//! exit handler: CPUID does not offer them (the host here reports every
//! bit) and their MSRs raise #GP, reads and writes alike.
use super::*;

fn cpuid(leaf: u32, subleaf: u32) -> [u64; 4] {
    let mut svc = FakeSvc::new(0);
    let mut v = FakeVcpu::default();
    v.regs.rax = leaf.into();
    v.regs.rcx = subleaf.into();
    let a = handle(
        VmExit::Cpuid { len: 2 },
        &mut v,
        &mut svc,
        &FakeHost,
        0,
        &mut |_: &[u8]| true,
    );
    assert_eq!((a, v.rip), (Action::Resume, 2));
    [v.regs.rax, v.regs.rbx, v.regs.rcx, v.regs.rdx]
}

#[test]
fn cpuid_hides_speculation_controls() {
    // Leaf 7 EDX: IBRS/IBPB 26, STIBP 27, L1D_FLUSH 28, ARCH_CAPABILITIES
    // 29, SSBD 31 hidden; MD_CLEAR 10 (VERW, no MSR) kept.
    let [_, _, _, d] = cpuid(7, 0);
    assert_eq!(d & 0xbc00_0000, 0, "leaf 7 EDX {d:#x}");
    assert_ne!(d & (1 << 10), 0, "MD_CLEAR hidden: {d:#x}");
    // Fn8000_0008 EBX: IBPB 12, IBRS 14, STIBP 15, hints 16-19, SSBD 24,
    // VIRT_SSBD 25 hidden.
    let [_, b, _, _] = cpuid(0x8000_0008, 0);
    assert_eq!(b & 0x030f_d000, 0, "Fn8000_0008 EBX {b:#x}");
    // Other leaves pass as the filter made them.
    assert_eq!(cpuid(7, 1)[3], 0xffff_ffff);
}

#[test]
fn speculation_msrs_raise_gp() {
    // IA32_SPEC_CTRL, IA32_PRED_CMD, IA32_ARCH_CAPABILITIES,
    // IA32_FLUSH_CMD, AMD's VIRT_SPEC_CTRL.
    for msr in [0x48u64, 0x49, 0x10a, 0x10b, 0xc001_011f] {
        for write in [false, true] {
            let mut svc = FakeSvc::new(0);
            let mut v = FakeVcpu {
                rip: 0x1000,
                ..FakeVcpu::default()
            };
            v.regs.rcx = msr;
            v.regs.rax = 1;
            let a = handle(
                VmExit::Msr { write, len: 2 },
                &mut v,
                &mut svc,
                &FakeHost,
                0,
                &mut |_: &[u8]| true,
            );
            assert_eq!(
                (a, v.gp, v.rip),
                (Action::Resume, 1, 0x1000),
                "MSR {msr:#x} write={write}: no #GP"
            );
        }
    }
}
