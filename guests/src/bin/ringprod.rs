//! The producer (front) of a bulk ring over granted pages (pvabi 1.3).
//!
//! Command line: `peer=<id>` (the `ringcons` domain), `mib=<N>` (how much
//! to send, default 1024 = 1 GiB), `crash_after=<M>` (crash on purpose
//! once M MiB are sent and answered: the death test), `hostile=<id>` (a
//! `ringhostile` domain to grant a page to and revoke at once, and to offer
//! a port to, see [`kestrel_guests::ringio::HOSTILE_REVOKED_GREF`]).
//!
//! Sets the ring up with [`Front::setup`], then fills each free data page
//! with [`ringio::pattern`] of its request's sequence number, pushes a
//! request naming it with the [`ringio::checksum`], and publishes whatever
//! it pushed in one go (one notification at most, only when the back asked
//! for one); it sleeps (event suppression: [`FrontRing`]'s final check)
//! only when no data page is free. A request of length 0 ends the stream.
//! Then it waits for the back to close its port and revokes every grant:
//! all revokes must be immediate (the back unmapped everything).
//!
//! Output: `ringprod: ring up: <S> slots, <D> data pages, port <P>`,
//! `ringprod: sent <R> requests (<X> MiB) in <N> notifications, <W> waits`,
//! `ringprod: bench requests=<R> notifications=<N> tsc=<T> guest_tsc=<G>
//! calls=<C>` (the transfer loop's TSC ticks, and its own ticks between
//! hypercalls: [`pvabi::guest::meter`]), `ringprod: all grants revoked,
//! none still mapped`; with `crash_after`, as soon as M MiB of requests
//! are published (still in flight, unanswered):
//! `ringprod: crashing on purpose after <M> MiB` and a crash. Failures
//! print `ringprod: FAILED ...` and exit 1.
//!
//! [`FrontRing`]: pvabi::ring::FrontRing
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::ringio::{
    self, BULK_DATA_PAGES, BULK_OK, BulkReq, Front, HOSTILE_PORT, HOSTILE_REVOKED_GREF,
};
use kestrel_guests::{num_arg, raw, wait_closed};
use pvabi::guest::grant::{self, Revoked};
use pvabi::guest::{evtchn, memory, meter, sched, time};
use pvabi::{PAGE_SIZE, StartInfo};

pvabi::entry_point!(main);

macro_rules! fail {
    ($($t:tt)*) => {{
        pvabi::println!("ringprod: FAILED {}", format_args!($($t)*));
        return 1;
    }};
}

const WORDS: u64 = PAGE_SIZE / 8;

/// Fills the page at `at` with the data of request `seq`; its checksum.
fn fill(at: u64, seq: u64) -> u64 {
    ringio::checksum((0..WORDS).map(|i| {
        let w = ringio::pattern(seq, i);
        raw::write(at + i * 8, w);
        w
    }))
}

