//! Deliberate failures (`selftest=` on the command line) that prove the
//! failure paths work: each must end in one clear report and the failure
//! exit, never a hang or a reboot.

use core::arch::asm;

use crate::boot::cmdline::SelfTest;

/// A `ret` instruction stored in writable, no-execute data.
static DATA_RET: [u8; 1] = [0xc3];

/// Runs the self-test; returns only if it failed to fault.
pub fn run(test: SelfTest) {
    match test {
        SelfTest::None | SelfTest::IommuDma => return,
        SelfTest::Panic => panic!("self-test panic requested on the command line"),
        // The blocks below fault on purpose: the exception handler reports
        // and stops the machine, so nothing after the faulting instruction
        // runs and no Rust invariant is observed broken.
        // SAFETY: page 0 is never mapped; the read faults.
        SelfTest::NullDeref => unsafe {
            asm!("mov {0}, qword ptr [0]", out(reg) _, options(nostack, readonly));
        },
        // SAFETY: pushes until the guard page below the stack faults.
        SelfTest::StackOverflow => unsafe {
            asm!("2: push rax", "jmp 2b", options(noreturn));
        },
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
    }
    log::error!("self-test {test:?} did not fault");
}
