//! A hostile grant user (pvabi 1.2): every misuse gets its documented
//! error (`pvabi`'s `HC_GRANT_*` docs, in their check order), then it maps
//! the read-only grant made for it and writes to it, which must kill it
//! while `gntshare` and `gntmap` go on.
//!
//! Command line: `peer=<id>` (the `gntshare` domain; see
//! [`kestrel_guests::gnt`] for its grants), `other=<id>` (the `gntmap`
//! domain, which grants nothing).
//!
//! Prints `gnthostile: <name> ok` or `gnthostile: <name> FAILED got <X>
//! want <Y>` per check, then `gnthostile: <N> checks, <M> failed`; if none
//! failed, `gnthostile: writing to a read-only grant` and the write (it
//! should be killed there); otherwise exit 1.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::{Checks, bind_retry, gnt, num_arg, raw};
use pvabi::guest::{evtchn, hypercall6, memory};
use pvabi::{
    EEXIST, EFAULT, EINVAL, ENOENT, EPERM, HC_GRANT_ACCESS, HC_GRANT_MAP, HC_GRANT_REVOKE,
    HC_GRANT_UNMAP, PAGE_SIZE, StartInfo,
};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("gnthostile");

fn check(name: &str, got: i64, want: i64) -> bool {
    CHECKS.check(name, got, want)
}

fn hc(nr: u64, a: [u64; 4]) -> i64 {
    hypercall6(nr, [a[0], a[1], a[2], a[3], 0, 0]) as i64
}

/// A domain id that does not exist.
const NO_DOMAIN: u64 = 0x7fff_0000;
const RO: u64 = pvabi::GRANT_READONLY;

