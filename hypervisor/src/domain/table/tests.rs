//! Host tests of the domain table's bookkeeping.
#![allow(clippy::unwrap_used)]

use super::*;
use alloc::vec;

type Table = DomainTable<&'static str, (u32, u32)>;

fn id(n: u32) -> DomainId {
    DomainId(n)
}

fn three() -> Table {
    let mut t = Table::new();
    t.insert(id(5), "e", vec![(5, 0)]).unwrap();
    t.insert(id(2), "b", vec![(2, 0), (2, 1), (2, 2)]).unwrap();
    t.insert(id(9), "i", vec![(9, 0), (9, 1)]).unwrap();
    t
}

#[test]
fn finds_domains_and_vcpus_by_id_and_index() {
    let t = three();
    assert_eq!(t.len(), 3);
    assert_eq!(t.get(id(2)), Some(&"b"));
    assert_eq!(t.get(id(3)), None);
    assert!(t.contains(id(9)) && !t.contains(id(1)));
    assert_eq!(t.vcpu(id(2), 1), Some(&(2, 1)));
    assert_eq!(t.vcpu(id(2), 3), None);
    assert_eq!(t.vcpu(id(4), 0), None);
    assert_eq!(t.vcpu(id(2), u32::MAX), None);
    assert_eq!(
        t.vcpus(id(2)).copied().collect::<Vec<_>>(),
        [(2, 0), (2, 1), (2, 2)]
    );
    assert_eq!(t.vcpus(id(7)).count(), 0);
}

#[test]
fn lists_domains_in_ascending_id() {
    let t = three();
    let ids: Vec<u32> = t.domains().map(|(i, _)| i.0).collect();
    assert_eq!(ids, [2, 5, 9]);
    assert_eq!(t.all_vcpus().count(), 6);
    assert_eq!(t.all_vcpus().next(), Some(&(2, 0)));
}

#[test]
fn refuses_a_duplicate_id_or_no_vcpus_and_keeps_the_first() {
    let mut t = three();
    let (d, v) = t.insert(id(5), "x", vec![(5, 7)]).unwrap_err();
    assert_eq!((d, v), ("x", vec![(5, 7)]));
    assert!(t.insert(id(6), "y", Vec::new()).is_err());
    assert_eq!(t.get(id(5)), Some(&"e"));
    assert!(!t.contains(id(6)));
}

#[test]
fn the_domain_leaves_with_its_last_vcpu() {
    let mut t = three();
    let r = t.remove_vcpu(id(2), 1).unwrap();
    assert_eq!((r.vcpu, r.domain), ((2, 1), None));
    // Gone once: a second retire of the same vCPU finds nothing.
    assert!(t.remove_vcpu(id(2), 1).is_none());
    assert_eq!(t.vcpu(id(2), 1), None);
    assert_eq!(
        t.vcpus(id(2)).copied().collect::<Vec<_>>(),
        [(2, 0), (2, 2)]
    );
    assert_eq!(t.remove_vcpu(id(2), 2).unwrap().domain, None);
    let last = t.remove_vcpu(id(2), 0).unwrap();
    assert_eq!((last.vcpu, last.domain), ((2, 0), Some("b")));
    assert!(!t.contains(id(2)));
    assert_eq!(t.len(), 2);
    assert!(t.remove_vcpu(id(2), 0).is_none());
    assert!(t.remove_vcpu(id(5), 9).is_none());
}

#[test]
fn empties() {
    let mut t = three();
    for (d, n) in [(2, 3), (5, 1), (9, 2)] {
        for i in 0..n {
            t.remove_vcpu(id(d), i).unwrap();
        }
    }
    assert!(t.is_empty());
    assert_eq!(t.all_vcpus().count(), 0);
}
