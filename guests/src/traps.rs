//! What the privilege guests (`userhc`, `crfault`, `dbgregs`) need of a
//! real kernel: an IDT that catches #DB, #UD, #GP and #PF (records the
//! vector and steps over the faulting instruction), a GDT with user
//! segments and a TSS, user-accessible page tables, and a way down to
//! ring 3 and back (`int 0x80`).
//!
//! Layout and formats: Intel SDM Vol. 3A 3.4.5 (segment descriptors), 6.14
//! (64-bit IDT gates), 7.7 (64-bit TSS), 4.5 (4-level paging, the U/S bit).
#![allow(unsafe_code)]

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};

/// Selectors of the GDT [`install`] loads: the boot ones (kernel code 0x08,
/// data 0x10), then user data, user code (RPL 3) and the TSS.
pub const USER_DS: u64 = 0x18 | 3;
pub const USER_CS: u64 = 0x20 | 3;
const TSS_SEL: u16 = 0x28;

/// Vector of the last exception taken (0: none since [`take`]).
static LAST: AtomicU64 = AtomicU64::new(0);
/// Bytes to step over on #UD/#GP/#PF (the length of the instruction the
/// caller expects to fault).
static SKIP: AtomicU64 = AtomicU64::new(0);
/// #DB exceptions taken (a guest breakpoint that fired in the guest).
static DEBUG_HITS: AtomicU64 = AtomicU64::new(0);
/// The kernel RSP [`run_user`] returns on.
static KERNEL_RSP: AtomicU64 = AtomicU64::new(0);

#[repr(C, align(4096))]
struct Page([AtomicU64; 512]);
static IDT: Page = Page([const { AtomicU64::new(0) }; 512]);
/// GDT (7 descriptors) then the TSS at byte 512.
static GDT: Page = Page([const { AtomicU64::new(0) }; 512]);
/// Ring-0 stack for interrupts from ring 3 (TSS.RSP0), and the user stack.
static RING0_STACK: Page = Page([const { AtomicU64::new(0) }; 512]);
static USER_STACK: [Page; 4] = [const { Page([const { AtomicU64::new(0) }; 512]) }; 4];

unsafe extern "C" {
    fn kx_db();
    fn kx_ud();
    fn kx_gp();
    fn kx_pf();
    fn kx_back();
    fn kx_run_user(entry: u64, rsp: u64);
}

// Exception entries: #GP and #PF push an error code, #UD and #DB do not
// (SDM Vol. 3A Table 6-1). Faults step RIP over SKIP bytes; #DB is a trap
// (or a fault for an instruction breakpoint: RF set so it does not repeat).
global_asm!(
    ".global kx_db",
    "kx_db:",
    "lock inc qword ptr [rip + {hits}]",
    "or qword ptr [rsp + 16], 0x10000", // RFLAGS.RF
    "iretq",
    ".global kx_ud",
    "kx_ud:",
    "mov qword ptr [rip + {last}], 6",
    "jmp 2f",
    ".global kx_gp",
    "kx_gp:",
    "mov qword ptr [rip + {last}], 13",
    "add rsp, 8",
    "jmp 2f",
    ".global kx_pf",
    "kx_pf:",
    "mov qword ptr [rip + {last}], 14",
    "add rsp, 8",
    "2:",
    "push rax",
    "mov rax, [rip + {skip}]",
    "add [rsp + 8], rax",
    "pop rax",
    "iretq",
    // kx_run_user(entry = rdi, rsp = rsi): saves the callee-saved
    // registers, then IRETQ to ring 3; `int 0x80` from there lands in
    // kx_back on TSS.RSP0, which returns from kx_run_user.
    ".global kx_run_user",
    "kx_run_user:",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov [rip + {krsp}], rsp",
    "push {uds}",
    "push rsi",
    "pushfq",
    "push {ucs}",
    "push rdi",
    "iretq",
    ".global kx_back",
    "kx_back:",
    "mov rsp, [rip + {krsp}]",
    // The interrupt from ring 3 loaded SS with a null selector: the
    // kernel's data segment again, for SS, DS and ES.
    "mov eax, 0x10",
    "mov ss, eax",
    "mov ds, eax",
    "mov es, eax",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
    "ret",
    hits = sym DEBUG_HITS,
    last = sym LAST,
    skip = sym SKIP,
    krsp = sym KERNEL_RSP,
    uds = const USER_DS,
    ucs = const USER_CS,
);

fn gate(vector: usize, handler: unsafe extern "C" fn(), dpl: u64) {
    let h = handler as usize as u64;
    // Present, interrupt gate (0xE), DPL; code selector 0x08.
    let lo = (h & 0xffff) | (0x08 << 16) | ((0x8e | (dpl << 5)) << 40) | ((h >> 16) & 0xffff) << 48;
    if let (Some(a), Some(b)) = (IDT.0.get(2 * vector), IDT.0.get(2 * vector + 1)) {
        a.store(lo, Ordering::Relaxed);
        b.store(h >> 32, Ordering::Relaxed);
    }
}

fn load_table(lgdt: bool, base: u64, limit: u16) {
    let desc: [u16; 5] = [
        limit,
        base as u16,
        (base >> 16) as u16,
        (base >> 32) as u16,
        (base >> 48) as u16,
    ];
    // SAFETY: `desc` is a 10-byte descriptor-table image naming a static
    // table that lives forever and that the caller filled in.
    unsafe {
        if lgdt {
            asm!("lgdt [{}]", in(reg) desc.as_ptr(), options(readonly, nostack, preserves_flags));
        } else {
            asm!("lidt [{}]", in(reg) desc.as_ptr(), options(readonly, nostack, preserves_flags));
        }
    }
}

