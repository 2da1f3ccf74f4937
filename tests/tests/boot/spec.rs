//! Speculative-execution mitigations (`spec-ctrl`): the choice logged at
//! boot from what the CPU reports, the `spec-ctrl=` option turning each
//! off, guests running with the barriers on, and guests not seeing the
//! controls whose MSRs they may not use.
//!
//! QEMU 7.2's TCG drops every speculation flag asked for with `-cpu`
//! (`TCG doesn't support requested feature: CPUID.07H:EDX.spec-ctrl`,
//! `CPUID.80000008H:EBX.ibpb`, ...): under QEMU the CPU reports none, and
//! only the RSB filling runs. Bochs' `tigerlake` model reports the Intel
//! controls and IA32_ARCH_CAPABILITIES, so the VT-x runs exercise IBPB on
//! domain switch and the VM-entry barriers for real.

use boot_tests::artifacts::{guest_module, payloads};
use boot_tests::bochs::{self, Pc};
use boot_tests::qemu::{PVH_TIMEOUT_S, pvh_vm, run};
use boot_tests::{Outcome, artifacts};

/// What every boot logs after the per-mitigation lines.
const GUEST_LINES: [&str; 3] = [
    "spec-ctrl: guest SPEC_CTRL (IBRS, STIBP, SSBD): hidden from guest CPUID",
    "spec-ctrl: guest PRED_CMD and FLUSH_CMD: filtered",
    "spec-ctrl: not done yet: ",
];

fn assert_common(o: &Outcome) {
    o.expect_line("spec-ctrl: CPU reports ");
    for l in GUEST_LINES {
        o.expect_line(l);
    }
}

/// QEMU with every speculation flag asked for: TCG passes none of them,
/// so the log says IBPB is missing (not "on"), and the Intel-only
/// barriers are off for an AMD CPU; the RSB is filled.
#[test]
fn spec_qemu_flags() {
    let p = payloads();
    let mut vm = pvh_vm(1, "128M", crate::TEST_CMDLINE, Some(&p.hello));
    vm.cpu = "max,+spec-ctrl,+stibp,+ssbd,+md-clear,+arch-capabilities,+ibpb,+amd-ssbd".into();
    let o = run("spec_qemu_flags", vm, PVH_TIMEOUT_S);
    o.assert_qemu_success("pvh");
    assert!(
        o.emulator_log
            .contains("TCG doesn't support requested feature: CPUID.07H:EDX.spec-ctrl"),
        "QEMU now lets spec-ctrl through TCG: make this test expect IBPB on\n{}",
        o.emulator_log
    );
    assert_common(&o);
    o.expect_line(
        "spec-ctrl: CPU reports none of IBRS/IBPB, STIBP, SSBD, MD_CLEAR, L1D_FLUSH, ARCH_CAPABILITIES",
    );
    o.expect_line("spec-ctrl: IBPB on domain switch: off (CPU lacks IBPB: not mitigated)");
    o.expect_line("spec-ctrl: RSB filling after VM exit: on (32 entries, every exit)");
    o.expect_line("spec-ctrl: VERW before VM entry: off (not affected: not an Intel CPU)");
    o.expect_line("spec-ctrl: L1D flush on VM entry: off (not affected: not an Intel CPU)");
    o.assert_domain("module0", "exited", 0);
}

/// `spec-ctrl=off`: every line says off and why; guests still run.
#[test]
fn spec_qemu_off() {
    let p = payloads();
    let vm = pvh_vm(
        1,
        "128M",
        &format!("{} spec-ctrl=off", crate::TEST_CMDLINE),
        Some(&p.hello),
    );
    let o = run("spec_qemu_off", vm, PVH_TIMEOUT_S);
    o.assert_qemu_success("pvh");
    assert_common(&o);
    o.expect_line("spec-ctrl: RSB filling after VM exit: off (spec-ctrl=no-rsb)");
    o.assert_domain("module0", "exited", 0);
}

/// An unknown word in the list is fatal, names the word, and still exits
/// QEMU (`exit=qemu` before it on the line).
#[test]
fn spec_qemu_bad_word() {
    let vm = pvh_vm(1, "128M", "exit=qemu spec-ctrl=no-rsb,no-ibrs", None);
    run("spec_qemu_bad_word", vm, PVH_TIMEOUT_S).assert_fatal(&[
        "spec-ctrl",
        "\"no-ibrs\"",
        "l1d-flush",
    ]);
}

/// The Bochs run of [`spec_bochs_tigerlake`] and [`spec_bochs_off`]: two
/// domains on one CPU of a Bochs Tiger Lake (VT-x): the choice from
/// its CPUID and ARCH_CAPABILITIES, both domains alternate on the CPU
/// (IBPB on every switch) and end well, and the `specview` guest finds the
/// controls hidden from its CPUID (the CPU reports them, so before the
/// filter a guest saw them).
fn bochs_run(test: &str, options: &str) -> Outcome {
    let modules = vec![
        guest_module("specview", "specview", ""),
        guest_module("burn", "burn", "ms=50"),
    ];
    let iso = artifacts::shared_iso(
        &format!("{test}.iso"),
        &format!("exit=bochs shutdown loglevel=info {options}"),
        &modules,
    );
    let o = bochs::run_iso(
        test,
        &Pc::new("tigerlake", 1, 128),
        &iso,
        None,
        bochs::TIMEOUT_S,
    );
    o.assert_booted("multiboot2");
    o.expect_line("virt: running guests with VT-x/EPT");
    assert_common(&o);
    let d = o.assert_domain("specview", "exited", 0);
    o.assert_no_failed_check(&d, "specview:");
    o.assert_domain("burn", "exited", 0);
    o
}

#[test]
fn spec_bochs_tigerlake() {
    let o = bochs_run("spec_bochs_tigerlake", "");
    o.expect_line("spec-ctrl: CPU reports IBRS/IBPB");
    o.expect_line("spec-ctrl: IBPB on domain switch: on (CPU has IBPB)");
    o.expect_line("spec-ctrl: RSB filling after VM exit: on (32 entries, every exit)");
    // Bochs' Tiger Lake: ARCH_CAPABILITIES 0x1f, RDCL_NO without MDS_NO.
    o.expect_line("spec-ctrl: VERW before VM entry: on (CPU affected by MDS, has MD_CLEAR)");
    o.expect_line(
        "spec-ctrl: L1D flush on VM entry: off (not affected: ARCH_CAPABILITIES.RDCL_NO)",
    );
}

#[test]
fn spec_bochs_off() {
    let o = bochs_run(
        "spec_bochs_off",
        "spec-ctrl=no-ibpb,no-rsb,no-verw,no-l1d-flush",
    );
    o.expect_line("spec-ctrl: IBPB on domain switch: off (spec-ctrl=no-ibpb)");
    o.expect_line("spec-ctrl: RSB filling after VM exit: off (spec-ctrl=no-rsb)");
    o.expect_line("spec-ctrl: VERW before VM entry: off (spec-ctrl=no-verw)");
}
