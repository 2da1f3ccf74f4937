//! A child for the control domain's create/destroy cycles (see `ctl`): it
//! shares a page and an event channel with its creator so that destroying
//! it exercises the hypervisor's clean-up of both.
//!
//! Command line: `peer=<id>`. Grants the first page of its free region
//! (filled with [`kestrel_guests::gnt::pattern`]) read-write to the peer,
//! as its first grant (reference 0), then offers its first port (1) to the
//! peer, and waits to be destroyed.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::{gnt, num_arg, raw};
use pvabi::PAGE_SIZE;
use pvabi::guest::{evtchn, grant, memory, sched};

pvabi::entry_point!(main);

fn main(si: &pvabi::StartInfo) -> i32 {
    let peer = num_arg(si, "peer", 0) as u32;
    let Some(free) = memory::free_region() else {
        pvabi::println!("sharer: FAILED no free region");
        return 1;
    };
    for i in 0..PAGE_SIZE / 8 {
        raw::write(free.start + i * 8, gnt::pattern(i));
    }
    // The grant first: once the peer can bind the port, the grant exists.
    if grant::access(free.start, peer, false) != Ok(0) || evtchn::alloc_unbound(peer) != Ok(1) {
        pvabi::println!("sharer: FAILED to share");
        return 1;
    }
    loop {
        let _ = sched::block(None);
    }
}
