//! A 2-vCPU Linux domain under QEMU `-icount shift=7,align=off,sleep=off`,
//! the benchmark's clock (`cargo xtask bench --only linux`), where it used
//! to stall for good (issue 13): QEMU's TCG delivered an upcall injected
//! through EVENTINJ a second time, ignoring RFLAGS.IF, whenever a vCPU's
//! round-robin turn ended before its next exception (`virt/svm.rs`,
//! `set_upcall`), so the timer upcall entered inside `__schedule` or inside
//! itself and both vCPUs spun on a runqueue lock their own interrupted
//! context held. Without `-icount` the turns end on wall-clock kicks and
//! the window was rarely hit; the plain SMP tests (`linux_smp.rs`) did not
//! see it.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `linux_smp2_icount_amdv_qemu` | QEMU TCG (AMD-V), `-cpu qemu64,+svm,+npt -smp 2`, the bench's `-icount`, `-rtc` and `-seed` | the kernel brings up 2 CPUs, `/init` runs and sees 2 in `/proc/cpuinfo`, `poweroff -f` ends the domain `result=exited code=0`; no `WARNING:`, `BUG:`, RCU stall or lost-timer report, no hypervisor kill |

use boot_tests::Outcome;
use boot_tests::artifacts;
use boot_tests::domains::ReportOnPanic;
use boot_tests::qemu::{iso_vm, run_until};
use xtask::iso::Module;

/// The benchmark's deterministic clock (`tools/xtask/src/isoboot.rs`,
/// `ICOUNT7_ARGS`): one instruction is 128 ns of virtual time; idle time
/// jumps to the next timer (`sleep=off`), the condition that stalled.
const ICOUNT: [&str; 6] = [
    "-icount",
    "shift=7,align=off,sleep=off",
    "-rtc",
    "base=2020-01-01T00:00:00,clock=vm",
    "-seed",
    "1",
];

/// What the kernel log must never say (the stall's own reports included).
const BAD: [&str; 7] = [
    "WARNING:",
    "BUG:",
    "unchecked MSR access",
    "general protection",
    "Kernel panic",
    "rcu_sched kthread timer wakeup didn't happen",
    "rcu: INFO:",
];

/// Wall-clock limit: the stall never ends, a good run takes 1-2 min here.
const TIMEOUT_S: u64 = 240;

fn boot() -> Outcome {
    let img = crate::linux::images();
    let kernel = Module::named(
        &img.vmlinux,
        "linux",
        "kind=linux initrd=initramfs vcpus=2 console=hvc0 initramfs_async=0 kestrel.checks=cpus",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let initrd = Module::named(&img.initramfs, "initramfs", "").unwrap_or_else(|e| panic!("{e}"));
    let iso = artifacts::shared_iso(
        "linuxsmp2icount-svm.iso",
        "exit=qemu shutdown loglevel=info",
        &[kernel, initrd],
    );
    let mut vm = iso_vm(&iso, 2, "128M");
    vm.extra = ICOUNT.iter().map(Into::into).collect();
    run_until("linux_smp2_icount_amdv_qemu", vm, TIMEOUT_S, None)
}

#[test]
fn linux_smp2_icount_amdv_qemu() {
    let o = boot();
    let _report = ReportOnPanic(&o);
    o.assert_status(xtask::qemu::STATUS_SUCCESS);
    let d = o.assert_domain("linux", "exited", 0);
    let console = o.console_of(&d);
    let has = |needle: &str| console.iter().any(|l| l.contains(needle));
    for needle in [
        "smp: Brought up 1 node, 2 CPUs",
        "Run /init as init process",
        "kestrel-check: cpus=2",
        "kestrel-linux: checks done",
    ] {
        assert!(
            has(needle),
            "{}: the Linux console lacks `{needle}`",
            o.test
        );
    }
    let bad: Vec<&&str> = console
        .iter()
        .filter(|l| BAD.iter().any(|b| l.contains(b)))
        .collect();
    assert!(bad.is_empty(), "{}: the kernel log says {bad:?}", o.test);
    println!(
        "{}: 2 vCPUs to /init and power-off under -icount sleep=off; {} exits",
        o.test, d.exits
    );
}
