//! The MSR model and per-vCPU CPUID of issue 13, from a guest kernel with
//! its own IDT (what Linux's early boot and `syscall_init` do):
//!
//! - FS_BASE and GS_BASE written by WRMSR are the bases the CPU uses (a
//!   load through `fs:`/`gs:` reads the static they point at);
//!   KERNEL_GS_BASE is what SWAPGS brings in;
//! - STAR, LSTAR, CSTAR, FMASK, SYSENTER_CS/ESP/EIP and PAT read back what
//!   was written, also after a yield (the vCPU switched out and in);
//! - EFER reads LME, LMA and NXE; SCE can be set; clearing LME is #GP;
//! - #GP for a non-canonical FS_BASE, a PAT with type 2, IA32_APIC_BASE,
//!   MTRRcap, and a write to the TSC;
//! - CPUID: leaf 1 APIC id 0 and no MTRR, MCE, HTT; leaf 0x4000_0002 is
//!   the start info's own address.
//! - `HC_VCPU_UP` with `VCPU_UP_CR3`: vCPU 1 starts on a copy of the
//!   initial PML4 made here (it reads that CR3 back); an unaligned CR3 is
//!   `EINVAL`, one outside memory `EFAULT`.
//!
//! Prints `msrs: <check> ok|FAILED ...`, then `msrs: <N> checks, <M>
//! failed`; exits with the failure count. Before the MSR model every
//! WRMSR here raised #GP.
#![no_std]
#![no_main]
#![allow(unsafe_code)]

use core::arch::asm;
use core::arch::x86_64::__cpuid;
use core::sync::atomic::{AtomicU64, Ordering};

use kestrel_guests::{Checks, traps};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("msrs");
const GP: i64 = 13;

/// `wrmsr` (2 bytes): the vector it raised (0: none).
fn wrmsr(msr: u32, v: u64) -> i64 {
    traps::expect_fault(2);
    // SAFETY: either the write is accepted (each caller writes a value its
    // own code tolerates) or it raises #GP, which the IDT steps over.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32,
             options(nostack))
    };
    traps::taken() as i64
}

/// `rdmsr` (2 bytes): the value, or the vector it raised.
fn rdmsr(msr: u32) -> Result<u64, i64> {
    traps::expect_fault(2);
    let (lo, hi): (u32, u32);
    // SAFETY: RDMSR only writes EAX and EDX, or raises #GP (stepped over,
    // leaving EAX/EDX as they were: zero here).
    unsafe {
        asm!("rdmsr", in("ecx") msr, inout("eax") 0u32 => lo, inout("edx") 0u32 => hi,
             options(nostack))
    };
    match traps::taken() {
        0 => Ok(u64::from(lo) | (u64::from(hi) << 32)),
        v => Err(v as i64),
    }
}

fn rd(msr: u32) -> i64 {
    rdmsr(msr).map_or_else(|v| -v, |v| v as i64)
}

/// A copy of the initial PML4, vCPU 1's CR3.
#[repr(C, align(4096))]
struct Pml4([AtomicU64; 512]);
static PML4: Pml4 = Pml4([const { AtomicU64::new(0) }; 512]);
static STACK: pvabi::guest::VcpuStack<16384> = pvabi::guest::VcpuStack::new();
/// vCPU 1's CR3 as it read it (u64::MAX: not yet).
static SEEN_CR3: AtomicU64 = AtomicU64::new(u64::MAX);

extern "sysv64" fn second(_: u64) -> ! {
    let cr3: u64;
    // SAFETY: reads CR3.
    unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags)) };
    SEEN_CR3.store(cr3, Ordering::SeqCst);
    loop {
        let _ = pvabi::guest::sched::block(None);
    }
}

fn vcpu_up_cr3(si: &pvabi::StartInfo) {
    for (i, slot) in PML4.0.iter().enumerate() {
        let at = si.page_tables_gpa + 8 * i as u64;
        // SAFETY: the initial PML4, identity-mapped, 4 KiB.
        slot.store(
            unsafe { core::ptr::read_volatile(at as *const u64) },
            Ordering::SeqCst,
        );
    }
    let cr3 = core::ptr::addr_of!(PML4) as u64;
    let Some(stack) = STACK.take() else {
        CHECKS.check("vcpu_stack", 0, 1);
        return;
    };
    let rsp = pvabi::guest::vcpu::initial_rsp(stack.as_mut_ptr() as u64, stack.len()).unwrap_or(0);
    let rip = second as *const () as u64;
    let up = |c: u64| {
        pvabi::guest::vcpu::start_with_cr3(1, rip, rsp, 0, c).map_or_else(|e| e.code(), |()| 0)
    };
    CHECKS.check(
        "vcpu_up_cr3_unaligned",
        up(cr3 + 8),
        pvabi::Error::Invalid.code(),
    );
    CHECKS.check(
        "vcpu_up_cr3_outside",
        up(si.memory_bytes),
        pvabi::Error::Fault.code(),
    );
    CHECKS.check("vcpu_up_cr3", up(cr3), 0);
    while SEEN_CR3.load(Ordering::SeqCst) == u64::MAX {
        pvabi::guest::sched::yield_now();
    }
    CHECKS.check(
        "vcpu1_cr3",
        SEEN_CR3.load(Ordering::SeqCst) as i64,
        cr3 as i64,
    );
}

