//! Hypercall round-trip benchmark: times hypercalls with an unknown number
//! (the hypervisor answers ENOSYS at once: the shortest path, no
//! scheduling) with the TSC, and the same loop with the hypercall
//! instruction replaced by `mov rax, -38` (what the hypervisor does to RAX),
//! so the guest's own loop cost can be subtracted.
//!
//! Each loop runs in batches of [`BATCH`] calls, each timed on its own, so
//! a batch that a timer interrupt lands in can be told apart: the smallest
//! batch is the pure round trip. Under QEMU TCG with `-icount shift=0` (and
//! in Bochs with one CPU) the TSC counts instructions, which makes every
//! figure here exact and repeatable (`cargo xtask bench`, docs/benchmarks.md).
//!
//! Output, one line per loop:
//! `hcbench: loop=<hypercall|baseline> calls=N tsc_delta=D per_call=D/N
//! min_batch=M batch=B wrong=W`.
#![no_std]
#![no_main]

use core::arch::asm;

pvabi::entry_point!(main);

/// Calls per loop (`calls=N` on the command line overrides it).
const CALLS: u64 = 10_000;
/// Calls per timed batch.
const BATCH: u64 = 10;
/// A hypercall number nothing uses: ENOSYS.
const UNKNOWN: u64 = 0xdead;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Vmcall,
    Vmmcall,
    /// The hypercall instruction replaced by `mov rax, -38`.
    Baseline,
}

/// One timed batch of `n` (> 0) calls: returns the TSC delta and how many
/// calls did not return ENOSYS. Timing and loop are one `asm!` block per
/// kind, identical but for the one instruction, so the baseline's code is
/// the hypercall loop's code exactly.
fn batch(kind: Kind, n: u64) -> (u64, u64) {
    let (t0, t1): (u64, u64);
    let mut left = n;
    let mut wrong = 0u64;
    macro_rules! timed_loop {
        ($insn:literal) => {
            // SAFETY: LFENCE/RDTSC only read the TSC; the hypercall (the
            // instruction the start info names) changes only RAX, per the
            // pvabi register convention; the baseline instruction only
            // writes RAX. No memory is touched.
            unsafe {
                asm!(
                    "lfence",
                    "rdtsc",
                    "shl rdx, 32",
                    "or rax, rdx",
                    "mov {t0}, rax",
                    "2:",
                    "mov rax, {nr}",
                    $insn,
                    "cmp rax, -38",
                    "je 3f",
                    "inc {wrong}",
                    "3:",
                    "dec {left}",
                    "jnz 2b",
                    "lfence",
                    "rdtsc",
                    "shl rdx, 32",
                    "or rax, rdx",
                    nr = const UNKNOWN,
                    t0 = out(reg) t0,
                    left = inout(reg) left,
                    wrong = inout(reg) wrong,
                    out("rax") t1,
                    out("rdx") _,
                    options(nostack),
                )
            }
        };
    }
    match kind {
        Kind::Vmcall => timed_loop!("vmcall"),
        Kind::Vmmcall => timed_loop!("vmmcall"),
        Kind::Baseline => timed_loop!("mov rax, -38"),
    }
    let _ = left;
    (t1.wrapping_sub(t0), wrong)
}

struct Result {
    total: u64,
    min_batch: u64,
    wrong: u64,
}

fn measure(kind: Kind, calls: u64) -> Result {
    let mut r = Result {
        total: 0,
        min_batch: u64::MAX,
        wrong: 0,
    };
    let mut done = 0;
    while done < calls {
        let n = BATCH.min(calls - done);
        let (delta, wrong) = batch(kind, n);
        r.total = r.total.wrapping_add(delta);
        if n == BATCH {
            r.min_batch = r.min_batch.min(delta);
        }
        r.wrong += wrong;
        done += n;
    }
    r
}

/// `a / b` with two decimals, in integers (no floating point in guests).
struct Ratio(u64, u64);

impl core::fmt::Display for Ratio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self(a, b) = *self;
        if b == 0 {
            return f.write_str("0");
        }
        let hundredths = (u128::from(a) * 100 + u128::from(b) / 2) / u128::from(b);
        write!(f, "{}.{:02}", hundredths / 100, hundredths % 100)
    }
}

fn calls_from(cmdline: &[u8]) -> u64 {
    core::str::from_utf8(cmdline)
        .unwrap_or("")
        .split_whitespace()
        .find_map(|w| w.strip_prefix("calls="))
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(CALLS)
}

fn main(start: &pvabi::StartInfo) -> i32 {
    let calls = calls_from(start.cmdline());
    let insn = if start.hypercall_insn == pvabi::HYPERCALL_VMMCALL {
        Kind::Vmmcall
    } else {
        Kind::Vmcall
    };
    // The baseline first, then the hypercalls; each once unmeasured to warm
    // up (TLB, caches, on real hardware).
    let _ = batch(Kind::Baseline, BATCH);
    let _ = batch(insn, BATCH);
    let base = measure(Kind::Baseline, calls);
    let hc = measure(insn, calls);
    for (name, r) in [("baseline", &base), ("hypercall", &hc)] {
        pvabi::println!(
            "hcbench: loop={name} calls={calls} tsc_delta={} per_call={} min_batch={} batch={BATCH} wrong={}",
            r.total,
            Ratio(r.total, calls),
            r.min_batch,
            r.wrong
        );
    }
    if hc.wrong == 0 && base.wrong == 0 {
        0
    } else {
        1
    }
}
