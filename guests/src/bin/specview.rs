//! Checks what a guest sees of the speculation controls: CPUID must not
//! offer the features whose MSRs the hypervisor refuses (IA32_SPEC_CTRL's
//! IBRS/STIBP/SSBD, IA32_PRED_CMD's IBPB, IA32_FLUSH_CMD, IA32_ARCH_CAPABILITIES,
//! AMD's VIRT_SPEC_CTRL), or a guest OS would use them and take #GP. VERW
//! needs no MSR: it runs natively, whatever MD_CLEAR says. Between the
//! checks the guest yields `yields=` times (default 50), so a CPU shared
//! with another domain switches domains (IBPB) that often.
//! Prints `specview: <N> checks, <F> failed` and exits with F.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::arch::x86_64::__cpuid_count;

use kestrel_guests::num_arg;
use pvabi::guest::sched;

pvabi::entry_point!(main);

/// CPUID.(EAX=7,ECX=0):EDX: IBRS/IBPB 26, STIBP 27, L1D_FLUSH 28,
/// ARCH_CAPABILITIES 29, SSBD 31.
const LEAF7_EDX_HIDDEN: u32 = (1 << 26) | (1 << 27) | (1 << 28) | (1 << 29) | (1 << 31);
/// CPUID Fn8000_0008 EBX: IBPB 12, IBRS 14, STIBP 15, the IBRS/STIBP
/// hints 16-19, SSBD 24, VIRT_SSBD 25.
const EXT8_EBX_HIDDEN: u32 =
    (1 << 12) | (1 << 14) | (1 << 15) | (0xf << 16) | (1 << 24) | (1 << 25);

fn main(si: &pvabi::StartInfo) -> i32 {
    let mut checks = 0;
    let mut failed = 0;
    let mut check = |ok: bool, what: core::fmt::Arguments<'_>| {
        checks += 1;
        if !ok {
            failed += 1;
            pvabi::println!("specview: FAILED: {what}");
        }
    };
    let yields = num_arg(si, "yields", 50);
    let max = __cpuid_count(0, 0).eax;
    if max >= 7 {
        let l7 = __cpuid_count(7, 0);
        pvabi::println!("specview: leaf 7 EBX {:#x} EDX {:#x}", l7.ebx, l7.edx);
        check(
            l7.edx & LEAF7_EDX_HIDDEN == 0,
            format_args!(
                "leaf 7 EDX {:#x} offers SPEC_CTRL/PRED_CMD/FLUSH_CMD/ARCH_CAPABILITIES bits {:#x}",
                l7.edx,
                l7.edx & LEAF7_EDX_HIDDEN
            ),
        );
    }
    for _ in 0..yields {
        sched::yield_now();
    }
    if __cpuid_count(0x8000_0000, 0).eax >= 0x8000_0008 {
        let e8 = __cpuid_count(0x8000_0008, 0);
        pvabi::println!("specview: Fn8000_0008 EBX {:#x}", e8.ebx);
        check(
            e8.ebx & EXT8_EBX_HIDDEN == 0,
            format_args!(
                "Fn8000_0008 EBX {:#x} offers AMD speculation-control bits {:#x}",
                e8.ebx,
                e8.ebx & EXT8_EBX_HIDDEN
            ),
        );
    }
    for _ in 0..yields {
        sched::yield_now();
    }
    pvabi::println!("specview: {checks} checks, {failed} failed");
    failed
}
