//! Maps a guest-physical page it does not own into its own page tables and
//! writes to it: the nested page tables must stop it, and the hypervisor
//! must kill it (and only it).
#![no_std]
#![no_main]

pvabi::entry_point!(main);

fn main(start: &pvabi::StartInfo) -> i32 {
    let target = start.memory_bytes + 0x1000;
    pvabi::println!(
        "writing to guest-physical {target:#x}, outside my {} bytes",
        start.memory_bytes
    );
    #[allow(unsafe_code)]
    // SAFETY: deliberately maps and writes memory this domain does not own;
    // the hypervisor must stop it at the write. The page-table walk follows
    // the identity map the start info describes (PML4 -> PDPT -> PD, 2 MiB
    // pages).
    unsafe {
        let pml4 = start.page_tables_gpa as *const u64;
        let pdpt = (pml4.read_volatile() & 0x000f_ffff_ffff_f000) as *const u64;
        let pd = (pdpt.read_volatile() & 0x000f_ffff_ffff_f000) as *mut u64;
        let index = (target >> 21) as usize;
        // Present, writable, 2 MiB page.
        pd.add(index).write_volatile((target & !0x1f_ffff) | 0x83);
        core::arch::asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack));
        (target as *mut u64).write_volatile(0xdead_beef);
    }
    pvabi::println!("ERROR: the write outside my memory succeeded");
    1
}
