//! The server image: what `cargo xtask image` builds with no option (the
//! README's "Install on a physical server"), booted as a server would boot
//! it, with no `--module` and no test command-line options (no `exit=`,
//! no `shutdown`: the image idles once up, so the run stops at a line).
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `server_image_{bios,uefi}` | QEMU TCG (AMD-V), SeaBIOS / OVMF, 2 CPUs, 256 MiB | the hypervisor booted with `dom0 loglevel=info` and started only dom0; dom0 started `hello`, `clock` and `linux` (the Linux guest, issue 13) and left `spare` paused, all from `demo.toml`; `hello` greeted through dom0 and exited 0; `clock` ticks |
//! | `server_image_bochs` | Bochs Haswell (VT-x), 2 CPUs, 256 MiB | the same |

use std::path::PathBuf;
use std::sync::OnceLock;

use boot_tests::Outcome;
use boot_tests::artifacts::{self, root};
use boot_tests::bochs::{self, Pc};
use boot_tests::domains::ReportOnPanic;
use boot_tests::qemu::{BIOS_TIMEOUT_S, UEFI_TIMEOUT_S, iso_vm, run_until};
use xtask::paths::Profile;
use xtask::qemu::{Accel, Boot, Vm};
use xtask::server;

/// The line the run stops at: `clock`'s first tick, 10 s (its `every_ms`)
/// after it started, long after `hello` (which exits at once) has ended;
/// stopping at `clock`'s start raced with `hello`'s end.
const STOP: &str = "[clock] ticker: tick 1";

/// The server image, built by the code `cargo xtask image` runs, with its
/// defaults (configuration, command line, menu timeout), into the tests'
/// own directory.
fn server_iso() -> &'static PathBuf {
    static ISO: OnceLock<PathBuf> = OnceLock::new();
    ISO.get_or_init(|| {
        // The freshness checks of the binaries the image holds.
        for g in ["dom0", "hello", "ticker"] {
            artifacts::guest(g);
        }
        let dir = root().join("iso");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let spec = server::spec(
            Profile::Release,
            artifacts::kernel().to_path_buf(),
            &server::demo_config(),
            server::CMDLINE,
            Vec::new(),
            dir.join("server.iso"),
        )
        .unwrap_or_else(|e| panic!("server image: {e}"));
        assert_eq!(spec.timeout_s, server::TIMEOUT_S);
        xtask::iso::build(&spec).unwrap_or_else(|e| panic!("server image: {e}"));
        spec.output
    })
}

fn check(test: &str, o: &Outcome) {
    let _report = ReportOnPanic(o);
    assert_eq!(
        o.ended,
        xtask::runner::Ended::Stopped,
        "{test}: never reached `{STOP}`"
    );
    o.assert_booted("multiboot2");
    let errors: Vec<&String> = o.lines.iter().filter(|l| l.contains("error:")).collect();
    assert!(
        errors.is_empty(),
        "{test}: GRUB or the firmware printed {errors:?}"
    );
    o.expect_line("cmdline \"dom0 loglevel=info\"");
    let started: Vec<&String> = o
        .lines
        .iter()
        .filter(|l| l.contains("nested-table frames, started"))
        .collect();
    assert!(
        started.len() == 1 && started[0].contains("domain 1 (dom0)"),
        "{test}: the hypervisor starts dom0 alone: {started:?}"
    );
    o.assert_in_order(&[
        "dom0: kestrel-dom0",
        "dom0: domain 2 (hello) started from demo.toml",
        "dom0: domain 3 (clock) started from demo.toml",
        "dom0: domain 4 (spare) created paused from demo.toml",
        "dom0: domain 5 (linux) started from demo.toml",
        "dom0: ready: ",
    ]);
    o.expect_line("[hello] hello from domain 2: 4 MiB");
    o.expect_line("cmdline \"greeting=hi\"");
    o.expect_line("[clock] ticker: started, domain 3");
    o.assert_domain("hello", "exited", 0);
    assert!(
        !o.lines.iter().any(|l| l.starts_with("[spare]")),
        "{test}: spare is created paused and must not have run"
    );
}

fn qemu(test: &str, uefi: bool) {
    let iso = server_iso().clone();
    let o = if uefi {
        let vars = root().join("runs").join(format!("{test}.OVMF_VARS_4M.fd"));
        xtask::qemu::fresh_uefi_vars(&vars).unwrap_or_else(|e| panic!("{test}: {e}"));
        let mut vm = Vm::new(Accel::Tcg, 2, "256M", Boot::Uefi { iso, vars }, "");
        vm.cpu = "max".into();
        run_until(test, vm, UEFI_TIMEOUT_S, Some(&[STOP]))
    } else {
        let mut vm = iso_vm(&iso, 2, "256M");
        vm.cpu = "max".into();
        run_until(test, vm, BIOS_TIMEOUT_S, Some(&[STOP]))
    };
    check(test, &o);
}

#[test]
fn server_image_bios() {
    qemu("server_image_bios", false);
}

#[test]
fn server_image_uefi() {
    qemu("server_image_uefi", true);
}

#[test]
fn server_image_bochs() {
    let test = "server_image_bochs";
    let o = bochs::run_iso(
        test,
        &Pc::new("corei7_haswell_4770", 2, 256),
        server_iso(),
        Some(&[STOP]),
        bochs::TIMEOUT_S,
    );
    check(test, &o);
}
