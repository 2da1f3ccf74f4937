//! dom0's disk drivers (issue 14; `dom0/src/dev/`): virtio-blk and NVMe
//! behind the IOMMU, end to end. dom0's command line asks for the
//! self-check (`diskcheck=2048+300`): on each disk dom0 writes a pattern
//! to blocks 2048..2348, flushes, reads it back and compares; the test
//! then reads the disk image files on the host and finds the same bytes at
//! byte 2048 * 512, nothing else written, and the CRC-32 dom0 logged.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `disks_qemu_behind_vtd`, `disks_qemu_behind_amdvi` | q35 TCG, `intel-iommu` / `amd-iommu`, virtio-blk 00:03 (`iommu_platform=on`), virtio-blk 00:04 without it, NVMe 00:05; dom0 alone | both usable disks found with size, block size and model; the check passes on both and their images hold the pattern at the right offset and nothing else; the virtio-blk without `VIRTIO_F_ACCESS_PLATFORM` is refused with the reason and its image stays zero; both disks' completions come by MSI-X (`disk_irq.rs`'s assertion) |
//! | `disks_qemu_off_unsafe` | the same devices, no IOMMU, `iommu=off-unsafe` | every disk is named and not used (no IOMMU translates its DMA); images untouched |
//! | `disks_qemu_check_beyond_the_end` | as `disks_qemu_behind_vtd`, `diskcheck=32766+4` (past the end of both) | the check is refused on each disk with the range and the disk's size named; nothing written |
//! | `disks_qemu_hvctl` | as `disks_qemu_behind_vtd` without the check, with `hello` and COM2 a socket | the real `hvctl host` lists both disks under `disks:` |
//! | `disks_qemu_no_iommu` | the same devices, no IOMMU, no option | nothing assigned: `disks: 0 (none usable)` |
//!
//! Bochs (VT-x) has no IOMMU, so no device can be given to dom0 for DMA
//! there: the drivers are tested on QEMU (AMD-V under TCG) only.

use std::path::PathBuf;

use boot_tests::Outcome;
use boot_tests::artifacts::{self, guest_module, shared_iso};
use boot_tests::domains::ReportOnPanic;
use boot_tests::qemu::{BIOS_TIMEOUT_S, iso_vm, run_until};

/// The line dom0 prints after its disks (no boot configuration).
const DOM0_DONE: &str = "dom0: no boot configuration";

pub(super) const FIRST: u64 = 2048;
pub(super) const BLOCKS: u64 = 300;
const BS: usize = 512;

/// The disk images of one test: virtio-blk (8 MiB), the virtio-blk
/// without ACCESS_PLATFORM (1 MiB), NVMe (16 MiB).
pub(super) struct Images {
    pub(super) blk: PathBuf,
    pub(super) plain: PathBuf,
    pub(super) nvme: PathBuf,
}

fn images(test: &str) -> Images {
    let dir = artifacts::root().join("disks").join(test);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{test}: {e}"));
    let disk = |n: &str, mib: usize| {
        let p = dir.join(n);
        std::fs::write(&p, vec![0u8; mib << 20]).unwrap_or_else(|e| panic!("{test}: {e}"));
        p
    };
    Images {
        blk: disk("blk.img", 8),
        plain: disk("plain.img", 1),
        nvme: disk("nvme.img", 16),
    }
}

/// dom0 alone with the three disks, an IOMMU unit if `iommu`, and the
/// hypervisor `options`; until dom0 is past its disks.
fn boot(test: &str, options: &str, iommu: Option<&str>) -> (Outcome, Images) {
    boot_with(test, options, iommu, &format!("diskcheck={FIRST}+{BLOCKS}"))
}

/// [`boot`] with dom0's command line `dom0_args`.
pub(super) fn boot_with(
    test: &str,
    options: &str,
    iommu: Option<&str>,
    dom0_args: &str,
) -> (Outcome, Images) {
    let img = images(test);
    let iso = shared_iso(
        &format!("{test}.iso"),
        &format!("exit=qemu dom0 loglevel=info {options}"),
        &[guest_module("dom0", "dom0", dom0_args)],
    );
    let mut vm = iso_vm(&iso, 1, "128M");
    if let Some(unit) = iommu {
        vm.extra.extend(["-device".into(), unit.into()]);
    }
    vm.extra.extend(devices(&img).into_iter().map(Into::into));
    let o = run_until(test, vm, BIOS_TIMEOUT_S, Some(&[DOM0_DONE]));
    {
        let _r = ReportOnPanic(&o);
        assert_eq!(
            o.ended,
            xtask::runner::Ended::Stopped,
            "{test}: never reached {DOM0_DONE:?}"
        );
        assert!(
            o.fatal_lines().is_empty() && o.panic_lines().is_empty(),
            "{test}: died"
        );
        assert!(o.line("killed").is_none(), "{test}: a domain was killed");
    }
    (o, img)
}

