//! Device interrupts as events (issue 14, pvabi `HC_PCI_MSI_BIND`;
//! `docs/pci.md`): the hypervisor programs an owned device's MSI with a
//! host vector aimed at the boot CPU, and each interrupt the device sends
//! makes the owner's port pending.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `msi_qemu_vtd`, `msi_qemu_amdvi`, `msi_qemu_unsafe` | q35 TCG (AMD-V), GRUB ISO, dom0 with `edu-msi=8`, edu at 00:06.0 (MSI) and NVMe at 00:05.0; behind `intel-iommu`, behind `amd-iommu`, and with `iommu=off-unsafe` | the hypervisor binds the edu's MSI to a vector and dom0's port; dom0 raises 8 interrupts through the edu's raise register and gets exactly 8 events, each with its status bit; unbinding frees the port; no unbound vector logged |
//! | `msi_qemu_hostile` | the same machine (`iommu=off-unsafe`), the `msihostile` guest as the control domain | bad arguments, a missing function, the hypervisor's bridge, a missing capability, an entry past the table, the same message twice, one over the 32-message limit, close/send/unbind of the port the wrong ways: the documented errors; the edu binding still delivers exactly what was raised, masked and unmasked; bound at its end, it is released by the domain's end |
//!
//! | `msi_qemu_msix_vtd`, `msi_qemu_msix_amdvi` | the same machine behind `intel-iommu` / `amd-iommu`, the `msixnvme` guest as the control domain | MSI-X: the NVMe's entry 0 bound; the controller brought up with an admin queue pair in the guest's memory; Identify Controller completes and its interrupt arrives as one event on the port; unbound |
//!
//! Bochs (VT-x) has no MSI-capable assignable device without an IOMMU
//! (its i440FX functions are legacy ones), so VT-x's side of delivery is
//! not booted: the vector reaches the host IDT the same way there.

use boot_tests::Outcome;
use boot_tests::artifacts::{guest_module, shared_iso};
use boot_tests::domains::ReportOnPanic;
use boot_tests::edu_vm::{EDU, boot_until, device, edu_vm};
use std::ffi::OsString;

/// The edu device (MSI) and an NVMe controller (MSI-X) at fixed slots.
fn devices(test: &str) -> Vec<OsString> {
    let dir = boot_tests::artifacts::root().join("disks").join(test);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{test}: {e}"));
    let nvme = dir.join("nvme.img");
    std::fs::write(&nvme, vec![0u8; 1 << 20]).unwrap_or_else(|e| panic!("{test}: {e}"));
    let mut v: Vec<OsString> = vec![
        "-drive".into(),
        format!("if=none,id=nvme,format=raw,file={}", nvme.display()).into(),
    ];
    v.extend(device("nvme,drive=nvme,serial=kestrel0,addr=0x5"));
    v.extend(device(EDU));
    v
}

/// Boots `module` as the control domain with `options`, behind `iommu`,
/// until `until` is printed.
fn boot(test: &str, options: &str, iommu: Option<&str>, module: &str, until: &str) -> Outcome {
    let args = if module == "dom0" { "edu-msi=8" } else { "" };
    let iso = shared_iso(
        &format!("{test}.iso"),
        &format!("exit=qemu dom0 loglevel=info {options}"),
        &[guest_module(module, module, args)],
    );
    let o = boot_until(test, edu_vm(&iso, iommu, devices(test)), &[until]);
    {
        let _r = ReportOnPanic(&o);
        assert!(o.line("killed").is_none(), "{test}: a domain was killed");
        assert!(
            o.line("with no message bound to it").is_none(),
            "{test}: a vector came unbound"
        );
    }
    o
}

/// dom0 binds the edu's MSI and counts 8 interrupts as 8 events.
fn dom0_edu(test: &str, options: &str, iommu: Option<&str>) {
    let o = boot(test, options, iommu, "dom0", "dom0: no boot configuration");
    let _r = ReportOnPanic(&o);
    o.expect_line("pci: 0000:00:06.0 1234:11e8 class 00.ff BAR0 mem32 ");
    let bound = o.expect_line("pci: 0000:00:06.0 msi -> vector 0x");
    // dom0 is domain 1.
    assert!(bound.contains(" on APIC 0: domain 1 port "), "{bound}");
    let port = bound.rsplit(' ').next().unwrap_or("?");
    o.expect_line(&format!(
        "dom0: edu msi -> port {port}: 8 interrupts delivered of 8 raised"
    ));
    assert!(
        o.line("without their status bit").is_none(),
        "{test}: an event with no interrupt behind it"
    );
    o.expect_line(&format!(
        "pci: 0000:00:06.0 msi unbound by domain 1 (port {port})"
    ));
    o.expect_line(&format!(
        "dom0: edu msi 0000:00:06.0: unbound, port {port} now free"
    ));
}

#[test]
fn msi_qemu_vtd() {
    dom0_edu("msi_qemu_vtd", "", Some("intel-iommu"));
}

#[test]
fn msi_qemu_amdvi() {
    dom0_edu("msi_qemu_amdvi", "", Some("amd-iommu"));
}

#[test]
fn msi_qemu_unsafe() {
    dom0_edu("msi_qemu_unsafe", "iommu=off-unsafe", None);
}

#[test]
fn msi_qemu_hostile() {
    let test = "msi_qemu_hostile";
    let o = boot(
        test,
        "iommu=off-unsafe",
        None,
        "msihostile",
        "domain-end: id=1 ",
    );
    let _r = ReportOnPanic(&o);
    o.assert_no_failed_check(&o.assert_domain("msihostile", "exited", 0), "msihostile:");
    let n = o.expect_line(" checks, 0 failed");
    assert!(n.contains("msihostile: "), "{n}");
    // Bound at its end: released by it, before its devices are detached.
    o.expect_line("pci: 0000:00:06.0 msi unbound: domain 1 ended");
    o.expect_line("pci: 0000:00:06.0 released by domain 1");
    // The hostile calls were refused before anything was bound: the only
    // bindings made are the edu's two and the NVMe's 31 entries.
    let binds = o
        .lines
        .iter()
        .filter(|l| l.contains(" -> vector 0x"))
        .count();
    assert_eq!(binds, 2 + 31, "{test}: bindings made");
}

/// An MSI-X entry (the NVMe admin completion queue's, entry 0) delivered
/// as an event: behind VT-d, so the controller's DMA uses the control
/// domain's guest-physical addresses.
#[test]
fn msi_qemu_msix_vtd() {
    msix_nvme("msi_qemu_msix_vtd", "intel-iommu");
}

/// [`msi_qemu_msix_vtd`] behind AMD-Vi.
#[test]
fn msi_qemu_msix_amdvi() {
    msix_nvme("msi_qemu_msix_amdvi", "amd-iommu");
}

fn msix_nvme(test: &str, iommu: &str) {
    let o = boot(test, "", Some(iommu), "msixnvme", "domain-end: id=1 ");
    let _r = ReportOnPanic(&o);
    o.assert_domain("msixnvme", "exited", 0);
    let l =
        o.expect_line("msixnvme: identify completion ok (vendor 0x1b36); msix entry 0 -> port ");
    assert!(l.ends_with(": event delivered"), "{l}");
    o.expect_line("pci: 0000:00:05.0 msix entry 0 -> vector 0x");
    o.expect_line("pci: 0000:00:05.0 msix entry 0 unbound by domain 1");
}
