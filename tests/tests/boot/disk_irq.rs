//! dom0's disks complete on interrupts (issue 14): virtio-blk's request
//! queue signals through MSI-X entry 0 and NVMe's I/O completion queue
//! through entry 1, each bound to an event port, and the driver sleeps on
//! the port between looks at its queue (`dom0/src/dev/completion.rs`).
//! Polling is only the fallback, said on the disk's boot line. The proof
//! that the interrupt path is used: the boot line names the entry, and
//! dom0's count of completion interrupts (`completion interrupts: N`,
//! printed after the self-check) is above zero on each disk. A request QEMU
//! completes inside the doorbell write is found done before the driver
//! would sleep, so a disk may finish its check without one wait (seen:
//! virtio-blk behind AMD-Vi counted 0 waits in a fresh-clone run); its MSI
//! still comes and leaves the disk's port pending, and dom0 takes and
//! counts that after the check (`Completions::drain`). So the count is of
//! interrupts that came, parked waiter or not, and an MSI that never came
//! leaves it at 0.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `disks_qemu_behind_vtd`, `disks_qemu_behind_amdvi` (disks.rs) | both IOMMUs | [`assert_interrupt_path`] on top of the self-check |
//! | `disks_qemu_poll_forced` | as `disks_qemu_behind_vtd`, dom0 with `disk=poll` | both disks say `completions polled (disk=poll on the command line)`, count 0 interrupts, still pass the check (the pattern is in the images); and [`assert_interrupt_path`] fails on this output: the assertion tells the two paths apart |
//!
//! Bochs (VT-x) has no IOMMU, so no disk is given to dom0 there (disks.rs).

use boot_tests::Outcome;
use boot_tests::domains::ReportOnPanic;

use super::disks::{BLOCKS, FIRST, boot_with, image_has_pattern, logged_crc};

const BLK: &str = "0000:00:03.0";
const NVME: &str = "0000:00:05.0";

/// dom0's `completion interrupts: N (D found pending after the check)`
/// for the disk at `bdf`: N.
fn interrupts(o: &Outcome, bdf: &str) -> u64 {
    let key = format!("dom0: disk {bdf} completion interrupts: ");
    let l = o.expect_line(&key);
    l.split_once(&key)
        .and_then(|(_, n)| n.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{}: no count in {l:?}", o.test))
}

/// Both disks are woken by their MSI-X entries: the boot lines name the
/// entries, nothing says polled, and the disks counted interrupts.
pub(super) fn assert_interrupt_path(o: &Outcome) {
    let blk = o.expect_line(&format!("dom0: disk {BLK} virtio-blk "));
    assert!(
        blk.contains(", completions by MSI-X entry 0 (port "),
        "{}: virtio-blk not on its interrupt: {blk}",
        o.test
    );
    let nvme = o.expect_line(&format!("dom0: disk {NVME} nvme "));
    assert!(
        nvme.contains(", completions by MSI-X entry 1 (port "),
        "{}: NVMe not on its interrupt: {nvme}",
        o.test
    );
    assert!(
        o.line("completions polled").is_none(),
        "{}: a disk is polled",
        o.test
    );
    for bdf in [BLK, NVME] {
        let n = interrupts(o, bdf);
        assert!(
            n > 0,
            "{}: disk {bdf} counted no completion interrupt ({n})",
            o.test
        );
    }
}

#[test]
fn disks_qemu_poll_forced() {
    let test = "disks_qemu_poll_forced";
    let (o, img) = boot_with(
        test,
        "",
        Some("intel-iommu"),
        &format!("diskcheck={FIRST}+{BLOCKS} disk=poll"),
    );
    let _r = ReportOnPanic(&o);
    for bdf in [BLK, NVME] {
        let l = o.expect_line(&format!("dom0: disk {bdf} "));
        assert!(
            l.ends_with(", completions polled (disk=poll on the command line)"),
            "{test}: {l}"
        );
        assert_eq!(interrupts(&o, bdf), 0, "{test}: {bdf}");
    }
    assert_eq!(logged_crc(&o, BLK), image_has_pattern(&o, &img.blk));
    assert_eq!(logged_crc(&o, NVME), image_has_pattern(&o, &img.nvme));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_interrupt_path(&o);
    }));
    assert!(
        caught.is_err(),
        "{test}: the interrupt-path assertion passed on a polled run"
    );
}
