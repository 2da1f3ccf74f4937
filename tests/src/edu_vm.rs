//! The machine the device-interrupt and driver-domain boot tests share
//! (`driverdom.rs`, `intremap.rs`, `msi.rs`): a 1-CPU, 128 MiB q35 booting
//! a GRUB ISO, an IOMMU and QEMU's `edu` device, run to a stop line and
//! checked to have stopped there with the hypervisor alive.

use std::ffi::OsString;
use std::path::Path;

use xtask::qemu::Vm;

use crate::Outcome;
use crate::domains::ReportOnPanic;
use crate::qemu::{BIOS_TIMEOUT_S, iso_vm, run_until};
use crate::session::assert_survived;

/// QEMU's `edu` device at 00:06.0 (its `-device` value).
pub const EDU: &str = "edu,addr=0x6";

/// `-device value`.
pub fn device(value: &str) -> Vec<OsString> {
    vec!["-device".into(), value.into()]
}

/// `iso` through SeaBIOS on 1 CPU and 128 MiB with `iommu` (a `-device`
/// value: `intel-iommu`, `amd-iommu,intremap=on`; `None`: no unit) first,
/// then `devices` (QEMU arguments: [`device`]`(`[`EDU`]`)` and the like).
pub fn edu_vm(iso: &Path, iommu: Option<&str>, devices: Vec<OsString>) -> Vm {
    let mut vm = iso_vm(iso, 1, "128M");
    if let Some(unit) = iommu {
        vm.extra.extend(device(unit));
    }
    vm.extra.extend(devices);
    vm
}

/// Runs `vm` as `test` until `until` ([`run_until`], the BIOS deadline);
/// asserts, with the run's report on failure, that it stopped there and
/// the hypervisor lived.
pub fn boot_until(test: &str, vm: Vm, until: &[&str]) -> Outcome {
    let o = run_until(test, vm, BIOS_TIMEOUT_S, Some(until));
    {
        let _r = ReportOnPanic(&o);
        assert_survived(&o, &format!("{test}: never reached {until:?}"));
    }
    o
}
