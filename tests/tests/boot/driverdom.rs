//! Driver domains (issue 14, docs/pci.md *Driver domains*): dom0 moves
//! QEMU's `edu` device to an unprivileged domain named in its boot
//! configuration (`pci = ["0000:00:06.0"]`), whose driver (`edudma`)
//! DMAs inside its memory and once outside it, then exits with a transfer
//! in flight.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `driverdom_qemu_vtd`, `driverdom_qemu_amdvi` | q35 TCG (AMD-V), GRUB ISO, 1 CPU, 128 MiB, edu at 00:06.0 behind `intel-iommu` / `amd-iommu`; dom0 with `dma-canary=7317504`, the `drv` domain (4 MiB) with `edudma outside=7317504` | the hypervisor moved edu from dom0 to `drv` before it ran (IOMMU context switched); `drv` lists it as its own, BAR0 mapped, behind an IOMMU; a pattern round-trips through edu at guest-physical addresses; edu's MSI, bound by `drv`, arrives as an event on `drv`'s port (`edudma: MSI delivered as event on port N`); the DMA to GPA 0x6fa000 (outside `drv`, inside dom0) is refused: VT-d logs `iommu: DMA fault ... device 0000:00:06.0 write at 0x6fa000`, AMD-Vi's refusal is in QEMU's `amdvi_page_fault` trace; dom0's canary page at that GPA is intact; `drv` exits 0 with a transfer in flight; the log shows edu's DMA cut off (bus master off, IOMMU context cleared) before `drv`'s frames are freed; free memory after is at least free memory before the domain was built (at most 4 pages more: the AMD-Vi interrupt table dom0 had for the device) |
//! | `driverdom_qemu_refused` | the same machine behind `intel-iommu` | a configuration whose second domain asks for 0000:00:1f.0 (the hypervisor's LPC bridge): dom0 names the function and the reason, nothing from the file is left, and the first domain's edu, moved to it before the refusal, is cut off and quarantined when it is destroyed |

use boot_tests::Outcome;
use boot_tests::artifacts::{guest_module, shared_iso};
use boot_tests::domains::ReportOnPanic;
use boot_tests::edu_vm::{EDU, boot_until, device, edu_vm};
use boot_tests::mgmt::config_module;

/// Outside `drv`'s 4 MiB, inside dom0's 8 MiB: the last page of its free region
/// (0x6ee000..0x6fb000 with dom0's image as it is; the region's end is fixed by
/// dom0's 8 MiB and its boot area, its start by the image: dom0 says
/// `not a page of my free memory` if the image ever grows that far).
const OUTSIDE: u64 = 0x6fa000;

fn config(extra: &str) -> String {
    format!(
        "[[domain]]\nname = \"drv\"\nimage = \"edudma\"\nmemory = 4\n\
         cmdline = \"outside={OUTSIDE}\"\npci = [\"0000:00:06.0\"]\n{extra}"
    )
}

/// Boots dom0 with `config` behind `iommu` (with `trace`, a QEMU trace
/// event) until `until`.
fn boot(test: &str, config: &str, iommu: &str, trace: Option<&str>, until: &[&str]) -> Outcome {
    let iso = shared_iso(
        &format!("{test}.iso"),
        "exit=qemu dom0 loglevel=info",
        &[
            guest_module("dom0", "dom0", &format!("dma-canary={OUTSIDE}")),
            guest_module("edudma", "edudma", ""),
            config_module(test, config),
        ],
    );
    let mut vm = edu_vm(&iso, Some(iommu), device(EDU));
    if let Some(t) = trace {
        vm.extra.extend(["-trace".into(), t.into()]);
    }
    boot_until(test, vm, until)
}

/// Everything but the fault's evidence, which differs by unit.
fn driver_domain(test: &str, iommu: &str, trace: Option<&str>) -> Outcome {
    let o = boot(
        test,
        &config(""),
        iommu,
        trace,
        // dom0's canary line and the driver's last line (relayed from its
        // console) come in either order: wait for both.
        &[
            "before the domains were built",
            "\nedudma: 11 checks, 0 failed; exiting with a transfer in flight",
        ],
    );
    check_driver_domain(test, &o);
    o
}

