//! A hostile ring front and grant user (pvabi 1.3): every misuse of the
//! 1.3 grant calls gets its documented error, a notification flood harms
//! nobody, and an overrun of the ring's indices is detected by the back,
//! which tears down cleanly.
//!
//! Command line: `peer=<id>` (its `ringcons` back), `victim=<id>` (a
//! `ringprod hostile=<this id>`, whose grants all belong to another
//! domain but one, [`HOSTILE_REVOKED_GREF`], made to us and revoked).
//!
//! Steps: set up an honest ring with [`Front::setup`] and pass 8 requests
//! (answered `BULK_OK`); bind to the victim's [`HOSTILE_PORT`] (by then its
//! grant to us is revoked) and check `HC_GRANT_COPY`, `HC_GRANT_MAP`,
//! `HC_GRANT_QUERY` and `HC_GRANT_SET_MAX` misuse in the documented order;
//! send 5,000 notifications to each peer; then publish a `req_prod` far
//! past anything possible and notify. The back must report the overrun and
//! close its port; our revokes are then all immediate (it unmapped).
//!
//! Prints `ringhostile: <name> ok|FAILED ...` per check, then
//! `ringhostile: <N> checks, <M> failed`; exit 0 if none failed.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::Ordering;

use kestrel_guests::ringio::{
    self, BULK_DATA_PAGES, BULK_OK, BulkReq, Front, HOSTILE_PORT, HOSTILE_REVOKED_GREF,
};
use kestrel_guests::{Checks, bind_retry, num_arg, raw, wait_closed};
use pvabi::guest::{evtchn, grant, hypercall6, memory};
use pvabi::{
    E2BIG, EFAULT, EINVAL, ENOENT, EPERM, Error, GRANT_DEFAULT_LIMIT, GRANT_MAX_CEILING,
    HC_GRANT_COPY, PAGE_SIZE, StartInfo,
};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("ringhostile");

fn check(name: &str, got: i64, want: i64) -> bool {
    CHECKS.check(name, got, want)
}

fn st<T>(r: Result<T, Error>) -> i64 {
    r.map_or_else(|e| e.code(), |_| 0)
}

/// A raw `HC_GRANT_COPY`: granter, ref, offset, local, len, flags.
fn copy(a: [u64; 6]) -> i64 {
    hypercall6(HC_GRANT_COPY, a) as i64
}

