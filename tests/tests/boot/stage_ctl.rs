//! Staging (`HC_DOMCTL_STAGE_*`, `DOMCTL_CREATE_STAGED`, issue 14) on both
//! backends: AMD-V under QEMU TCG and VT-x under Bochs, GRUB ISO,
//! hypervisor option `dom0`. The control domain `ctlstage` (module 0)
//! stages `hello`'s bytes in pieces and builds a domain from the stage,
//! the path dom0 takes for uploads and store images (`upload_store.rs`
//! drives it through hvctl, QEMU only).
//!
//! | test | asserts |
//! |---|---|
//! | `stage_ctl_*` | ctlstage printed `<N> checks, 0 failed` (N >= [`MIN_CHECKS`]: a size of 0, a gap, past the end, a create from a stage not filled, an initramfs on a pvabi image, bytes that are not ELF: `EINVAL`; over 64 KiB: `E2BIG`; a source past its memory: `EFAULT`; a bad handle, a second abort, the stage after the create: `ENOENT`; a ninth stage: `EBUSY`; the create, unpause, the child's exit 0, free memory back) and exited 0; the child `fromstage` printed its command line `from a stage` and exited 0; the hypervisor logged the create `from a staged image` |

use boot_tests::artifacts::guest_module;
use boot_tests::domains::ReportOnPanic;
use boot_tests::guest_run::{GuestRun, Shared};
use boot_tests::{Backend, Outcome};

/// ctlstage makes 20 checks.
const MIN_CHECKS: u64 = 20;

fn the_run(b: Backend) -> &'static Outcome {
    static RUNS: Shared = Shared::new();
    RUNS.get(b, || {
        GuestRun {
            name: "stage_ctl",
            options: "dom0",
            modules: vec![
                guest_module("ctlstage", "ctlstage", ""),
                guest_module("hello", "hello", ""),
            ],
            cpus: 1,
            memory_mib: 128,
            stop: None,
        }
        .boot(b)
    })
}

fn built_from_a_stage(b: Backend) {
    let o = the_run(b);
    let _report = ReportOnPanic(o);
    let ctl = o.assert_domain("ctlstage", "exited", 0);
    o.assert_checks_passed(&ctl, "ctlstage", MIN_CHECKS);
    let child = o.assert_domain("fromstage", "exited", 0);
    o.assert_printed(&child, "cmdline \"from a stage\"");
    assert!(
        o.lines
            .iter()
            .any(|l| l.contains("(fromstage) created by domain 1 (ctlstage) from a staged image")),
        "{}: no create line",
        o.test
    );
}

#[test]
fn stage_ctl_qemu() {
    built_from_a_stage(Backend::Svm);
}

#[test]
fn stage_ctl_bochs() {
    built_from_a_stage(Backend::Vmx);
}
