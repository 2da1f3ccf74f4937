//! Every piece of CPU state a guest can write and read back is its own vCPU's
//! (issue 12), on both backends: AMD-V under QEMU TCG (`-cpu max`: AVX, PKU)
//! and VT-x under Bochs (`corei7_haswell_4770`: AVX; `tigerlake`: AVX-512 and
//! PKU as well), GRUB ISO.
//!
//! Modules: three `statecheck` planters with different seeds and one
//! `statecheck mode=reader` (never writes vector or x87 state and expects
//! the initial state). Each plants general-purpose registers, x87, MXCSR,
//! XMM0-15, YMM upper halves, PKRU, CR2, CR8 and the FS/GS/kernel-GS bases
//! (where CPUID offers them), yields [`YIELDS`] times per round for
//! [`ROUNDS`] rounds and reads everything back each round. Run on one CPU
//! (every yield switches domains on it) and on two (domains also move
//! between CPUs).
//!
//! | test | asserts |
//! |---|---|
//! | `cpustate_*_one_cpu`, `cpustate_*_smp`, `cpustate_vtx_tigerlake_one_cpu`, `cpustate_amdv_qemu64_one_cpu` | every domain exited 0 with `statecheck: <N> checks, 0 failed` (N at least the classes expected on that CPU model), and its `features` line shows the classes the CPU model offers (XSAVE, AVX, FSGSBASE everywhere; PKU under QEMU and on tigerlake; AVX-512 on tigerlake; none of them on `qemu64`, where state goes through FXSAVE) |

use boot_tests::artifacts::{guest_module, shared_iso};
use boot_tests::bochs::{self, Pc};
use boot_tests::domains::{ReportOnPanic, said};
use boot_tests::guest_run::{GuestRun, Shared};
use boot_tests::qemu::{BIOS_TIMEOUT_S, iso_vm, run};
use boot_tests::shared::Once;
use boot_tests::{Backend, Outcome};
use xtask::iso::Module;

/// Rounds each domain makes.
const ROUNDS: u64 = 100;
/// Yields per round (each checks the general-purpose registers).
const YIELDS: u64 = 20;
/// The domains: name and arguments.
const DOMAINS: [(&str, &str); 4] = [
    ("sc1", "seed=11"),
    ("sc2", "seed=22"),
    ("sc3", "seed=33"),
    ("reader", "seed=44 mode=reader"),
];

fn modules() -> Vec<Module> {
    DOMAINS
        .iter()
        .map(|(n, a)| {
            guest_module(
                "statecheck",
                n,
                &format!("{a} rounds={ROUNDS} yields={YIELDS}"),
            )
        })
        .collect()
}

/// The same four domains on one CPU of Bochs' `tigerlake` model (VT-x with
/// AVX-512 and PKU).
fn tigerlake_run() -> &'static Outcome {
    static RUN: Once<Outcome> = Once::new();
    RUN.get("cpustate_tigerlake", || {
        let b = Backend::Vmx;
        let iso = shared_iso(
            "cpustate-tigerlake.iso",
            &format!("{} shutdown loglevel=info", b.exit()),
            &modules(),
        );
        let o = bochs::run_iso(
            "cpustate1_tigerlake",
            &Pc::new("tigerlake", 1, 128),
            &iso,
            None,
            bochs::TIMEOUT_S,
        );
        {
            let _report = ReportOnPanic(&o);
            o.assert_booted("multiboot2");
            assert!(
                o.all_ended().is_some(),
                "{}: no `domains: all ... ended` line",
                o.test
            );
        }
        o
    })
}

/// The same four domains on one CPU of QEMU's default TCG model
/// (`qemu64,+svm,+npt`): no XSAVE, so the FXSAVE/FXRSTOR path.
fn qemu64_run() -> &'static Outcome {
    static RUN: Once<Outcome> = Once::new();
    RUN.get("cpustate_qemu64", || {
        let b = Backend::Svm;
        let iso = shared_iso(
            "cpustate-qemu64.iso",
            &format!("{} shutdown loglevel=info", b.exit()),
            &modules(),
        );
        let o = run("cpustate1_qemu64", iso_vm(&iso, 1, "128M"), BIOS_TIMEOUT_S);
        {
            let _report = ReportOnPanic(&o);
            o.assert_status(xtask::qemu::STATUS_SUCCESS);
            o.assert_booted("multiboot2");
            assert!(
                o.all_ended().is_some(),
                "{}: no `domains: all ... ended` line",
                o.test
            );
        }
        o
    })
}

fn the_run(b: Backend, cpus: u32) -> &'static Outcome {
    static ONE: Shared = Shared::new();
    static SMP: Shared = Shared::new();
    let (cell, name) = if cpus == 1 {
        (&ONE, "cpustate1")
    } else {
        (&SMP, "cpustate2")
    };
    cell.get(b, || {
        GuestRun {
            name,
            options: "",
            modules: modules(),
            cpus,
            memory_mib: 128,
            stop: None,
        }
        .boot(b)
    })
}

/// The feature line each CPU model must show: QEMU `-cpu max`, Bochs
/// `corei7_haswell_4770`, Bochs `tigerlake`.
const QEMU_MAX: &str = "xsave=1 avx=1 avx512=0 pku=1 fsgsbase=1";
const HASWELL: &str = "xsave=1 avx=1 avx512=0 pku=0 fsgsbase=1";
const TIGERLAKE: &str = "xsave=1 avx=1 avx512=1 pku=1 fsgsbase=1";
const QEMU64: &str = "xsave=0 avx=0 avx512=0 pku=0 fsgsbase=0";

fn check(b: Backend, cpus: u32) {
    let want = if b == Backend::Svm { QEMU_MAX } else { HASWELL };
    judge(the_run(b, cpus), want);
}

fn judge(o: &Outcome, want: &str) {
    let _report = ReportOnPanic(o);
    for (name, _) in DOMAINS {
        let d = o.assert_domain(name, "exited", 0);
        let lines = said(o, &d, "statecheck");
        let features = lines
            .iter()
            .find_map(|l| l.strip_prefix("features "))
            .unwrap_or_else(|| panic!("{}: {name} printed no features line", o.test));
        println!("{}: {name}: {features}", o.test);
        assert!(
            features.starts_with(want),
            "{}: {name} features `{features}`, want `{want}`",
            o.test
        );
        // gpr x87 mxcsr xmm cr2 cr8 (+ ymm, avx512, pkru, segbase), and
        // with XSAVE the XSETBV checks before them.
        let min = if want.starts_with("xsave=1") { 18 } else { 6 };
        o.assert_checks_passed(&d, "statecheck", min);
    }
}

#[test]
fn cpustate_amdv_qemu_one_cpu() {
    check(Backend::Svm, 1);
}

#[test]
fn cpustate_vtx_bochs_one_cpu() {
    check(Backend::Vmx, 1);
}

#[test]
fn cpustate_amdv_qemu_smp() {
    check(Backend::Svm, 2);
}

#[test]
fn cpustate_vtx_bochs_smp() {
    check(Backend::Vmx, 2);
}

#[test]
fn cpustate_vtx_tigerlake_one_cpu() {
    judge(tigerlake_run(), TIGERLAKE);
}

#[test]
fn cpustate_amdv_qemu64_one_cpu() {
    judge(qemu64_run(), QEMU64);
}
