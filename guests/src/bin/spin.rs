//! Spins forever without a hypercall: only timer preemption lets the other
//! guests run.
#![no_std]
#![no_main]

pvabi::entry_point!(main);

fn main(_: &pvabi::StartInfo) -> i32 {
    pvabi::println!("spinning forever");
    loop {
        core::hint::spin_loop();
    }
}
