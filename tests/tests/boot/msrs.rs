//! The MSR model and per-vCPU CPUID (issue 13) from a guest kernel: the
//! `msrs` guest writes and reads back every guest-owned MSR (FS/GS bases
//! used by the CPU, KERNEL_GS_BASE through SWAPGS, SYSCALL/SYSENTER MSRs and
//! PAT across a yield, EFER.SCE), and checks the refusals (#GP for a
//! non-canonical base, a bad PAT, APIC_BASE, MTRRcap, a TSC write) and
//! CPUID (APIC id 0, no MTRR/MCE/HTT, leaf 0x4000_0002).
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `msrs_qemu` | QEMU TCG `-cpu max` (AMD-V), GRUB ISO, 1 CPU | `msrs: N checks, 0 failed`; exited 0 |
//! | `msrs_bochs` | Bochs Haswell (VT-x), GRUB ISO, 1 CPU | the same |

use boot_tests::Backend;
use boot_tests::artifacts::guest_module;
use boot_tests::guest_run::GuestRun;

fn msrs(b: Backend) {
    let o = GuestRun {
        name: "msrs",
        options: "",
        modules: vec![guest_module("msrs", "msrs", "")],
        cpus: 1,
        memory_mib: 128,
        stop: None,
    }
    .boot(b);
    let d = o.assert_domain("msrs", "exited", 0);
    o.assert_printed(&d, " checks, 0 failed");
}

#[test]
fn msrs_qemu() {
    msrs(Backend::Svm);
}

#[test]
fn msrs_bochs() {
    msrs(Backend::Vmx);
}
