//! The GRUB ISO under Bochs on an Intel Haswell: the only place in these
//! tests with VT-x, EPT and x2APIC. Bochs always exits 1, so the serial log
//! is the verdict.

use boot_tests::MIB;
use boot_tests::artifacts::{GUESTS_ARGS, HELLO_ARGS, expected, payloads};
use boot_tests::bochs::{Pc, run};

use crate::BIOS_RAM_SLACK;

#[test]
fn bochs_haswell_vmx_ept() {
    let pc = Pc::new("corei7_haswell_4770", 2, 256);
    let o = run("bochs_haswell_vmx_ept", &pc);
    o.assert_booted("multiboot2");
    let virt = o.expect_line("VMX");
    assert!(
        virt.contains("EPT"),
        "virtualization line `{virt}` lacks EPT"
    );
    // Haswell has x2APIC (QEMU 7.2's TCG does not): the hypervisor must use it.
    o.expect_line("x2APIC mode");
    o.assert_machine(u64::from(pc.cpus), u64::from(pc.megs) * MIB, BIOS_RAM_SLACK);
    let p = payloads();
    o.assert_module(0, &expected(&p.hello), true, HELLO_ARGS);
    o.assert_module(1, &expected(&p.guests), true, GUESTS_ARGS);
    o.assert_hello_ran("hello.elf", HELLO_ARGS);
}
