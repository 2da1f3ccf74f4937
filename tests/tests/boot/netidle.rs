//! An idle host with dom0's NIC configured is idle (issue 14): dom0's
//! virtio-net interrupts through its MSI-X entry, bound to an event port,
//! so nothing wakes dom0 while no frame comes; before, the NIC was polled
//! every 2 ms. The same machine with `net=poll` (the NIC alone polled, the
//! fallback where MSI-X cannot be bound) is the control that shows the
//! bound discriminates. The method is `dom0_qemu_idle`'s (dom0_idle.rs).
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `netmgmt_qemu_idle` | q35, `intel-iommu`, `virtio-net-pci` on the user network (nothing sent to it), dom0 with `[network] address = "10.0.2.15/24"` | dom0 says its NIC is woken by MSI-X; over two idle spans of [`IDLE_S`] s each, back to back, dom0's own exits (`hvctl info dom0`'s `exits` before and after, less one sample's cost: the largest of three back-to-back samples) are at most [`IDLE_MAX`] in the quieter span; with `net=poll` dom0 says the NIC is polled every 2 ms and the same figure is over the bound |

use boot_tests::artifacts::{guest_module, test_dir};
use boot_tests::domains::ReportOnPanic;
use boot_tests::idle::measure_idle_exits;
use boot_tests::mgmt::{config_module, mgmt_vm, wait_for_line};
use boot_tests::qemu::BIOS_TIMEOUT_S;
use boot_tests::scaled;
use boot_tests::session::{END_LINE, Machine};
use xtask::iso::Module;

use super::netmgmt::keygen;

const CONFIG: &str = "[network]\naddress = \"10.0.2.15/24\"\nkey_files = [\"ops.key\"]\n";
/// Real seconds the machine is left idle between two samples.
const IDLE_S: u64 = 3;
/// dom0 exits over that span, at most (MSI-X) and more than (`net=poll`):
/// `dom0_qemu_idle`'s bound (dom0_idle.rs says why it is absolute).
const IDLE_MAX: u64 = 40;

/// Boots dom0 (with `dom0_args`) and its NIC; returns dom0's exits in the
/// quieter of two idle spans of [`IDLE_S`] s (less one sample's cost).
fn idle_exits(test: &'static str, dom0_args: &str, expect: &str) -> u64 {
    let keys = test_dir(&format!("{test}.keys"));
    let key = keygen(&keys, "ops.key");
    let modules = vec![
        guest_module("dom0", "dom0", dom0_args),
        guest_module("hello", "hello", ""),
        config_module(test, CONFIG),
        Module::named(&key, "ops.key", "").unwrap_or_else(|e| panic!("{e}")),
    ];
    let (mut vm, sock, log) = mgmt_vm(test, &modules);
    vm.extra.extend(
        [
            "-device",
            "intel-iommu",
            "-netdev",
            "user,id=n",
            "-device",
            "virtio-net-pci,netdev=n,addr=0x4,disable-legacy=on,iommu_platform=on",
        ]
        .map(Into::into),
    );
    let qemu = Machine::qemu(test, vm, BIOS_TIMEOUT_S * 3, END_LINE);
    let (o, idle) = qemu.session(&sock, test, || {
        let net = wait_for_line(&log, "dom0: net: ", scaled(120))
            .unwrap_or_else(|| panic!("{test}: dom0 said nothing about the network"));
        assert!(net.contains(expect), "{test}: {net}");
        wait_for_line(&log, "dom0: ready: ", scaled(60))
            .unwrap_or_else(|| panic!("{test}: dom0 never became ready"));
        measure_idle_exits(test, &sock, IDLE_S)
    });
    let _report = ReportOnPanic(&o);
    assert_eq!(o.ended, xtask::runner::Ended::Stopped, "{test}");
    idle
}

#[test]
fn netmgmt_qemu_idle() {
    let irq = idle_exits("netmgmt_qemu_idle", "", "woken by MSI-X entry 0");
    let poll = idle_exits(
        "netmgmt_qemu_idle_poll",
        "net=poll",
        "polled every 2 ms (net=poll on the command line)",
    );
    assert!(
        irq <= IDLE_MAX,
        "dom0 took {irq} exits in {IDLE_S} idle seconds with the NIC on MSI-X (bound {IDLE_MAX})"
    );
    assert!(
        poll > IDLE_MAX,
        "dom0 polling its NIC took only {poll} exits in {IDLE_S} s: the bound does not tell the \
         two apart"
    );
}
