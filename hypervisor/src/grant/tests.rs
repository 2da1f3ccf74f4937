//! Grant-table tests: grant, map, unmap, deferred revoke with its
//! notification, copy validation, limits, death, and hostile grantees.
#![allow(clippy::unwrap_used)]

use super::*;

const G: DomainId = DomainId(1); // granter
const E: DomainId = DomainId(2); // grantee
const X: DomainId = DomainId(3); // someone else

const PAGE: u64 = 0x5000;

#[test]
fn grant_map_unmap() {
    let mut t = GrantTable::new(G);
    let mut track = MapTrack::new();
    assert_eq!(t.grant(E, 0x5001, Access::ReadOnly), Err(Error::Invalid));
    assert_eq!(
        t.grant(G, PAGE, Access::ReadOnly),
        Err(Error::Invalid),
        "not to itself"
    );
    let r = t.grant(E, PAGE, Access::ReadWrite).unwrap();
    let (h1, gpa) = t.map(&mut track, E, r, Access::ReadWrite, 0x9000).unwrap();
    assert_eq!(gpa, PAGE);
    let (h2, _) = t.map(&mut track, E, r, Access::ReadOnly, 0xa000).unwrap();
    assert_ne!(h1, h2);
    let st = t.status(r).unwrap();
    assert_eq!(
        (st.grantee, st.gpa, st.access, st.maps, st.revoking),
        (E, PAGE, Access::ReadWrite, 2, false)
    );
    let (m, done) = t.unmap(&mut track, h1).unwrap();
    assert_eq!(
        m,
        Mapping {
            granter: G,
            gref: r,
            at_gpa: 0x9000,
            access: Access::ReadWrite,
            scratch: 0,
        }
    );
    assert_eq!(done, None);
    assert_eq!(
        t.unmap(&mut track, h1),
        Err(Error::NoEntry),
        "handle used up"
    );
    assert_eq!(t.unmap(&mut track, 999), Err(Error::NoEntry));
    t.unmap(&mut track, h2).unwrap();
    assert_eq!(t.status(r).unwrap().maps, 0);
    assert_eq!(track.limits().in_use, 0);
}

#[test]
fn hostile_maps() {
    let mut t = GrantTable::new(G);
    let mut track = MapTrack::new();
    let ro = t.grant(E, PAGE, Access::ReadOnly).unwrap();
    let never = ro + 1;
    assert_eq!(
        t.map(&mut track, E, never, Access::ReadOnly, 0),
        Err(Error::NoEntry),
        "never granted"
    );
    for out in [GRANT_DEFAULT_MAX, u32::MAX] {
        assert_eq!(
            t.map(&mut track, E, out, Access::ReadOnly, 0),
            Err(Error::Invalid),
            "out of range"
        );
    }
    assert_eq!(
        t.map(&mut track, X, ro, Access::ReadOnly, 0),
        Err(Error::Perm),
        "wrong domain"
    );
    assert_eq!(
        t.map(&mut track, E, ro, Access::ReadWrite, 0),
        Err(Error::Perm),
        "write to read-only"
    );
    assert_eq!(t.revoke(ro, 0), Ok(Revoke::Done));
    assert_eq!(
        t.map(&mut track, E, ro, Access::ReadOnly, 0),
        Err(Error::NoEntry),
        "after revoke"
    );
    assert_eq!(t.status(ro), Err(Error::NoEntry));
    assert_eq!(track.limits().in_use, 0, "failed maps record nothing");
    // A handle of another granter's table is refused by this table.
    let mut other = GrantTable::new(X);
    let r = other.grant(E, PAGE, Access::ReadOnly).unwrap();
    let (h, _) = other.map(&mut track, E, r, Access::ReadOnly, 0).unwrap();
    assert_eq!(t.unmap(&mut track, h), Err(Error::Invalid));
    assert_eq!(track.get(h).unwrap().granter, X, "still mapped");
}

