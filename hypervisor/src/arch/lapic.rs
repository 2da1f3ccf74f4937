//! The local APIC: x2APIC (MSRs) where the CPU has it, xAPIC (MMIO)
//! otherwise; its timer; and the INIT/SIPI/NMI IPIs used to start and stop
//! CPUs. Intel SDM Vol. 3A chapter 12 (APIC), 12.12 (x2APIC).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::cpu::{rdmsr, wrmsr};
use super::idt::{VECTOR_SPURIOUS, VECTOR_TIMER};

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2: u64 = 1 << 10;

// Register offsets (xAPIC MMIO offset; x2APIC MSR = 0x800 + offset / 16).
const REG_ID: u32 = 0x20;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_ESR: u32 = 0x280;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
const REG_LVT_TIMER: u32 = 0x320;
/// LINT0, LINT1 and error LVTs: present in every local APIC (SDM Vol. 3A
/// 12.5.1; the thermal, performance and CMCI entries are model-specific).
const REG_LVT_LINT0: u32 = 0x350;
const REG_LVT_LINT1: u32 = 0x360;
const REG_LVT_ERROR: u32 = 0x370;
/// An LVT entry's mask bit.
const LVT_MASKED: u32 = 1 << 16;
const REG_TIMER_INIT: u32 = 0x380;
const REG_TIMER_CUR: u32 = 0x390;
const REG_TIMER_DIV: u32 = 0x3e0;

static X2APIC: AtomicBool = AtomicBool::new(false);
static MMIO_BASE: AtomicU64 = AtomicU64::new(0xfee0_0000);
/// LAPIC timer counts per 10 ms at divide-by-16, measured on the boot CPU.
static TIMER_PER_10MS: AtomicU32 = AtomicU32::new(0);

fn read(reg: u32) -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: x2APIC mode is enabled, so MSRs 0x800..0x8ff exist.
        unsafe { rdmsr(0x800 + reg / 16) as u32 }
    } else {
        let addr = MMIO_BASE.load(Ordering::Relaxed) + u64::from(reg);
        // SAFETY: the xAPIC page is identity-mapped uncached; `reg` is a
        // valid register offset.
        unsafe { core::ptr::read_volatile(addr as *const u32) }
    }
}

fn write(reg: u32, value: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: as in `read`; the values written are architectural.
        unsafe { wrmsr(0x800 + reg / 16, u64::from(value)) }
    } else {
        let addr = MMIO_BASE.load(Ordering::Relaxed) + u64::from(reg);
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
    }
}

/// Whether the APIC runs in x2APIC mode.
pub fn is_x2apic() -> bool {
    X2APIC.load(Ordering::Relaxed)
}

/// Enables this CPU's local APIC (x2APIC when `x2apic`), with the spurious
/// vector set and every LVT masked but the timer.
pub fn init_this_cpu(x2apic: bool) {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; setting the enable
    // bit (and the x2APIC bit when CPUID offers it) is the documented way to
    // switch modes (SDM 12.12.1). Bits kept: the base address.
    unsafe {
        let base = rdmsr(IA32_APIC_BASE);
        let mut new = base | APIC_BASE_ENABLE;
        if x2apic {
            new |= APIC_BASE_X2;
        }
        wrmsr(IA32_APIC_BASE, new);
        MMIO_BASE.store(base & 0x000f_ffff_ffff_f000, Ordering::Relaxed);
    }
    X2APIC.store(x2apic, Ordering::Relaxed);
    write(REG_SVR, 0x100 | u32::from(VECTOR_SPURIOUS));
    // Firmware leaves the boot CPU's LINT0 in ExtINT mode and its LINT1
    // delivering NMIs, unmasked (MP spec 3.6.2.2, virtual-wire mode); the
    // hypervisor takes neither (the 8259 is masked, NMIs it sends go
    // through the ICR), so they are masked as the doc above says.
    for lvt in [REG_LVT_LINT0, REG_LVT_LINT1, REG_LVT_ERROR] {
        write(lvt, LVT_MASKED);
    }
    write(REG_ESR, 0);
}

/// This CPU's APIC ID.
pub fn id() -> u32 {
    let v = read(REG_ID);
    if is_x2apic() { v } else { v >> 24 }
}

/// Signals end of interrupt.
pub fn eoi() {
    write(REG_EOI, 0);
}

/// Starts the timer counting down from its maximum, masked, so that
/// [`calibration_stop`] can measure it over the same window that measures
/// or checks the TSC (boot CPU, once).
pub fn calibration_start() {
    write(REG_TIMER_DIV, 0b0011); // divide by 16
    write(REG_LVT_TIMER, 1 << 16); // masked, one-shot
    write(REG_TIMER_INIT, u32::MAX);
}

