//! The guest runtime (feature `guest`): what a bare-metal guest links to
//! run on Kestrel with no `unsafe` of its own.
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! pvabi::entry_point!(main);
//! fn main(start: &pvabi::StartInfo) -> i32 {
//!     pvabi::println!("hello from domain {}", start.domain_id);
//!     0
//! }
//! ```
//!
//! The entry point checks the start-info magic and ABI version, remembers
//! which hypercall instruction the hypervisor wants, runs `main`, and shuts
//! the domain down with `main`'s return value as the exit code. A panic
//! prints its message and shuts down with [`crate::SHUTDOWN_CRASH`].
#![allow(unsafe_code)]

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::{
    CONSOLE_WRITE_MAX, Error, HC_CONSOLE_WRITE, HC_SHUTDOWN, HC_YIELD, HYPERCALL_VMMCALL,
    StartInfo, decode_status,
};

/// The instruction the hypervisor asked for ([`crate::HYPERCALL_VMCALL`] or
/// [`crate::HYPERCALL_VMMCALL`]).
static INSN: AtomicU32 = AtomicU32::new(u32::MAX);

/// Makes a raw hypercall with up to three arguments (the others are 0):
/// number in RAX, arguments in RDI, RSI, RDX; returns RAX.
pub fn hypercall(nr: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    hypercall6(nr, [a1, a2, a3, 0, 0, 0])
}

/// Makes a raw hypercall: number in RAX, `args` in RDI, RSI, RDX, R10, R8,
/// R9; returns RAX. Only RAX changes.
pub fn hypercall6(nr: u64, args: [u64; 6]) -> u64 {
    let [a1, a2, a3, a4, a5, a6] = args;
    let mut rax = nr;
    // No `nomem`: a hypercall may read and write guest memory the arguments
    // point at, so the compiler must not cache memory across it.
    if INSN.load(Ordering::Relaxed) == HYPERCALL_VMMCALL {
        // SAFETY: VMMCALL traps to the hypervisor, which reads the
        // registers and writes only RAX (the ABI's register convention) and
        // the guest memory the arguments name.
        unsafe {
            core::arch::asm!("vmmcall", inout("rax") rax, in("rdi") a1, in("rsi") a2,
                in("rdx") a3, in("r10") a4, in("r8") a5, in("r9") a6, options(nostack));
        }
    } else {
        // SAFETY: as above, for VMCALL.
        unsafe {
            core::arch::asm!("vmcall", inout("rax") rax, in("rdi") a1, in("rsi") a2,
                in("rdx") a3, in("r10") a4, in("r8") a5, in("r9") a6, options(nostack));
        }
    }
    rax
}

fn status(rax: u64) -> Result<u64, Error> {
    decode_status(rax).map_err(|e| e.unwrap_or(Error::Invalid))
}

/// Writes bytes to the domain's console; returns how many were written.
pub fn console_write(bytes: &[u8]) -> Result<u64, Error> {
    let len = (bytes.len() as u64).min(CONSOLE_WRITE_MAX);
    // The guest is identity-mapped: a pointer is a guest-physical address.
    status(hypercall(HC_CONSOLE_WRITE, bytes.as_ptr() as u64, len, 0))
}

/// Gives up the CPU to other domains.
pub fn yield_now() {
    let _ = hypercall(HC_YIELD, 0, 0, 0);
}

/// Ends the domain with `reason` and `code`; never returns.
pub fn shutdown(reason: u64, code: i64) -> ! {
    loop {
        let _ = hypercall(HC_SHUTDOWN, reason, code as u64, 0);
    }
}

struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s.as_bytes();
        while !rest.is_empty() {
            let n = console_write(rest).map_err(|_| fmt::Error)?;
            rest = rest.get(n as usize..).ok_or(fmt::Error)?;
            if n == 0 {
                return Err(fmt::Error);
            }
        }
        Ok(())
    }
}

/// Formats to the console (used by [`crate::print!`]).
pub fn print_fmt(args: fmt::Arguments<'_>) {
    let _ = fmt::write(&mut Console, args);
}

/// Prints to the domain's console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::guest::print_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the domain's console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::guest::print_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Called by [`entry_point!`]: checks the start info, runs `main`, shuts
/// down with its result.
///
/// # Safety
/// `start` must be the RDI the hypervisor passed at entry.
#[doc(hidden)]
pub unsafe fn start(start: *const StartInfo, main: fn(&StartInfo) -> i32) -> ! {
    // SAFETY: the hypervisor passes the guest-physical (= virtual, identity
    // map) address of a start-info page it filled in.
    let info = unsafe { &*start };
    INSN.store(info.hypercall_insn, Ordering::Relaxed);
    if info.magic != crate::START_INFO_MAGIC {
        // Without a valid start info we cannot even know how to report.
        loop {
            core::hint::spin_loop();
        }
    }
    if !crate::is_compatible(info.abi_version) {
        crate::println!(
            "guest built for pvabi {:#x}, hypervisor offers {:#x}: refusing to start",
            crate::PVABI_VERSION,
            info.abi_version
        );
        shutdown(crate::SHUTDOWN_CRASH, -1);
    }
    let code = main(info);
    shutdown(crate::SHUTDOWN_POWEROFF, i64::from(code))
}

/// Reports a panic on the console and shuts down as crashed.
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::println!("guest panic: {info}");
    shutdown(crate::SHUTDOWN_CRASH, -1)
}

/// Declares the guest's entry point: `fn main(&StartInfo) -> i32`. Also
/// installs the panic handler.
#[macro_export]
macro_rules! entry_point {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "sysv64" fn _start(start: *const $crate::StartInfo) -> ! {
            let main: fn(&$crate::StartInfo) -> i32 = $main;
            // SAFETY: `_start` is the ELF entry; the hypervisor passes the
            // start-info address in RDI.
            unsafe { $crate::guest::start(start, main) }
        }

        #[panic_handler]
        fn panic(info: &::core::panic::PanicInfo<'_>) -> ! {
            $crate::guest::panic(info)
        }
    };
}