fn main(si: &StartInfo) -> i32 {
    let peer = num_arg(si, "peer", 0) as u32;
    let victim = num_arg(si, "victim", 0) as u32;
    let me = si.domain_id;
    let Some(free) = memory::free_region() else {
        pvabi::println!("ringhostile: FAILED no free region");
        return 1;
    };
    let mut f = match Front::setup(peer, free.start) {
        Ok(f) => f,
        Err(e) => {
            pvabi::println!("ringhostile: FAILED setup: {e:?}");
            return 1;
        }
    };
    check(
        "the back connected",
        i64::from(f.wait_connected(30_000_000_000)),
        1,
    );
    // Honest first: 8 requests, all answered OK.
    for k in 0..8u32 {
        let at = f.data[k as usize];
        let sum = ringio::checksum((0..PAGE_SIZE / 8).map(|i| {
            let w = ringio::pattern(u64::from(k), i);
            raw::write(at + i * 8, w);
            w
        }));
        let req = BulkReq {
            buf: k,
            len: PAGE_SIZE as u32,
            seq: k.into(),
            sum,
        };
        check(
            "push",
            st(f.ring.push_request(&req).map_err(|_| Error::Busy)),
            0,
        );
    }
    if f.ring.publish_requests() {
        check("notify", st(evtchn::send(f.port)), 0);
    }
    let mut answered = 0;
    while answered < 8 {
        match f.ring.pop_response() {
            Ok(Some(r)) => {
                check("honest response", r.status.into(), BULK_OK.into());
                answered += 1;
            }
            Ok(None) => {
                if !matches!(f.ring.final_check_for_responses(), Ok(true))
                    && !ringio::wait_notified(f.port, 30_000_000_000)
                {
                    check("honest responses arrived", answered, 8);
                    break;
                }
            }
            Err(_) => break,
        }
    }
    check("8 honest requests answered", answered, 8);

    // The victim's grants: one revoked before its port was offered, the
    // others made to another domain.
    let vport = bind_retry(victim, HOSTILE_PORT);
    check("bind to the victim", st(vport), 0);
    let v = u64::from(victim);
    let buf = free.start + (BULK_DATA_PAGES as u64 + 2) * PAGE_SIZE;
    let r = u64::from(HOSTILE_REVOKED_GREF);
    check(
        "copy of a revoked grant",
        copy([v, r, 0, buf, 8, 0]),
        ENOENT,
    );
    check(
        "copy to a revoked grant",
        copy([v, r, 0, buf, 8, 1]),
        ENOENT,
    );
    let hole = buf + PAGE_SIZE;
    check("release a hole", st(memory::release(hole, 1)), 0);
    check(
        "map of a revoked grant",
        st(grant::map(victim, HOSTILE_REVOKED_GREF, hole, false)),
        ENOENT,
    );
    check(
        "map of another's config",
        st(grant::map(victim, 0, hole, true)),
        EPERM,
    );
    check(
        "copy of another's config",
        copy([v, 0, 0, buf, 8, 0]),
        EPERM,
    );
    check("copy to another's ring", copy([v, 1, 0, buf, 8, 1]), EPERM);
    check(
        "copy of a never-granted ref",
        copy([v, 900, 0, buf, 8, 0]),
        ENOENT,
    );
    check(
        "copy of a ref past the limit",
        copy([v, 5000, 0, buf, 8, 0]),
        EINVAL,
    );
    check("copy with flags 2", copy([v, 0, 0, buf, 8, 2]), EINVAL);
    check(
        "copy with a wide ref",
        copy([v, 1 << 32, 0, buf, 8, 0]),
        EINVAL,
    );
    check("copy of 0 bytes", copy([v, 0, 0, buf, 0, 0]), EINVAL);
    check("copy of 4097 bytes", copy([v, 0, 0, buf, 4097, 0]), E2BIG);
    check(
        "copy across the page end",
        copy([v, 0, 4000, buf, 200, 0]),
        EINVAL,
    );
    check(
        "copy at offset 2^64-8",
        copy([v, 0, u64::MAX - 7, buf, 16, 0]),
        EINVAL,
    );
    check(
        "copy from oneself",
        copy([me.into(), 0, 0, buf, 8, 0]),
        EINVAL,
    );
    check("copy into a hole", copy([v, 0, 0, hole, 8, 0]), EFAULT);
    check(
        "copy past memory",
        copy([v, 0, 0, si.memory_bytes - 4, 8, 0]),
        EFAULT,
    );
    check(
        "copy from no domain",
        copy([0x7fff_0000, 0, 0, buf, 8, 0]),
        ENOENT,
    );
    check("populate the hole", st(memory::populate(hole, 1)), 0);

    // Limits: reported, raised, never lowered, capped.
    let q = grant::query();
    check("query", st(q), 0);
    let q = q.unwrap_or_default();
    check(
        "grants in use",
        q.grants_in_use.into(),
        2 + BULK_DATA_PAGES as i64,
    );
    check(
        "grant limit",
        q.grants_max.into(),
        GRANT_DEFAULT_LIMIT as i64,
    );
    check("maps in use", q.maps_in_use.into(), 0);
    check("ceiling", q.ceiling.into(), GRANT_MAX_CEILING as i64);
    let d = GRANT_DEFAULT_LIMIT as u32;
    let top = GRANT_MAX_CEILING as u32;
    check(
        "lower the grant limit",
        st(grant::set_max(d - 1, d)),
        EINVAL,
    );
    check("lower the map limit", st(grant::set_max(d, 1)), EINVAL);
    check("over the ceiling", st(grant::set_max(top + 1, d)), E2BIG);
    check(
        "lower wins over too big",
        st(grant::set_max(top + 1, 0)),
        EINVAL,
    );
    check("raise", st(grant::set_max(4 * d, 2 * d)), 0);
    check("raise to the same", st(grant::set_max(4 * d, 2 * d)), 0);
    let q = grant::query().unwrap_or_default();
    check(
        "raised limits",
        i64::from((q.grants_max, q.maps_max) == (4 * d, 2 * d)),
        1,
    );
    check(
        "query into a hole",
        hypercall6(pvabi::HC_GRANT_QUERY, [si.memory_bytes, 0, 0, 0, 0, 0]) as i64,
        EFAULT,
    );

    // A flood of notifications to both peers: coalesced, harmless.
    let vport = vport.unwrap_or(0);
    let mut sends_failed = 0;
    for _ in 0..5000 {
        sends_failed += i64::from(evtchn::send(vport).is_err());
        sends_failed += i64::from(evtchn::send(f.port).is_err());
    }
    check("10000 notifications sent", sends_failed, 0);

    // The overrun: req_prod far past anything possible.
    let words = raw::page_words(f.ring_gpa);
    let prod = words[0].load(Ordering::Relaxed);
    words[0].store(prod.wrapping_add(0x4000_0000), Ordering::Release);
    check("notify the overrun", st(evtchn::send(f.port)), 0);
    check(
        "the back closed its port",
        i64::from(wait_closed(f.port)),
        1,
    );
    check(
        "every revoke immediate",
        f.teardown().map_or(-1, i64::from),
        0,
    );
    let _ = evtchn::close(vport);
    let (n, failed) = CHECKS.counts();
    pvabi::println!("ringhostile: {n} checks, {failed} failed");
    i32::from(failed != 0)
}