fn main(si: &StartInfo) -> i32 {
    let peer = num_arg(si, "peer", 0) as u32;
    let mib = num_arg(si, "mib", 1024);
    let crash_after = num_arg(si, "crash_after", 0);
    let hostile = num_arg(si, "hostile", 0) as u32;
    let Some(free) = memory::free_region() else {
        fail!("no free region");
    };
    let mut f = match Front::setup(peer, free.start) {
        Ok(f) => f,
        Err(e) => fail!("setup: {e:?}"),
    };
    if hostile != 0 {
        // A grant the hostile guest may try after its revoke, then a port
        // for it: once it has bound, the revoke is done.
        let page = free.start + (BULK_DATA_PAGES as u64 + 2) * PAGE_SIZE;
        match grant::access(page, hostile, false) {
            Ok(HOSTILE_REVOKED_GREF) => {}
            other => fail!("grant for the hostile guest gave {other:?}"),
        }
        if grant::revoke(HOSTILE_REVOKED_GREF, 0) != Ok(Revoked::Done) {
            fail!("revoke of the hostile guest's grant");
        }
        if evtchn::alloc_unbound(hostile) != Ok(HOSTILE_PORT) {
            fail!("port for the hostile guest");
        }
        // Wait for it to bind (then a send is no longer `EBUSY`), so that
        // `EBUSY` at the end means it has gone.
        let deadline = time::now_ns() + 30_000_000_000;
        while evtchn::send(HOSTILE_PORT) == Err(pvabi::Error::Busy) {
            if time::now_ns() > deadline {
                fail!("the hostile guest never bound its port");
            }
            let _ = time::sleep_ns(1_000_000);
        }
    }
    if !f.wait_connected(30_000_000_000) {
        fail!("the back never bound the ring's port");
    }
    pvabi::println!(
        "ringprod: ring up: {} slots, {} data pages, port {}",
        f.ring.slots(),
        BULK_DATA_PAGES,
        f.port
    );
    let total = mib * (1 << 20) / PAGE_SIZE;
    let stop = if crash_after == 0 {
        total
    } else {
        (crash_after * (1 << 20) / PAGE_SIZE).min(total)
    };
    let mut free_bufs = [0u32; BULK_DATA_PAGES];
    for (i, b) in free_bufs.iter_mut().enumerate() {
        *b = i as u32;
    }
    let mut nfree = BULK_DATA_PAGES;
    let (mut sent, mut notifies, mut waits) = (0u64, 0u64, 0u64);
    meter::start();
    let t0 = time::read_tsc();
    loop {
        loop {
            match f.ring.pop_response() {
                Ok(Some(r)) if (r.buf as usize) < BULK_DATA_PAGES && r.status == BULK_OK => {
                    free_bufs[nfree] = r.buf;
                    nfree += 1;
                }
                Ok(Some(r)) => fail!("bad response {r:?}"),
                Ok(None) => break,
                Err(e) => fail!("ring: {e}"),
            }
            if nfree > BULK_DATA_PAGES {
                fail!("more responses than requests");
            }
        }
        if sent == stop && nfree == BULK_DATA_PAGES {
            break;
        }
        while nfree > 0 && sent < stop {
            nfree -= 1;
            let buf = free_bufs[nfree];
            let sum = fill(f.data[buf as usize], sent);
            let req = BulkReq {
                buf,
                len: PAGE_SIZE as u32,
                seq: sent,
                sum,
            };
            if f.ring.push_request(&req).is_err() {
                fail!("ring full with a free data page");
            }
            sent += 1;
        }
        if f.ring.publish_requests() {
            if evtchn::send(f.port).is_err() {
                fail!("send");
            }
            notifies += 1;
        }
        if crash_after != 0 && sent == stop {
            // Mid-transfer: requests still in flight, the back maybe
            // reading our pages this very moment.
            pvabi::println!("ringprod: crashing on purpose after {crash_after} MiB");
            sched::crash(3);
        }
        if nfree == 0 || sent == stop {
            match f.ring.final_check_for_responses() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => fail!("ring: {e}"),
            }
            waits += 1;
            if !ringio::wait_notified(f.port, 60_000_000_000) {
                fail!("no response for 60 s after {sent} requests");
            }
        }
    }
    let ticks = time::read_tsc().wrapping_sub(t0);
    let m = meter::stop();
    pvabi::println!(
        "ringprod: sent {} requests ({} MiB) in {} notifications, {} waits",
        sent,
        (sent * PAGE_SIZE) >> 20,
        notifies,
        waits
    );
    pvabi::println!(
        "ringprod: bench requests={sent} notifications={notifies} tsc={ticks} guest_tsc={} calls={}",
        m.guest_ticks,
        m.calls
    );
    // End of stream: a request of length 0.
    let end = BulkReq {
        buf: 0,
        len: 0,
        seq: sent,
        sum: 0,
    };
    if f.ring.push_request(&end).is_err() {
        fail!("no slot for the end request");
    }
    if f.ring.publish_requests() && evtchn::send(f.port).is_err() {
        fail!("send");
    }
    if !wait_closed(f.port) {
        fail!("the back never closed its port");
    }
    // Keep the grants up until the hostile guest has ended: its checks
    // need them.
    if hostile != 0 && !wait_closed(HOSTILE_PORT) {
        fail!("the hostile guest never ended");
    }
    match f.teardown() {
        Ok(0) => pvabi::println!("ringprod: all grants revoked, none still mapped"),
        other => fail!("teardown gave {other:?}, want no deferred revoke"),
    }
    0
}
