//! Shared pages, the mapping side (pvabi 1.2 grants).
//!
//! Command line: `peer=<id>` (the `gntshare` domain). Binds to the peer's
//! port 1 (retrying until it exists: by then every grant is made), releases
//! two pages of its free region to make holes H1 and H2, maps grant
//! [`gnt::SHARED`] at H1 and [`gnt::KEPT`] at H2, checks the pattern,
//! writes [`gnt::REPLY`] at word 1 of H1 and sends. When the peer answers
//! (it has revoked, deferred), a second map of the revoked grant gets
//! `ENOENT`, and we unmap H1 (a second unmap gets `ENOENT`). Then we wait
//! for the peer to end with H2 still mapped: its end must swap a zeroed
//! page of ours in under the mapping (never the dead granter's frame), which
//! we can write and then unmap, after which H2 is a hole again (populate
//! succeeds).
//!
//! Output: `gntmap: mapped refs 0 and 3, pattern ok, reply sent`, `gntmap:
//! unmapped after the revoke`, `gntmap: granter ended, its page was
//! swapped for a zeroed one, unmapped`; failures print `gntmap: FAILED ...` and exit 1.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::{bind_retry, gnt, num_arg, raw, wait_closed, wait_port};
use pvabi::guest::grant;
use pvabi::guest::{evtchn, memory};
use pvabi::{Error, PAGE_SIZE, StartInfo};

pvabi::entry_point!(main);

macro_rules! fail {
    ($($t:tt)*) => {{
        pvabi::println!("gntmap: FAILED {}", format_args!($($t)*));
        return 1;
    }};
}

fn main(si: &StartInfo) -> i32 {
    let peer = num_arg(si, "peer", 0) as u32;
    let port = match bind_retry(peer, gnt::MAP_PORT) {
        Ok(p) => p,
        Err(e) => fail!("bind to {peer}: {e:?}"),
    };
    let Some(free) = memory::free_region() else {
        fail!("no free region");
    };
    let (h1, h2, h3) = (
        free.start,
        free.start + PAGE_SIZE,
        free.start + 2 * PAGE_SIZE,
    );
    if memory::release(h1, 3) != Ok(3) {
        fail!("release of the holes");
    }
    let (m1, m2) = match (
        grant::map(peer, gnt::SHARED, h1, false),
        grant::map(peer, gnt::KEPT, h2, false),
    ) {
        (Ok(m1), Ok(m2)) => (m1, m2),
        other => fail!("maps gave {other:?}"),
    };
    for (at, what) in [(h1, "shared"), (h2, "kept")] {
        if (0..PAGE_SIZE / 8).any(|i| raw::read(at + i * 8) != gnt::pattern(i)) {
            fail!("the {what} page does not hold the pattern");
        }
    }
    raw::write(h1 + 8, gnt::REPLY);
    if evtchn::send(port).is_err() {
        fail!("send");
    }
    pvabi::println!("gntmap: mapped refs 0 and 3, pattern ok, reply sent");
    if !wait_port(port) {
        fail!("no answer from the granter");
    }
    if grant::map(peer, gnt::SHARED, h3, false) != Err(Error::NoEntry) {
        fail!("a revoked grant could be mapped again");
    }
    if grant::unmap(m1).is_err() || grant::unmap(m1) != Err(Error::NoEntry) {
        fail!("unmap, or a second unmap");
    }
    pvabi::println!("gntmap: unmapped after the revoke");
    if !wait_closed(port) {
        fail!("the granter never ended");
    }
    // The mapping is still there, but the granter's page is not: a zeroed
    // page of ours took its place, writable as the mapping was.
    if (0..PAGE_SIZE / 8).any(|i| raw::read(h2 + i * 8) != 0) {
        fail!("the kept mapping still shows the dead granter's page");
    }
    raw::write(h2, 1);
    if grant::unmap(m2).is_err() || grant::unmap(m2) != Err(Error::NoEntry) {
        fail!("unmapping the dead granter's page, or a second unmap");
    }
    if memory::populate(h1, 3) != Ok(3) {
        fail!("the holes could not be populated again");
    }
    pvabi::println!("gntmap: granter ended, its page was swapped for a zeroed one, unmapped");
    0
}
