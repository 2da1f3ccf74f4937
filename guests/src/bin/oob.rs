//! Writes just past the end of its own memory: the hypervisor must kill it
//! (and only it).
#![no_std]
#![no_main]

pvabi::entry_point!(main);

fn main(start: &pvabi::StartInfo) -> i32 {
    pvabi::println!("writing outside my {} bytes of memory", start.memory_bytes);
    let target = start.memory_bytes + 0x1000;
    // The guest page tables map whole 2 MiB pages, so this address is mapped
    // in the guest; only the nested page tables stand in the way.
    let p = target as *mut u64;
    // Volatile so the write really happens; this is a test of isolation.
    #[allow(unsafe_code)]
    // SAFETY: deliberately unsound from the guest's view: the hypervisor
    // must stop it here.
    unsafe {
        p.write_volatile(0xdead_beef)
    };
    pvabi::println!("ERROR: the write outside my memory succeeded");
    1
}
