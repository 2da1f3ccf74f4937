//! A one-entry IDT that turns #GP into a counter: the faulting instruction
//! is skipped (its length set beforehand), so the guest can check that the
//! hypervisor injects #GP where the manuals say a CPU raises it.

use core::arch::{asm, naked_asm};
use core::sync::atomic::{AtomicU64, Ordering};

/// The IDT, vectors 0-31 (16 bytes each).
#[repr(C, align(16))]
struct Idt([AtomicU64; 64]);

static IDT: Idt = Idt([const { AtomicU64::new(0) }; 64]);
/// #GPs taken.
static GP_HITS: AtomicU64 = AtomicU64::new(0);
/// Bytes the handler moves RIP by (the faulting instruction's length).
static GP_SKIP: AtomicU64 = AtomicU64::new(0);

/// An empty IDT descriptor: loaded before a deliberate #UD, so that an
/// unexpected fault ends in a triple fault (the domain is killed, plainly).
static NO_IDT: [u8; 10] = [0; 10];

/// The #GP handler: drops the error code, moves the saved RIP past the
/// faulting instruction, counts, returns (SDM Vol. 3A 7.14.1: in 64-bit
/// mode the CPU always pushes SS, RSP, RFLAGS, CS, RIP and, for #GP, an
/// error code). A #GP nobody expected (`GP_SKIP` 0; also any other fault,
/// which reaches here as #GP for its absent gate) triple-faults the guest.
#[unsafe(naked)]
extern "C" fn gp_handler() {
    naked_asm!(
        "cmp qword ptr [rip + {skip}], 0",
        "jne 2f",
        "lidt [rip + {no_idt}]",
        "ud2",
        "2:",
        "add rsp, 8",
        "push rax",
        "mov rax, [rip + {skip}]",
        "add [rsp + 8], rax",
        "lock inc qword ptr [rip + {hits}]",
        "pop rax",
        "iretq",
        skip = sym GP_SKIP,
        hits = sym GP_HITS,
        no_idt = sym NO_IDT,
    )
}

/// Loads the IDT with vector 13 pointing at [`gp_handler`].
pub fn install() {
    let cs: u16;
    // SAFETY: reading CS has no side effects.
    unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) };
    let off = gp_handler as *const () as usize as u64;
    // 64-bit interrupt gate: present, DPL 0, type 0xE (SDM Vol. 3A 7.14.1).
    let low =
        (off & 0xffff) | (u64::from(cs) << 16) | (0x8e << 40) | (((off >> 16) & 0xffff) << 48);
    IDT.0[26].store(low, Ordering::Relaxed);
    IDT.0[27].store(off >> 32, Ordering::Relaxed);
    let mut desc = [0u8; 10];
    desc[..2].copy_from_slice(&(64u16 * 8 - 1).to_le_bytes());
    desc[2..].copy_from_slice(&(&raw const IDT as u64).to_le_bytes());
    // SAFETY: the descriptor names a static IDT that lives forever; only
    // vector 13 is present, and this guest runs with interrupts off.
    unsafe { asm!("lidt [{}]", in(reg) &desc, options(readonly, nostack, preserves_flags)) };
}

/// XSETBV of `value` into XCR `ecx`: how many #GPs it raised (0 or 1).
pub fn xsetbv(ecx: u32, value: u64) -> u64 {
    GP_SKIP.store(3, Ordering::SeqCst); // 0f 01 d1
    let before = GP_HITS.load(Ordering::SeqCst);
    // SAFETY: XSETBV changes only which state components are enabled; the
    // caller's code uses no SSE/AVX registers (soft-float target) and a
    // refused value raises #GP, which `gp_handler` skips.
    unsafe {
        asm!("xsetbv", in("ecx") ecx, in("eax") value as u32, in("edx") (value >> 32) as u32,
            options(nostack));
    }
    GP_SKIP.store(0, Ordering::SeqCst);
    GP_HITS.load(Ordering::SeqCst) - before
}