fn main(si: &StartInfo) -> i32 {
    let me = u64::from(si.domain_id);
    let peer = num_arg(si, "peer", 0);
    let other = num_arg(si, "other", 0);
    // Bound means every grant of the peer's is made.
    let port = match bind_retry(peer as u32, gnt::HOSTILE_PORT) {
        Ok(p) => p,
        Err(e) => {
            pvabi::println!("gnthostile: FAILED bind: {e:?}");
            return 1;
        }
    };
    let _ = evtchn::send(port);
    let Some(free) = memory::free_region() else {
        pvabi::println!("gnthostile: FAILED no free region");
        return 1;
    };
    let hole = free.start;
    let own = free.start + PAGE_SIZE;
    raw::write(own, 1);
    check(
        "release the hole",
        memory::release(hole, 1).map_or(-1, |n| n as i64),
        1,
    );
    let map =
        |granter: u64, gref: u64, at: u64, flags: u64| hc(HC_GRANT_MAP, [granter, gref, at, flags]);
    let (kept, revoked, ro) = (
        u64::from(gnt::KEPT),
        u64::from(gnt::REVOKED),
        u64::from(gnt::READ_ONLY),
    );
    for (name, got, want) in [
        ("map.granter_2pow32", map(1 << 32, ro, hole, RO), EINVAL),
        ("map.ref_2pow32", map(peer, 1 << 32, hole, RO), EINVAL),
        ("map.flags_2", map(peer, ro, hole, 2), EINVAL),
        ("map.flags_max", map(peer, ro, hole, u64::MAX), EINVAL),
        ("map.unaligned", map(peer, ro, hole + 1, RO), EINVAL),
        ("map.self_granter", map(me, ro, hole, RO), EINVAL),
        ("map.outside", map(peer, ro, 1 << 40, RO), EFAULT),
        ("map.top_page", map(peer, ro, !0xfff, RO), EFAULT),
        ("map.not_a_hole", map(peer, ro, own, RO), EEXIST),
        ("map.no_such_granter", map(NO_DOMAIN, ro, hole, RO), ENOENT),
        ("map.wrong_granter", map(other, ro, hole, RO), ENOENT),
        ("map.ref_beyond_limit", map(peer, 5000, hole, RO), EINVAL),
        (
            "map.ref_u32_max",
            map(peer, u64::from(u32::MAX), hole, RO),
            EINVAL,
        ),
        ("map.never_granted", map(peer, 100, hole, RO), ENOENT),
        ("map.after_revoke", map(peer, revoked, hole, 0), ENOENT),
        ("map.granted_to_another", map(peer, kept, hole, 0), EPERM),
        ("map.read_only_as_writable", map(peer, ro, hole, 0), EPERM),
        (
            "unmap.never_mapped",
            hc(HC_GRANT_UNMAP, [77, 0, 0, 0]),
            ENOENT,
        ),
        (
            "unmap.2pow32",
            hc(HC_GRANT_UNMAP, [1 << 32, 0, 0, 0]),
            EINVAL,
        ),
        (
            "access.grantee_2pow32",
            hc(HC_GRANT_ACCESS, [own, 1 << 32, 0, 0]),
            EINVAL,
        ),
        (
            "access.flags_2",
            hc(HC_GRANT_ACCESS, [own, peer, 2, 0]),
            EINVAL,
        ),
        (
            "access.unaligned",
            hc(HC_GRANT_ACCESS, [own + 8, peer, 0, 0]),
            EINVAL,
        ),
        (
            "access.outside",
            hc(HC_GRANT_ACCESS, [1 << 40, peer, 0, 0]),
            EFAULT,
        ),
        (
            "access.hole",
            hc(HC_GRANT_ACCESS, [hole, peer, 0, 0]),
            EFAULT,
        ),
        (
            "access.to_self",
            hc(HC_GRANT_ACCESS, [own, me, 0, 0]),
            EINVAL,
        ),
        (
            "revoke.ref_2pow32",
            hc(HC_GRANT_REVOKE, [1 << 32, 0, 0, 0]),
            EINVAL,
        ),
        (
            "revoke.port_2pow32",
            hc(HC_GRANT_REVOKE, [0, 1 << 32, 0, 0]),
            EINVAL,
        ),
        (
            "revoke.beyond_limit",
            hc(HC_GRANT_REVOKE, [5000, 0, 0, 0]),
            EINVAL,
        ),
        (
            "revoke.never_granted",
            hc(HC_GRANT_REVOKE, [5, 0, 0, 0]),
            ENOENT,
        ),
    ] {
        check(name, got, want);
    }
    // A grant of our own, to the peer, revoked at once.
    let g = hc(HC_GRANT_ACCESS, [own, peer, RO, 0]);
    check("access.own_page", i64::from(g >= 0), 1);
    check(
        "revoke.own_unmapped",
        hc(HC_GRANT_REVOKE, [g as u64, 0, 0, 0]),
        0,
    );
    check(
        "revoke.twice",
        hc(HC_GRANT_REVOKE, [g as u64, 0, 0, 0]),
        ENOENT,
    );
    // The read-only grant made for us: mapped, read, then misused.
    let h = map(peer, ro, hole, RO);
    check("map.read_only", i64::from(h >= 0), 1);
    check(
        "read.pattern",
        i64::from((0..PAGE_SIZE / 8).all(|i| raw::read(hole + i * 8) == gnt::pattern(i))),
        1,
    );
    check("map.same_hole_again", map(peer, ro, hole, RO), EEXIST);
    check(
        "release.mapped_grant",
        memory::release(hole, 1).map_or_else(|e| e.code(), |n| n as i64),
        ENOENT,
    );
    check(
        "populate.mapped_grant",
        memory::populate(hole, 1).map_or_else(|e| e.code(), |n| n as i64),
        EEXIST,
    );
    let (n, failed) = CHECKS.counts();
    pvabi::println!("gnthostile: {n} checks, {failed} failed");
    if failed != 0 {
        return 1;
    }
    pvabi::println!("gnthostile: writing to a read-only grant");
    raw::write(hole + 8, 0xbad);
    pvabi::println!("gnthostile: FAILED the write to a read-only grant went through");
    1
}
