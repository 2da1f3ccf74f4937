//! Debug registers are each vCPU's own (issue 12, defect 4). Each round
//! the guest arms DR0-DR3 with values of its own (`seed=` on the command
//! line), at addresses the hypervisor's image occupies (1 MiB up; this
//! guest never runs or touches them): instruction breakpoints on DR0/DR3,
//! data breakpoints on DR1 (write) and DR2 (read/write), all enabled
//! locally and globally in DR7, and sets DR6's B0-B3 to a pattern. Then it
//! gives the CPU away (yields, and spins so the timer preempts it) and
//! reads everything back: the values must be its own (no other domain's,
//! no zeros), no #DB may have fired in the guest, and the hypervisor,
//! which ran with the guest's addresses in DR0-DR3 meanwhile, must not
//! have hit them (it would panic on the #DB). With 2 vCPUs the second
//! does the same with another seed.
//!
//! Prints `dbgregs: <check> ...` lines, then `dbgregs: <N> checks, <M>
//! failed`; exits with the failure count.
#![no_std]
#![no_main]
#![allow(unsafe_code)]

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use kestrel_guests::{Checks, num_arg, traps};
use pvabi::guest::{VcpuStack, sched, time, vcpu, yield_now};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("dbgregs");
static ROUNDS: AtomicU64 = AtomicU64::new(0);
static SECOND_DONE: AtomicU64 = AtomicU64::new(0);
static STACK: VcpuStack<16384> = VcpuStack::new();

/// DR7: L0-L3 and G0-G3 (bits 0-7), bit 10 (reads as 1); DR0 execute
/// (R/W 00, LEN 00), DR1 write 8 bytes (01, 10), DR2 read/write 4 bytes
/// (11, 11), DR3 execute (SDM Vol. 3A 18.2.4).
const DR7: u64 = 0xff | 0x400 | (0b10_01 << 20) | (0b11_11 << 24);

fn values(seed: u64, round: u64) -> [u64; 4] {
    let base = 0x10_0000 + ((seed * 0x1_0000 + round * 0x40) & 0xf_ffc0);
    [base, base + 8, base + 16, base + 24]
}

fn arm(dr: [u64; 4], dr6: u64) {
    // SAFETY: debug-register writes at CPL 0; the addresses are never
    // executed or touched by this guest, so the breakpoints never fire.
    unsafe {
        asm!("mov dr0, {}", in(reg) dr[0], options(nomem, nostack));
        asm!("mov dr1, {}", in(reg) dr[1], options(nomem, nostack));
        asm!("mov dr2, {}", in(reg) dr[2], options(nomem, nostack));
        asm!("mov dr3, {}", in(reg) dr[3], options(nomem, nostack));
        asm!("mov dr6, {}", in(reg) dr6, options(nomem, nostack));
        asm!("mov dr7, {}", in(reg) DR7, options(nomem, nostack));
    }
}

fn read() -> ([u64; 4], u64, u64) {
    let (a, b, c, d, s, t): (u64, u64, u64, u64, u64, u64);
    // SAFETY: debug-register reads at CPL 0.
    unsafe {
        asm!("mov {}, dr0", out(reg) a, options(nomem, nostack));
        asm!("mov {}, dr1", out(reg) b, options(nomem, nostack));
        asm!("mov {}, dr2", out(reg) c, options(nomem, nostack));
        asm!("mov {}, dr3", out(reg) d, options(nomem, nostack));
        asm!("mov {}, dr6", out(reg) s, options(nomem, nostack));
        asm!("mov {}, dr7", out(reg) t, options(nomem, nostack));
    }
    ([a, b, c, d], s, t)
}

/// Arms, gives the CPU away, reads back, `rounds` times: how many rounds
/// read back something else than what was armed.
fn run(seed: u64, rounds: u64) -> u64 {
    let mut bad = 0;
    for round in 0..rounds {
        let dr = values(seed, round);
        let b = (seed + round) & 0xf;
        arm(dr, 0xffff_0ff0 | b);
        yield_now();
        // Long enough for a timer preemption now and then.
        let until = time::now_ns() + 200_000;
        while time::now_ns() < until {
            core::hint::spin_loop();
        }
        yield_now();
        let (got, dr6, dr7) = read();
        if got != dr || dr6 & 0xf != b || dr7 & 0xffff_ffff != DR7 {
            if bad < 3 {
                pvabi::println!(
                    "dbgregs: seed {seed} round {round}: armed {dr:x?} DR6 {b:#x} DR7 {DR7:#x}, read {got:x?} DR6 {dr6:#x} DR7 {dr7:#x}"
                );
            }
            bad += 1;
        }
    }
    // Disarm before leaving: nothing of ours stays armed.
    arm([0; 4], 0xffff_0ff0);
    // SAFETY: DR7 with no breakpoint enabled.
    unsafe { asm!("mov dr7, {}", in(reg) 0x400u64, options(nomem, nostack)) };
    bad
}

extern "sysv64" fn second(seed: u64) -> ! {
    traps::install(false);
    let bad = run(seed, ROUNDS.load(Ordering::SeqCst));
    SECOND_DONE.store(bad + 1, Ordering::SeqCst);
    loop {
        let _ = sched::block(None);
    }
}

fn main(si: &pvabi::StartInfo) -> i32 {
    let seed = num_arg(si, "seed", 1);
    let rounds = num_arg(si, "rounds", 50);
    ROUNDS.store(rounds, Ordering::SeqCst);
    traps::install(false);
    let two = kestrel_guests::flag(si, "two")
        && vcpu::count() > 1
        && STACK
            .take()
            .is_some_and(|s| vcpu::start(1, second, s, seed + 100).is_ok());
    let bad = run(seed, rounds);
    CHECKS.check("own_values_vcpu0", bad as i64, 0);
    if kestrel_guests::flag(si, "two") {
        CHECKS.check("vcpu1_up", two as i64, 1);
        let deadline = time::now_ns() + 60_000_000_000;
        while two && SECOND_DONE.load(Ordering::SeqCst) == 0 && time::now_ns() < deadline {
            let _ = time::sleep_ns(1_000_000);
        }
        CHECKS.check(
            "own_values_vcpu1",
            SECOND_DONE.load(Ordering::SeqCst) as i64 - 1,
            0,
        );
    }
    CHECKS.check("no_debug_exceptions", traps::debug_hits() as i64, 0);
    let (n, failed) = CHECKS.counts();
    pvabi::println!("dbgregs: seed {seed} done");
    pvabi::println!("dbgregs: {n} checks, {failed} failed");
    failed as i32
}
