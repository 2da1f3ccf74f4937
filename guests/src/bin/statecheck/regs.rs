//! The raw instructions that plant and read back each class of state.
//! This guest is built for a soft-float target: the compiler never uses
//! x87, XMM or YMM registers, so what is planted there stays until read
//! (unless the hypervisor loses or mixes it up, which is what is checked).

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

/// Names of the registers [`gpr_yield`] checks, in its order.
pub const GPR_NAMES: [&str; 14] = [
    "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
];
/// Names of the vector registers.
pub const VEC_NAMES: [&str; 16] = [
    "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14",
    "v15",
];

/// [0]: the seed; [1]: 1 for VMMCALL, 0 for VMCALL; [2..16]: registers
/// after the yield. In memory so that the asm below needs no register of
/// its own: it plants every general-purpose register but RSP.
static IO: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

/// Remembers the hypercall instruction (from the start info).
pub fn set_vmmcall(vmmcall: bool) {
    IO[1].store(u64::from(vmmcall), Ordering::Relaxed);
}

/// Sets RBX, RCX, RDX, RSI, RDI, RBP, R8-R15 to rotations of `seed`,
/// yields once (`HC_YIELD`, which by the ABI keeps every register but RAX)
/// and returns what they held afterwards, and what they should hold.
pub fn gpr_yield(seed: u64) -> ([u64; 14], [u64; 14]) {
    IO[0].store(seed, Ordering::SeqCst);
    // SAFETY: plants registers, makes one yield hypercall (which writes
    // only RAX), stores to the static `IO`; RBX and RBP are saved on the
    // stack and every other register is declared clobbered.
    unsafe {
        asm!(
            "push rbp",
            "push rbx",
            "mov rbx, [rip + {io}]",
            "mov rcx, rbx", "rol rcx, 4",
            "mov rdx, rbx", "rol rdx, 8",
            "mov rsi, rbx", "rol rsi, 12",
            "mov rdi, rbx", "rol rdi, 16",
            "mov rbp, rbx", "rol rbp, 20",
            "mov r8, rbx", "rol r8, 24",
            "mov r9, rbx", "rol r9, 28",
            "mov r10, rbx", "rol r10, 32",
            "mov r11, rbx", "rol r11, 36",
            "mov r12, rbx", "rol r12, 40",
            "mov r13, rbx", "rol r13, 44",
            "mov r14, rbx", "rol r14, 48",
            "mov r15, rbx", "rol r15, 52",
            "mov eax, 3", // HC_YIELD
            "cmp qword ptr [rip + {io} + 8], 0",
            "jne 3f",
            "vmcall",
            "jmp 4f",
            "3:",
            "vmmcall",
            "4:",
            "mov [rip + {io} + 16], rbx",
            "mov [rip + {io} + 24], rcx",
            "mov [rip + {io} + 32], rdx",
            "mov [rip + {io} + 40], rsi",
            "mov [rip + {io} + 48], rdi",
            "mov [rip + {io} + 56], rbp",
            "mov [rip + {io} + 64], r8",
            "mov [rip + {io} + 72], r9",
            "mov [rip + {io} + 80], r10",
            "mov [rip + {io} + 88], r11",
            "mov [rip + {io} + 96], r12",
            "mov [rip + {io} + 104], r13",
            "mov [rip + {io} + 112], r14",
            "mov [rip + {io} + 120], r15",
            "pop rbx",
            "pop rbp",
            io = sym IO,
            out("rax") _, out("rcx") _, out("rdx") _, out("rsi") _, out("rdi") _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        );
    }
    let mut got = [0u64; 14];
    let mut want = [0u64; 14];
    for i in 0..14 {
        got[i] = IO[2 + i].load(Ordering::SeqCst);
        want[i] = seed.rotate_left(4 * i as u32);
    }
    (got, want)
}

/// FNINIT, then control word `cw` and ST0 = `st0` (loaded as an integer,
/// exact in the 64-bit significand).
pub fn x87_plant(cw: u16, st0: u64) {
    // SAFETY: x87 instructions on this guest's own FPU state, reading two
    // stack values; CR0.EM = 0 and CR0.TS = 0 (the boot CR0).
    unsafe {
        asm!("fninit", "fldcw [{cw}]", "fild qword ptr [{v}]",
            cw = in(reg) &cw, v = in(reg) &st0, options(nostack, readonly));
    }
}

/// The x87 control word and, if `pop`, ST0 as an integer (popped).
pub fn x87_read(pop: bool) -> (u16, u64) {
    let mut cw: u16 = 0;
    let mut st0: u64 = 0;
    // SAFETY: stores into locals.
    unsafe {
        asm!("fnstcw [{}]", in(reg) &mut cw, options(nostack));
        if pop {
            asm!("fistp qword ptr [{}]", in(reg) &mut st0, options(nostack));
        }
    }
    (cw, st0)
}

