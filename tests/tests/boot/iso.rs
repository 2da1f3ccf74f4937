//! The GRUB ISO (Multiboot2) under SeaBIOS and OVMF: CPUs, RAM, and two
//! modules whose names, arguments, sizes and CRC-32s must survive GRUB; the
//! first, the `hello` guest, must run and print its arguments back.

use boot_tests::artifacts::{GUESTS_ARGS, HELLO_ARGS, expected, payloads};
use boot_tests::qemu::{BIOS_TIMEOUT_S, UEFI_TIMEOUT_S, bios_vm, run, uefi_vm};
use boot_tests::{MIB, Outcome};

use crate::{BIOS_RAM_SLACK, UEFI_RAM_SLACK};

fn check(o: &Outcome, smp: u32, mem_mib: u64, slack: u64) {
    o.assert_qemu_success("multiboot2");
    o.assert_machine(u64::from(smp), mem_mib * MIB, slack);
    let p = payloads();
    o.assert_module(0, &expected(&p.hello), true, HELLO_ARGS);
    o.assert_module(1, &expected(&p.guests), true, GUESTS_ARGS);
    o.assert_hello_ran("hello.elf", HELLO_ARGS);
    o.assert_all_ended(1, 1);
}

fn bios(test: &str, smp: u32, mem_mib: u64) {
    let o = run(test, bios_vm(smp, &format!("{mem_mib}M")), BIOS_TIMEOUT_S);
    check(&o, smp, mem_mib, BIOS_RAM_SLACK);
}

fn uefi(test: &str, smp: u32, mem_mib: u64) {
    let o = run(
        test,
        uefi_vm(test, smp, &format!("{mem_mib}M")),
        UEFI_TIMEOUT_S,
    );
    check(&o, smp, mem_mib, UEFI_RAM_SLACK);
    no_grub_noise(&o);
}

/// GRUB said nothing but its banner: no error (UEFI's `error: no suitable
/// video mode found.` was one), no menu (test images boot at once).
pub(crate) fn no_grub_noise(o: &boot_tests::Outcome) {
    let noise: Vec<&String> = o
        .lines
        .iter()
        .filter(|l| l.contains("error:") || l.contains("Use the ^ and v keys"))
        .collect();
    assert!(noise.is_empty(), "{}: GRUB printed {noise:?}", o.test);
}

#[test]
fn iso_bios_4cpu_128m() {
    bios("iso_bios_4cpu_128m", 4, 128);
}

#[test]
fn iso_bios_4cpu_2g() {
    bios("iso_bios_4cpu_2g", 4, 2048);
}

#[test]
fn iso_uefi_4cpu_128m() {
    uefi("iso_uefi_4cpu_128m", 4, 128);
}

#[test]
fn iso_uefi_4cpu_2g() {
    uefi("iso_uefi_4cpu_2g", 4, 2048);
}
