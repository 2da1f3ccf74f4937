//! DMA remapping, proved from outside: `selftest=iommu-dma` makes QEMU's
//! `edu` device DMA into a hypervisor frame (must be blocked, and the
//! fault logged naming edu), into a scratch domain it is attached to (the
//! bytes must arrive in the frame behind the guest-physical address), outside
//! that domain (blocked) and after detach (blocked). The control run has no
//! IOMMU on QEMU's command line: the hostile DMA must land there, so the
//! checks can fail. Under Bochs (no IOMMU) boot says `iommu: none found`.

use boot_tests::Outcome;
use boot_tests::bochs::{Pc, run as bochs_run};
use boot_tests::qemu::{PVH_TIMEOUT_S, pvh_vm, run};
use xtask::qemu::{STATUS_FAILURE, STATUS_SUCCESS};

/// Boots the self-test with `devices` (QEMU `-device` values, in order:
/// the IOMMU must come before the PCI devices it translates).
fn selftest(test: &str, devices: &[&str]) -> Outcome {
    let mut vm = pvh_vm(1, "128M", "exit=qemu selftest=iommu-dma", None);
    let mut args = devices.iter();
    while let Some(d) = args.next() {
        if *d == "-trace" {
            // A QEMU trace event, passed as is.
            vm.extra.push("-trace".into());
            vm.extra
                .push(args.next().copied().unwrap_or_default().into());
            continue;
        }
        vm.extra.push("-device".into());
        vm.extra.push((*d).into());
    }
    run(test, vm, PVH_TIMEOUT_S)
}

/// Every `iommu-selftest:` check line says ok, the last line is PASS,
/// the hypervisor exits with success and logged the faults it must.
fn assert_fenced(o: &Outcome, unit_line: &str) {
    o.expect_line(unit_line);
    o.expect_line("every device blocked");
    let checks: Vec<&String> = o
        .lines
        .iter()
        .filter(|l| {
            l.starts_with("iommu-selftest:") && (l.ends_with(": ok") || l.ends_with("FAILED"))
        })
        .collect();
    assert!(
        checks.len() >= 12,
        "{}: only {} checks ran:\n{}",
        o.test,
        checks.len(),
        o.report()
    );
    for c in &checks {
        assert!(c.ends_with(": ok"), "{}: `{c}`\n{}", o.test, o.report());
    }
    o.assert_in_order(&[
        "iommu-selftest: edu at 00:",
        // (a) the hostile DMA is blocked and its fault names edu.
        "iommu: DMA fault on",
        "iommu-selftest: hostile DMA into hypervisor frame",
        "iommu: 0000:00:",
        "iommu-selftest: pattern arrived in the frame behind GPA 0x2000: ok",
        // (b) outside the domain: a write fault.
        "iommu: DMA fault on",
        "iommu-selftest: DMA outside the domain faulted: ok",
        "detached from domain",
        // (c) after detach.
        "iommu: DMA fault on",
        "iommu-selftest: PASS",
    ]);
    let edu = o.expect_line("iommu-selftest: edu at ");
    let bdf = edu
        .split("edu at ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or("?");
    let faults: Vec<&String> = o
        .lines
        .iter()
        .filter(|l| l.contains("iommu: DMA fault on"))
        .collect();
    assert_eq!(
        faults.len(),
        3,
        "{}: one fault per blocked DMA:\n{}",
        o.test,
        o.report()
    );
    for f in faults {
        assert!(
            f.contains(&format!("device 0000:{bdf} write at 0x")),
            "{}: fault `{f}` does not name edu {bdf}",
            o.test
        );
    }
    let hostile = o.expect_line("iommu-selftest: hostile DMA into hypervisor frame 0x");
    assert!(hostile.ends_with("blocked"), "{}: `{hostile}`", o.test);
    o.assert_status(STATUS_SUCCESS);
}

/// AMD-Vi: the same checks, but QEMU 7.2's AMD-Vi never writes its event
/// log (its `amdvi_test_mask` ORs where it should AND, so
/// `amdvi_log_event` returns before writing; fixed upstream later), so
/// the unit's refusals are read from QEMU's own trace of them instead:
/// one `amdvi_page_fault` at the hypervisor frame while blocked, one
/// there again outside the domain, one at GPA 0x2000 after detach.
#[test]
fn iommu_amdvi_fences_edu_dma() {
    let test = "iommu_amdvi_fences_edu_dma";
    let o = selftest(test, &["amd-iommu", "edu", "-trace", "amdvi_page_fault"]);
    o.expect_line("iommu: AMD-Vi unit 0 at 0xfed80000");
    o.expect_line("every device blocked");
    let checks: Vec<&String> = o
        .lines
        .iter()
        .filter(|l| {
            l.starts_with("iommu-selftest:") && (l.ends_with(": ok") || l.ends_with("FAILED"))
        })
        .collect();
    assert!(
        checks.len() >= 9,
        "{test}: only {} checks ran:\n{}",
        checks.len(),
        o.report()
    );
    for c in &checks {
        assert!(c.ends_with(": ok"), "{test}: `{c}`\n{}", o.report());
    }
    let hostile = o.expect_line("iommu-selftest: hostile DMA into hypervisor frame 0x");
    assert!(hostile.ends_with("blocked"), "{test}: `{hostile}`");
    let victim = hostile
        .split("frame ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .unwrap_or("?");
    // QEMU's log backend writes trace events where `-D` points: the
    // harness's reset log.
    let trace =
        std::fs::read_to_string(o.serial_path.with_file_name("qemu-reset.log")).unwrap_or_default();
    let fault = |addr: &str| {
        trace
            .lines()
            .filter(|l| l.contains("amdvi_page_fault") && l.ends_with(&format!("address {addr}")))
            .count()
    };
    assert_eq!(
        fault(victim),
        2,
        "{test}: the unit refused the hypervisor frame {victim} twice:\n{trace}"
    );
    assert_eq!(
        fault("0x2000"),
        1,
        "{test}: the unit refused GPA 0x2000 after detach"
    );
    o.expect_line("iommu-selftest: PASS");
    o.assert_status(STATUS_SUCCESS);
}

#[test]
fn iommu_vtd_fences_edu_dma() {
    let o = selftest("iommu_vtd_fences_edu_dma", &["intel-iommu", "edu"]);
    assert_fenced(
        &o,
        "iommu: VT-d unit 0 at 0xfed90000 ver 1.0 segment 0, 39-bit AGAW",
    );
}

/// The control: no IOMMU, so the hostile DMA lands and the self-test
/// fails; proof that the checks above can fail.
#[test]
fn iommu_absent_hostile_dma_lands() {
    let o = selftest("iommu_absent_hostile_dma_lands", &["edu"]);
    o.expect_line("iommu: none found");
    assert!(
        o.expect_line("iommu-selftest: hostile DMA into hypervisor frame")
            .ends_with("LANDED"),
        "{}",
        o.report()
    );
    o.expect_line("iommu-selftest: hypervisor frame unchanged: FAILED");
    o.expect_line("iommu-selftest: FAIL");
    o.assert_status(STATUS_FAILURE);
}

#[test]
fn iommu_none_on_bochs() {
    let pc = Pc::new("corei7_haswell_4770", 1, 128);
    let o = bochs_run("iommu_none_on_bochs", &pc);
    o.assert_booted("multiboot2");
    o.expect_line("iommu: none found");
    assert!(
        o.fatal_lines().is_empty() && o.panic_lines().is_empty(),
        "{}",
        o.report()
    );
}
