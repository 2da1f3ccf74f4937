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
//! `storm` (hypervisor option `dom0`): the control domain `budgetctl`
//! runs three rounds; in each, three `exhaust` guests with a 64 KiB budget
//! and 4 vCPUs spend ports, grants, vCPUs, a timer and console output at
//! once, an innocent `exhaust innocent` guest does 40 rounds of ordinary
//! work, and budgetctl creates and destroys 20 `hello` domains meanwhile.
//!
//! | test | asserts |
//! |---|---|
//! | `budget_*_pair` | no panic; both exhausters printed their counts and `wrote 4096 console bytes, enomem=2` (each of ports and grants refused with ENOMEM) and exited 0; free memory after every domain ended equals free memory at ready |
//! | `budget_*_storm` | no panic; every exhauster (9) printed `enomem=3` (ports, grants, vCPUs refused with ENOMEM) and exited 0, and budgetctl saw its use within its budget and console input for it refused with ENOMEM (3 per round); both innocent guests printed `40 rounds ok` and exited 0; all 60 create/destroy cycles worked; budgetctl printed `done` (the hypervisor heap after round 3 equals that after round 2, free memory after each round equals that at its start) and exited 0; free memory after every domain ended equals free memory at ready |

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

fn storm_run(b: Backend) -> &'static Outcome {
    static RUNS: Shared = Shared::new();
    RUNS.get(b, || {
        GuestRun {
            name: "budget_storm",
            options: "dom0",
            modules: vec![
                guest_module("budgetctl", "budgetctl", "rounds=3 cycles=20 exhausters=3"),
                guest_module("exhaust", "exhaust", ""),
                guest_module("hello", "hello", ""),
            ],
            cpus: 2,
            memory_mib: 128,
            stop: None,
        }
        .boot(b)
    })
}

fn storm(b: Backend) {
    let o = storm_run(b);
    let _report = ReportOnPanic(o);
    assert!(o.panic_lines().is_empty(), "{}: panicked", o.test);
    let ctl = o.assert_domain("budgetctl", "exited", 0);
    let said_ctl = said(o, &ctl, "budgetctl");
    assert_eq!(
        said_ctl.last().copied(),
        Some("done"),
        "{}: {said_ctl:?}",
        o.test
    );
    for round in 0..3 {
        let want = format!("round {round}: cycles=20 failed=0 console_enomem=3");
        assert!(
            said_ctl.contains(&want.as_str()),
            "{}: {want}: {said_ctl:?}",
            o.test
        );
    }
    let ends = o.domain_ends();
    let exhausters: Vec<_> = ends
        .iter()
        .filter(|d| d.name.starts_with("exhaust-"))
        .collect();
    assert_eq!(exhausters.len(), 9, "{}: {ends:?}", o.test);
    for d in exhausters {
        assert_eq!(
            (d.result.as_str(), d.code),
            ("exited", 0),
            "{}: {d:?}",
            o.test
        );
        let out = said(o, d, "exhaust");
        assert!(
            out.last().is_some_and(|l| l.ends_with("enomem=3")),
            "{}: {} said {out:?}",
            o.test,
            d.name
        );
        println!("{}: {} {}", o.test, d.name, out.first().unwrap_or(&""));
    }
    let innocents: Vec<_> = ends.iter().filter(|d| d.name == "innocent").collect();
    assert_eq!(innocents.len(), 3, "{}: {ends:?}", o.test);
    for d in innocents {
        assert_eq!(
            (d.result.as_str(), d.code),
            ("exited", 0),
            "{}: {d:?}",
            o.test
        );
        assert!(
            said(o, d, "exhaust").contains(&"innocent: 40 rounds ok"),
            "{}: innocent {}",
            o.test,
            d.id
        );
    }
    for l in said_ctl.iter().filter(|l| l.contains("heap")) {
        println!("{}: {l}", o.test);
    }
    o.assert_free_memory_back();
}

#[test]
fn budget_amdv_qemu_storm() {
    storm(Backend::Svm);
}

#[test]
fn budget_vtx_bochs_storm() {
    storm(Backend::Vmx);
}
