//! Ending the hypervisor: halt every CPU, or leave an emulator with a status
//! a test harness can read.
//!
//! QEMU's `isa-debug-exit` device (port 0xf4) exits with `(value << 1) | 1`.
//! We write 0x10 for success (status 33) and 0x20 for failure (status 65):
//! neither can be confused with QEMU's own failure status 1.

use core::sync::atomic::{AtomicU8, Ordering};

use x86_64::instructions::port::Port;

use crate::boot::cmdline::ExitMethod;

/// Value written to isa-debug-exit on success.
pub const QEMU_EXIT_SUCCESS: u32 = 0x10;
/// Value written to isa-debug-exit on failure.
pub const QEMU_EXIT_FAILURE: u32 = 0x20;

const METHOD_HALT: u8 = 0;
const METHOD_QEMU: u8 = 1;
const METHOD_BOCHS: u8 = 2;

static METHOD: AtomicU8 = AtomicU8::new(METHOD_HALT);

/// Records how the hypervisor ends (from `exit=` on the command line).
pub fn set_method(method: ExitMethod) {
    let m = match method {
        ExitMethod::Halt => METHOD_HALT,
        ExitMethod::Qemu => METHOD_QEMU,
        ExitMethod::Bochs => METHOD_BOCHS,
    };
    METHOD.store(m, Ordering::Relaxed);
}

/// Ends the hypervisor: successfully or not.
pub fn exit(success: bool) -> ! {
    // What the transmit ring holds goes out before the emulator ends.
    if success {
        super::stackmark::report();
        super::serial::report();
    } else {
        // Another CPU may have died holding the console lock.
        super::serial::flush_emergency();
    }
    match METHOD.load(Ordering::Relaxed) {
        METHOD_QEMU => {
            let code = if success {
                QEMU_EXIT_SUCCESS
            } else {
                QEMU_EXIT_FAILURE
            };
            let mut port = Port::<u32>::new(0xf4);
            // SAFETY: `exit=qemu` says QEMU's isa-debug-exit sits at 0xf4;
            // writing to it ends the emulator.
            unsafe { port.write(code) };
        }
        METHOD_BOCHS => {
            let mut port = Port::<u8>::new(0x8900);
            for b in b"Shutdown" {
                // SAFETY: `exit=bochs` says Bochs' shutdown port is 0x8900.
                unsafe { port.write(*b) };
            }
        }
        _ => {}
    }
    super::smp::stop_other_cpus();
    super::cpu::halt_forever()
}

/// Prints one `FATAL:` line naming what went wrong and ends with failure.
pub fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    super::serial::write_fmt_emergency(format_args!("FATAL: {args}\n"));
    exit(false)
}
