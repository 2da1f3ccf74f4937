//! Linux as a Kestrel guest (issue 13): the Debian `linux-source-6.1` kernel
//! with `guest-kernel-patches/` (built or taken from the cache by
//! `xtask::linux`, so a fresh clone works) and the busybox initramfs, started
//! from boot modules (`kind=linux initrd=initramfs ...`), 1 vCPU, 128 MiB
//! machine, GRUB ISO.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `linux_amdv_qemu_init` | QEMU TCG (AMD-V) | the kernel banner and the Kestrel platform lines on the domain's console; `/init` printed its marker; `/proc/cpuinfo` lists 1 CPU; `sleep 1` took 0.9-1.5 s by `/proc/uptime`; the boot module's kernel command line, Linux's whole 2,047 bytes (a `kestrel.pad=` word fills it; boot modules were cut at 256 bytes before), is in `/proc/cmdline` whole (its length and SHA-256 as `/init` printed them); every stack kept its margin (`stacks:`); the log has no `WARNING:`, `BUG:`, `unchecked MSR access`, `general protection`, `Kernel panic`; `poweroff -f` ended the domain `result=exited code=0` |
//! | `linux_vtx_bochs_init` | Bochs Haswell (VT-x) | the same |

use std::path::PathBuf;
use std::sync::OnceLock;

use boot_tests::domains::ReportOnPanic;
use boot_tests::guest_run::{GuestRun, Shared};
use boot_tests::{Backend, Outcome};
use xtask::iso::Module;
use xtask::linux::LinuxImages;

/// What the kernel log must never say.
const BAD: [&str; 5] = [
    "WARNING:",
    "BUG:",
    "unchecked MSR access",
    "general protection",
    "Kernel panic",
];

/// The kernel and initramfs, built once per test process.
pub(crate) fn images() -> &'static LinuxImages {
    static IMAGES: OnceLock<LinuxImages> = OnceLock::new();
    IMAGES.get_or_init(|| {
        xtask::linux::build().unwrap_or_else(|e| panic!("building the Linux guest: {e}"))
    })
}

fn module(path: &PathBuf, name: &str, args: &str) -> Module {
    Module::named(path, name, args).unwrap_or_else(|e| panic!("{e}"))
}

/// The kernel command line of [`the_run`]: Linux's whole 2,047 bytes
/// (`pvabi::DOMCTL_LINUX_CMDLINE_MAX`), filled by `kestrel.pad=` (a dotted
/// word Linux leaves alone), so `/proc/cmdline` shows whether a boot
/// module carries a command line to its end.
fn kernel_cmdline() -> String {
    let head = "console=hvc0 kestrel.checks=cpus,sleep,cmdline kestrel.pad=";
    let pad: String = (0..pvabi::DOMCTL_LINUX_CMDLINE_MAX as usize - head.len())
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    format!("{head}{pad}")
}

fn the_run(b: Backend) -> &'static Outcome {
    static RUNS: Shared = Shared::new();
    RUNS.get(b, || {
        let img = images();
        GuestRun {
            name: "linux",
            options: "",
            modules: vec![
                module(
                    &img.vmlinux,
                    "linux",
                    &format!("kind=linux initrd=initramfs vcpus=1 {}", kernel_cmdline()),
                ),
                module(&img.initramfs, "initramfs", ""),
            ],
            cpus: 1,
            memory_mib: 128,
            stop: None,
        }
        .boot(b)
    })
}

fn boots_to_init(b: Backend) {
    let o = the_run(b);
    let _report = ReportOnPanic(o);
    let d = o.assert_domain("linux", "exited", 0);
    let console = o.console_of(&d);
    let has = |needle: &str| console.iter().any(|l| l.contains(needle));
    for needle in [
        "Linux version 6.1",
        "Hypervisor detected: Kestrel",
        "Kestrel: TSC ",
        "kestrel-linux: init reached",
        "kestrel-check: cpus=1",
        "kestrel-linux: checks done",
    ] {
        assert!(
            has(needle),
            "{}: the Linux console lacks `{needle}`",
            o.test
        );
    }
    // /proc/cmdline is the line and a newline.
    let cmdline = format!("{}\n", kernel_cmdline());
    let whole = format!(
        "kestrel-check: cmdline_bytes={} cmdline_sha256={}",
        cmdline.len(),
        boot_tests::artifacts::sha256_hex(cmdline.as_bytes())
    );
    assert!(
        has(&whole),
        "{}: /proc/cmdline is not the {}-byte command line passed (no `{whole}`; the guest said {:?})",
        o.test,
        cmdline.len() - 1,
        console
            .iter()
            .find(|l| l.contains("kestrel-check: cmdline_"))
    );
    // The boot information with its 4 KiB module lines lives in a static,
    // not on the boot stack: every stack keeps its margin.
    boot_tests::stacks::assert_margin(o);
    let bad: Vec<&&str> = console
        .iter()
        .filter(|l| BAD.iter().any(|b| l.contains(b)))
        .collect();
    assert!(bad.is_empty(), "{}: the kernel log says {bad:?}", o.test);
    // hvc ends lines with "\r\n"; the hypervisor's log shows the "\r" as
    // "?": take the digits only.
    let slept = console
        .iter()
        .find_map(|l| l.split("kestrel-check: sleep1_cs=").nth(1))
        .map(|v| {
            v.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{}: no `sleep1_cs=` line", o.test));
    assert!(
        (90..=150).contains(&slept),
        "{}: `sleep 1` took {slept} cs by /proc/uptime, not 90-150",
        o.test
    );
}

#[test]
fn linux_amdv_qemu_init() {
    boots_to_init(Backend::Svm);
}

#[test]
fn linux_vtx_bochs_init() {
    boots_to_init(Backend::Vmx);
}
