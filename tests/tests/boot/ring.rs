//! I/O rings over granted pages (pvabi 1.3), on both backends: AMD-V with
//! nested paging under QEMU TCG and VT-x with EPT under Bochs
//! (`corei7_haswell_4770`), 2 CPUs, GRUB ISO.
//!
//! Two runs per backend, shared by its tests:
//!
//! - **transfer**: `ringprod` (`peer=2 mib=N`) and `ringcons` (`peer=1`):
//!   N MiB through one ring with 32 data pages, checksums verified by the
//!   consumer. N is [`QEMU_MIB`] and [`BOCHS_MIB`]: 1 GiB on both (about
//!   7 s under QEMU, 55 s under Bochs on 2 busy cores; `mib=` exists to
//!   make it smaller should the suite get too slow).
//! - **hostile**: six domains, ids in module order: `ringprod` (1, `peer=2
//!   hostile=3`) and `ringcons` (2) move data while `ringhostile` (3,
//!   `peer=4 victim=1`) misuses the grant calls against domain 1, floods
//!   domains 1 and 4 with notifications and overruns the ring it shares
//!   with `ringcons` (4); `ringprod` (5, `crash_after=...`) crashes on
//!   purpose mid-transfer while `ringcons` (6) serves it.
//!
//! | test | asserts |
//! |---|---|
//! | `ring_*_transfer` | both exited 0; the producer sent N MiB in `N*256` requests, the consumer received exactly that many requests and bytes with 0 bad checksums; fewer notifications than requests each way (batching and suppression); every revoke immediate (the consumer unmapped everything); free memory after every domain ended equals free memory at ready |
//! | `ring_*_hostile` | `ringhostile` printed `<n> checks, 0 failed` with n >= [`MIN_HOSTILE_CHECKS`] and exited 0; its back (4) reported the overrun and tore down; the victim pair (1, 2) finished its transfer with 0 bad checksums; free memory back at its value at ready |
//! | `ring_*_death` | domain 5 crashed after printing `crashing on purpose`; domain 6 (which may be reading the pages at that moment) reported `front died` after at most what was sent, with its port unbound and none of its 33 mappings removed under it (the hypervisor swaps zeroed pages in), tore down and exited 0 |

use boot_tests::artifacts::guest_module;
use boot_tests::domains::{ReportOnPanic, said};
use boot_tests::guest_run::{GuestRun, Shared};
use boot_tests::{Backend, Outcome};

/// MiB through the ring under QEMU.
const QEMU_MIB: u64 = 1024;
/// MiB through the ring under Bochs.
const BOCHS_MIB: u64 = 1024;
/// ringhostile makes 45-odd checks; fewer means some were skipped.
const MIN_HOSTILE_CHECKS: u64 = 45;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Transfer,
    Hostile,
}

fn mib(b: Backend) -> u64 {
    match b {
        Backend::Svm => QEMU_MIB,
        Backend::Vmx => BOCHS_MIB,
    }
}

/// (victim pair MiB, crash-after MiB, the crashing producer's MiB).
fn hostile_sizes(b: Backend) -> (u64, u64, u64) {
    match b {
        Backend::Svm => (64, 8, 64),
        Backend::Vmx => (4, 2, 8),
    }
}

fn the_run(b: Backend, k: Kind) -> &'static Outcome {
    static TRANSFER: Shared = Shared::new();
    static HOSTILE: Shared = Shared::new();
    let runs = if k == Kind::Transfer {
        &TRANSFER
    } else {
        &HOSTILE
    };
    runs.get(b, || {
        let modules = match k {
            Kind::Transfer => vec![
                guest_module("ringprod", "ringprod", &format!("peer=2 mib={}", mib(b))),
                guest_module("ringcons", "ringcons", "peer=1"),
            ],
            Kind::Hostile => {
                let (v, crash, total) = hostile_sizes(b);
                vec![
                    guest_module("ringprod", "ringprod", &format!("peer=2 mib={v} hostile=3")),
                    guest_module("ringcons", "ringcons", "peer=1"),
                    guest_module("ringhostile", "ringhostile", "peer=4 victim=1"),
                    guest_module("ringcons", "ringcons-h", "peer=3"),
                    guest_module(
                        "ringprod",
                        "ringprod-crash",
                        &format!("peer=6 mib={total} crash_after={crash}"),
                    ),
                    guest_module("ringcons", "ringcons-d", "peer=5"),
                ]
            }
        };
        let name = match k {
            Kind::Transfer => "ring_transfer",
            Kind::Hostile => "ring_hostile",
        };
        GuestRun {
            name,
            options: "",
            modules,
            cpus: 2,
            memory_mib: 256,
            stop: None,
        }
        .boot(b)
    })
}

