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
//! which hypercall instruction the hypervisor wants and where the clock is,
//! runs `main`, and shuts the domain down with `main`'s return value as the
//! exit code. A panic (on any vCPU) prints its message and shuts down with
//! [`crate::SHUTDOWN_CRASH`].
//!
//! One module per op group, each a set of safe functions returning
//! `Result<_, `[`crate::Error`]`>`:
//!
//! | module      | what                                                     |
//! |-------------|----------------------------------------------------------|
//! | [`console`] | write, read (privileged), and [`crate::print!`]/[`crate::println!`] |
//! | [`sched`]   | yield, block, poll, timer, the event-wait loop, shutdown |
//! | [`evtchn`]  | event channels between domains (ABI 1.1, 1.3)            |
//! | [`upcall`]  | event-channel upcalls: shared control area, IDT, handlers (1.3) |
//! | [`vcpu`]    | start another vCPU on a [`VcpuStack`], query a vCPU      |
//! | [`time`]    | the PV clock (`now_ns`, no exit), sleeping               |
//! | [`memory`]  | the reservation, release and populate (the balloon)      |
//! | [`domctl`]  | the control domain: create, pause, destroy, query domains |
//! | [`mgmt`]    | the control domain: management line, console rings        |
//! | [`lifecycle`] | shutdown/reboot requests from dom0; dom0's request and set-sched calls |
//! | [`multicall()`] | several ops in one exit                              |
//! | [`heap`]    | an opt-in global allocator: [`crate::guest_heap!`]       |
//! | [`meter`]   | the guest's own instructions between hypercalls (benchmarks) |
//!
//! [`start_info`] returns the start info from anywhere after entry. The raw
//! stubs [`hypercall`] and [`hypercall6`] are there for tests of the
//! hypervisor; read [`hypercall6`] before using them.
//!
//! The runtime keeps `unsafe` in four small modules: the hypercall
//! instruction, the start-info and clock pointers and the TSC (`sys`), the
//! vCPU stacks ([`VcpuStack`]), the heap ([`heap`]) and the upcall IDT and
//! entry stub ([`upcall`]).

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::{
    CONSOLE_WRITE_MAX, Error, HC_CONSOLE_WRITE, HC_MEM_POPULATE, HC_MEM_RELEASE, HC_MULTICALL,
    HC_SCHED_BLOCK, HC_SCHED_POLL, HC_SET_TIMER, HC_SHUTDOWN, HC_YIELD, MulticallEntry, StartInfo,
    decode_status,
};

pub mod console;
pub mod domctl;
pub mod evtchn;
pub mod grant;
pub mod heap;
pub mod lifecycle;
pub mod memory;
pub mod memtarget;
pub mod meter;
pub mod mgmt;
pub mod mmio;
pub mod pci;
pub mod random;
pub mod sched;
mod stack;
pub mod stage;
mod sys;
pub mod time;
pub mod upcall;
pub mod vcpu;

pub use stack::VcpuStack;
pub use sys::{hypercall6, start_info};

/// Makes a raw hypercall with up to three arguments (R10, R8 and R9 are
/// 0): number in RAX, arguments in RDI, RSI, RDX; returns RAX. See
/// [`hypercall6`] for what raw calls may do to memory.
pub fn hypercall(nr: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    hypercall6(nr, [a1, a2, a3, 0, 0, 0])
}

/// RAX to a `Result`; a code this version does not know counts as
/// [`Error::Invalid`].
fn status(rax: u64) -> Result<u64, Error> {
    decode_status(rax).map_err(|e| e.unwrap_or(Error::Invalid))
}

/// Writes bytes to the domain's console (at most [`CONSOLE_WRITE_MAX`] in
/// one call); returns how many were written. Same as [`console::write`].
pub fn console_write(bytes: &[u8]) -> Result<u64, Error> {
    let len = (bytes.len() as u64).min(CONSOLE_WRITE_MAX);
    status(hypercall6(
        HC_CONSOLE_WRITE,
        [bytes.as_ptr() as u64, len, 0, 0, 0, 0],
    ))
}

/// Gives up the CPU to other vCPUs. Same as [`sched::yield_now`].
pub fn yield_now() {
    sched::yield_now();
}

/// Ends the domain with `reason` and `code`; never returns. Same as
/// [`sched::shutdown`].
pub fn shutdown(reason: u64, code: i64) -> ! {
    sched::shutdown(reason, code)
}