#[test]
fn revoke_is_deferred_while_mapped() {
    let mut t = GrantTable::new(G);
    let mut track = MapTrack::new();
    let r = t.grant(E, PAGE, Access::ReadWrite).unwrap();
    let (h1, _) = t.map(&mut track, E, r, Access::ReadWrite, 0x1000).unwrap();
    let (h2, _) = t.map(&mut track, E, r, Access::ReadOnly, 0x2000).unwrap();
    assert_eq!(t.revoke(r, 42), Ok(Revoke::Deferred { maps: 2 }));
    assert_eq!(t.revoke(r, 42), Err(Error::Busy));
    assert!(t.status(r).unwrap().revoking);
    assert_eq!(
        t.map(&mut track, E, r, Access::ReadOnly, 0),
        Err(Error::NoEntry),
        "no new maps"
    );
    assert_eq!(
        t.check_copy(E, r, 0, 8, true),
        Err(Error::NoEntry),
        "no copies either"
    );
    assert_eq!(t.unmap(&mut track, h1).unwrap().1, None);
    let (_, done) = t.unmap(&mut track, h2).unwrap();
    assert_eq!(
        done,
        Some(RevokeDone {
            granter: G,
            gref: r,
            port: 42
        }),
        "the granter learns"
    );
    assert_eq!(t.status(r), Err(Error::NoEntry));
    assert_eq!(t.limits().in_use, 0);
    assert_eq!(
        t.grant(E, 0x7000, Access::ReadOnly),
        Ok(r),
        "reference reused"
    );
    assert_eq!(t.revoke(GRANT_DEFAULT_MAX, 0), Err(Error::Invalid));
    assert_eq!(t.revoke(r + 1, 0), Err(Error::NoEntry));
}

#[test]
fn copy_validation() {
    let mut t = GrantTable::new(G);
    let ro = t.grant(E, PAGE, Access::ReadOnly).unwrap();
    let rw = t.grant(E, 0x6000, Access::ReadWrite).unwrap();
    let tables = |d: DomainId| (d == G).then_some(&t);
    let local = CopyEnd::Local { gpa: 0x100 };
    let g = |gref, offset| CopyEnd::Grant {
        domain: G,
        gref,
        offset,
    };
    assert_eq!(
        check_copy(E, g(ro, 16), local, 64, tables),
        Ok((
            CopyAt {
                domain: G,
                gpa: PAGE + 16
            },
            CopyAt {
                domain: E,
                gpa: 0x100
            }
        ))
    );
    assert_eq!(
        check_copy(E, local, g(rw, 4032), 64, tables).unwrap().1,
        CopyAt {
            domain: G,
            gpa: 0x6000 + 4032
        }
    );
    assert_eq!(
        check_copy(E, local, g(ro, 0), 8, tables),
        Err(Error::Perm),
        "write to read-only"
    );
    assert_eq!(
        check_copy(E, g(ro, 4090), local, 8, tables),
        Err(Error::Invalid),
        "crosses the page"
    );
    assert_eq!(
        check_copy(E, g(ro, u32::MAX), local, 8, tables),
        Err(Error::Invalid)
    );
    assert_eq!(check_copy(E, local, local, 0, tables), Err(Error::Invalid));
    assert_eq!(
        check_copy(E, local, local, 4097, tables),
        Err(Error::TooBig)
    );
    assert_eq!(
        check_copy(X, g(ro, 0), local, 8, tables),
        Err(Error::Perm),
        "wrong domain"
    );
    let nobody = CopyEnd::Grant {
        domain: X,
        gref: 0,
        offset: 0,
    };
    assert_eq!(check_copy(E, nobody, local, 8, tables), Err(Error::NoEntry));
    assert_eq!(
        check_copy(E, g(999, 0), local, 8, tables),
        Err(Error::NoEntry)
    );
    let wrap = CopyEnd::Local { gpa: u64::MAX - 3 };
    assert_eq!(
        check_copy(E, g(ro, 0), wrap, 8, tables),
        Err(Error::Invalid)
    );
    assert_eq!(
        check_copy(E, g(ro, 0), g(rw, 0), 4096, tables).map(|(s, d)| (s.gpa, d.gpa)),
        Ok((PAGE, 0x6000))
    );
}