/// The numbers in a line, in order.
fn numbers(line: &str) -> Vec<u64> {
    line.split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect()
}

fn line_of<'a>(lines: &[&'a str], prefix: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .copied()
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in {lines:?}"))
}

/// Checks one producer/consumer pair moved `mib` MiB intact.
fn pair(o: &Outcome, prod: &str, cons: &str, mib: u64) {
    let p = o.assert_domain(prod, "exited", 0);
    let c = o.assert_domain(cons, "exited", 0);
    let ps = said(o, &p, "ringprod");
    let cs = said(o, &c, "ringcons");
    let reqs = mib * 256;
    let sent = numbers(line_of(&ps, "sent "));
    assert_eq!(&sent[..2], &[reqs, mib], "{}: {prod} sent", o.test);
    let got = numbers(line_of(&cs, "received "));
    assert_eq!(
        &got[..3],
        &[reqs, mib << 20, 0],
        "{}: {cons} received (requests, bytes, bad checksums)",
        o.test
    );
    let (prod_notes, cons_notes) = (sent[2], got[3]);
    assert!(
        prod_notes < reqs && cons_notes < reqs,
        "{}: {prod_notes} and {cons_notes} notifications for {reqs} requests: no batching",
        o.test
    );
    assert!(
        ps.contains(&"all grants revoked, none still mapped"),
        "{}: {prod}: {ps:?}",
        o.test
    );
    assert_eq!(cs.last().copied(), Some("torn down"), "{}: {cons}", o.test);
    println!(
        "{}: {mib} MiB in {reqs} requests; notifications: {prod_notes} by the producer \
         ({:.1} requests each), {cons_notes} by the consumer",
        o.test,
        reqs as f64 / prod_notes.max(1) as f64
    );
}

fn transfer(b: Backend) {
    let o = the_run(b, Kind::Transfer);
    let _report = ReportOnPanic(o);
    pair(o, "ringprod", "ringcons", mib(b));
    o.assert_free_memory_back();
}

fn hostile(b: Backend) {
    let o = the_run(b, Kind::Hostile);
    let _report = ReportOnPanic(o);
    let (v, _, _) = hostile_sizes(b);
    pair(o, "ringprod", "ringcons", v);
    let h = o.assert_domain("ringhostile", "exited", 0);
    o.assert_checks_passed(&h, "ringhostile", MIN_HOSTILE_CHECKS);
    let c = o.assert_domain("ringcons-h", "exited", 0);
    let cs = said(o, &c, "ringcons");
    assert!(
        line_of(&cs, "peer overran the ring: ").contains("impossible"),
        "{}: {cs:?}",
        o.test
    );
    assert_eq!(cs.last().copied(), Some("torn down"), "{}", o.test);
    assert_eq!(o.domain_ends().len(), 6, "{}: six domains", o.test);
    o.assert_free_memory_back();
}

fn death(b: Backend) {
    let o = the_run(b, Kind::Hostile);
    let _report = ReportOnPanic(o);
    let (_, crash, _) = hostile_sizes(b);
    let p = o.assert_domain("ringprod-crash", "crashed", 3);
    let ps = said(o, &p, "ringprod");
    assert_eq!(
        ps.last().copied(),
        Some(format!("crashing on purpose after {crash} MiB").as_str()),
        "{}",
        o.test
    );
    let c = o.assert_domain("ringcons-d", "exited", 0);
    let cs = said(o, &c, "ringcons");
    let died = line_of(&cs, "front died after ");
    // Killed mid-transfer: the back took at most what was sent, and every
    // one of its 33 mappings (config, ring, data) was still in place (with
    // zeroed pages swapped in) for it to unmap itself, so it never faulted.
    let n = numbers(died);
    assert!(
        n.len() == 3 && n[0] <= crash * 256 && n[1] <= crash && n[2] == 0,
        "{}: requests, MiB, mappings already removed: {died}",
        o.test
    );
    assert!(died.contains("port unbound"), "{}: {died}", o.test);
    assert_eq!(cs.last().copied(), Some("torn down"), "{}", o.test);
    o.assert_free_memory_back();
}

#[test]
fn ring_amdv_qemu_transfer() {
    transfer(Backend::Svm);
}

#[test]
fn ring_vtx_bochs_transfer() {
    transfer(Backend::Vmx);
}

#[test]
fn ring_amdv_qemu_hostile() {
    hostile(Backend::Svm);
}

#[test]
fn ring_vtx_bochs_hostile() {
    hostile(Backend::Vmx);
}

#[test]
fn ring_amdv_qemu_death() {
    death(Backend::Svm);
}

#[test]
fn ring_vtx_bochs_death() {
    death(Backend::Vmx);
}
