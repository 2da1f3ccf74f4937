//! `DOMCTL_CREATE_IMAGE` (issue 14) on both backends: AMD-V under QEMU TCG
//! and VT-x under Bochs, GRUB ISO, hypervisor option `dom0`. The control
//! domain `ctlimage` (module 0) builds a domain from `hello`'s bytes in its
//! own memory, the path dom0 takes for an uploaded image
//! (`upload.rs` drives it through hvctl, QEMU only).
//!
//! | test | asserts |
//! |---|---|
//! | `upload_ctl_*` | ctlimage printed `<N> checks, 0 failed` (N >= [`MIN_CHECKS`]: no bytes, a module as well, the Linux flag as well: `EINVAL`; a range past its memory: `EFAULT`; bytes that are not ELF: `EINVAL`; the create from its memory, unpause, the child's exit 0, free memory back) and exited 0; the child `fromimg` printed its command line `from memory` and exited 0 after ctlimage had wiped its own copy; the hypervisor logged the create `from an image in its memory` |

use boot_tests::artifacts::guest_module;
use boot_tests::domains::ReportOnPanic;
use boot_tests::guest_run::{GuestRun, Shared};
use boot_tests::{Backend, Outcome};

/// ctlimage makes 9 checks.
const MIN_CHECKS: u64 = 9;

fn the_run(b: Backend) -> &'static Outcome {
    static RUNS: Shared = Shared::new();
    RUNS.get(b, || {
        GuestRun {
            name: "upload_ctl",
            options: "dom0",
            modules: vec![
                guest_module("ctlimage", "ctlimage", ""),
                guest_module("hello", "hello", ""),
            ],
            cpus: 1,
            memory_mib: 128,
            stop: None,
        }
        .boot(b)
    })
}

fn built_from_memory(b: Backend) {
    let o = the_run(b);
    let _report = ReportOnPanic(o);
    let ctl = o.assert_domain("ctlimage", "exited", 0);
    o.assert_checks_passed(&ctl, "ctlimage", MIN_CHECKS);
    let child = o.assert_domain("fromimg", "exited", 0);
    o.assert_printed(&child, "cmdline \"from memory\"");
    assert!(
        o.lines
            .iter()
            .any(|l| l
                .contains("(fromimg) created by domain 1 (ctlimage) from an image in its memory")),
        "{}: no create line",
        o.test
    );
}

#[test]
fn upload_ctl_qemu() {
    built_from_memory(Backend::Svm);
}

#[test]
fn upload_ctl_bochs() {
    built_from_memory(Backend::Vmx);
}