static FS_TARGET: u64 = 0x1111_2222_3333_4444;
static GS_TARGET: u64 = 0x5555_6666_7777_8888;

fn main(si: &pvabi::StartInfo) -> i32 {
    traps::install(false);
    // Bases the CPU really uses.
    let fs = core::ptr::addr_of!(FS_TARGET) as u64;
    let gs = core::ptr::addr_of!(GS_TARGET) as u64;
    CHECKS.check("fs_base_write", wrmsr(0xc000_0100, fs), 0);
    let v: u64;
    // SAFETY: FS base = &FS_TARGET, a readable static.
    unsafe { asm!("mov {}, qword ptr fs:[0]", out(reg) v, options(nostack, readonly)) };
    CHECKS.check("fs_base_used", (v == FS_TARGET) as i64, 1);
    CHECKS.check("gs_base_write", wrmsr(0xc000_0101, 0), 0);
    CHECKS.check("kernel_gs_write", wrmsr(0xc000_0102, gs), 0);
    let v: u64;
    // SAFETY: SWAPGS brings in KERNEL_GS_BASE = &GS_TARGET; the second
    // SWAPGS restores GS base 0. No interrupt handler uses GS.
    unsafe {
        asm!("swapgs", "mov {}, qword ptr gs:[0]", "swapgs", out(reg) v,
             options(nostack, readonly))
    };
    CHECKS.check("kernel_gs_swapped_in", (v == GS_TARGET) as i64, 1);
    CHECKS.check("kernel_gs_reads_back", rd(0xc000_0102), gs as i64);
    CHECKS.check("fs_base_reads_back", rd(0xc000_0100), fs as i64);
    // Plain storage, across a switch-out and in.
    let values: [(&str, u32, u64); 8] = [
        ("star", 0xc000_0081, 0x0023_0010_0000_0000),
        ("lstar", 0xc000_0082, 0xffff_ffff_8160_0000),
        ("cstar", 0xc000_0083, 0xffff_ffff_8160_1000),
        ("fmask", 0xc000_0084, 0x4_7700),
        ("sysenter_cs", 0x174, 0x10),
        ("sysenter_esp", 0x175, 0xffff_8880_0010_0000),
        ("sysenter_eip", 0x176, 0xffff_ffff_8160_2000),
        ("pat", 0x277, 0x0007_0106_0007_0406),
    ];
    for (name, msr, v) in values {
        CHECKS.check(name, wrmsr(msr, v), 0);
    }
    pvabi::guest::sched::yield_now();
    for (name, msr, v) in values {
        CHECKS.check(name, rd(msr), v as i64);
    }
    // EFER.
    let efer = rdmsr(0xc000_0080).unwrap_or(0);
    CHECKS.check("efer_lme_lma", (efer & 0x500 == 0x500) as i64, 1);
    CHECKS.check("efer_no_svme", (efer & (1 << 12)) as i64, 0);
    CHECKS.check("efer_sce", wrmsr(0xc000_0080, efer | 1), 0);
    CHECKS.check("efer_sce_reads_back", rd(0xc000_0080), (efer | 1) as i64);
    CHECKS.check("efer_clear_lme", wrmsr(0xc000_0080, efer & !(1 << 8)), GP);
    // Refused.
    CHECKS.check("fs_noncanonical", wrmsr(0xc000_0100, 1 << 63), GP);
    CHECKS.check("fs_unchanged", rd(0xc000_0100), fs as i64);
    CHECKS.check("pat_type2", wrmsr(0x277, 2), GP);
    CHECKS.check("apic_base", rd(0x1b), -GP);
    CHECKS.check("mtrrcap", rd(0xfe), -GP);
    CHECKS.check("tsc_write", wrmsr(0x10, 0), GP);
    // CPUID, per vCPU.
    let l1 = __cpuid(1);
    CHECKS.check("apic_id", i64::from(l1.ebx >> 24), 0);
    CHECKS.check(
        "no_mtrr_mce_htt",
        i64::from(l1.edx & ((1 << 12) | (1 << 7) | (1 << 28))),
        0,
    );
    let s = __cpuid(0x4000_0002);
    let gpa = u64::from(s.eax) | (u64::from(s.ebx) << 32);
    CHECKS.check("start_info_leaf", gpa as i64, si.start_info_gpa as i64);
    vcpu_up_cr3(si);
    let (n, failed) = CHECKS.counts();
    pvabi::println!("msrs: {n} checks, {failed} failed");
    failed as i32
}