/// Loads the IDT (#DB, #UD, #GP, #PF; `int 0x80` from ring 3) and, with
/// `user`, the GDT with user segments and a TSS, and sets the U/S bit on
/// every present paging-structure entry (everything becomes reachable
/// from ring 3: no SMEP/SMAP here).
pub fn install(user: bool) {
    gate(1, kx_db, 0);
    gate(6, kx_ud, 0);
    gate(13, kx_gp, 0);
    gate(14, kx_pf, 0);
    gate(0x80, kx_back, 3);
    load_table(false, IDT.0.as_ptr() as u64, 4095);
    if !user {
        return;
    }
    // The boot GDT's kernel code and data descriptors, kept at 0x08/0x10.
    let mut old = [0u16; 5];
    // SAFETY: SGDT stores 10 bytes into `old`.
    unsafe { asm!("sgdt [{}]", in(reg) old.as_mut_ptr(), options(nostack, preserves_flags)) };
    let old_base = old[1..]
        .iter()
        .rev()
        .fold(0u64, |a, &w| (a << 16) | u64::from(w));
    for i in 1..3u64 {
        // SAFETY: the boot GDT has at least 3 descriptors (start info).
        let d = unsafe { core::ptr::read_volatile((old_base + i * 8) as *const u64) };
        GDT.0[i as usize].store(d, Ordering::Relaxed);
    }
    GDT.0[3].store(0x00cf_f200_0000_ffff, Ordering::Relaxed); // data, DPL 3
    GDT.0[4].store(0x00af_fa00_0000_ffff, Ordering::Relaxed); // 64-bit code, DPL 3
    // The TSS: RSP0 at byte 4, no I/O bitmap (offset = limit + 1).
    let tss = GDT.0.as_ptr() as u64 + 512;
    let rsp0 = RING0_STACK.0.as_ptr() as u64 + 4096;
    GDT.0[64].store(rsp0 << 32, Ordering::Relaxed);
    GDT.0[65].store(rsp0 >> 32, Ordering::Relaxed);
    GDT.0[76].store(104u64 << 48, Ordering::Relaxed);
    let limit = 103u64;
    GDT.0[5].store(
        limit | (tss & 0xff_ffff) << 16 | 0x89 << 40 | ((tss >> 24) & 0xff) << 56,
        Ordering::Relaxed,
    );
    GDT.0[6].store(tss >> 32, Ordering::Relaxed);
    load_table(true, GDT.0.as_ptr() as u64, 7 * 8 - 1);
    // SAFETY: selector 0x28 is the available 64-bit TSS just written.
    unsafe { asm!("ltr {0:x}", in(reg) TSS_SEL, options(nostack, preserves_flags)) };
    user_pages();
}

/// Sets U/S on every present entry of the paging structures (identity
/// mapped, writable: the builder's), then reloads CR3.
fn user_pages() {
    let cr3: u64;
    // SAFETY: reads CR3.
    unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags)) };
    fn walk(table: u64, level: u32) {
        for i in 0..512u64 {
            let p = (table + i * 8) as *mut u64;
            // SAFETY: `table` is a paging structure of this guest,
            // identity-mapped and writable; entry `i` is inside it.
            let e = unsafe { core::ptr::read_volatile(p) };
            if e & 1 == 0 {
                continue;
            }
            // SAFETY: as above; only the U/S bit changes.
            unsafe { core::ptr::write_volatile(p, e | 4) };
            if level > 1 && e & 0x80 == 0 {
                walk(e & 0x000f_ffff_ffff_f000, level - 1);
            }
        }
    }
    walk(cr3 & 0x000f_ffff_ffff_f000, 4);
    // SAFETY: reloading CR3 flushes the TLB; the tables are unchanged but
    // for U/S.
    unsafe { asm!("mov cr3, {}", in(reg) cr3, options(nostack, preserves_flags)) };
}

/// Runs `entry` in ring 3 on a user stack until it executes `int 0x80`.
/// `entry` never returns by itself (it ends with [`back_to_kernel`]).
pub fn run_user(entry: extern "C" fn() -> !) {
    let rsp = USER_STACK.as_ptr() as u64 + 4 * 4096 - 8;
    // SAFETY: `install(true)` set up the GDT, TSS and user pages;
    // kx_run_user saves the callee-saved registers and comes back here
    // when `entry` executes `int 0x80`. Everything the user code touches
    // is this program's memory.
    unsafe { kx_run_user(entry as usize as u64, rsp) };
}

/// From ring 3: back to the kernel (the end of [`run_user`]).
pub fn back_to_kernel() -> ! {
    // SAFETY: vector 0x80 is a DPL-3 gate to kx_back.
    unsafe { asm!("int 0x80", options(noreturn)) }
}

/// Arms the fault recovery: the next #UD/#GP/#PF steps over `len` bytes.
pub fn expect_fault(len: u64) {
    LAST.store(0, Ordering::SeqCst);
    SKIP.store(len, Ordering::SeqCst);
}

/// The vector taken since [`expect_fault`] (0: none).
pub fn taken() -> u64 {
    LAST.load(Ordering::SeqCst)
}

/// #DB exceptions taken so far.
pub fn debug_hits() -> u64 {
    DEBUG_HITS.load(Ordering::SeqCst)
}
