//! Control-register writes and the instructions the hypervisor refuses
//! (issue 12, defect 6), from a guest kernel with its own IDT:
//!
//! - CR4 with VMXE, SMXE (hidden by CPUID), a reserved bit, a high bit; CR0
//!   with a high bit, or NW without CD: each #GP(0), the register unchanged
//!   (before: the write reached the VMCB/VMCS and the next VM entry failed,
//!   killing the domain);
//! - valid writes still work: CR4.PGE off and on, CR0.TS set, CLTS;
//! - INVLPGA: #UD; RDPMC: #GP;
//! - RDTSCP and RDPID (where CPUID offers them) return the vCPU's id in
//!   TSC_AUX, on vCPU 0 and vCPU 1; where CPUID does not offer RDTSCP it
//!   raises #UD.
//!
//! Prints `crfault: <check> ok|FAILED ...`, then
//! `crfault: <N> checks, <M> failed`; exits with the failure count.
#![no_std]
#![no_main]
#![allow(unsafe_code)]

use core::arch::asm;
use core::arch::x86_64::{__cpuid, __cpuid_count};
use core::sync::atomic::{AtomicU64, Ordering};

use kestrel_guests::{Checks, traps};
use pvabi::guest::{VcpuStack, sched, time, vcpu};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("crfault");
const GP: i64 = 13;
const UD: i64 = 6;