/// QEMU arguments for the three disks at 00:03, 00:04, 00:05.
pub(super) fn devices(img: &Images) -> Vec<String> {
    vec![
        "-drive".into(),
        format!("if=none,id=blk,format=raw,file={}", img.blk.display()),
        "-device".into(),
        // QEMU refuses iommu_platform on a transitional device.
        "virtio-blk-pci,drive=blk,addr=0x3,disable-legacy=on,iommu_platform=on,serial=kestrel-blk0"
            .into(),
        "-drive".into(),
        format!("if=none,id=plain,format=raw,file={}", img.plain.display()),
        "-device".into(),
        "virtio-blk-pci,drive=plain,addr=0x4".into(),
        "-drive".into(),
        format!("if=none,id=nvme,format=raw,file={}", img.nvme.display()),
        "-device".into(),
        "nvme,drive=nvme,serial=kestrel0,addr=0x5".into(),
    ]
}

/// What dom0 writes to block `lba` (`dom0/src/dev/disks.rs`, `pattern`).
fn pattern(lba: u64) -> Vec<u8> {
    let mut b: Vec<u8> = (0..BS as u64)
        .map(|i| ((lba * 131 + i * 7) % 251) as u8)
        .collect();
    let head = format!("kestrel disk check lba={lba:016x}\n");
    b[..head.len()].copy_from_slice(head.as_bytes());
    b
}

/// The image holds the pattern at blocks FIRST..FIRST+BLOCKS, zeros
/// elsewhere; returns the CRC-32 of the pattern's bytes.
pub(super) fn image_has_pattern(o: &Outcome, path: &PathBuf) -> u32 {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let start = FIRST as usize * BS;
    let end = start + BLOCKS as usize * BS;
    for lba in FIRST..FIRST + BLOCKS {
        let at = lba as usize * BS;
        assert!(
            data[at..at + BS] == pattern(lba)[..],
            "{}: {}: block {lba} is not what dom0 wrote (starts {:?})",
            o.test,
            path.display(),
            String::from_utf8_lossy(&data[at..at + 40])
        );
    }
    assert!(
        data[..start].iter().chain(&data[end..]).all(|&b| b == 0),
        "{}: {}: bytes written outside blocks {FIRST}..{}",
        o.test,
        path.display(),
        FIRST + BLOCKS
    );
    crc32fast::hash(&data[start..end])
}

fn all_zero(o: &Outcome, path: &PathBuf) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        data.iter().all(|&b| b == 0),
        "{}: {} was written to",
        o.test,
        path.display()
    );
}

/// dom0's `check ok` line for `bdf`: its CRC-32.
pub(super) fn logged_crc(o: &Outcome, bdf: &str) -> u32 {
    let l = o.expect_line(&format!(
        "dom0: disk {bdf} check ok ({BLOCKS} blocks written and read, crc32 "
    ));
    let hex = l
        .rsplit("crc32 ")
        .next()
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{}: {l}", o.test));
    u32::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{}: {l}: {e}", o.test))
}

fn behind(test: &str, unit: &str) {
    let (o, img) = boot(test, "", Some(unit));
    let _r = ReportOnPanic(&o);
    o.expect_line(
        "dom0: disk 0000:00:03.0 virtio-blk 8 MiB, 512-byte blocks, model \"kestrel-blk0\"",
    );
    o.expect_line("dom0: disk 0000:00:05.0 nvme 16 MiB, 512-byte blocks, model \"QEMU NVMe Ctrl\"");
    o.expect_line(
        "dom0: disk 0000:00:04.0 virtio-blk: does not offer VIRTIO_F_ACCESS_PLATFORM: its DMA would bypass the IOMMU",
    );
    o.expect_line("dom0: disks: 2");
    assert!(o.line("FAILED").is_none(), "{test}: a check failed");
    let blk = image_has_pattern(&o, &img.blk);
    assert_eq!(
        logged_crc(&o, "0000:00:03.0"),
        blk,
        "{test}: virtio-blk CRC"
    );
    let nvme = image_has_pattern(&o, &img.nvme);
    assert_eq!(logged_crc(&o, "0000:00:05.0"), nvme, "{test}: NVMe CRC");
    all_zero(&o, &img.plain);
    super::disk_irq::assert_interrupt_path(&o);
}

#[test]
fn disks_qemu_behind_vtd() {
    behind("disks_qemu_behind_vtd", "intel-iommu");
}

#[test]
fn disks_qemu_behind_amdvi() {
    behind("disks_qemu_behind_amdvi", "amd-iommu");
}

