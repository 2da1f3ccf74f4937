//! Host work that interrupts and other CPUs leave for the run loop, and
//! each CPU's attention word: after every exit the run loop (`run.rs`)
//! tests its CPU's word with one load, and looks further only when it is
//! not 0.
//!
//! A leaf below every layer, `arch/` included: atomics only, no import
//! from the crate, so the interrupt handlers in `arch/` and the host
//! platform set their bits without reaching up into the runtime.
//!
//! A CPU's word has [`ATTN_TICK`] (its timer interrupt came: due guest
//! timers, the scheduler's tick) and [`ATTN_WORK`] (some host work was
//! noted, on any CPU). Host work: each source keeps its own flag, which
//! its own poll takes (the idle loop polls those directly); the note here
//! only says "some flag may be set". A source sets its flag first, then
//! [`note`] sets its bit in the shared word and [`ATTN_WORK`] in every
//! online CPU's word, all with release; the exit that sees its word takes
//! it ([`take_attention`], acquire) before the flags are polled, so a flag
//! whose bit was taken is seen. A bit set after the take stays for the
//! next exit; the first CPU to poll takes the flags, the others' polls
//! (and one whose flag the idle loop took meanwhile) find nothing.
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// The management line's receive interrupt came (`VIRQ_MGMT_RX`).
pub const MGMT_RX: u32 = 1 << 0;
/// A domain's end report was kept (`VIRQ_DOM_EXC`).
pub const END_RECORDED: u32 = 1 << 1;
/// A device's message interrupt came (`pci::msi_live`).
pub const MSI: u32 = 1 << 2;

static WORK: AtomicU32 = AtomicU32::new(0);

/// In a CPU's attention word: its timer interrupt came.
pub const ATTN_TICK: u32 = 1 << 0;
/// In a CPU's attention word: some host work was noted ([`note`]).
pub const ATTN_WORK: u32 = 1 << 1;
/// In a CPU's attention word: console output waits outside any running
/// domain's queue (the transmit ring, a freed domain's leftovers): set in
/// every CPU's word when some starts to wait, and by a CPU in its own
/// again while some still waits after its share (`run/work.rs`).
pub const ATTN_CONSOLE: u32 = 1 << 2;
/// In a CPU's attention word: the vCPU running there set its guest timer
/// (`HC_SET_TIMER`): the run loop sees whether the CPU's timer must fire
/// sooner for it.
pub const ATTN_TIMER: u32 = 1 << 3;

/// In a CPU's attention word: a wake-up queued a vCPU there that may be
/// better than what runs (`sched::live::kick`, before its reschedule IPI,
/// or alone for its own CPU): the run loop asks the scheduler at this
/// exit.
pub const ATTN_RESCHED: u32 = 1 << 4;

/// CPUs with an attention word: the scheduler's bound
/// (`sched::MAX_CPUS`, checked in `run.rs`).
pub const MAX_CPUS: usize = 256;

/// One CPU's attention word, alone in its cache line: the timer interrupt
/// of one CPU does not move the line another CPU reads after each exit.
#[repr(align(64))]
struct Attention(AtomicU32);

static ATTENTION: [Attention; MAX_CPUS] = [const { Attention(AtomicU32::new(0)) }; MAX_CPUS];

/// One past the highest CPU index that came online: the words [`note`]
/// sets.
static CPUS: AtomicUsize = AtomicUsize::new(0);

/// CPU `cpu` runs (called once by each, before its first run loop).
pub fn online(cpu: usize) {
    CPUS.fetch_max(cpu.saturating_add(1).min(MAX_CPUS), Ordering::AcqRel);
}

/// CPU `cpu`'s attention word (`None` beyond [`MAX_CPUS`]): the run loop
/// looks it up once per slice and loads it after every exit.
#[inline(always)]
pub fn attention(cpu: usize) -> Option<&'static AtomicU32> {
    ATTENTION.get(cpu).map(|a| &a.0)
}

/// CPU `cpu`'s timer interrupt came (its handler, on that CPU).
/// Lock-free: interrupt handlers call it.
#[inline]
pub fn tick(cpu: usize) {
    if let Some(a) = ATTENTION.get(cpu) {
        a.0.fetch_or(ATTN_TICK, Ordering::Release);
    }
}

/// Sets `bits` in CPU `cpu`'s attention word (none beyond [`MAX_CPUS`]).
#[inline]
pub fn raise(cpu: usize, bits: u32) {
    if let Some(a) = ATTENTION.get(cpu) {
        a.0.fetch_or(bits, Ordering::AcqRel);
    }
}

/// What `word` (a CPU's attention word) held since the last take (cleared).
#[inline]
pub fn take_attention(word: &AtomicU32) -> u32 {
    word.swap(0, Ordering::AcqRel)
}

/// Sets `bits` in every online CPU's attention word. Lock-free.
#[inline]
pub fn raise_all(bits: u32) {
    let cpus = CPUS.load(Ordering::Acquire).min(MAX_CPUS);
    for a in ATTENTION.iter().take(cpus) {
        a.0.fetch_or(bits, Ordering::AcqRel);
    }
}

/// Notes that `bits`' flags may be set; the caller set them before. Every
/// online CPU looks at its next exit (any of them may poll).
/// Lock-free: interrupt handlers call it.
#[inline]
pub fn note(bits: u32) {
    WORK.fetch_or(bits, Ordering::Release);
    raise_all(ATTN_WORK);
}

/// Whether some bit is noted (one relaxed load).
#[inline(always)]
pub fn pending() -> bool {
    WORK.load(Ordering::Relaxed) != 0
}

/// The bits noted since the last [`take`] (cleared).
#[inline]
pub fn take() -> u32 {
    WORK.swap(0, Ordering::AcqRel)
}
