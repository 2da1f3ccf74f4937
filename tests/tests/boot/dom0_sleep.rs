//! `dom0_qemu_runtime_sleep`: a domain created at run time with `hvctl
//! create` sleeps its full period every time, while dom0 is kept busy
//! answering `hvctl` and two burners keep both CPUs busy (issue 11's
//! early-timer fault: a `ticker` created this way with `every_ms=3000`
//! printed 201 ticks in its first ~25 s).
//!
//! | asserts |
//! |---|
//! | `sleeper` (`ticker every_ms=`[`PERIOD_MS`]` count=`[`TICKS`], 8 MiB, 2 vCPUs, as the README's `web.toml`) printed ticks 1 to [`TICKS`] exactly once each and in order, then `ticker: <TICKS> ticks in <ms> ms` with ms ≥ [`TICKS`] × [`PERIOD_MS`] (its own system time: each sleep ends at or after its deadline), and exited 0; the hypervisor logged no `scheduler:` line (an early wake-up, a lost one, a disagreement) |

use std::path::Path;

use boot_tests::artifacts::guest_module;
use boot_tests::domains::ReportOnPanic;
use boot_tests::qemu::{BIOS_TIMEOUT_S, run_until};
use boot_tests::scaled;

use super::{config_module, hvctl_cmd, mgmt_vm, wait_for_line};

const TEST: &str = "dom0_qemu_runtime_sleep";
const PERIOD_MS: u64 = 500;
const TICKS: u64 = 6;

/// Two CPU-bound domains from the boot configuration: every CPU is busy
/// while the sleeper sleeps.
const BURNERS: &str = r#"[[domain]]
name = "burn-a"
image = "burn"
memory = 4
cmdline = "ms=60000"

[[domain]]
name = "burn-b"
image = "burn"
memory = 4
cmdline = "ms=60000"
"#;

fn sleeper_toml() -> String {
    format!(
        "[[domain]]\nname = \"sleeper\"\nimage = \"ticker\"\nmemory = 8\nvcpus = 2\n\
         cmdline = \"every_ms={PERIOD_MS} count={TICKS} note=sleeper\"\n"
    )
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let _ = std::fs::create_dir_all(dir);
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    p
}

#[test]
fn dom0_qemu_runtime_sleep() {
    let modules = vec![
        guest_module("dom0", "dom0", ""),
        guest_module("ticker", "ticker", ""),
        guest_module("burn", "burn", ""),
        config_module(TEST, BURNERS),
    ];
    let (vm, sock, log) = mgmt_vm(TEST, &modules);
    let done = format!("[sleeper] ticker: {TICKS} ticks in ");
    let stop = [done.as_str()];
    let qemu = std::thread::scope(|s| {
        let qemu = s.spawn(|| run_until(TEST, vm, BIOS_TIMEOUT_S, Some(&stop)));
        let ready = wait_for_line(&log, "dom0: ready: ", scaled(90));
        let session = std::panic::catch_unwind(|| {
            assert!(ready.is_some(), "{TEST}: dom0 never became ready");
            let dir = boot_tests::artifacts::root()
                .join("runs")
                .join(format!("{TEST}.in"));
            let cfg = write(&dir, "sleeper.toml", &sleeper_toml());
            let (code, out, err) = hvctl_cmd(&sock, &["create", cfg.to_str().unwrap_or("")]);
            assert_eq!(code, 0, "create: {out}{err}");
            // Keep dom0 busy answering while the sleeper sleeps (the run
            // stops at the sleeper's last line, which may cut a request).
            let until = std::time::Instant::now() + scaled(60);
            let mut answered = 0;
            while std::time::Instant::now() < until
                && !String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default())
                    .contains(done.as_str())
            {
                if hvctl_cmd(&sock, &["list"]).0 == 0 {
                    answered += 1;
                }
            }
            assert!(answered > 0, "{TEST}: dom0 answered no `hvctl list`");
        });
        let o = qemu
            .join()
            .unwrap_or_else(|_| panic!("{TEST}: the QEMU thread panicked"));
        if let Err(e) = session {
            let _report = ReportOnPanic(&o);
            std::panic::resume_unwind(e);
        }
        o
    });
    let _report = ReportOnPanic(&qemu);
    let ticks: Vec<u64> = qemu
        .lines
        .iter()
        .filter_map(|l| {
            l.trim_end()
                .strip_prefix("[sleeper] ticker: tick ")?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(
        ticks,
        (1..=TICKS).collect::<Vec<_>>(),
        "{TEST}: the sleeper's ticks"
    );
    let line = qemu.expect_line(&done);
    let ms: u64 = line
        .split(&done)
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{TEST}: no time in {line:?}"));
    assert!(
        ms >= TICKS * PERIOD_MS,
        "{TEST}: {TICKS} sleeps of {PERIOD_MS} ms took {ms} ms: some ended early"
    );
    let bad: Vec<&String> = qemu
        .lines
        .iter()
        .filter(|l| l.contains("scheduler:"))
        .collect();
    assert!(bad.is_empty(), "{TEST}: {bad:?}");
    println!("{TEST}: {TICKS} ticks of {PERIOD_MS} ms in {ms} ms beside two burners, dom0 busy");
}
