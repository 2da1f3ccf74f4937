//! Linux SMP as a Kestrel guest (issue 13): the kernel of
//! `guest-kernel-patches/` (patch 0005: APs started by `HC_VCPU_UP` with
//! `VCPU_UP_CR3`, IPIs over IPI ports, a timer virq and upcall per CPU)
//! on a domain of `vcpus=N`, 2 host CPUs, 128 MiB machine, GRUB ISO.
//! `/init` runs `kestrel.checks=cpus,smp` (`guest-kernel-patches/initramfs/init`).
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `linux_smp2_amdv_qemu` | QEMU TCG (AMD-V), 2 vCPUs | `/proc/cpuinfo` lists 2 CPUs and the kernel says `smp: Brought up 1 node, 2 CPUs`; one `sha256sum` of a 4 MiB file per CPU, pinned with `taskset`, all finished with the same digest; reschedule IPIs, and function-call IPIs (call-function or call-function-single rows), each counted in `/proc/interrupts` on more than one CPU; `/proc/uptime` read on each CPU in turn (3 rounds) never went back; no `WARNING:`, `BUG:`, `unchecked MSR access`, `general protection`, `Kernel panic`, no hypervisor kill; `poweroff -f` ended it `result=exited code=0` |
//! | `linux_smp4_amdv_qemu` | QEMU TCG (AMD-V), 4 vCPUs | the same with 4 |
//! | `linux_smp2_vtx_bochs` | Bochs Haswell (VT-x), 2 vCPUs | the same with 2 |

use boot_tests::domains::ReportOnPanic;
use boot_tests::guest_run::GuestRun;
use boot_tests::{Backend, Outcome};
use xtask::iso::Module;

/// What the kernel log must never say.
const BAD: [&str; 5] = [
    "WARNING:",
    "BUG:",
    "unchecked MSR access",
    "general protection",
    "Kernel panic",
];

fn boot(b: Backend, vcpus: u32) -> Outcome {
    // One build per test process, shared with linux.rs: the initramfs is
    // rewritten by every build, and two at once raced on the file.
    let img = crate::linux::images();
    let kernel = Module::named(
        &img.vmlinux,
        "linux",
        format!("kind=linux initrd=initramfs vcpus={vcpus} console=hvc0 kestrel.checks=cpus,smp"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let initrd = Module::named(&img.initramfs, "initramfs", "").unwrap_or_else(|e| panic!("{e}"));
    GuestRun {
        name: &format!("linuxsmp{vcpus}"),
        options: "",
        modules: vec![kernel, initrd],
        cpus: 2,
        memory_mib: 128,
        stop: None,
    }
    .boot(b)
}

/// The number after `key` in a `kestrel-check:` line (hvc's "\r" shows
/// as "?": digits only).
fn check_value(console: &[&str], key: &str) -> Option<u64> {
    console.iter().find_map(|l| {
        let v = l.split(key).nth(1)?;
        v.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    })
}

fn smp(b: Backend, vcpus: u32) {
    let o = boot(b, vcpus);
    let _report = ReportOnPanic(&o);
    let d = o.assert_domain("linux", "exited", 0);
    let console = o.console_of(&d);
    let has = |needle: &str| console.iter().any(|l| l.contains(needle));
    let want_cpus = format!("kestrel-check: cpus={vcpus}");
    let brought = format!("smp: Brought up 1 node, {vcpus} CPUs");
    let jobs = format!("kestrel-check: smp_jobs={vcpus}/{vcpus} distinct_sums=1");
    for needle in [
        "Linux version 6.1",
        brought.as_str(),
        "kestrel-linux: init reached",
        want_cpus.as_str(),
        jobs.as_str(),
        "kestrel-check: uptime_monotonic=1",
        "kestrel-linux: checks done",
    ] {
        assert!(
            has(needle),
            "{}: the Linux console lacks `{needle}`",
            o.test
        );
    }
    // `function`: call-function or call-function-single rows (with 2 CPUs
    // a call to "all others" has one target and goes as the single kind).
    for ipi in ["resched", "function"] {
        let key = format!("kestrel-check: ipi_{ipi}=");
        let cpus =
            check_value(&console, &key).unwrap_or_else(|| panic!("{}: no `{key}` line", o.test));
        assert!(
            cpus >= 2,
            "{}: `{ipi}` IPIs were counted on {cpus} CPU(s), not on several",
            o.test
        );
    }
    let bad: Vec<&&str> = console
        .iter()
        .filter(|l| BAD.iter().any(|b| l.contains(b)))
        .collect();
    assert!(bad.is_empty(), "{}: the kernel log says {bad:?}", o.test);
    println!(
        "{}: {vcpus} CPUs up, jobs on each, IPIs on several; {} exits",
        o.test, d.exits
    );
}

#[test]
fn linux_smp2_amdv_qemu() {
    smp(Backend::Svm, 2);
}

#[test]
fn linux_smp4_amdv_qemu() {
    smp(Backend::Svm, 4);
}

#[test]
fn linux_smp2_vtx_bochs() {
    smp(Backend::Vmx, 2);
}
