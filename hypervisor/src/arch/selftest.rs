//! Deliberate failures (`selftest=` on the command line) that prove the
//! failure paths work: each must end in one clear report and the failure
//! exit, never a hang or a reboot. `triple-fault` is the exception: it
//! proves the test runner's record of a machine that cannot report
//! anything itself.

use core::arch::asm;

use crate::boot::cmdline::SelfTest;

/// A `ret` instruction stored in writable, no-execute data.
static DATA_RET: [u8; 1] = [0xc3];

/// Runs the self-test; returns only if it failed to fault.
pub fn run(test: SelfTest) {
    match test {
        SelfTest::None | SelfTest::IommuDma => return,
        SelfTest::StackOverflowRun => super::bootcpu::run_on_own_stack(overflow),
        SelfTest::Panic => panic!("self-test panic requested on the command line"),
        // The blocks below fault on purpose: the exception handler reports
        // and stops the machine, so nothing after the faulting instruction
        // runs and no Rust invariant is observed broken.
        // SAFETY: page 0 is never mapped; the read faults.
        SelfTest::NullDeref => unsafe {
            asm!("mov {0}, qword ptr [0]", out(reg) _, options(nostack, readonly));
        },
        SelfTest::StackOverflow => overflow(),
        // SAFETY: text is mapped read+execute; the write faults.
        SelfTest::WriteText => unsafe {
            let target = run as *const () as u64;
            asm!("mov byte ptr [{0}], 0xcc", in(reg) target, options(nostack));
        },
        // SAFETY: data is mapped no-execute; the call faults on fetch.
        SelfTest::ExecData => unsafe {
            let target = (&raw const DATA_RET) as u64;
            asm!("call {0}", in(reg) target);
        },
        SelfTest::TripleFault => triple_fault(),
    }
    log::error!("self-test {test:?} did not fault");
}

/// Pushes until the guard page below the running stack faults: the push
/// that would write the guard page raises #PF, whose delivery needs that
/// same stack, so the CPU raises #DF, which runs on its own IST stack and
/// reports the overflow (Intel SDM Vol. 3A 7.15, interrupt 8: a #PF while
/// delivering a #PF is a double fault).
fn overflow() -> ! {
    // SAFETY: deliberately unrecoverable: the exception handler reports
    // and stops the machine, nothing after the fault runs.
    unsafe { asm!("2: push rax", "jmp 2b", options(noreturn)) }
}

/// Loads an IDT with limit 0 and executes `ud2`: the #UD cannot be
/// delivered (its gate is beyond the limit), so the CPU raises #GP, which
/// cannot be delivered either, so #DF, whose failure is a triple fault:
/// the CPU enters shutdown (Intel SDM Vol. 3A 6.15, "Interrupt 8 - Double
/// Fault Exception (#DF)": "If another exception occurs while attempting
/// to call the double-fault handler, the processor enters shutdown mode").
/// Under QEMU that is a machine reset. The faulting instruction's address
/// is logged first, so a test can find it in QEMU's register dump.
fn triple_fault() -> ! {
    let ud2: u64;
    // SAFETY: only computes an address (RIP-relative), touching nothing.
    unsafe {
        asm!("lea {0}, [rip + 2f]", "jmp 3f", "2: ud2", "3:", out(reg) ud2, options(nomem, nostack));
    }
    log::error!("self-test triple-fault: ud2 at rip={ud2:#x} with an empty IDT");
    let empty = x86_64::structures::DescriptorTablePointer {
        limit: 0,
        base: x86_64::VirtAddr::new(0),
    };
    // SAFETY: deliberately unrecoverable: with a zero-limit IDT the `ud2`
    // escalates to a triple fault and the machine resets, so no Rust code
    // runs after it and no invariant is observed broken. Interrupts are
    // turned off first, so nothing else is delivered through that IDT.
    unsafe {
        asm!("cli", options(nomem, nostack));
        x86_64::instructions::tables::lidt(&empty);
        asm!("jmp {0}", in(reg) ud2, options(noreturn));
    }
}
