//! Prints a greeting with what its start info says, then shuts down cleanly.
#![no_std]
#![no_main]

pvabi::entry_point!(main);

fn main(start: &pvabi::StartInfo) -> i32 {
    let cmdline = core::str::from_utf8(start.cmdline()).unwrap_or("?");
    pvabi::println!(
        "hello from domain {}: {} MiB, pvabi {:#x}, cmdline \"{}\"",
        start.domain_id,
        start.memory_bytes >> 20,
        start.abi_version,
        cmdline
    );
    0
}
