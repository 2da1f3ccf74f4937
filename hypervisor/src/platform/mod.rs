//! What the runtime (`run.rs`, `sched/`, `evtchn/`, `grant/`, `console/`,
//! `domain/`, `hypercall/services.rs`) asks of the machine, in one trait.
//!
//! The bare-metal implementation is `arch/platform.rs` (LAPIC IPIs and
//! timer, RDTSC, the frame allocator, the identity map, the serial port);
//! the host one is [`host`] (threads as CPUs, a simulated physical memory,
//! the monotonic clock), which lets the runtime run under `cargo test`.
//!
//! The implementation is picked at compile time ([`P`]), not registered
//! through a `dyn` pointer at boot: the exit path calls [`Platform::tsc`]
//! and the interrupt functions on every exit, and
//! the hypercall round trip (docs/benchmarks.md) must not grow by an
//! indirect call for each. Only one implementation exists per target, so
//! nothing is lost by choosing it statically; the trait is what keeps the
//! two honest (both must provide every function with the same meaning).
//!
//! Frames are host-physical addresses (`u64`, 4 KiB aligned, never 0). The
//! frame-access functions take addresses of frames the caller owns: a
//! domain's memory, its nested page tables, a pinned control area. They
//! are safe functions because every caller in the runtime passes only
//! frames it holds (the same invariant `DomainMemory` kept when it wrote
//! through the identity map itself); the bare-metal implementation also
//! refuses addresses outside the identity map.
#![forbid(unsafe_code)]

use core::fmt;
use core::sync::atomic::AtomicU64;

#[cfg(not(target_os = "none"))]
pub mod host;

/// The machine the runtime runs on.
#[cfg(target_os = "none")]
pub type P = crate::arch::platform::Machine;
/// The machine the runtime runs on: threads as CPUs (host tests).
#[cfg(not(target_os = "none"))]
pub type P = host::HostMachine;

/// A boot module as the control domain sees it (`HC_DOMCTL_MODULE_*`).
#[derive(Clone, Copy)]
pub struct Module {
    /// File name without directories, or `module<i>`.
    pub name: &'static str,
    /// Arguments after the name.
    pub args: &'static str,
    /// Its bytes (never written).
    pub bytes: &'static [u8],
    /// Starts with the ELF magic (and passed the boot checks).
    pub elf: bool,
}

