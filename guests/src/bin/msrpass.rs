//! VT-x's MSR bitmap (issue 11, issue 13's VT-x part): the FS, GS and
//! kernel GS bases are read and written without a VM exit, everything else
//! still exits and is checked (on AMD-V every access exits).
//!
//! `rounds=N` (default 2000) times, each of the three bases is written with
//! a round-dependent canonical value and read back (six accesses a round:
//! 12,000 exits at the default before the bitmaps). Then:
//!
//! - the bases are still the guest's after a yield (switch-out and in), and
//!   the FS/GS bases are the ones the CPU uses (a load through `fs:`);
//! - a non-canonical FS base is #GP (raised by the CPU itself on VT-x) and
//!   leaves the base as it was;
//! - MSRs outside the pass-through set still exit to the MSR model: LSTAR
//!   reads back what was written, IA32_APIC_BASE and MTRRcap reads and a
//!   TSC write are #GP.
//!
//! Prints `msrpass: <N> checks, <M> failed` and exits with the failure
//! count; the boot test (`tests/tests/boot/msrpass.rs`) reads the domain's
//! exit count from its `domain-end:` line.
#![no_std]
#![no_main]
#![allow(unsafe_code)]

use core::arch::asm;

use kestrel_guests::{Checks, num_arg, traps};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("msrpass");
const GP: i64 = 13;
const FS_BASE: u32 = 0xc000_0100;
const GS_BASE: u32 = 0xc000_0101;
const KERNEL_GS_BASE: u32 = 0xc000_0102;

/// `wrmsr` (2 bytes): the vector it raised (0: none).
fn wrmsr(msr: u32, v: u64) -> i64 {
    traps::expect_fault(2);
    // SAFETY: either the write is accepted (the bases are not used by this
    // guest's code but through `fs:` below; LSTAR only by SYSCALL, which it
    // never executes) or it raises #GP, which the IDT steps over.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32,
             options(nostack))
    };
    traps::taken() as i64
}

/// `rdmsr` (2 bytes): the value, or minus the vector it raised.
fn rd(msr: u32) -> i64 {
    traps::expect_fault(2);
    let (lo, hi): (u32, u32);
    // SAFETY: RDMSR only writes EAX and EDX, or raises #GP (stepped over,
    // leaving EAX/EDX zero).
    unsafe {
        asm!("rdmsr", in("ecx") msr, inout("eax") 0u32 => lo, inout("edx") 0u32 => hi,
             options(nostack))
    };
    match traps::taken() {
        0 => (u64::from(lo) | (u64::from(hi) << 32)) as i64,
        v => -(v as i64),
    }
}

static FS_TARGET: u64 = 0x1234_5678_9abc_def0;

fn main(si: &pvabi::StartInfo) -> i32 {
    traps::install(false);
    let rounds = num_arg(si, "rounds", 2000);
    let mut bad = 0u64;
    for i in 0..rounds {
        // Canonical, different every round and for each MSR.
        let v = 0xffff_8000_0000_0000 | (i << 12);
        for (k, msr) in [FS_BASE, GS_BASE, KERNEL_GS_BASE].into_iter().enumerate() {
            let want = v + k as u64 * 8;
            if wrmsr(msr, want) != 0 || rd(msr) != want as i64 {
                bad += 1;
            }
        }
    }
    CHECKS.check("rounds_read_back", bad as i64, 0);
    // Used by the CPU, and kept across a switch-out and in.
    let fs = core::ptr::addr_of!(FS_TARGET) as u64;
    CHECKS.check("fs_write", wrmsr(FS_BASE, fs), 0);
    CHECKS.check("kernel_gs_write", wrmsr(KERNEL_GS_BASE, 0x7000_0000), 0);
    CHECKS.check("gs_write", wrmsr(GS_BASE, 0), 0);
    pvabi::guest::sched::yield_now();
    let v: u64;
    // SAFETY: FS base = &FS_TARGET, a readable static.
    unsafe { asm!("mov {}, qword ptr fs:[0]", out(reg) v, options(nostack, readonly)) };
    CHECKS.check("fs_used_after_yield", (v == FS_TARGET) as i64, 1);
    CHECKS.check("fs_after_yield", rd(FS_BASE), fs as i64);
    CHECKS.check("kernel_gs_after_yield", rd(KERNEL_GS_BASE), 0x7000_0000);
    CHECKS.check("gs_after_yield", rd(GS_BASE), 0);
    // Refused: by the CPU for the pass-through ones, by the model for the
    // rest (which still exit).
    CHECKS.check("fs_noncanonical", wrmsr(FS_BASE, 1 << 63), GP);
    CHECKS.check("fs_unchanged", rd(FS_BASE), fs as i64);
    CHECKS.check("kernel_gs_noncanonical", wrmsr(KERNEL_GS_BASE, 1 << 47), GP);
    CHECKS.check("lstar_model", wrmsr(0xc000_0082, 0xffff_ffff_8160_0000), 0);
    CHECKS.check(
        "lstar_reads_back",
        rd(0xc000_0082),
        0xffff_ffff_8160_0000u64 as i64,
    );
    CHECKS.check("lstar_noncanonical", wrmsr(0xc000_0082, 1 << 47), GP);
    CHECKS.check("apic_base", rd(0x1b), -GP);
    CHECKS.check("mtrrcap", rd(0xfe), -GP);
    CHECKS.check("tsc_write", wrmsr(0x10, 0), GP);
    let (n, failed) = CHECKS.counts();
    pvabi::println!("msrpass: {n} checks, {failed} failed");
    failed as i32
}
