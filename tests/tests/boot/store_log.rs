//! dom0's log and a domain's console history kept in its store across a
//! reboot (issue 15; docs/store.md "Logs", `dom0/src/persist.rs`).
//!
//! One disk file (virtio-blk behind `intel-iommu`, serial `kestrel-store0`)
//! across two boots of QEMU (q35, TCG, AMD-V), as `store_qemu_power_cut`:
//!
//! | boot | configuration | what happens | asserts |
//! |---|---|---|---|
//! | 1 | `[store] format = true`; domain `chatty` (`hello`, command line `persist-me`) | chatty prints its greeting and exits; its console ends, which writes its ring and dom0's; QEMU is then killed (the `end` domain's line stops it) | dom0 numbered the boot 1 |
//! | 2 | `[store]`, no domain | dom0 opens the store | dom0 numbered the boot 2; the real `hvctl log` shows boot 1's lines marked `[boot 1]` (its `store: logs: boot 1` and `(chatty) started` lines) before this boot's unmarked `store: logs: boot 2`; `hvctl console --history chatty` (no such domain in boot 2) shows `[boot 1] hello from domain ...` with its command line |

use std::path::{Path, PathBuf};

use boot_tests::artifacts::{self, guest_module};
use boot_tests::domains::ReportOnPanic;
use boot_tests::mgmt::{config_module, hvctl_cmd, input_file, mgmt_vm_sized, wait_for_line};
use boot_tests::qemu::{BIOS_TIMEOUT_S, run_until};

const TEST: &str = "store_log_qemu_reboot";
const STORE: &str = "[store]\ndisk = \"kestrel-store0\"\nformat = true\n";
const CHATTY: &str =
    "\n[[domain]]\nname = \"chatty\"\nimage = \"hello\"\nmemory = 4\ncmdline = \"persist-me\"\n";
const END: &str =
    "[[domain]]\nname = \"end\"\nimage = \"hello\"\nmemory = 4\ncmdline = \"kestrel-test-end\"\n";
const END_LINES: &[&str] = &["[end] hello from", "kestrel-test-end"];

fn machine(n: u32, disk: &Path, config: &str) -> (xtask::qemu::Vm, PathBuf, PathBuf) {
    let test = format!("{TEST}_{n}");
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("hello", "hello", ""),
        config_module(&test, config),
    ];
    let (mut vm, sock, log) = mgmt_vm_sized(&test, &modules, 1, "256M");
    vm.extra.extend(
        [
            "-device".to_string(),
            "intel-iommu".into(),
            "-drive".into(),
            format!("if=none,id=store,format=raw,file={}", disk.display()),
            "-device".into(),
            "virtio-blk-pci,drive=store,addr=0x3,disable-legacy=on,iommu_platform=on,serial=kestrel-store0"
                .into(),
        ]
        .into_iter()
        .map(Into::into),
    );
    (vm, sock, log)
}

fn hvctl(sock: &Path, args: &[&str]) -> String {
    let (code, out, err) = hvctl_cmd(sock, args);
    assert_eq!(code, 0, "hvctl {args:?}: {err}");
    out
}

/// Boots, runs `session` once dom0 is ready, ends the run through the
/// `end` domain (QEMU is killed at its line: no orderly shutdown).
fn boot(
    n: u32,
    disk: &Path,
    config: &str,
    session: impl FnOnce(&Path, &Path) + std::panic::UnwindSafe,
) -> boot_tests::Outcome {
    let test = format!("{TEST}_{n}");
    let (vm, sock, log) = machine(n, disk, config);
    let t = test.clone();
    let qemu = std::thread::spawn(move || run_until(&t, vm, BIOS_TIMEOUT_S, Some(END_LINES)));
    let ready = wait_for_line(&log, "dom0: ready: ", boot_tests::scaled(120));
    let (sock2, log2) = (sock.clone(), log.clone());
    let result = std::panic::catch_unwind(move || {
        ready.unwrap_or_else(|| panic!("{test}: dom0 never became ready"));
        session(&sock2, &log2);
    });
    let end = input_file(&format!("{TEST}_{n}"), "end.toml", END);
    let _ = hvctl_cmd(&sock, &["create", end.to_str().unwrap_or("")]);
    let o = qemu
        .join()
        .unwrap_or_else(|_| panic!("the QEMU thread panicked"));
    {
        let _report = ReportOnPanic(&o);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
        assert_eq!(o.ended, xtask::runner::Ended::Stopped, "boot {n}");
        assert!(
            o.fatal_lines().is_empty() && o.panic_lines().is_empty(),
            "boot {n}: died"
        );
    }
    o
}

#[test]
fn store_log_qemu_reboot() {
    let dir = artifacts::test_dir(&format!("{TEST}.files"));
    let disk = dir.join("store.img");
    std::fs::write(&disk, vec![0u8; 16 << 20]).unwrap_or_else(|e| panic!("{e}"));

    // Boot 1: chatty prints and ends; its end writes its ring and dom0's.
    let o1 = boot(1, &disk, &format!("{STORE}{CHATTY}"), |_sock, log| {
        wait_for_line(
            log,
            "(chatty) ended: exited with code 0",
            boot_tests::scaled(60),
        )
        .unwrap_or_else(|| panic!("{TEST}_1: chatty never ended"));
    });
    {
        let _r = ReportOnPanic(&o1);
        o1.expect_line("[chatty] hello from domain ");
        o1.expect_line("dom0: store: logs: boot 1; ");
    }

    // Boot 2: no chatty; what boot 1 kept is there.
    let o2 = boot(2, &disk, STORE, |sock, _log| {
        let log = hvctl(sock, &["log"]);
        let at = |needle: &str| {
            log.find(needle)
                .unwrap_or_else(|| panic!("{TEST}_2: hvctl log has no `{needle}`:\n{log}"))
        };
        let b1 = at("[boot 1] store: logs: boot 1; ");
        let started = at("[boot 1] domain 2 (chatty) started from ");
        let b2 = at("\nstore: logs: boot 2; ");
        assert!(
            b1 < b2 && started < b2,
            "{TEST}_2: boot 1 after boot 2:\n{log}"
        );
        let hist = hvctl(sock, &["console", "--history", "chatty"]);
        assert!(
            hist.contains("[boot 1] hello from domain 2: 4 MiB, ")
                && hist.contains("cmdline \"persist-me\""),
            "{TEST}_2: console --history chatty:\n{hist}"
        );
    });
    let _r = ReportOnPanic(&o2);
    o2.expect_line("dom0: store: logs: boot 2; ");
}