/// LDMXCSR.
pub fn set_mxcsr(v: u32) {
    // SAFETY: a valid MXCSR (no reserved bit) from a local.
    unsafe { asm!("ldmxcsr [{}]", in(reg) &v, options(nostack, readonly)) };
}

/// STMXCSR.
pub fn mxcsr() -> u32 {
    let mut v = 0u32;
    // SAFETY: stores into a local.
    unsafe { asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack)) };
    v
}

macro_rules! vec16 {
    ($op:literal, $reg:literal, $p:expr, $($opt:tt)*) => {
        // SAFETY: moves between the vector registers (which the compiler
        // never uses here) and the 512-byte array `$p` points at.
        unsafe {
            asm!(
                concat!($op, " ", $reg, "0, [{p}]"), concat!($op, " ", $reg, "1, [{p} + 32]"),
                concat!($op, " ", $reg, "2, [{p} + 64]"), concat!($op, " ", $reg, "3, [{p} + 96]"),
                concat!($op, " ", $reg, "4, [{p} + 128]"), concat!($op, " ", $reg, "5, [{p} + 160]"),
                concat!($op, " ", $reg, "6, [{p} + 192]"), concat!($op, " ", $reg, "7, [{p} + 224]"),
                concat!($op, " ", $reg, "8, [{p} + 256]"), concat!($op, " ", $reg, "9, [{p} + 288]"),
                concat!($op, " ", $reg, "10, [{p} + 320]"), concat!($op, " ", $reg, "11, [{p} + 352]"),
                concat!($op, " ", $reg, "12, [{p} + 384]"), concat!($op, " ", $reg, "13, [{p} + 416]"),
                concat!($op, " ", $reg, "14, [{p} + 448]"), concat!($op, " ", $reg, "15, [{p} + 480]"),
                p = in(reg) $p, options(nostack, $($opt)*)
            )
        }
    };
}

macro_rules! vec16_store {
    ($op:literal, $reg:literal, $p:expr) => {
        // SAFETY: stores the vector registers into the 512-byte array `$p`
        // points at.
        unsafe {
            asm!(
                concat!($op, " [{p}], ", $reg, "0"), concat!($op, " [{p} + 32], ", $reg, "1"),
                concat!($op, " [{p} + 64], ", $reg, "2"), concat!($op, " [{p} + 96], ", $reg, "3"),
                concat!($op, " [{p} + 128], ", $reg, "4"), concat!($op, " [{p} + 160], ", $reg, "5"),
                concat!($op, " [{p} + 192], ", $reg, "6"), concat!($op, " [{p} + 224], ", $reg, "7"),
                concat!($op, " [{p} + 256], ", $reg, "8"), concat!($op, " [{p} + 288], ", $reg, "9"),
                concat!($op, " [{p} + 320], ", $reg, "10"), concat!($op, " [{p} + 352], ", $reg, "11"),
                concat!($op, " [{p} + 384], ", $reg, "12"), concat!($op, " [{p} + 416], ", $reg, "13"),
                concat!($op, " [{p} + 448], ", $reg, "14"), concat!($op, " [{p} + 480], ", $reg, "15"),
                p = in(reg) $p, options(nostack)
            )
        }
    };
}

/// XMM0-15 from the low halves of `v`.
pub fn xmm_plant(v: &[[u64; 4]; 16]) {
    vec16!("movdqu", "xmm", v.as_ptr(), readonly);
}

/// YMM0-15 from `v` (needs XCR0.AVX).
pub fn ymm_plant(v: &[[u64; 4]; 16]) {
    vec16!("vmovdqu", "ymm", v.as_ptr(), readonly);
}

/// XMM0-15 (upper halves reported as 0).
pub fn xmm_read() -> [[u64; 4]; 16] {
    let mut v = [[0u64; 4]; 16];
    vec16_store!("movdqu", "xmm", v.as_mut_ptr());
    v
}

/// YMM0-15.
pub fn ymm_read() -> [[u64; 4]; 16] {
    let mut v = [[0u64; 4]; 16];
    vec16_store!("vmovdqu", "ymm", v.as_mut_ptr());
    v
}

/// WRPKRU (needs CR4.PKE).
pub fn wrpkru(v: u32) {
    // SAFETY: PKRU governs user-mode pages only; this guest has none.
    unsafe { asm!("wrpkru", in("eax") v, in("ecx") 0, in("edx") 0, options(nostack)) };
}

/// RDPKRU (needs CR4.PKE).
pub fn rdpkru() -> u32 {
    let v: u32;
    // SAFETY: reads PKRU.
    unsafe { asm!("rdpkru", out("eax") v, in("ecx") 0, out("edx") _, options(nostack)) };
    v
}

