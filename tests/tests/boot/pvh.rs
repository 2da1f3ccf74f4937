//! PVH direct boot (`qemu -kernel`): CPUs, RAM and the one `-initrd` module.
//! The module is the `hello` guest (so the hypervisor starts it as a
//! domain, called `module0`: PVH modules have no name or arguments), except
//! in `pvh_1cpu_128m`, which passes a text file (no domain).

use std::path::Path;

use boot_tests::artifacts::{expected, payloads};
use boot_tests::qemu::{PVH_TIMEOUT_S, pvh_vm, run};
use boot_tests::{MIB, Outcome};

use crate::{PVH_RAM_SLACK, TEST_CMDLINE};

fn boot(test: &str, smp: u32, mem_mib: u64, module: &Path, cpu: Option<&str>) -> Outcome {
    let guest = module == payloads().hello.as_path();
    let mut vm = pvh_vm(smp, &format!("{mem_mib}M"), TEST_CMDLINE, Some(module));
    if let Some(cpu) = cpu {
        vm.cpu = cpu.into();
    }
    let o = run(test, vm, PVH_TIMEOUT_S);
    o.assert_qemu_success("pvh");
    o.assert_machine(u64::from(smp), mem_mib * MIB, PVH_RAM_SLACK);
    // QEMU's PVH loader gives the module no command line, hence no name.
    o.assert_module(0, &expected(module), false, "");
    // TCG emulates AMD-V with nested paging; the banner must say so.
    let virt = o.expect_line("SVM");
    assert!(
        virt.contains("NPT"),
        "{test}: virtualization line `{virt}` lacks NPT"
    );
    o.expect_line("virt: running guests with AMD-V/NPT");
    if guest {
        o.assert_hello_ran("module0", "");
        o.assert_all_ended(1, 1);
    } else {
        o.assert_all_ended(0, 0);
    }
    o
}

#[test]
fn pvh_1cpu_128m() {
    boot("pvh_1cpu_128m", 1, 128, &payloads().guests, None);
}

#[test]
fn pvh_4cpu_128m() {
    boot("pvh_4cpu_128m", 4, 128, &payloads().hello, None);
}

#[test]
fn pvh_2cpu_2g() {
    boot("pvh_2cpu_2g", 2, 2048, &payloads().hello, None);
}

#[test]
fn pvh_4cpu_2g() {
    boot("pvh_4cpu_2g", 4, 2048, &payloads().hello, None);
}

/// QEMU's richest TCG model (more CPUID leaves, 5-level paging offered, RDRAND).
#[test]
fn pvh_cpu_max_2cpu_256m() {
    boot(
        "pvh_cpu_max_2cpu_256m",
        2,
        256,
        &payloads().hello,
        Some("max"),
    );
}
