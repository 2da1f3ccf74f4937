//! Stack high-water marks: every hypervisor stack (each CPU's own stack
//! and its three IST stacks) is painted with a pattern before first use;
//! the deepest use is the lowest word no longer holding the pattern.
//! [`report`] prints them as one `stacks:` line, which boot tests read to
//! prove the stacks keep their margin (issue 13: the domain-create path
//! came within 2 KiB of the old 64 KiB stack).
//!
//! Counting is by scanning, not by instrumentation: nothing on the hot
//! path changes, and a frame that was reserved but never written does not
//! count (a stack probe writes one word per 4 KiB page, so a frame that
//! skipped a page would show as shallower than it was by less than a page).
//! Another CPU's stack is read while it runs: the answer is a lower bound
//! of that instant, which is what a high-water mark is.

use core::sync::atomic::{AtomicU64, Ordering};

use super::percpu::MAX_CPUS;

/// What an untouched stack word holds ("KSTACKPT").
const PAINT: u64 = 0x5450_4b43_4154_534b;

/// A CPU's main stack and its #DF, NMI and #MC stacks (IST 1..3).
const KINDS: usize = 4;
/// Index of the main stack in a CPU's record.
const MAIN: usize = 0;

/// `[low, high)` of each registered stack, by CPU and kind (0 = none).
static LOW: [[AtomicU64; KINDS]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; KINDS] }; MAX_CPUS];
static HIGH: [[AtomicU64; KINDS]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; KINDS] }; MAX_CPUS];
/// The boot CPU's boot stack `[low, high)`, once the boot CPU left it for
/// a stack of its own ([`boot_cpu_moved`]).
static BOOT: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// Paints `[low, high)` (8-byte aligned) and records it as CPU `cpu`'s
/// stack of `kind` (0 main, 1..=3 the IST slots). The range must not be in
/// use: a stack not yet handed to its CPU, or the part of the running
/// stack below the caller's frame ([`paint_running`]).
fn paint(cpu: usize, kind: usize, low: u64, high: u64) {
    let (Some(l), Some(h)) = (
        LOW.get(cpu).and_then(|k| k.get(kind)),
        HIGH.get(cpu).and_then(|k| k.get(kind)),
    ) else {
        return;
    };
    let mut a = low;
    while a + 8 <= high {
        // SAFETY: `[low, high)` is identity-mapped stack memory that
        // nothing uses now (this function's contract); volatile so the
        // pattern is really stored, word by word.
        unsafe { core::ptr::write_volatile(a as *mut u64, PAINT) };
        a += 8;
    }
    l.store(low, Ordering::Relaxed);
    h.store(high, Ordering::Release);
}

/// Registers and paints a stack allocated for CPU `cpu` (not yet in use):
/// `top` as [`super::paging::alloc_stack`] returned it, `pages` long.
pub fn register(cpu: usize, kind: usize, top: u64, pages: u64) {
    paint(cpu, kind, top - pages * 4096, top);
}

/// Registers the boot CPU's stack, on which this runs: paints from its
/// bottom up to a little below the caller's frame.
pub fn paint_running(cpu: usize, low: u64, high: u64) {
    let rsp: u64;
    // SAFETY: reads the stack pointer; no memory is touched.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack)) };
    // 512 bytes below RSP: room for `paint`'s own frame and the calls it
    // makes (it makes none; the margin is generous).
    let end = rsp.saturating_sub(512) & !7;
    if low >= end {
        return;
    }
    paint(cpu, MAIN, low, end);
    // The part above `end` was in use before painting: count it as used.
    if let Some(h) = HIGH.get(cpu).and_then(|k| k.get(MAIN)) {
        h.store(high, Ordering::Release);
    }
}

/// The boot CPU leaves the boot stack for a new one (`top`, `pages` long,
/// not yet in use): the boot stack's mark is kept as `boot=`, the new
/// stack's is `cpu0=` from now on.
pub fn boot_cpu_moved(top: u64, pages: u64) {
    let [boot_low, boot_high] = &BOOT;
    if let (Some(l), Some(h)) = (
        LOW.first().and_then(|k| k.get(MAIN)),
        HIGH.first().and_then(|k| k.get(MAIN)),
    ) {
        boot_low.store(l.load(Ordering::Relaxed), Ordering::Relaxed);
        boot_high.store(h.load(Ordering::Relaxed), Ordering::Release);
    }
    register(0, MAIN, top, pages);
}

/// Bytes of stack `(cpu, kind)` ever used, and its size; `None` if no such
/// stack was registered.
pub fn used(cpu: usize, kind: usize) -> Option<(u64, u64)> {
    let high = HIGH.get(cpu)?.get(kind)?.load(Ordering::Acquire);
    let low = LOW.get(cpu)?.get(kind)?.load(Ordering::Relaxed);
    scan(low, high)
}

/// Bytes of `[low, high)` below `high` no longer painted, and its size.
fn scan(low: u64, high: u64) -> Option<(u64, u64)> {
    if high == 0 {
        return None;
    }
    let mut a = low;
    // SAFETY: `[low, high)` is a registered, identity-mapped stack: its
    // memory stays mapped and is only read here (volatile: another CPU may
    // be writing it; a torn answer is still a valid word).
    while a < high && unsafe { core::ptr::read_volatile(a as *const u64) } == PAINT {
        a += 8;
    }
    Some((high - a, high - low))
}

/// Prints `stacks: size=S ist_size=I cpu0=U0 ... ist_max=M boot=B
/// boot_size=BS` where each `cpuN=` is the deepest use of that CPU's own
/// stack in bytes, `ist_max` the deepest use of any IST stack and `boot`
/// that of the boot stack (from its painting to the switch; absent while
/// the boot CPU still runs on it).
pub fn report() {
    let mut size = 0;
    let mut ist_size = 0;
    let mut ist_max = 0;
    let mut line = heapless_line();
    for cpu in 0..MAX_CPUS {
        let Some((u, s)) = used(cpu, MAIN) else {
            continue;
        };
        size = size.max(s);
        line.push(cpu, u);
        for kind in 1..KINDS {
            if let Some((u, s)) = used(cpu, kind) {
                ist_size = ist_size.max(s);
                ist_max = ist_max.max(u);
            }
        }
    }
    let [boot_low, boot_high] = &BOOT;
    let boot = scan(
        boot_low.load(Ordering::Relaxed),
        boot_high.load(Ordering::Acquire),
    );
    let (boot, boot_size) = boot.unwrap_or((0, 0));
    super::serial::write_fmt(format_args!(
        "stacks: size={size} ist_size={ist_size}{line} ist_max={ist_max} boot={boot} boot_size={boot_size}\n"
    ));
}

/// The per-CPU part of the `stacks:` line, built without the heap (the
/// report may run when the heap is the thing that broke).
struct Line {
    used: [u64; MAX_CPUS],
    present: [bool; MAX_CPUS],
}

fn heapless_line() -> Line {
    Line {
        used: [0; MAX_CPUS],
        present: [false; MAX_CPUS],
    }
}

impl Line {
    fn push(&mut self, cpu: usize, used: u64) {
        if let (Some(u), Some(p)) = (self.used.get_mut(cpu), self.present.get_mut(cpu)) {
            *u = used;
            *p = true;
        }
    }
}

impl core::fmt::Display for Line {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (cpu, (u, p)) in self.used.iter().zip(&self.present).enumerate() {
            if *p {
                write!(f, " cpu{cpu}={u}")?;
            }
        }
        Ok(())
    }
}