/// XGETBV of XCR `idx`.
pub fn xgetbv(idx: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads an XCR (needs CR4.OSXSAVE, set before any call).
    unsafe { asm!("xgetbv", in("ecx") idx, out("eax") lo, out("edx") hi, options(nostack)) };
    u64::from(lo) | (u64::from(hi) << 32)
}

macro_rules! cr {
    ($get:ident, $set:ident, $reg:literal) => {
        /// Reads the control register.
        pub fn $get() -> u64 {
            let v: u64;
            // SAFETY: reading a control register at CPL 0.
            unsafe { asm!(concat!("mov {}, ", $reg), out(reg) v, options(nomem, nostack)) };
            v
        }
        /// Writes the control register.
        pub fn $set(v: u64) {
            // SAFETY: the callers write values valid for the register
            // (CR2: any; CR8: a priority class; CR4: feature bits CPUID
            // offers); this guest runs with interrupts off.
            unsafe { asm!(concat!("mov ", $reg, ", {}"), in(reg) v, options(nostack)) };
        }
    };
}
cr!(cr2, set_cr2, "cr2");
cr!(cr4, set_cr4, "cr4");
cr!(cr8, set_cr8, "cr8");

/// FS base, GS base and (behind SWAPGS) the kernel GS base.
pub fn set_bases(fs: u64, gs: u64, kgs: u64) {
    // SAFETY: this guest uses neither FS nor GS (no TLS); the values are
    // canonical; needs CR4.FSGSBASE.
    unsafe {
        asm!("wrgsbase {k}", "swapgs", "wrgsbase {g}", "wrfsbase {f}",
            k = in(reg) kgs, g = in(reg) gs, f = in(reg) fs, options(nostack, nomem));
    }
}

/// What [`set_bases`] set, read back.
pub fn bases() -> (u64, u64, u64) {
    let (fs, gs, kgs): (u64, u64, u64);
    // SAFETY: reads, and two SWAPGS that cancel out.
    unsafe {
        asm!("rdfsbase {f}", "rdgsbase {g}", "swapgs", "rdgsbase {k}", "swapgs",
            f = out(reg) fs, g = out(reg) gs, k = out(reg) kgs, options(nostack, nomem));
    }
    (fs, gs, kgs)
}

macro_rules! zmm32 {
    (load $p:expr, $($i:literal),*) => {
        // SAFETY: loads ZMM0-31 (which the compiler never uses here) from
        // the 2 KiB array `$p` points at; needs XCR0 bits 5-7.
        unsafe {
            asm!($(concat!("vmovdqu64 zmm", $i, ", [{p} + ", $i, " * 64]"),)*
                p = in(reg) $p, options(nostack, readonly))
        }
    };
    (store $p:expr, $($i:literal),*) => {
        // SAFETY: stores ZMM0-31 into the 2 KiB array `$p` points at.
        unsafe {
            asm!($(concat!("vmovdqu64 [{p} + ", $i, " * 64], zmm", $i),)*
                p = in(reg) $p, options(nostack))
        }
    };
}

/// ZMM0-31 from `v` (needs XCR0 bits 5-7 with AVX and SSE).
pub fn zmm_plant(v: &[[u64; 8]; 32]) {
    zmm32!(load v.as_ptr(), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
        19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31);
}

/// ZMM0-31.
pub fn zmm_read() -> [[u64; 8]; 32] {
    let mut v = [[0u64; 8]; 32];
    zmm32!(store v.as_mut_ptr(), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
        18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31);
    v
}

/// Opmask registers k0-k7 from `v`.
pub fn k_plant(v: &[u64; 8]) {
    // SAFETY: loads k0-k7 (the compiler never uses them) from `v`.
    unsafe {
        asm!("kmovq k0, [{p}]", "kmovq k1, [{p} + 8]", "kmovq k2, [{p} + 16]",
            "kmovq k3, [{p} + 24]", "kmovq k4, [{p} + 32]", "kmovq k5, [{p} + 40]",
            "kmovq k6, [{p} + 48]", "kmovq k7, [{p} + 56]", p = in(reg) v.as_ptr(),
            options(nostack, readonly));
    }
}

/// Opmask registers k0-k7.
pub fn k_read() -> [u64; 8] {
    let mut v = [0u64; 8];
    // SAFETY: stores k0-k7 into `v`.
    unsafe {
        asm!("kmovq [{p}], k0", "kmovq [{p} + 8], k1", "kmovq [{p} + 16], k2",
            "kmovq [{p} + 24], k3", "kmovq [{p} + 32], k4", "kmovq [{p} + 40], k5",
            "kmovq [{p} + 48], k6", "kmovq [{p} + 56], k7", p = in(reg) v.as_mut_ptr(),
            options(nostack));
    }
    v
}
