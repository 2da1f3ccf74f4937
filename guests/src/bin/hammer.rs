//! Makes 1,000,000 hypercalls and checks every return value.
#![no_std]
#![no_main]

pvabi::entry_point!(main);

const CALLS: u32 = 1_000_000;

fn main(_: &pvabi::StartInfo) -> i32 {
    let mut bad = 0u32;
    for i in 0..CALLS {
        // Alternate a valid call (yield: returns 0) and an invalid one (an
        // unknown number: must return ENOSYS).
        let (nr, want) = if i % 2 == 0 {
            (pvabi::HC_YIELD, 0)
        } else {
            (0xdead, pvabi::ENOSYS as u64)
        };
        let got = pvabi::guest::hypercall(nr, 0, 0, 0);
        if got != want {
            bad += 1;
            if bad < 5 {
                pvabi::println!("call {i}: number {nr:#x} returned {got:#x}, expected {want:#x}");
            }
        }
    }
    pvabi::println!("{CALLS} hypercalls, {bad} wrong return values");
    if bad == 0 { 0 } else { 1 }
}
