//! Shared pages, the granting side (pvabi 1.2 grants).
//!
//! Command line: `peer=<id>` (the `gntmap` domain), `hostile=<id>` (the
//! `gnthostile` domain). Takes three pages of its free region, A, B and C:
//! writes [`gnt::pattern`] into A, B and C, then grants, in this order
//! (references from 0, see [`kestrel_guests::gnt`]): A read-write to the
//! peer, C read-write to the hostile guest (revoked at once), B read-only
//! to the hostile guest, C read-write to the peer (kept). Then it offers
//! port 1 to the peer and port 2 to the hostile guest.
//!
//! The exchange: the peer maps A, checks the pattern, writes
//! [`gnt::REPLY`] at word 1 and sends; we check the reply, check that A
//! cannot be released while granted (`EBUSY`), revoke A's grant (deferred:
//! still mapped), send; the peer unmaps, which completes the revoke and
//! raises our port 1; then the reference is free (`ENOENT`) and A can be
//! released. Then we wait for the hostile guest to end (it is killed for
//! writing to its read-only mapping of B), after which B's grant is no
//! longer mapped (its revoke is immediate), and exit 0 with C still
//! granted and mapped by the peer: our end must unmap it there.
//!
//! Output: `gntshare: granted refs 0..3, ports offered`, `gntshare: reply
//! seen, revoke deferred until unmap`, `gntshare: hostile gone, its
//! mapping torn down`; failures print `gntshare: FAILED ...` and exit 1.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::{gnt, num_arg, raw, wait_closed, wait_port};
use pvabi::guest::grant::{self, Revoked};
use pvabi::guest::{evtchn, memory};
use pvabi::{Error, PAGE_SIZE, StartInfo};

pvabi::entry_point!(main);

macro_rules! fail {
    ($($t:tt)*) => {{
        pvabi::println!("gntshare: FAILED {}", format_args!($($t)*));
        return 1;
    }};
}

fn main(si: &StartInfo) -> i32 {
    let peer = num_arg(si, "peer", 0) as u32;
    let hostile = num_arg(si, "hostile", 0) as u32;
    let Some(free) = memory::free_region() else {
        fail!("no free region");
    };
    let (a, b, c) = (
        free.start,
        free.start + PAGE_SIZE,
        free.start + 2 * PAGE_SIZE,
    );
    for page in [a, b, c] {
        for i in 0..PAGE_SIZE / 8 {
            raw::write(page + i * 8, gnt::pattern(i));
        }
    }
    let grants = [
        (a, peer, false, gnt::SHARED),
        (c, hostile, false, gnt::REVOKED),
        (b, hostile, true, gnt::READ_ONLY),
        (c, peer, false, gnt::KEPT),
    ];
    for (page, to, ro, want) in grants {
        match grant::access(page, to, ro) {
            Ok(r) if r == want => {}
            other => fail!("access({page:#x}, {to}, ro={ro}) gave {other:?}, want Ok({want})"),
        }
    }
    if grant::revoke(gnt::REVOKED, 0) != Ok(Revoked::Done) {
        fail!("revoke of an unmapped grant was not immediate");
    }
    match (evtchn::alloc_unbound(peer), evtchn::alloc_unbound(hostile)) {
        (Ok(gnt::MAP_PORT), Ok(gnt::HOSTILE_PORT)) => {}
        other => fail!("alloc_unbound gave {other:?}"),
    }
    pvabi::println!("gntshare: granted refs 0..3, ports offered");
    if !wait_port(gnt::MAP_PORT) {
        fail!("no word from the peer");
    }
    let reply = raw::read(a + 8);
    if reply != gnt::REPLY || raw::read(a) != gnt::pattern(0) {
        fail!("page A holds {reply:#x} at word 1, want the reply");
    }
    if memory::release(a, 1) != Err(Error::Busy) {
        fail!("a granted page could be released");
    }
    match grant::revoke(gnt::SHARED, gnt::MAP_PORT) {
        Ok(Revoked::Deferred) => {}
        other => fail!("revoke of a mapped grant gave {other:?}, want Deferred"),
    }
    if evtchn::send(gnt::MAP_PORT).is_err() {
        fail!("send to the peer");
    }
    // The peer unmaps: the revoke completes and raises our port.
    if !wait_port(gnt::MAP_PORT) {
        fail!("the revoke never completed");
    }
    if grant::revoke(gnt::SHARED, 0) != Err(Error::NoEntry) {
        fail!("the reference is not free after the deferred revoke");
    }
    if memory::release(a, 1) != Ok(1) {
        fail!("page A could not be released after the revoke");
    }
    pvabi::println!("gntshare: reply seen, revoke deferred until unmap");
    if !wait_port(gnt::HOSTILE_PORT) || !wait_closed(gnt::HOSTILE_PORT) {
        fail!("the hostile guest did not bind and end");
    }
    match grant::revoke(gnt::READ_ONLY, 0) {
        Ok(Revoked::Done) => {}
        other => fail!("revoke of the dead guest's grant gave {other:?}, want Done"),
    }
    pvabi::println!("gntshare: hostile gone, its mapping torn down");
    0
}
