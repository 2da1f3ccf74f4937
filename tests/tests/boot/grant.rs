//! Shared pages between domains (pvabi 1.2 grants), on both backends: AMD-V
//! with nested paging under QEMU TCG and VT-x with EPT under Bochs
//! (`corei7_haswell_4770`), 2 CPUs, GRUB ISO.
//!
//! One run per backend, shared by its tests, with three domains in module
//! order, so ids 1, 2, 3: `gntshare` (`peer=2 hostile=3`) grants pages and
//! offers event-channel ports, `gntmap` (`peer=1`) maps two grants into
//! holes it released, checks the pattern and replies through the page;
//! `gnthostile` (`peer=1 other=2`) misuses every op, then writes through
//! its read-only mapping.
//!
//! | test | asserts |
//! |---|---|
//! | `grant_*_share` | ids 1, 2, 3; gntshare saw the reply written through the shared page, its revoke of the still-mapped grant was deferred and completed (port raised, reference free, page releasable) when gntmap unmapped; gntmap saw the pattern, a revoked grant could not be mapped again, and after gntshare ended its kept mapping showed a zeroed page of its own, never gntshare's (writable, then unmapped; hole populatable); both exited 0, no `FAILED`; free memory after every domain ended equals free memory at ready |
//! | `grant_*_hostile` | gnthostile printed `<N> checks, 0 failed` with N >= [`MIN_HOSTILE_CHECKS`], then was killed for writing to its read-only mapping (`wrote guest-physical`), and gntshare then found that grant unmapped (revoke immediate) |

use boot_tests::artifacts::guest_module;
use boot_tests::domains::{ReportOnPanic, said};
use boot_tests::guest_run::{GuestRun, Shared};
use boot_tests::{Backend, Outcome};

/// gnthostile makes 35-odd checks; fewer means some were skipped.
const MIN_HOSTILE_CHECKS: u64 = 35;

fn the_run(b: Backend) -> &'static Outcome {
    static RUNS: Shared = Shared::new();
    RUNS.get(b, || {
        GuestRun {
            name: "grant",
            options: "",
            modules: vec![
                guest_module("gntshare", "gntshare", "peer=2 hostile=3"),
                guest_module("gntmap", "gntmap", "peer=1"),
                guest_module("gnthostile", "gnthostile", "peer=1 other=2"),
            ],
            cpus: 2,
            memory_mib: 128,
            stop: None,
        }
        .boot(b)
    })
}

fn share(b: Backend) {
    let o = the_run(b);
    let _report = ReportOnPanic(o);
    let g = o.assert_domain("gntshare", "exited", 0);
    let m = o.assert_domain("gntmap", "exited", 0);
    let h = o.domain_end("gnthostile");
    assert_eq!(
        (g.id, m.id, h.id),
        (1, 2, 3),
        "{}: ids in module order",
        o.test
    );
    assert_eq!(
        said(o, &g, &g.name),
        [
            "granted refs 0..3, ports offered",
            "reply seen, revoke deferred until unmap",
            "hostile gone, its mapping torn down",
        ],
        "{}: gntshare",
        o.test
    );
    assert_eq!(
        said(o, &m, &m.name),
        [
            "mapped refs 0 and 3, pattern ok, reply sent",
            "unmapped after the revoke",
            "granter ended, its page was swapped for a zeroed one, unmapped",
        ],
        "{}: gntmap",
        o.test
    );
    o.assert_free_memory_back();
}

fn hostile(b: Backend) {
    let o = the_run(b);
    let _report = ReportOnPanic(o);
    let d = o.assert_killed("gnthostile", &["wrote guest-physical"]);
    let n = o.assert_checks_passed(&d, &d.name, MIN_HOSTILE_CHECKS);
    let out = said(o, &d, &d.name);
    assert_eq!(
        out.last().copied(),
        Some("writing to a read-only grant"),
        "{}: gnthostile's last line",
        o.test
    );
    println!("{}: gnthostile made {n} checks, then was killed", o.test);
}

#[test]
fn grant_amdv_qemu_share() {
    share(Backend::Svm);
}

#[test]
fn grant_vtx_bochs_share() {
    share(Backend::Vmx);
}

#[test]
fn grant_amdv_qemu_hostile() {
    hostile(Backend::Svm);
}

#[test]
fn grant_vtx_bochs_hostile() {
    hostile(Backend::Vmx);
}
