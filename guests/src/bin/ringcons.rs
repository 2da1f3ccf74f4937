//! The consumer (back) of a bulk ring over granted pages (pvabi 1.3).
//!
//! Command line: `peer=<id>` (the front: `ringprod` or `ringhostile`).
//! Connects with [`Back::connect`] (the front's typed config page, read by
//! grant copy), then takes every published request, checks its data page
//! against its checksum, answers it (the page is free again), and publishes
//! the answers of a whole batch at once, notifying only when the front
//! asked. With nothing to do it arms the request event and sleeps on the
//! ring's port. After a wake-up, and when the ring turns impossible, it
//! checks whether the front is alive ([`Back::front_alive`]): when a front
//! dies the hypervisor swaps zeroed pages in under our mappings, so we
//! never fault, and we unmap them ourselves.
//!
//! It ends in one of three ways, each with a clean teardown (pages
//! unmapped, port closed, holes populated) and exit 0:
//! - the end request (length 0): `ringcons: received <R> requests, <B>
//!   bytes, <E> bad checksums, <N> notifications, <W> waits` and
//!   `ringcons: bench requests=<R> notifications=<N> guest_tsc=<G>
//!   calls=<C>` (its own ticks between hypercalls, [`pvabi::guest::meter`]);
//! - the front died: `ringcons: front died after <R> requests (<X> MiB):
//!   port unbound, <M> mappings already removed` (0: the hypervisor keeps
//!   them, with zeroed pages, until we unmap);
//! - the front overran the ring: `ringcons: peer overran the ring: <e>`.
//!
//! then `ringcons: torn down`. Failures print `ringcons: FAILED ...` and
//! exit 1.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::ringio::{self, BULK_BAD_REQ, BULK_BAD_SUM, BULK_OK, Back, BulkReq, BulkRsp};
use kestrel_guests::{num_arg, raw};
use pvabi::guest::{evtchn, memory, meter};
use pvabi::ring::RingError;
use pvabi::{PAGE_SIZE, StartInfo};

pvabi::entry_point!(main);

macro_rules! fail {
    ($($t:tt)*) => {{
        pvabi::println!("ringcons: FAILED {}", format_args!($($t)*));
        return 1;
    }};
}

/// How a run ended.
enum End {
    Stream,
    Died,
    Overrun(RingError),
}

/// Checks one request against its data page: the response status.
fn serve(b: &Back, req: &BulkReq) -> u32 {
    let len = u64::from(req.len);
    let Some(&at) = b
        .data
        .get(..b.data_pages)
        .and_then(|d| d.get(req.buf as usize))
    else {
        return BULK_BAD_REQ;
    };
    if len > PAGE_SIZE || !len.is_multiple_of(8) {
        return BULK_BAD_REQ;
    }
    let sum = ringio::checksum((0..len / 8).map(|i| raw::read(at + i * 8)));
    if sum == req.sum {
        BULK_OK
    } else {
        BULK_BAD_SUM
    }
}

fn main(si: &StartInfo) -> i32 {
    let peer = num_arg(si, "peer", 0) as u32;
    let Some(free) = memory::free_region() else {
        fail!("no free region");
    };
    let mut b = match Back::connect(peer, free.start) {
        Ok(b) => b,
        Err(e) => fail!("connect to {peer}: {e:?}"),
    };
    pvabi::println!(
        "ringcons: connected to domain {peer}: {} slots, {} data pages",
        b.ring.slots(),
        b.data_pages
    );
    let (mut reqs, mut bytes, mut bad, mut notifies, mut waits) = (0u64, 0u64, 0u64, 0u64, 0u64);
    meter::start();
    let end = 'run: loop {
        let mut ended = false;
        loop {
            let req = match b.ring.pop_request() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => break 'run End::Overrun(e),
            };
            let status = if req.len == 0 {
                ended = true;
                BULK_OK
            } else {
                let s = serve(&b, &req);
                reqs += 1;
                bytes += u64::from(req.len);
                if s != BULK_OK {
                    bad += 1;
                }
                s
            };
            let rsp = BulkRsp {
                buf: req.buf,
                status,
                seq: req.seq,
            };
            if b.ring.push_response(&rsp).is_err() {
                fail!("no slot for a response");
            }
            if ended {
                break;
            }
        }
        if b.ring.publish_responses() {
            // EBUSY: the front died meanwhile; noticed below.
            let _ = evtchn::send(b.port);
            notifies += 1;
        }
        if ended {
            break End::Stream;
        }
        match b.ring.final_check_for_requests() {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => break End::Overrun(e),
        }
        waits += 1;
        if !ringio::wait_notified(b.port, 60_000_000_000) {
            fail!("no request for 60 s after {reqs}");
        }
        if !b.front_alive() {
            break End::Died;
        }
    };
    let m = meter::stop();
    // A front that dies mid-stream leaves zeroed pages behind (the
    // hypervisor swaps them in), which read as an impossible index.
    let end = match end {
        End::Overrun(_) if !b.front_alive() => End::Died,
        end => end,
    };
    match end {
        End::Stream => {
            pvabi::println!(
                "ringcons: received {reqs} requests, {bytes} bytes, {bad} bad checksums, \
                 {notifies} notifications, {waits} waits"
            );
            pvabi::println!(
                "ringcons: bench requests={reqs} notifications={notifies} guest_tsc={} calls={}",
                m.guest_ticks,
                m.calls
            );
        }
        End::Died => {
            // A dying front's grants are revoked first and its ports closed
            // after (`Domain::finish`), so the copy that told us may come a
            // moment before the port is unbound: wait (at most 60 s) until a
            // send says so.
            if !kestrel_guests::wait_closed(b.port) {
                fail!("the dead front's port is still bound after 60 s");
            }
            match b.teardown() {
                Ok(gone) => pvabi::println!(
                    "ringcons: front died after {reqs} requests ({} MiB): port unbound, \
                     {gone} mappings already removed",
                    bytes >> 20
                ),
                Err(e) => fail!("teardown: {e:?}"),
            }
            pvabi::println!("ringcons: torn down");
            return 0;
        }
        End::Overrun(e) => pvabi::println!("ringcons: peer overran the ring: {e}"),
    }
    match b.teardown() {
        Ok(0) => pvabi::println!("ringcons: torn down"),
        other => fail!("teardown gave {other:?}, want every mapping still there"),
    }
    0
}
