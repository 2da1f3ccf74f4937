//! Per-domain resource budgets (issue 12, defect 2), on both backends:
//! AMD-V with nested paging under QEMU TCG and VT-x with EPT under Bochs
//! (`corei7_haswell_4770`), 2 CPUs, 128 MiB (a 1 MiB hypervisor heap),
//! GRUB ISO.
//!
//! `pair`: two `exhaust` guests (ids 1 and 2, each the other's peer) each
//! allocate event-channel ports until refused, raise their grant limits to
//! the ceiling and grant until refused, meet on a rendezvous port (so both
//! hold everything at once), then each makes one ordinary 4 KiB console
//! write. Before budgets this panicked the hypervisor (`memory allocation
//! of ... bytes failed`): ports and grants were refused only when the
//! shared heap ran dry, and the console path then found it empty.
//!
//! | test | asserts |
//! |---|---|
//! | `budget_*_pair` | no panic; both exhausters printed their counts and `wrote 4096 console bytes, enomem=2` (each of ports and grants refused with ENOMEM) and exited 0; free memory after every domain ended equals free memory at ready |

use boot_tests::artifacts::guest_module;
use boot_tests::domains::{ReportOnPanic, said};
use boot_tests::guest_run::{GuestRun, Shared};
use boot_tests::{Backend, Outcome};

fn pair_run(b: Backend) -> &'static Outcome {
    static RUNS: Shared = Shared::new();
    RUNS.get(b, || {
        GuestRun {
            name: "budget_pair",
            options: "",
            modules: vec![
                guest_module("exhaust", "exhaust-a", "peer=2 first"),
                guest_module("exhaust", "exhaust-b", "peer=1"),
            ],
            cpus: 2,
            memory_mib: 128,
            stop: None,
        }
        .boot(b)
    })
}

fn pair(b: Backend) {
    let o = pair_run(b);
    let _report = ReportOnPanic(o);
    assert!(o.panic_lines().is_empty(), "{}: panicked", o.test);
    for name in ["exhaust-a", "exhaust-b"] {
        let d = o.assert_domain(name, "exited", 0);
        let out = said(o, &d, "exhaust");
        assert_eq!(out.len(), 2, "{}: {name} said {out:?}", o.test);
        assert!(
            out[0].starts_with("ports=") && out[0].contains("ENOMEM grants="),
            "{}: {name}: {}",
            o.test,
            out[0]
        );
        assert_eq!(
            out[1], "wrote 4096 console bytes, enomem=2",
            "{}: {name}",
            o.test
        );
        println!("{}: {name}: {}", o.test, out[0]);
    }
    o.assert_free_memory_back();
}

#[test]
fn budget_amdv_qemu_pair() {
    pair(Backend::Svm);
}

#[test]
fn budget_vtx_bochs_pair() {
    pair(Backend::Vmx);
}
