//! The memory target (issue 15, `hvctl mem-set`) through the real dom0,
//! hypervisor and guests under QEMU (AMD-V, TCG).
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `memset_qemu_balloond` | 2 CPUs, 128 MiB; dom0 boots `idle` (ticker, 4 MiB), then `hvctl create` makes `balloond` (32 MiB, the cooperating balloon driver) and `ignorer` (ticker, 32 MiB, no balloon) | `mem-set balloond 16`: the guest, woken by `VIRQ_MEM_TARGET`, reports 4096 pages held = target, `info` shows it, `hvctl host`'s free memory rose by 16 MiB less the 2 table frames that split the 2 MiB pages at the ends of the range; `mem-set balloond 32`: back to 8192 pages and the free memory of before less 9 table frames (the 7 whole 2 MiB pages come back as 4 KiB tables; kept until it ends); `mem-set balloond 300` refused naming 300 and 32 MiB; `mem-set ignorer 16`: it keeps 32 MiB, `info` shows target 16 MiB ≠ 32 MiB held; destroying both gives the host's free memory of before they were created, to the byte (the 2 nested-table frames the release split off included) |
//! | `memset_{qemu,bochs}_ctl` | 2 CPUs, 128 MiB, hypervisor option `dom0`, no toolstack: `memsetctl` (module 0, privileged) | `memsetctl` printed `<N> checks, 0 failed` with N >= [`MIN_CHECKS`] (balloond reached 4096 then 8192 pages as `HC_DOMCTL_INFO` reports; free memory rose by 16 MiB less at most 9 table frames; refusals over the maximum, under the floor, itself, no domain; a ticker kept its pages under a lower target; every byte back after destroying both) and exited 0; balloond printed `at target 4096` and `at target 8192`; the hypervisor logged the target |
//!
//! `memset_qemu_balloond` is QEMU only: the mgmt socket for `hvctl` is
//! QEMU's (the Bochs dom0 tests drive dom0 through its configuration
//! only). `memset_*_ctl` makes the same calls without the toolstack on
//! both backends.

use boot_tests::Backend;
use boot_tests::artifacts::guest_module;
use boot_tests::domains::ReportOnPanic;
use boot_tests::guest_run::GuestRun;
use boot_tests::mgmt::{
    config_module, hvctl_cmd, hvctl_free_bytes, hvctl_info, input_file, mgmt_vm, wait_for_line,
};
use boot_tests::qemu::BIOS_TIMEOUT_S;
use boot_tests::scaled;
use boot_tests::session::{END_LINE, Machine, assert_survived};

const TEST: &str = "memset_qemu_balloond";
const MIB: u64 = 1 << 20;
/// The hypervisor maps a domain with 2 MiB pages where it can, and its
/// nested-table frames stay until the domain ends (`domain-end: ...
/// freed_table_frames=`). balloond's 16 MiB range ends 1 MiB below its
/// boot area, so it touches 9 2 MiB pages: 7 whole, 2 in part. Releasing
/// splits the 2 partial ones into 4 KiB tables (2 frames; the whole ones
/// are just unmapped); populating maps 4 KiB pages, so each of the 7
/// whole ones gets a table too (7 more). Seen so: free memory up by 16
/// MiB less 8 KiB, then back to 36 KiB below where it was.
const SPLIT_TABLES: u64 = 2 * 4096;
const REPOPULATED_TABLES: u64 = SPLIT_TABLES + 7 * 4096;
const BOOT: &str =
    "[[domain]]\nname = \"idle\"\nimage = \"ticker\"\nmemory = 4\ncmdline = \"every_ms=1000\"\n";
const TWO: &str = "[[domain]]\nname = \"balloond\"\nimage = \"balloond\"\nmemory = 32\n\n\
[[domain]]\nname = \"ignorer\"\nimage = \"ticker\"\nmemory = 32\ncmdline = \"every_ms=1000\"\n";
fn mem_set(sock: &std::path::Path, dom: &str, size: &str) -> (i32, String, String) {
    hvctl_cmd(sock, &["mem-set", dom, size])
}

