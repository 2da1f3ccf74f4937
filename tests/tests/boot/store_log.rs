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

use std::path::Path;

use boot_tests::artifacts;
use boot_tests::domains::ReportOnPanic;
use boot_tests::mgmt::wait_for_line;
use boot_tests::qemu::BIOS_TIMEOUT_S;
use boot_tests::store_vm::{hvctl_ok, store_boot, store_vm};

const TEST: &str = "store_log_qemu_reboot";
const STORE: &str = "[store]\ndisk = \"kestrel-store0\"\nformat = true\n";
const CHATTY: &str =
    "\n[[domain]]\nname = \"chatty\"\nimage = \"hello\"\nmemory = 4\ncmdline = \"persist-me\"\n";

/// Boot `n` on `disk` with `config` ([`store_boot`]).
fn boot(
    n: u32,
    disk: &Path,
    config: &str,
    session: impl FnOnce(&Path, &Path) + std::panic::UnwindSafe,
) -> boot_tests::Outcome {
    let test = format!("{TEST}_{n}");
    let vm = store_vm(&test, disk, config, &[]);
    store_boot(&test, vm, BIOS_TIMEOUT_S, &format!("boot {n}"), session)
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
        let log = hvctl_ok(sock, &["log"]);
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
        let hist = hvctl_ok(sock, &["console", "--history", "chatty"]);
        assert!(
            hist.contains("[boot 1] hello from domain 2: 4 MiB, ")
                && hist.contains("cmdline \"persist-me\""),
            "{TEST}_2: console --history chatty:\n{hist}"
        );
    });
    let _r = ReportOnPanic(&o2);
    o2.expect_line("dom0: store: logs: boot 2; ");
}