#[test]
fn limits_grow() {
    let mut t = GrantTable::new(G);
    for i in 0..GRANT_DEFAULT_MAX {
        assert_eq!(
            t.grant(E, u64::from(i) * PAGE_SIZE, Access::ReadOnly),
            Ok(i)
        );
    }
    assert_eq!(t.grant(E, 0, Access::ReadOnly), Err(Error::NoMem));
    assert_eq!(
        t.limits(),
        GrantLimits {
            in_use: GRANT_DEFAULT_MAX,
            max: GRANT_DEFAULT_MAX
        }
    );
    assert_eq!(t.set_max(1), Err(Error::Invalid));
    assert_eq!(t.set_max(GRANT_LIMIT + 1), Err(Error::TooBig));
    t.set_max(GRANT_DEFAULT_MAX * 4).unwrap();
    assert_eq!(t.grant(E, 0, Access::ReadOnly), Ok(GRANT_DEFAULT_MAX));
    assert_eq!(t.limits().max, GRANT_DEFAULT_MAX * 4);

    let mut track = MapTrack::new();
    let r = 5;
    for _ in 0..MAPTRACK_DEFAULT_MAX {
        t.map(&mut track, E, r, Access::ReadOnly, 0).unwrap();
    }
    assert_eq!(
        t.map(&mut track, E, r, Access::ReadOnly, 0),
        Err(Error::NoMem)
    );
    assert_eq!(
        t.status(r).unwrap().maps,
        MAPTRACK_DEFAULT_MAX,
        "the failed map is not counted"
    );
    assert_eq!(track.set_max(3), Err(Error::Invalid));
    track.set_max(MAPTRACK_DEFAULT_MAX + 1).unwrap();
    t.map(&mut track, E, r, Access::ReadOnly, 0).unwrap();
    assert_eq!(
        track.limits(),
        GrantLimits {
            in_use: MAPTRACK_DEFAULT_MAX + 1,
            max: MAPTRACK_DEFAULT_MAX + 1
        }
    );
}

#[test]
fn grantee_death_unmaps_and_completes_revokes() {
    let mut t = GrantTable::new(G);
    let mut track = MapTrack::new();
    let a = t.grant(E, PAGE, Access::ReadOnly).unwrap();
    let b = t.grant(E, 0x6000, Access::ReadWrite).unwrap();
    t.map(&mut track, E, a, Access::ReadOnly, 0x1000).unwrap();
    t.map(&mut track, E, b, Access::ReadWrite, 0x2000).unwrap();
    assert_eq!(t.revoke(b, 7), Ok(Revoke::Deferred { maps: 1 }));
    let gone = track.take_all();
    assert_eq!(gone.len(), 2);
    let done: std::vec::Vec<_> = gone.iter().filter_map(|m| t.drop_map(m.gref)).collect();
    assert_eq!(
        done,
        [RevokeDone {
            granter: G,
            gref: b,
            port: 7
        }]
    );
    assert_eq!(t.status(a).unwrap().maps, 0, "a stays granted, unmapped");
    assert_eq!(track.limits().in_use, 0);
}

#[test]
fn a_dead_granters_mappings_keep_scratch_frames_until_unmapped() {
    let mut t = GrantTable::new(G);
    let mut other = GrantTable::new(X);
    let mut track = MapTrack::new();
    let r = t.grant(E, PAGE, Access::ReadWrite).unwrap();
    let (h1, _) = t.map(&mut track, E, r, Access::ReadWrite, 0x1000).unwrap();
    let (h2, _) = t.map(&mut track, E, r, Access::ReadWrite, 0x2000).unwrap();
    let k = other.grant(E, PAGE, Access::ReadOnly).unwrap();
    let (hk, _) = other
        .map(&mut track, E, k, Access::ReadOnly, 0x3000)
        .unwrap();
    assert_eq!(track.remove_orphan(h1), Err(Error::Busy), "granter alive");
    // Memory for one scratch frame only: the second mapping is removed.
    let mut frames = vec![0x77000u64];
    let (kept, gone) = track.orphan_granter(G, || frames.pop());
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].0, kept[0].1.scratch), (h1, 0x77000));
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].at_gpa, 0x2000);
    assert_eq!(track.get(h2), Err(Error::NoEntry));
    // Orphaning again changes nothing; the other granter's mapping stays.
    let (again, none) = track.orphan_granter(G, || Some(1));
    assert!(again.is_empty() && none.is_empty());
    assert_eq!(track.get(hk).unwrap().scratch, 0);
    assert_eq!(track.remove_orphan(hk), Err(Error::Busy));
    assert_eq!(track.remove_orphan(h1).unwrap().scratch, 0x77000);
    assert_eq!(track.remove_orphan(h1), Err(Error::NoEntry));
    assert_eq!(track.limits().in_use, 1);
}