fn check_driver_domain(test: &str, o: &Outcome) {
    let _r = ReportOnPanic(o);
    o.expect_line("dom0: dma canary at GPA 0x6fa000: laid");
    // dom0 is domain 1, drv domain 2.
    o.assert_in_order(&[
        "iommu: 0000:00:06.0 detached from domain 1",
        "pci: 0000:00:06.0 assigned to domain 2 (drv) by domain 1: its DMA translated through the new owner's IOMMU context, BARs 0x01 mapped uncached",
        "dom0: domain 2 (drv) started from guests.toml",
    ]);
    o.expect_line("[drv] edudma: edu 0000:00:06.0 is mine (domain 2): BAR0 0x");
    let mine = o.expect_line("[drv] edudma: edu 0000:00:06.0 is mine");
    assert!(mine.ends_with(" mapped, behind an IOMMU"), "{mine}");
    let trip = o.expect_line("[drv] edudma: DMA round trip through edu at GPA ");
    assert!(trip.ends_with(": pattern arrived"), "{trip}");
    // edu's MSI, bound by its new owner, arrives as that owner's event.
    let bound = o.expect_line("pci: 0000:00:06.0 msi -> vector ");
    assert!(bound.contains(": domain 2 port "), "{bound}");
    let event = o.expect_line("[drv] edudma: MSI delivered as event on port ");
    // 0x100: edu's "DMA done" interrupt (QEMU docs/specs/edu.rst).
    assert!(event.ends_with(" (interrupt status 0x100)"), "{event}");
    o.expect_line("[drv] edudma: MSI unbound ok");
    o.expect_line("[drv] edudma: DMA to GPA 0x6fa000 outside my 4 MiB: edu finished it");
    o.expect_line("[drv] edudma: own memory intact after the outside DMA ok");
    assert!(
        o.lines
            .iter()
            .filter(|l| l.contains("edudma:"))
            .all(|l| !l.contains("FAILED")),
        "{test}: a check failed"
    );
    o.expect_line("edudma: 11 checks, 0 failed; exiting with a transfer in flight");
    o.expect_line("domain-end: id=2 name=drv result=exited code=0");
    // The DMA is cut off before the frames go back (both hypervisor log
    // lines, written in that order by `Drop for Domain`; the guest's own
    // lines reach the serial port through dom0, at its pace).
    o.assert_in_order(&[
        "pci: 0000:00:06.0 released by domain 2: DMA cut off (bus master off, IOMMU context cleared), quarantined",
        "domain 2 (drv): 1024 frames freed after the DMA of its 1 PCI device(s) was cut off",
    ]);
    o.expect_line(
        "domain 2 (drv): 1024 frames freed after the DMA of its 1 PCI device(s) was cut off",
    );
    // dom0's page at the GPA the driver aimed at is untouched, and the
    // memory came back.
    // The check after drv's end (the first such line; `laid` came before).
    let canary = o.expect_line(" before the domains were built");
    let canary = canary
        .split("dom0: dma canary at GPA 0x6fa000: ")
        .nth(1)
        .unwrap_or("");
    assert!(canary.starts_with("intact; "), "{test}: canary `{canary}`");
    let figures: Vec<u64> = canary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(figures.len(), 2, "{canary}");
    // At least what was free before: the device left dom0 for good (on
    // AMD-Vi its interrupt-remapping table frame, made when dom0 got it at
    // boot, went with it), and everything drv had came back.
    assert!(
        figures[0] >= figures[1] && figures[0] - figures[1] <= 4 * 4096,
        "{test}: free memory after drv's end {} against {} before it was built",
        figures[0],
        figures[1]
    );
}

#[test]
fn driverdom_qemu_vtd() {
    let test = "driverdom_qemu_vtd";
    let o = driver_domain(test, "intel-iommu", None);
    let _r = ReportOnPanic(&o);
    // The one refused write: the outside one, named by device and address.
    let faults: Vec<&String> = o
        .lines
        .iter()
        .filter(|l| l.contains("iommu: DMA fault on"))
        .collect();
    assert!(!faults.is_empty(), "{test}: no fault logged");
    assert!(
        faults[0].contains("device 0000:00:06.0 write at 0x6fa000"),
        "{test}: {faults:?}"
    );
    o.assert_in_order(&[
        "pci: 0000:00:06.0 assigned to domain 2 (drv)",
        "iommu: DMA fault on VT-d unit 0: device 0000:00:06.0 write at 0x6fa000",
        "pci: 0000:00:06.0 released by domain 2",
    ]);
}

/// QEMU 7.2's AMD-Vi writes no event log (docs/iommu.md): the unit's
/// refusal is read from QEMU's own `amdvi_page_fault` trace.
#[test]
fn driverdom_qemu_amdvi() {
    let test = "driverdom_qemu_amdvi";
    let o = driver_domain(test, "amd-iommu", Some("amdvi_page_fault"));
    let _r = ReportOnPanic(&o);
    let trace =
        std::fs::read_to_string(o.serial_path.with_file_name("qemu-reset.log")).unwrap_or_default();
    let refused = trace
        .lines()
        .filter(|l| l.contains("amdvi_page_fault") && l.ends_with("address 0x6fa000"))
        .count();
    assert!(
        refused >= 1,
        "{test}: the unit did not refuse GPA 0x6fa000:\n{trace}"
    );
}

#[test]
fn driverdom_qemu_refused() {
    let test = "driverdom_qemu_refused";
    let bad = config(
        "\n[[domain]]\nname = \"greedy\"\nimage = \"edudma\"\nmemory = 4\npci = [\"0000:00:1f.0\"]\n",
    );
    let o = boot(
        test,
        &bad,
        "intel-iommu",
        None,
        &["nothing from guests.toml was created"],
    );
    let _r = ReportOnPanic(&o);
    o.expect_line(
        "dom0: guests.toml:8: domain \"greedy\": field \"pci\": 0000:00:1f.0: the hypervisor keeps it (a bridge",
    );
    // drv got edu before greedy was refused; destroyed, never run, edu is
    // cut off and quarantined.
    o.assert_in_order(&[
        "pci: 0000:00:06.0 assigned to domain 2 (drv)",
        "pci: 0000:00:06.0 released by domain 2: DMA cut off",
        "domain 2 (drv): 1024 frames freed after the DMA of its 1 PCI device(s) was cut off",
    ]);
    assert!(o.line("edudma:").is_none(), "{test}: drv ran");
}
