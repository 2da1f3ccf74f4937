//! A CPU-bound guest for the scheduler tests: spins reading the PV clock
//! (no exit) until `ms=` milliseconds (default 3000) of system time have
//! passed since it started, printing nothing, then reports the CPU time
//! the hypervisor charged it (`HC_VCPU_INFO`) and the wall time it ran:
//! `burn: cpu_ns=<N> wall_ns=<W>`, and exits 0.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::num_arg;
use pvabi::guest::{time, vcpu};

pvabi::entry_point!(main);

fn main(si: &pvabi::StartInfo) -> i32 {
    let t0 = time::now_ns();
    let end = t0.saturating_add(num_arg(si, "ms", 3000).saturating_mul(1_000_000));
    while time::now_ns() < end {
        core::hint::spin_loop();
    }
    let wall = time::now_ns().saturating_sub(t0);
    match vcpu::info(0) {
        Ok(i) => {
            pvabi::println!("burn: cpu_ns={} wall_ns={wall}", i.cpu_time_ns);
            0
        }
        Err(e) => {
            pvabi::println!("burn: vcpu info FAILED: {e}");
            1
        }
    }
}
