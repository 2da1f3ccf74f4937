//! Hypercalls from guest user mode (issue 12, defect 3): drops to ring 3
//! (its own GDT with user segments, a TSS, user-accessible page tables)
//! and there tries a console write, a memory release and a shutdown. Each
//! must be refused with `EPERM` and do nothing: the console line never
//! appears (the boot test checks), the page stays present, the domain goes
//! on. Back in ring 0 the same hypercalls work.
//!
//! Prints `userhc: <check> ok|FAILED ...` per check, then
//! `userhc: <N> checks, <M> failed`, and exits with the failure count.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use kestrel_guests::{Checks, raw, traps};
use pvabi::guest::{console, hypercall6, memory};
use pvabi::{EPERM, HC_MEM_RELEASE, HC_SHUTDOWN, SHUTDOWN_POWEROFF};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("userhc");
/// What the ring-3 hypercalls returned: console write, release, shutdown.
static GOT: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
/// The CPL ring-3 code saw (CS.RPL).
static USER_CPL: AtomicU64 = AtomicU64::new(99);
/// The page the ring-3 code tries to release.
static PAGE: AtomicU64 = AtomicU64::new(0);
/// The line ring 3 tries to print; the boot test checks it never appears.
pub const USER_LINE: &[u8] = b"userhc: PRINTED FROM RING 3\n";
/// The shutdown code ring 3 asks for: a domain ending with it was shut
/// down from user mode.
const USER_SHUTDOWN_CODE: u64 = 77;

extern "C" fn user_main() -> ! {
    let cs: u64;
    // SAFETY: reads CS.
    unsafe { core::arch::asm!("mov {0:r}, cs", out(reg) cs, options(nomem, nostack)) };
    USER_CPL.store(cs & 3, Ordering::SeqCst);
    let line = USER_LINE;
    GOT[0].store(
        hypercall6(
            pvabi::HC_CONSOLE_WRITE,
            [line.as_ptr() as u64, line.len() as u64, 0, 0, 0, 0],
        ),
        Ordering::SeqCst,
    );
    GOT[1].store(
        hypercall6(HC_MEM_RELEASE, [PAGE.load(Ordering::SeqCst), 1, 0, 0, 0, 0]),
        Ordering::SeqCst,
    );
    GOT[2].store(
        hypercall6(
            HC_SHUTDOWN,
            [SHUTDOWN_POWEROFF, USER_SHUTDOWN_CODE, 0, 0, 0, 0],
        ),
        Ordering::SeqCst,
    );
    traps::back_to_kernel()
}

fn main(_: &pvabi::StartInfo) -> i32 {
    let free = memory::free_region().unwrap_or(0..0);
    let page = free.start;
    PAGE.store(page, Ordering::SeqCst);
    raw::write(page, 0x5553_4552);
    let before = memory::info().map(|m| m.current_pages).unwrap_or(0);
    traps::install(true);
    pvabi::println!("userhc: entering ring 3");
    traps::run_user(user_main);
    pvabi::println!("userhc: back in ring 0");
    CHECKS.check("ring3_cpl", USER_CPL.load(Ordering::SeqCst) as i64, 3);
    CHECKS.check(
        "ring3_console_write",
        GOT[0].load(Ordering::SeqCst) as i64,
        EPERM,
    );
    CHECKS.check(
        "ring3_mem_release",
        GOT[1].load(Ordering::SeqCst) as i64,
        EPERM,
    );
    CHECKS.check(
        "ring3_shutdown",
        GOT[2].load(Ordering::SeqCst) as i64,
        EPERM,
    );
    let after = memory::info().map(|m| m.current_pages).unwrap_or(0);
    CHECKS.check("pages_unchanged", after as i64, before as i64);
    CHECKS.check("page_kept", raw::read(page) as i64, 0x5553_4552);
    // From ring 0 the same calls work.
    CHECKS.check(
        "ring0_console_write",
        console::write(b"userhc: printed from ring 0\n").map_or_else(|e| e.code(), |n| n as i64),
        28,
    );
    CHECKS.check(
        "ring0_mem_release",
        memory::release(page, 1).map_or_else(|e| e.code(), |n| n as i64),
        1,
    );
    let (n, failed) = CHECKS.counts();
    pvabi::println!("userhc: {n} checks, {failed} failed");
    failed as i32
}
