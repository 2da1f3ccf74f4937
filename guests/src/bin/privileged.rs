//! Executes INVD, which the hypervisor never lets a guest run (it would
//! throw away other domains' cached writes): the guest must be killed.
#![no_std]
#![no_main]

pvabi::entry_point!(main);

fn main(_: &pvabi::StartInfo) -> i32 {
    pvabi::println!("executing INVD");
    #[allow(unsafe_code)]
    // SAFETY: intercepted by the hypervisor, which kills this domain.
    unsafe {
        core::arch::asm!("invd", options(nostack))
    };
    pvabi::println!("ERROR: INVD returned");
    1
}