fn cr0() -> u64 {
    let v: u64;
    // SAFETY: reads CR0.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

fn cr4() -> u64 {
    let v: u64;
    // SAFETY: reads CR4.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// `mov cr4, rax` (3 bytes): the vector it raised (0: none).
fn write_cr4(v: u64) -> i64 {
    traps::expect_fault(3);
    // SAFETY: either the write is valid (the callers restore CR4 after) or
    // it raises #GP, which the IDT steps over.
    unsafe { asm!("mov cr4, rax", in("rax") v, options(nostack)) };
    traps::taken() as i64
}

/// `mov cr0, rax` (3 bytes): the vector it raised (0: none).
fn write_cr0(v: u64) -> i64 {
    traps::expect_fault(3);
    // SAFETY: as in `write_cr4`.
    unsafe { asm!("mov cr0, rax", in("rax") v, options(nostack)) };
    traps::taken() as i64
}

/// RDTSCP's ECX (TSC_AUX), or `None` if it faulted.
fn rdtscp() -> Option<u64> {
    let aux: u64;
    traps::expect_fault(3);
    // SAFETY: RDTSCP writes EDX:EAX and ECX only; #UD is stepped over.
    unsafe {
        asm!("xor ecx, ecx", "rdtscp", out("rcx") aux, out("rax") _, out("rdx") _, options(nomem, nostack))
    };
    (traps::taken() == 0).then_some(aux & 0xffff_ffff)
}

/// RDPID's value (TSC_AUX), or `None` if it faulted.
fn rdpid() -> Option<u64> {
    let v: u64;
    traps::expect_fault(4);
    // SAFETY: RDPID writes its register only (F3 0F C7 /7, 4 bytes with
    // RAX); #UD is stepped over.
    unsafe {
        asm!("xor eax, eax", ".byte 0xf3, 0x0f, 0xc7, 0xf8", out("rax") v, options(nomem, nostack))
    };
    (traps::taken() == 0).then_some(v)
}

static VCPU1_AUX: AtomicU64 = AtomicU64::new(u64::MAX);
static VCPU1_RDPID: AtomicU64 = AtomicU64::new(u64::MAX);
static STACK: VcpuStack<16384> = VcpuStack::new();

extern "sysv64" fn second(_: u64) -> ! {
    traps::install(false);
    VCPU1_RDPID.store(rdpid().unwrap_or(u64::MAX - 1), Ordering::SeqCst);
    VCPU1_AUX.store(rdtscp().unwrap_or(u64::MAX - 1), Ordering::SeqCst);
    loop {
        let _ = sched::block(None);
    }
}

fn main(_: &pvabi::StartInfo) -> i32 {
    traps::install(false);
    let (c0, c4) = (cr0(), cr4());
    pvabi::println!("crfault: CR0 {c0:#x} CR4 {c4:#x}");
    for (name, bit) in [
        ("cr4_vmxe", 13u32),
        ("cr4_smxe", 14),
        ("cr4_reserved15", 15),
        ("cr4_reserved40", 40),
    ] {
        CHECKS.check(name, write_cr4(c4 | (1 << bit)), GP);
        CHECKS.check("unchanged", (cr4() == c4) as i64, 1);
    }
    CHECKS.check("cr0_high_bit", write_cr0(c0 | (1 << 32)), GP);
    CHECKS.check(
        "cr0_nw_without_cd",
        write_cr0((c0 | (1 << 29)) & !(1 << 30)),
        GP,
    );
    CHECKS.check("cr0_clear_pg", write_cr0(c0 & !(1 << 31)), GP);
    CHECKS.check("cr0_unchanged", (cr0() == c0) as i64, 1);
    // Valid writes go through.
    if __cpuid(1).edx & (1 << 13) != 0 {
        CHECKS.check("cr4_pge_on", write_cr4(c4 | (1 << 7)), 0);
        CHECKS.check("cr4_pge_reads_back", (cr4() == c4 | (1 << 7)) as i64, 1);
        CHECKS.check("cr4_pge_off", write_cr4(c4 & !(1 << 7)), 0);
        CHECKS.check(
            "cr4_pge_off_reads_back",
            (cr4() == c4 & !(1 << 7)) as i64,
            1,
        );
        write_cr4(c4);
    }
    CHECKS.check("cr0_ts_on", write_cr0(c0 | 8), 0);
    CHECKS.check("cr0_ts_reads_back", (cr0() == c0 | 8) as i64, 1);
    // SAFETY: CLTS clears CR0.TS only.
    unsafe { asm!("clts", options(nomem, nostack)) };
    CHECKS.check("clts", (cr0() == c0 & !8) as i64, 1);
    // INVLPGA (0F 01 DF): #UD. RDPMC (0F 33) of counter 0: #GP.
    traps::expect_fault(3);
    // SAFETY: refused by the hypervisor (#UD), stepped over.
    unsafe {
        asm!("xor eax, eax", "xor ecx, ecx", ".byte 0x0f, 0x01, 0xdf", out("rax") _, out("rcx") _, options(nomem, nostack))
    };
    CHECKS.check("invlpga", traps::taken() as i64, UD);
    traps::expect_fault(2);
    // SAFETY: refused by the hypervisor (#GP), stepped over.
    unsafe {
        asm!("xor ecx, ecx", "rdpmc", out("rcx") _, out("rax") _, out("rdx") _, options(nomem, nostack))
    };
    CHECKS.check("rdpmc", traps::taken() as i64, GP);
    // RDTSCP/RDPID: the vCPU's id where offered, #UD where not.
    let ext = __cpuid(0x8000_0000).eax >= 0x8000_0001;
    let has_rdtscp = ext && __cpuid(0x8000_0001).edx & (1 << 27) != 0;
    let has_rdpid = __cpuid(0).eax >= 7 && __cpuid_count(7, 0).ecx & (1 << 22) != 0;
    pvabi::println!("crfault: CPUID offers RDTSCP {has_rdtscp}, RDPID {has_rdpid}");
    let two = vcpu::count() > 1
        && STACK
            .take()
            .is_some_and(|s| vcpu::start(1, second, s, 0).is_ok());
    CHECKS.check("vcpu1_up", two as i64, 1);
    let deadline = time::now_ns() + 5_000_000_000;
    while two && VCPU1_AUX.load(Ordering::SeqCst) == u64::MAX && time::now_ns() < deadline {
        let _ = time::sleep_ns(1_000_000);
    }
    let v1 = VCPU1_AUX.load(Ordering::SeqCst) as i64;
    let p1 = VCPU1_RDPID.load(Ordering::SeqCst) as i64;
    if has_rdtscp {
        CHECKS.check("rdtscp_vcpu0", rdtscp().map_or(-1, |v| v as i64), 0);
        CHECKS.check("rdtscp_vcpu1", v1, 1);
    } else {
        CHECKS.check(
            "rdtscp_not_offered_ud",
            rdtscp().map_or(UD, |v| v as i64),
            UD,
        );
    }
    if has_rdpid {
        CHECKS.check("rdpid_vcpu0", rdpid().map_or(-1, |v| v as i64), 0);
        CHECKS.check("rdpid_vcpu1", p1, 1);
    } else {
        CHECKS.check("rdpid_not_offered_ud", rdpid().map_or(UD, |v| v as i64), UD);
    }
    CHECKS.check("no_debug_exceptions", traps::debug_hits() as i64, 0);
    let (n, failed) = CHECKS.counts();
    pvabi::println!("crfault: {n} checks, {failed} failed");
    failed as i32
}