#[test]
fn granter_death_revokes_everything() {
    let mut t = GrantTable::new(G);
    let mut e_track = MapTrack::new();
    let mut x_track = MapTrack::new();
    let mut other = GrantTable::new(X);
    let unmapped = t.grant(E, PAGE, Access::ReadOnly).unwrap();
    let mapped = t.grant(E, 0x6000, Access::ReadWrite).unwrap();
    let revoking = t.grant(X, 0x7000, Access::ReadOnly).unwrap();
    t.map(&mut e_track, E, mapped, Access::ReadWrite, 0x1000)
        .unwrap();
    t.map(&mut x_track, X, revoking, Access::ReadOnly, 0x1000)
        .unwrap();
    t.revoke(revoking, 3).unwrap();
    // E also maps a page of another granter, which must survive.
    let keep = other.grant(E, PAGE, Access::ReadOnly).unwrap();
    other
        .map(&mut e_track, E, keep, Access::ReadOnly, 0x3000)
        .unwrap();

    let live = t.revoke_all();
    assert_eq!(live, [(E, mapped), (X, revoking)]);
    assert_eq!(t.status(unmapped), Err(Error::NoEntry));
    for (grantee, _) in live {
        let track = if grantee == E {
            &mut e_track
        } else {
            &mut x_track
        };
        for m in track.take_granter(G) {
            t.drop_map(m.gref);
        }
    }
    assert_eq!(
        t.limits().in_use,
        0,
        "every grant gone: the frames can be freed"
    );
    assert_eq!(e_track.limits().in_use, 1);
    let left = e_track.take_all();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].granter, X);
}

#[test]
fn granted_pages_are_known_until_revoked_and_unmapped() {
    let mut t = GrantTable::new(G);
    let mut track = MapTrack::new();
    assert!(!t.granted_in(0, u64::MAX));
    let r = t.grant(E, PAGE, Access::ReadWrite).unwrap();
    assert!(t.granted_in(PAGE, PAGE + 0x1000));
    assert!(t.granted_in(0, PAGE + 1));
    assert!(!t.granted_in(0, PAGE), "the range's end is exclusive");
    assert!(!t.granted_in(PAGE + 0x1000, PAGE + 0x3000));
    let (h, _) = t.map(&mut track, E, r, Access::ReadWrite, 0x9000).unwrap();
    assert_eq!(t.revoke(r, 4), Ok(Revoke::Deferred { maps: 1 }));
    assert!(t.granted_in(PAGE, PAGE + 0x1000), "still mapped");
    let (_, done) = t.unmap(&mut track, h).unwrap();
    assert_eq!(done.map(|d| d.port), Some(4));
    assert!(!t.granted_in(PAGE, PAGE + 0x1000));
}

#[test]
fn set_max_checks_both_limits_in_the_abi_order() {
    let t = GrantTable::new(DomainId(1));
    let track = MapTrack::new();
    let d = GRANT_DEFAULT_MAX;
    assert_eq!(check_set_max(&t, &track, d, d), Ok(()), "equal: no change");
    assert_eq!(check_set_max(&t, &track, d * 2, d), Ok(()));
    assert_eq!(check_set_max(&t, &track, GRANT_LIMIT, GRANT_LIMIT), Ok(()));
    // Lowering either is EINVAL, and wins over the other being too big.
    assert_eq!(check_set_max(&t, &track, d - 1, d), Err(Error::Invalid));
    assert_eq!(check_set_max(&t, &track, d, 0), Err(Error::Invalid));
    assert_eq!(
        check_set_max(&t, &track, GRANT_LIMIT + 1, d - 1),
        Err(Error::Invalid)
    );
    assert_eq!(
        check_set_max(&t, &track, GRANT_LIMIT + 1, d),
        Err(Error::TooBig)
    );
    assert_eq!(check_set_max(&t, &track, d, u32::MAX), Err(Error::TooBig));
    assert_eq!(GRANT_LIMIT as u64, pvabi::GRANT_MAX_CEILING);
}
