//! Triple-faults: with no IDT loaded, any exception escalates to a shutdown.
#![no_std]
#![no_main]

pvabi::entry_point!(main);

fn main(_: &pvabi::StartInfo) -> i32 {
    pvabi::println!("about to triple-fault");
    #[allow(unsafe_code)]
    // SAFETY: deliberately faults (ud2) with no IDT: the CPU shuts down.
    unsafe {
        core::arch::asm!("ud2", options(noreturn))
    }
}
