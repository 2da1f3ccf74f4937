//! Interrupt remapping (issue 14; docs/pci.md, *Interrupt remapping*):
//! the hypervisor turns it on where the unit offers it, bound messages
//! are programmed in the remappable form and still arrive, and a message
//! the owner's device is driven to forge is blocked.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `intremap_qemu_vtd_on`, `intremap_qemu_amdvi_on` | q35 TCG (AMD-V), behind `intel-iommu` (its `intremap` defaults to on under TCG) / `amd-iommu,intremap=on`, dom0 with `edu-msi=8` | `iommu: interrupt remapping on` in the boot log; the 8 edu interrupts arrive as 8 events through the remapping entry; unbound |
//! | `intremap_qemu_vtd_forged` | behind `intel-iommu`, `edu,dma_mask=0xffffffff`, the `msiforge` guest as the control domain | the bound edu MSI delivers; the edu's DMA engine writes a remappable-format message naming an entry no binding uses to 0xFEE00FF0: the unit drops it (QEMU reports the non-present entry), no vector arrives at the hypervisor |
//!
//! QEMU 7.2 limits what can be booted (docs/iommu.md, *QEMU 7.2 notes*):
//! its VT-d passes compatibility-format messages even with GCMD.CFI = 0
//! and records no interrupt-remapping fault; and a message written by a
//! device's DMA (not its MSI logic) carries no requester id, so neither
//! unit checks the source of a forged one (AMD-Vi takes it as the I/O
//! APIC's). The blocked forgery is therefore the VT-d one naming an
//! entry that is not present.

use boot_tests::Outcome;
use boot_tests::artifacts::{guest_module, shared_iso};
use boot_tests::domains::ReportOnPanic;
use boot_tests::edu_vm::{EDU, boot_until, device, edu_vm};

/// Boots `module` as the control domain behind `iommu` with `edu` (its
/// `-device` value) at 00:06.0, until `until` is printed.
fn boot(test: &str, iommu: &str, edu: &str, module: &str, args: &str, until: &str) -> Outcome {
    let iso = shared_iso(
        &format!("{test}.iso"),
        "exit=qemu dom0 loglevel=info",
        &[guest_module(module, module, args)],
    );
    let o = boot_until(test, edu_vm(&iso, Some(iommu), device(edu)), &[until]);
    {
        let _r = ReportOnPanic(&o);
        assert!(o.line("killed").is_none(), "{test}: a domain was killed");
        o.expect_line("iommu: interrupt remapping on");
        assert!(
            o.line("with no message bound to it").is_none(),
            "{test}: a vector came that no binding sent"
        );
    }
    o
}

/// dom0 counts 8 edu interrupts as 8 events with remapping on.
fn dom0_edu(test: &str, iommu: &str) {
    let o = boot(
        test,
        iommu,
        EDU,
        "dom0",
        "edu-msi=8",
        "dom0: no boot configuration",
    );
    let _r = ReportOnPanic(&o);
    let bound = o.expect_line("pci: 0000:00:06.0 msi -> vector 0x");
    let port = bound.rsplit(' ').next().unwrap_or("?");
    o.expect_line(&format!(
        "dom0: edu msi -> port {port}: 8 interrupts delivered of 8 raised"
    ));
    o.expect_line(&format!(
        "pci: 0000:00:06.0 msi unbound by domain 1 (port {port})"
    ));
}

#[test]
fn intremap_qemu_vtd_on() {
    dom0_edu("intremap_qemu_vtd_on", "intel-iommu");
}

#[test]
fn intremap_qemu_amdvi_on() {
    dom0_edu("intremap_qemu_amdvi_on", "amd-iommu,intremap=on");
}

/// Before remapping was turned on, the forged message arrived: the
/// hypervisor logged `interrupt on vector 0xd0 with no message bound to
/// it` (checked by `boot`).
#[test]
fn intremap_qemu_vtd_forged() {
    let test = "intremap_qemu_vtd_forged";
    let o = boot(
        test,
        "intel-iommu",
        "edu,addr=0x6,dma_mask=0xffffffff",
        "msiforge",
        "",
        "domain-end: id=1 ",
    );
    let _r = ReportOnPanic(&o);
    o.assert_domain("msiforge", "exited", 0);
    o.expect_line("msiforge: edu msi -> port ");
    assert!(
        o.expect_line("msiforge: edu msi -> port ")
            .ends_with(": event delivered"),
        "{test}: the bound message did not arrive"
    );
    o.expect_line("msiforge: forged message 0xfee00ff0 data 0xd0 written by the edu's DMA: done");
    // QEMU 7.2 records no remapping fault; it reports the refusal itself.
    assert!(
        o.emulator_log
            .contains("detected non-present IRTE (index=127"),
        "{test}: the unit did not refuse the forged message:\n{}",
        o.emulator_log
    );
}
