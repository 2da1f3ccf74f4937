//! The dispatch by number (`group.rs`): each op group's decoder knows
//! exactly the numbers the one `match` gives it, so running only that
//! decoder answers every number as trying each decoder in turn did; and
//! numbers of no group get `ENOSYS` whatever the caller's privilege.
use super::*;
use crate::hypercall::group::{self, Group};
use crate::pci::config::PciOp;

/// Every number up to well past the last one, and the edges of u64.
fn numbers() -> impl Iterator<Item = u64> {
    (0..=2048).chain([0xdead, u64::from(u32::MAX), u64::MAX - 1, u64::MAX])
}

const ARGS: [[u64; 6]; 3] = [[0; 6], [1, 2, 3, 4, 5, 6], [u64::MAX; 6]];

/// The table the exit path looks numbers up in says what the `match` says,
/// for every number (past the table's end too).
#[test]
fn the_table_agrees_with_the_match() {
    for nr in numbers() {
        assert_eq!(group::of(nr), group::by_match(nr), "group of {nr}");
    }
}

#[test]
fn each_decoder_knows_exactly_its_groups_numbers() {
    for nr in numbers() {
        let g = group::of(nr);
        for a in ARGS {
            assert_eq!(
                EvtchnOp::decode(nr, a).is_some(),
                g == Group::Evtchn,
                "event-channel decoder and group of {nr}"
            );
            assert_eq!(
                GrantOp::decode(nr, a).is_some(),
                g == Group::Grant,
                "grant decoder and group of {nr}"
            );
            assert_eq!(
                PciOp::decode(nr, a).is_some(),
                g == Group::Pci,
                "PCI decoder and group of {nr}"
            );
            for privileged in [false, true] {
                let mut svc = FakeSvc::new(0x4000);
                svc.privileged = privileged;
                assert_eq!(
                    crate::domain::ctl_ops::run(&mut svc, nr, a).is_some(),
                    g == Group::Domctl,
                    "domctl decoder and group of {nr} (privileged: {privileged})"
                );
                assert_eq!(
                    crate::hypercall::mgmt::run(&mut svc, nr, a).is_some(),
                    g == Group::Mgmt,
                    "management decoder and group of {nr} (privileged: {privileged})"
                );
            }
        }
    }
}

#[test]
fn numbers_of_no_group_and_no_own_arm_get_enosys() {
    // The numbers `hypercall()` answers in its own arms.
    let own = [
        HC_CONSOLE_WRITE,
        HC_SHUTDOWN,
        HC_YIELD,
        HC_CONSOLE_READ,
        HC_SCHED_BLOCK,
        HC_SCHED_POLL,
        HC_SET_TIMER,
        HC_VCPU_UP,
        HC_VCPU_INFO,
        HC_MEM_INFO,
        HC_MEM_RELEASE,
        HC_MEM_POPULATE,
        HC_MULTICALL,
        pvabi::HC_SHUTDOWN_REQUESTED,
        pvabi::HC_MEM_TARGET,
    ];
    let mut unknown = 0;
    for nr in numbers() {
        if own.contains(&nr) {
            assert_eq!(group::of(nr), Group::None, "{nr} has its own arm");
            continue;
        }
        if group::of(nr) != Group::None {
            continue;
        }
        for privileged in [false, true] {
            let mut svc = FakeSvc::new(0x4000);
            svc.privileged = privileged;
            let mut v = FakeVcpu::default();
            let (act, out) = call6(&mut v, &mut svc, nr, [0; 4]);
            assert_eq!(act, Action::Resume, "hypercall {nr}");
            assert_eq!(v.regs.rax as i64, ENOSYS, "hypercall {nr}");
            assert!(out.is_empty(), "hypercall {nr} wrote nothing");
        }
        unknown += 1;
    }
    // 0, everything past the last number (55 today) up to 2048, and the
    // edges: well over 1,900 whatever a release adds at the top.
    assert!(unknown >= 1900, "{unknown} unknown numbers tried");
}