/// Stops the measurement begun by [`calibration_start`]; returns the
/// counts (at divide-by-16) that went by.
pub fn calibration_stop() -> u64 {
    let elapsed = u64::from(u32::MAX - read(REG_TIMER_CUR));
    write(REG_TIMER_INIT, 0);
    elapsed
}

/// The timer's input clock is `hz` (before the divider): remembers its
/// counts per 10 ms at divide-by-16 and returns them.
pub fn set_input_hz(hz: u64) -> u32 {
    let per_10ms = (hz / 16 / 100).clamp(1, u64::from(u32::MAX)) as u32;
    TIMER_PER_10MS.store(per_10ms, Ordering::Relaxed);
    per_10ms
}

/// Timer counts of one tick (the longest the timer is ever armed for),
/// set by [`start_timer`].
static TICK_COUNT: AtomicU32 = AtomicU32::new(0);

/// Starts this CPU's timer: one-shot, re-armed for one tick (`1/hz` s) by
/// every timer interrupt ([`rearm_tick`]), and sooner by the scheduler
/// ([`arm_ns`]) when a time slice or a guest timer ends first. So a CPU
/// always has an interrupt coming within one tick, halted or not. The
/// first interrupt comes after [`FIRST_TICK_US`], not a whole tick: boot
/// waits for every CPU's first one before it calls itself ready.
pub fn start_timer(hz: u32) {
    let per_10ms = u64::from(TIMER_PER_10MS.load(Ordering::Relaxed).max(1));
    let count = (per_10ms * 100 / u64::from(hz.max(1))).clamp(1, u64::from(u32::MAX)) as u32;
    TICK_COUNT.store(count, Ordering::Relaxed);
    write(REG_TIMER_DIV, 0b0011);
    write(REG_LVT_TIMER, u32::from(VECTOR_TIMER)); // one-shot (bits 18:17 = 0)
    let first = (per_10ms * FIRST_TICK_US / 10_000).clamp(1, u64::from(count)) as u32;
    write(REG_TIMER_INIT, first);
}

/// Microseconds to a CPU's first timer interrupt.
const FIRST_TICK_US: u64 = 20;

/// From the timer interrupt: the next interrupt one tick from now.
pub fn rearm_tick() {
    write(REG_TIMER_INIT, TICK_COUNT.load(Ordering::Relaxed).max(1));
}

/// Arms this CPU's timer to interrupt `ns` nanoseconds from now (at most
/// one tick; at least one timer count). Writing the initial count restarts
/// the one-shot count-down (SDM Vol. 3A 12.5.4).
pub fn arm_ns(ns: u64) {
    let per_10ms = u64::from(TIMER_PER_10MS.load(Ordering::Relaxed).max(1));
    let tick = u64::from(TICK_COUNT.load(Ordering::Relaxed).max(1));
    let count = (u128::from(ns) * u128::from(per_10ms) / 10_000_000).min(u128::from(tick)) as u64;
    write(REG_TIMER_INIT, count.max(1) as u32);
}

fn send_ipi(apic_id: u32, icr_low: u32) {
    if is_x2apic() {
        // SAFETY: x2APIC ICR is one 64-bit MSR (0x830), destination in the
        // high half (SDM 12.12.9).
        unsafe { wrmsr(0x830, (u64::from(apic_id) << 32) | u64::from(icr_low)) };
    } else {
        write(REG_ICR_HIGH, apic_id << 24);
        write(REG_ICR_LOW, icr_low);
        // Wait for the delivery status bit to clear.
        let mut spins = 0u32;
        while read(REG_ICR_LOW) & (1 << 12) != 0 && spins < 1_000_000 {
            core::hint::spin_loop();
            spins += 1;
        }
    }
}

/// INIT IPI (assert, level-triggered).
pub fn send_init(apic_id: u32) {
    send_ipi(apic_id, 0x0000_c500);
}

/// Startup IPI: the target starts in real mode at `page << 12`.
pub fn send_sipi(apic_id: u32, page: u8) {
    send_ipi(apic_id, 0x0000_4600 | u32::from(page));
}

/// A fixed-delivery interrupt with `vector` to the CPU with `apic_id`.
pub fn send_fixed(apic_id: u32, vector: u8) {
    send_ipi(apic_id, 0x0000_4000 | u32::from(vector));
}

/// NMI to every other CPU.
pub fn send_nmi_all_but_self() {
    // Destination shorthand 0b11 (all excluding self), delivery mode NMI.
    send_ipi(0, 0x000c_0400);
}
