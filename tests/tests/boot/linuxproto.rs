//! The "linux" image kind (issue 13) without a real kernel: the
//! `linuxproto` guest is linked like a `vmlinux` (high virtual, loaded by
//! physical address) and entered through Linux's 64-bit boot protocol,
//! from boot-module arguments (`kind=linux initrd=NAME memory=MiB ...`).
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `linuxproto_qemu` | QEMU TCG `-cpu max` (AMD-V), GRUB ISO, 1 CPU | the guest found its start info by CPUID 0x40000002, its zero page (e820 with the start-info page reserved, the command line whole, the initramfs' length and FNV-1a hash as the command line says) and printed `linuxproto: ok`; it exited 0; its log line says 16 MiB |
//! | `linuxproto_bochs` | Bochs Haswell (VT-x), GRUB ISO, 1 CPU | the same |
//! | `linuxproto_dom0_*` | both, `dom0` option, 2 CPUs | dom0 creates the domain from its TOML (`kernel`, `initrd`, a 2,047-byte `cmdline`) through `DOMCTL_CREATE_LINUX`; the guest got the whole command line and the initramfs and printed `linuxproto: ok` (through dom0's console as `[lx] ...`) |
//! | `linuxproto_bad_initrd_*` | both | `initrd=` naming no module: the domain is not started, the log says why, the hypervisor still ends cleanly |

use boot_tests::Backend;
use boot_tests::artifacts::{guest_module, root};
use boot_tests::guest_run::GuestRun;
use xtask::iso::Module;

/// A deterministic initramfs stand-in of an odd size (not a page
/// multiple), written once under `target/boot-tests/`.
fn initrd() -> (std::path::PathBuf, Vec<u8>) {
    let mut x: u32 = 0x1234_5678;
    let bytes: Vec<u8> = (0..100_003)
        .map(|_| {
            // xorshift32
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let p = root().join("linuxproto-initrd.bin");
    std::fs::create_dir_all(root()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&p, &bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (p, bytes)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The kernel command line the guest must receive: its own length in
/// `cmdline_len=` (three digits, so the length does not change it).
fn cmdline(rd: &[u8]) -> String {
    let body = format!(
        "console=hvc0 initrd_len={} initrd_fnv={:x} pad={} cmdline_len=",
        rd.len(),
        fnv1a(rd),
        "x".repeat(60)
    );
    let len = body.len() + 3;
    assert!((100..1000).contains(&len));
    format!("{body}{len}")
}

/// A command line of exactly `total` bytes (`cmdline_len=` in four digits).
fn long_cmdline(rd: &[u8], total: usize) -> String {
    let head = format!(
        "console=hvc0 initrd_len={} initrd_fnv={:x} pad=",
        rd.len(),
        fnv1a(rd)
    );
    let tail = format!(" cmdline_len={total:04}");
    let pad = total - head.len() - tail.len();
    format!("{head}{}{tail}", "p".repeat(pad))
}

fn proto_dom0(b: Backend) {
    let (path, rd) = initrd();
    let line = long_cmdline(&rd, 2047);
    assert_eq!(line.len(), 2047);
    let config = format!(
        "[[domain]]\nname = \"lx\"\nkernel = \"linuxproto\"\ninitrd = \"initrd.bin\"\nmemory = 16\ncmdline = \"{line}\"\n"
    );
    let test = format!("linuxproto_dom0_{}", b.suffix());
    let o = GuestRun {
        name: "linuxproto_dom0",
        options: "dom0",
        modules: vec![
            guest_module("dom0", "dom0", ""),
            guest_module("linuxproto", "linuxproto", ""),
            Module::named(&path, "initrd.bin", "").unwrap_or_else(|e| panic!("{e}")),
            crate::dom0::config_module(&test, &config),
        ],
        cpus: 2,
        memory_mib: 128,
        // Stop lines are all-of on one line (`StopLine`): the success
        // line alone; a failure runs to the deadline and is reported.
        stop: Some(&["[lx] linuxproto: ok"]),
    }
    .boot(b);
    let _report = boot_tests::domains::ReportOnPanic(&o);
    o.expect_line("linuxproto: cmdline 2047 bytes");
    o.expect_line("[lx] linuxproto: ok");
}

#[test]
fn linuxproto_dom0_qemu() {
    proto_dom0(Backend::Svm);
}

#[test]
fn linuxproto_dom0_bochs() {
    proto_dom0(Backend::Vmx);
}

fn proto(b: Backend) {
    let (path, rd) = initrd();
    let rd_module = Module::named(&path, "initrd.bin", "").unwrap_or_else(|e| panic!("{e}"));
    let args = format!("kind=linux initrd=initrd.bin memory=16 {}", cmdline(&rd));
    let o = GuestRun {
        name: "linuxproto",
        options: "",
        modules: vec![guest_module("linuxproto", "linuxproto", &args), rd_module],
        cpus: 1,
        memory_mib: 128,
        stop: None,
    }
    .boot(b);
    let d = o.assert_domain("linuxproto", "exited", 0);
    o.assert_printed(&d, "linuxproto: ok");
    o.expect_line("(linuxproto): 16 MiB");
}

#[test]
fn linuxproto_qemu() {
    proto(Backend::Svm);
}

#[test]
fn linuxproto_bochs() {
    proto(Backend::Vmx);
}

fn bad_initrd(b: Backend) {
    let o = GuestRun {
        name: "linuxproto_bad_initrd",
        options: "",
        modules: vec![
            guest_module("linuxproto", "linuxproto", "kind=linux initrd=nowhere.cpio"),
            guest_module("hello", "hello", ""),
        ],
        cpus: 1,
        memory_mib: 128,
        stop: None,
    }
    .boot(b);
    o.expect_line(
        "domain linuxproto: not started: initrd=nowhere.cpio: no boot module of that name",
    );
    o.assert_domain("hello", "exited", 0);
}

#[test]
fn linuxproto_bad_initrd_qemu() {
    bad_initrd(Backend::Svm);
}

#[test]
fn linuxproto_bad_initrd_bochs() {
    bad_initrd(Backend::Vmx);
}