/// Runs the hypercalls in `entries` in one exit ([`crate::HC_MULTICALL`]);
/// returns how many ran (all of them). Each entry's
/// [`MulticallEntry::status`] then holds its own outcome.
///
/// Only ops that cannot change the program's memory behind its back are
/// allowed: console write, yield, poll, set timer, shutdown, and release
/// and populate with the same checks as [`memory::release`] (so inside
/// [`memory::free_region`]). Block and multicall are let through and get
/// `EINVAL` from the hypervisor. Any other op (console read, vCPU up or
/// info, memory info, numbers this version does not know) fails the whole
/// batch with [`Error::Perm`] before anything runs: use the op's own
/// wrapper. Errors from the hypervisor: [`Error::Invalid`] for an empty
/// batch, [`Error::TooBig`] for more than [`crate::MULTICALL_MAX`] entries.
pub fn multicall(entries: &mut [MulticallEntry]) -> Result<u64, Error> {
    for e in entries.iter() {
        match e.op {
            HC_CONSOLE_WRITE | HC_YIELD | HC_SCHED_POLL | HC_SET_TIMER | HC_SHUTDOWN
            | HC_SCHED_BLOCK | HC_MULTICALL => {}
            HC_MEM_RELEASE | HC_MEM_POPULATE => memory::check_entry(&e.args)?,
            _ => return Err(Error::Perm),
        }
    }
    // The entries are ours (a unique borrow); the hypervisor writes only
    // their `result` fields, and any bytes are valid there.
    let n = status(hypercall6(
        HC_MULTICALL,
        [
            entries.as_mut_ptr() as u64,
            entries.len() as u64,
            0,
            0,
            0,
            0,
        ],
    ))?;
    Ok(n)
}

/// Collects formatted output so that one `print!` costs one hypercall per
/// [`PRINT_BUFFER`] bytes rather than one per formatted piece.
struct Console {
    buf: [u8; PRINT_BUFFER],
    len: usize,
}

/// Bytes [`print_fmt`] collects before it writes to the console.
const PRINT_BUFFER: usize = 256;

impl Console {
    fn flush(&mut self) -> fmt::Result {
        let pending = self.buf.get(..self.len).unwrap_or(&[]);
        let r = console::write_all(pending).map_err(|_| fmt::Error);
        self.len = 0;
        r
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        if self.len + bytes.len() > PRINT_BUFFER {
            self.flush()?;
        }
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
                Ok(())
            }
            // Longer than the whole buffer: straight out.
            None => console::write_all(bytes).map_err(|_| fmt::Error),
        }
    }
}

/// Formats to the console (used by [`crate::print!`]); output of one call
/// reaches the console in as few hypercalls as its length allows.
pub fn print_fmt(args: fmt::Arguments<'_>) {
    let mut c = Console {
        buf: [0; PRINT_BUFFER],
        len: 0,
    };
    let _ = fmt::write(&mut c, args);
    let _ = c.flush();
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
#[allow(unsafe_code)]
pub unsafe fn start(start: *const StartInfo, main: fn(&StartInfo) -> i32) -> ! {
    // SAFETY: the caller passes the hypervisor's RDI, the start-info page.
    let info = unsafe { sys::take_start_info(start) };
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

/// The TSC at the guest's very first instruction, stored by the entry stub
/// of [`entry_point!`]`(main, entry_tsc)`; 0 otherwise. Read it with
/// [`entry_tsc`].
#[doc(hidden)]
pub static ENTRY_TSC: AtomicU64 = AtomicU64::new(0);

/// The TSC read by the guest's first instruction, if it was built with
/// [`crate::entry_point!`]`(main, entry_tsc)` (for benchmarks of domain creation);
/// `None` otherwise.
pub fn entry_tsc() -> Option<u64> {
    match ENTRY_TSC.load(Ordering::Relaxed) {
        0 => None,
        t => Some(t),
    }
}

/// Declares the guest's entry point: `fn main(&StartInfo) -> i32`. Also
/// installs the panic handler.
///
/// `entry_point!(main, entry_tsc)` does the same behind an entry stub
/// whose first instruction reads the TSC and stores it for
/// [`guest::entry_tsc`](crate::guest::entry_tsc) (four instructions, then a
/// jump to the usual entry): for benchmarks that count what happens before
/// a guest runs.
#[macro_export]
macro_rules! entry_point {
    ($main:path, entry_tsc) => {
        /// The ELF entry: the TSC first, then the usual entry.
        #[unsafe(no_mangle)]
        #[unsafe(naked)]
        extern "sysv64" fn _start(start: *const $crate::StartInfo) -> ! {
            // RDTSC writes only RAX and RDX: RDI (the start info) and RSP
            // are as the hypervisor left them when the jump enters
            // `__pvabi_entry`, so it starts exactly as `_start` does in the
            // plain form. The store is an aligned 8-byte write to an
            // AtomicU64 (a `mov`, atomic on x86_64).
            ::core::arch::naked_asm!(
                "rdtsc",
                "shl rdx, 32",
                "or rax, rdx",
                "mov qword ptr [rip + {tsc}], rax",
                "jmp {entry}",
                tsc = sym $crate::guest::ENTRY_TSC,
                entry = sym __pvabi_entry,
            )
        }

        extern "sysv64" fn __pvabi_entry(start: *const $crate::StartInfo) -> ! {
            let main: fn(&$crate::StartInfo) -> i32 = $main;
            // SAFETY: entered from `_start` with the hypervisor's RDI, the
            // start-info address.
            unsafe { $crate::guest::start(start, main) }
        }

        #[panic_handler]
        fn panic(info: &::core::panic::PanicInfo<'_>) -> ! {
            $crate::guest::panic(info)
        }
    };
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