/// The machine, as the runtime uses it. Every function is about the
/// calling CPU unless it names another.
pub trait Platform {
    // CPUs, interrupts, time.
    /// This CPU's dense index (0 is the boot CPU).
    fn cpu_index() -> usize;
    /// Interrupts CPU `cpu` (not this one): a halted CPU wakes, a CPU in
    /// guest mode exits (the vector's handler only acknowledges). Ignored
    /// for a CPU that does not exist.
    fn send_ipi(cpu: usize);
    /// The next timer interrupt of this CPU comes `ns` from now. Each one
    /// sets [`crate::hostwork::ATTN_TICK`] in this CPU's attention word
    /// (its handler, or the host platform when it fires).
    fn arm_timer_ns(ns: u64);
    /// The time-stamp counter (invariant, the same on every CPU).
    fn tsc() -> u64;
    /// TSC ticks per second.
    fn tsc_hz() -> u64;
    /// Masks interrupts on this CPU.
    fn interrupts_off();
    /// Takes interrupts again (a pending one is taken now).
    fn interrupts_on();
    /// Takes interrupts and halts until one comes; one that became pending
    /// while they were masked ends the halt at once (STI; HLT).
    fn halt();
    /// Busy-waits about `us` microseconds.
    fn delay_us(us: u64);
    /// Host CPUID (for the guests' filtered view).
    fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4];

    // Frames.
    /// One frame below 4 GiB (hypervisor structures: page tables).
    fn alloc_frame() -> Option<u64>;
    /// One frame anywhere (guest memory).
    fn alloc_frame_anywhere() -> Option<u64>;
    /// `count` contiguous frames aligned to `align` bytes (guest memory).
    fn alloc_aligned(count: u64, align: u64) -> Option<u64>;
    /// Gives back `count` frames from `base`.
    fn free_frames(base: u64, count: u64);
    /// Frames free now.
    fn free_frame_count() -> u64;

    // Access to frames the caller owns (see the module doc).
    /// Copies `buf.len()` bytes from host-physical `hpa`.
    fn read_phys(hpa: u64, buf: &mut [u8]);
    /// Copies `bytes` to host-physical `hpa`.
    fn write_phys(hpa: u64, bytes: &[u8]);
    /// Sets `len` bytes from `hpa` to `byte`.
    fn fill_phys(hpa: u64, len: u64, byte: u8);
    /// The 8-byte-aligned word at `hpa`, shared with a guest that writes it
    /// concurrently (atomic accesses only); `None` outside memory.
    fn phys_word(hpa: u64) -> Option<&'static AtomicU64>;
    /// `len` bytes from `hpa` as a slice, for frames the caller took and
    /// keeps unchanged while it reads them (`domain/staged.rs`); `None`
    /// outside memory, and on platforms whose memory is not plain bytes
    /// (the host tests' simulated memory).
    fn phys_bytes(hpa: u64, len: usize) -> Option<&'static [u8]> {
        let _ = (hpa, len);
        None
    }

    // The operator's side.
    /// Writes formatted text to the hypervisor's console.
    fn console_fmt(args: fmt::Arguments<'_>);
    /// Writes bytes to the console as they are (control characters shown
    /// as `?`): the control domain's `HC_HOST_WRITE`.
    fn console_raw(bytes: &[u8]);
    /// Hands the UART what it takes now from the console's transmit ring
    /// (at most one FIFO), never waiting (`txbuf.rs`).
    fn console_push();
    /// Whether the transmit ring held bytes after its last push or write
    /// (no lock: one load).
    fn console_waiting() -> bool;
    /// Bytes waiting in the console's transmit ring.
    fn console_pending() -> usize;
    /// Bytes of the transmit ring a guest's console line may take now
    /// (the rest is kept for the hypervisor's own lines).
    fn console_guest_room() -> usize;
    /// Console input available now (the control domain's).
    fn console_input(buf: &mut [u8]) -> usize;
    /// Writes to the management line; `false` if there is none.
    fn mgmt_write(bytes: &[u8]) -> bool;
    /// Reads what the management line holds; `None` if there is none.
    fn mgmt_read(buf: &mut [u8]) -> Option<usize>;
    /// Whether the management line's receive interrupt is routed (the
    /// control domain may bind `VIRQ_MGMT_RX`).
    fn mgmt_irq() -> bool;
    /// Whether that interrupt came since the last call (cleared); cheap
    /// when it did not (called after every exit).
    fn take_mgmt_rx() -> bool;
    /// The local APIC id device messages target (`None`: none can be
    /// reached, pvabi `HC_PCI_MSI_BIND` fails with `ENOMEM`).
    fn msi_dest() -> Option<u8>;
    /// Whether a message vector may have come since the last
    /// [`Platform::take_msi`]: one load, checked after every exit.
    fn msi_any() -> bool;
    /// The message vectors that came since the last call, one bit each
    /// (cleared).
    fn take_msi() -> [u64; 4];
    /// Ends the hypervisor (success or failure), as the command line says.
    fn exit(success: bool);
    /// Boot module `index`.
    fn module(index: usize) -> Option<Module>;
    /// How many boot modules there are.
    fn module_count() -> usize;
    /// RAM the machine has, in bytes.
    fn ram_bytes() -> u64;
    /// CPUs online.
    fn online_cpus() -> u32;
    /// Bytes of the hypervisor heap in use.
    fn heap_used() -> u64;
    /// Bytes of the hypervisor heap free now (domain budgets keep a
    /// reserve of it: `domain/budget.rs`).
    fn heap_free() -> u64;
    /// Size of the hypervisor heap in bytes.
    fn heap_bytes() -> u64;
    /// Prints the hypervisor stacks' high-water marks (a `stacks:` line;
    /// `arch/stackmark.rs`). Host threads have no painted stacks: nothing.
    fn report_stacks() {}
}

/// Writes formatted text to the console (what [`crate::println!`] calls).
pub fn console_fmt(args: fmt::Arguments<'_>) {
    P::console_fmt(args);
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::platform::console_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::platform::console_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}