fn session(sock: &std::path::Path, log: &std::path::Path) {
    wait_for_line(log, "dom0: ready:", scaled(90))
        .unwrap_or_else(|| panic!("{TEST}: dom0 never ready"));
    wait_for_line(log, "[idle] ticker: tick 1", scaled(60))
        .unwrap_or_else(|| panic!("{TEST}: idle never ticked"));
    let before_create = hvctl_free_bytes(sock);
    let two = input_file(TEST, "two.toml", TWO);
    let (code, out, err) = hvctl_cmd(sock, &["create", two.to_str().unwrap_or("")]);
    assert_eq!(code, 0, "{TEST}: create: {out}{err}");
    wait_for_line(log, "[balloond] balloond: started, domain ", scaled(60))
        .unwrap_or_else(|| panic!("{TEST}: balloond never started"));
    wait_for_line(log, "[ignorer] ticker: tick 1", scaled(60))
        .unwrap_or_else(|| panic!("{TEST}: ignorer never ticked"));
    let started = wait_for_line(log, "[balloond] balloond: started", scaled(1)).unwrap_or_default();
    assert!(
        started.contains("holds 8192 of 8192 pages, target 8192"),
        "{TEST}: {started}"
    );
    let free0 = hvctl_free_bytes(sock);

    // Down to 16 MiB: the guest gives 4096 pages back.
    let id = hvctl_info(sock, "balloond")["id"].as_u64().unwrap_or(0);
    let (code, out, err) = mem_set(sock, "balloond", "16");
    assert_eq!(code, 0, "{TEST}: {out}{err}");
    assert!(
        out.starts_with(&format!(
            "domain {id} (balloond): memory target 16 MiB, holds "
        )),
        "{TEST}: {out}"
    );
    let line = wait_for_line(log, "[balloond] balloond: at target 4096", scaled(30))
        .unwrap_or_else(|| panic!("{TEST}: balloond did not reach 4096 pages"));
    let report = wait_for_line(log, "[balloond] balloond: target=4096 ", scaled(1))
        .unwrap_or_else(|| panic!("{TEST}: no report before {line}"));
    assert!(
        report.contains("before=8192 current=4096 released=4096 populated=0 ballooned=4096"),
        "{TEST}: {report}"
    );
    let info = hvctl_info(sock, "balloond");
    assert_eq!(
        (
            info["current_bytes"].as_u64(),
            info["target_bytes"].as_u64()
        ),
        (Some(16 * MIB), Some(16 * MIB)),
        "{TEST}: {info}"
    );
    let free1 = hvctl_free_bytes(sock);
    assert_eq!(
        free1.checked_sub(free0),
        Some(16 * MIB - SPLIT_TABLES),
        "{TEST}: free memory {free0} -> {free1}: the 4096 pages released are back, less 2 split tables"
    );

    // Back to 32 MiB.
    let (code, out, err) = mem_set(sock, "balloond", "32M");
    assert_eq!(code, 0, "{TEST}: {out}{err}");
    wait_for_line(log, "[balloond] balloond: at target 8192", scaled(30))
        .unwrap_or_else(|| panic!("{TEST}: balloond did not get back to 8192 pages"));
    let info = hvctl_info(sock, "balloond");
    assert_eq!(info["current_bytes"].as_u64(), Some(32 * MIB), "{info}");
    assert_eq!(
        hvctl_free_bytes(sock),
        free0 - REPOPULATED_TABLES,
        "{TEST}: free memory as before, less the 9 table frames"
    );

    // Above the maximum: refused with the numbers, nothing changes.
    let (code, _, err) = mem_set(sock, "balloond", "300");
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "hvctl: dom0 refused: mem-set: 300 MiB asked, the domain's maximum is 32 MiB\n"
        )
    );

    // A guest that ignores the target keeps its memory; info shows both.
    let (code, out, err) = mem_set(sock, "ignorer", "16");
    assert_eq!(code, 0, "{TEST}: {out}{err}");
    let (code, out, _) = hvctl_cmd(sock, &["info", "ignorer"]);
    assert!(
        code == 0
            && out.contains("holds:     32 MiB (33554432 bytes)\n")
            && out.contains("target:    16 MiB (16777216 bytes)\n"),
        "{TEST}: {out}"
    );
    let (_, out, _) = hvctl_cmd(sock, &["list"]);
    assert!(out.contains("32 MiB → 16 MiB"), "{TEST}: {out}");
    assert_eq!(
        hvctl_free_bytes(sock),
        free0 - REPOPULATED_TABLES,
        "{TEST}: nothing released"
    );

    // Destroyed: every page back, to the byte.
    for d in ["balloond", "ignorer"] {
        let (code, out, err) = hvctl_cmd(sock, &["destroy", d]);
        assert_eq!(code, 0, "{TEST}: destroy {d}: {out}{err}");
    }
    assert_eq!(
        hvctl_free_bytes(sock),
        before_create,
        "{TEST}: free memory after destroying both"
    );
}

#[test]
fn memset_qemu_balloond() {
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        guest_module("ticker", "ticker", ""),
        guest_module("balloond", "balloond", ""),
        config_module(TEST, BOOT),
    ];
    let (vm, sock, log) = mgmt_vm(TEST, &modules);
    let qemu = Machine::qemu(TEST, vm, BIOS_TIMEOUT_S, END_LINE);
    let (o, ()) = qemu.session(&sock, TEST, || session(&sock, &log));
    let _report = ReportOnPanic(&o);
    assert_survived(&o, TEST);
}

/// memsetctl makes 19 checks; fewer means some were skipped.
const MIN_CHECKS: u64 = 19;

fn ctl(b: Backend) {
    let o = GuestRun {
        name: "memsetctl",
        options: "dom0",
        modules: vec![
            guest_module("memsetctl", "memsetctl", ""),
            guest_module("balloond", "balloond", ""),
            guest_module("ticker", "ticker", ""),
        ],
        cpus: 2,
        memory_mib: 128,
        stop: None,
    }
    .boot(b);
    let _report = ReportOnPanic(&o);
    let ctl = o.assert_domain("memsetctl", "exited", 0);
    o.assert_checks_passed(&ctl, "memsetctl", MIN_CHECKS);
    o.expect_line("balloond: at target 4096");
    o.expect_line("balloond: at target 8192");
    o.expect_line("(balloond): memory target 4096 pages (16384 KiB) of 8192");
}

#[test]
fn memset_qemu_ctl() {
    ctl(Backend::Svm);
}

#[test]
fn memset_bochs_ctl() {
    ctl(Backend::Vmx);
}