#[test]
fn disks_qemu_off_unsafe() {
    let test = "disks_qemu_off_unsafe";
    let (o, img) = boot(test, "iommu=off-unsafe", None);
    let _r = ReportOnPanic(&o);
    for d in [
        "0000:00:03.0 virtio-blk",
        "0000:00:04.0 virtio-blk",
        "0000:00:05.0 nvme",
    ] {
        o.expect_line(&format!(
            "dom0: disk {d} not used: no IOMMU translates its DMA (iommu=off-unsafe)"
        ));
    }
    o.expect_line("dom0: disks: 0 (none usable)");
    for p in [&img.blk, &img.plain, &img.nvme] {
        all_zero(&o, p);
    }
}

#[test]
fn disks_qemu_no_iommu() {
    let test = "disks_qemu_no_iommu";
    let (o, img) = boot(test, "", None);
    let _r = ReportOnPanic(&o);
    o.expect_line("pci: 0000:00:05.0 1b36:0010 class 01.08 BAR0 mem64 ");
    o.expect_line("dom0: disks: 0 (none usable)");
    assert!(
        o.line("dom0: disk 0000").is_none(),
        "{test}: dom0 got a disk"
    );
    for p in [&img.blk, &img.plain, &img.nvme] {
        all_zero(&o, p);
    }
}

#[test]
fn disks_qemu_check_beyond_the_end() {
    // 32766+4 ends past the 8 MiB virtio-blk (16384 blocks) and the
    // 16 MiB NVMe (32768 blocks).
    let test = "disks_qemu_check_beyond_the_end";
    let (o, img) = boot_with(test, "", Some("intel-iommu"), "diskcheck=32766+4");
    let _r = ReportOnPanic(&o);
    o.expect_line("dom0: disks: 2");
    o.expect_line(
        "dom0: disk 0000:00:03.0 check FAILED: 0000:00:03.0 virtio-blk: check range 32766..+4 is beyond the disk's 16384 blocks",
    );
    o.expect_line(
        "dom0: disk 0000:00:05.0 check FAILED: 0000:00:05.0 nvme: check range 32766..+4 is beyond the disk's 32768 blocks",
    );
    assert!(o.line("check ok").is_none(), "{test}: a check passed");
    for p in [&img.blk, &img.plain, &img.nvme] {
        all_zero(&o, p);
    }
}

#[test]
fn disks_qemu_hvctl() {
    use boot_tests::mgmt::{hvctl_cmd, input_file, wait_for_line};
    const TEST: &str = "disks_qemu_hvctl";
    const END: &str = "[[domain]]\nname = \"end\"\nimage = \"hello\"\nmemory = 4\ncmdline = \"kestrel-test-end\"\n";
    let img = images(TEST);
    let iso = shared_iso(
        &format!("{TEST}.iso"),
        "exit=qemu dom0 loglevel=info",
        &[
            guest_module("dom0", "dom0", ""),
            guest_module("hello", "hello", ""),
        ],
    );
    let run_dir = artifacts::root().join("runs").join(TEST);
    let _ = std::fs::remove_dir_all(&run_dir);
    let sock = run_dir.join("mgmt.sock");
    let log = run_dir.join("serial.log");
    let mut vm = iso_vm(&iso, 1, "128M");
    vm.extra.extend(
        [
            "-chardev".to_string(),
            format!("socket,id=mgmt,path={},server=on,wait=off", sock.display()),
            "-serial".into(),
            "chardev:mgmt".into(),
            "-device".into(),
            "intel-iommu".into(),
        ]
        .into_iter()
        .chain(devices(&img))
        .map(Into::into),
    );
    let qemu = std::thread::spawn(move || {
        run_until(
            TEST,
            vm,
            BIOS_TIMEOUT_S,
            Some(&["[end] hello from", "kestrel-test-end"]),
        )
    });
    let ready = wait_for_line(&log, "dom0: ready: ", boot_tests::scaled(90));
    let session = std::panic::catch_unwind(|| {
        ready.unwrap_or_else(|| panic!("{TEST}: dom0 never became ready"));
        let (code, out, err) = hvctl_cmd(&sock, &["host"]);
        assert_eq!(code, 0, "{err}");
        let disks: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.starts_with("disks:"))
            .collect();
        assert_eq!(
            disks,
            [
                "disks:       0000:00:03.0 virtio-blk 8 MiB, 512-byte blocks, model \"kestrel-blk0\"",
                "             0000:00:05.0 nvme 16 MiB, 512-byte blocks, model \"QEMU NVMe Ctrl\"",
            ],
            "{out}"
        );
    });
    let end = input_file(TEST, "end.toml", END);
    let _ = hvctl_cmd(&sock, &["create", end.to_str().unwrap_or("")]);
    let o = qemu
        .join()
        .unwrap_or_else(|_| panic!("the QEMU thread panicked"));
    let _report = ReportOnPanic(&o);
    if let Err(e) = session {
        std::panic::resume_unwind(e);
    }
    assert_eq!(o.ended, xtask::runner::Ended::Stopped, "{TEST}");
}
