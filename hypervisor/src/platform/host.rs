//! The platform in host builds: ordinary threads play the CPUs, a block of
//! atomic words plays physical memory, the monotonic clock plays the TSC.
//!
//! - **CPUs.** A thread becomes CPU `i` with [`become_cpu`]; each CPU has a
//!   pending-interrupt flag and a timer deadline under one lock, and a
//!   condition variable. [`Platform::send_ipi`] sets the flag and wakes the
//!   CPU; [`Platform::halt`] sleeps until the flag is set or the deadline
//!   passes, as STI;HLT does: an IPI sent while "interrupts are masked"
//!   (between [`Platform::interrupts_off`] and the halt) stays pending and
//!   ends the halt at once. [`Platform::interrupts_on`] takes (clears) a
//!   pending IPI, as the hardware would by running its handler.
//! - **Timer.** One-shot, re-armed one tick ahead when it fires (as the
//!   LAPIC handler does). It fires lazily: when the CPU takes interrupts
//!   ([`Platform::interrupts_on`], after every exit of a fake vCPU), halts
//!   or waits in a guest ([`wait_for_interrupt`]) past its deadline.
//! - **Time.** The TSC counts nanoseconds since the first use (1 GHz), the
//!   same on every thread.
//! - **Memory.** [`PHYS_SIZE`] bytes at [`PHYS_BASE`] (so 0 is never a
//!   frame), handed out by the hypervisor's own [`FrameAllocator`]: frame
//!   counts in tests are the real allocator's.
//! - **Console.** Everything printed (and every log record of level `warn`
//!   or worse) is kept for the tests to read ([`console_take`]).
//!
//! Tests that use the runtime share its global state (the domain list, the
//! scheduler, the timer list), so they run one at a time ([`exclusive`]).

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::boxed::Box;
use std::cell::Cell;
use std::string::String;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use std::vec::Vec;

use super::{Module, Platform};
use crate::boot::{MemoryRegion, RegionKind};
use crate::mm::frame::FrameAllocator;

/// The host machine.
pub struct HostMachine;

/// Most CPU threads.
pub const CPUS: usize = 8;
/// First byte of the simulated physical memory.
pub const PHYS_BASE: u64 = 16 << 20;
/// Its size: room for a few small domains at once.
pub const PHYS_SIZE: u64 = 64 << 20;
/// The timer's period when nothing asks for sooner (the hardware's tick).
const TICK_NS: u64 = 10_000_000;

#[derive(Default)]
struct Irq {
    /// An IPI came and was not taken yet.
    pending: bool,
    /// TSC value at which the timer fires (0: not armed yet).
    deadline: u64,
}

struct Cpu {
    index: usize,
    irq: Mutex<Irq>,
    cv: Condvar,
    ticks: AtomicU64,
}

struct Machine {
    cpus: Vec<Cpu>,
    words: Box<[AtomicU64]>,
    frames: Mutex<FrameAllocator<'static>>,
    epoch: Instant,
}

fn machine() -> &'static Machine {
    static M: OnceLock<Machine> = OnceLock::new();
    M.get_or_init(|| {
        let map = [MemoryRegion {
            start: PHYS_BASE,
            end: PHYS_BASE + PHYS_SIZE,
            kind: RegionKind::Usable,
        }];
        let storage: &'static mut [u64] =
            Box::leak(std::vec![0u64; FrameAllocator::storage_words(&map)].into_boxed_slice());
        let frames = match FrameAllocator::new(&map, &[], storage) {
            Ok(f) => f,
            Err(e) => panic!("host frame allocator: {e}"),
        };
        Machine {
            cpus: (0..CPUS)
                .map(|index| Cpu {
                    index,
                    irq: Mutex::new(Irq::default()),
                    cv: Condvar::new(),
                    ticks: AtomicU64::new(0),
                })
                .collect(),
            words: (0..PHYS_SIZE / 8).map(|_| AtomicU64::new(0)).collect(),
            frames: Mutex::new(frames),
            epoch: Instant::now(),
        }
    })
}

/// A lock that survives a panicking test (the next test still runs).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

std::thread_local! {
    static THIS_CPU: Cell<usize> = const { Cell::new(0) };
}

/// The calling thread plays CPU `index` from now on.
pub fn become_cpu(index: usize) {
    assert!(index < CPUS, "host CPU {index} beyond {CPUS}");
    THIS_CPU.with(|c| c.set(index));
    crate::hostwork::online(index);
}

fn this() -> &'static Cpu {
    &machine().cpus[THIS_CPU.with(Cell::get)]
}

/// A fixed time for the TSC (0: the clock runs).
static FROZEN: AtomicU64 = AtomicU64::new(0);

/// Stops the clock at `tsc` (`None`: lets it run again), so that a test
/// that replays interleavings sees the same time on every run.
pub fn freeze_time(tsc: Option<u64>) {
    FROZEN.store(tsc.unwrap_or(0), Ordering::Release);
}

fn now() -> u64 {
    let frozen = FROZEN.load(Ordering::Acquire);
    if frozen != 0 {
        return frozen;
    }
    // Never 0: a deadline of 0 means "none" in the runtime.
    u64::try_from(machine().epoch.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// The timer of `cpu` (its `irq` locked) fired if its deadline passed:
/// counts the interrupt (in its attention word too, as the LAPIC
/// handler does) and re-arms one tick ahead.
fn timer_fired(cpu: &Cpu, irq: &mut Irq, t: u64) -> bool {
    if irq.deadline != 0 && t >= irq.deadline {
        cpu.ticks.fetch_add(1, Ordering::Relaxed);
        crate::hostwork::tick(cpu.index);
        irq.deadline = t + TICK_NS;
        return true;
    }
    false
}

/// Waits until this CPU gets an interrupt (an IPI or its timer), leaving it
/// pending for [`Platform::interrupts_on`] to take: a guest that runs
/// until the host interrupts it (the fake vCPU's `spin`).
pub fn wait_for_interrupt() {
    let cpu = this();
    let mut irq = lock(&cpu.irq);
    loop {
        if irq.pending {
            return;
        }
        let t = now();
        if timer_fired(cpu, &mut irq, t) {
            return;
        }
        let wait = if irq.deadline == 0 {
            TICK_NS
        } else {
            irq.deadline - t
        };
        irq = cpu
            .cv
            .wait_timeout(irq, Duration::from_nanos(wait))
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
}

/// The TSC value at which the calling CPU's timer is armed to fire (0:
/// not armed yet).
pub fn armed_timer() -> u64 {
    lock(&this().irq).deadline
}

/// Serializes the tests that drive the runtime (one global runtime).
pub fn exclusive() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    let g = lock(&ONE);
    for c in &machine().cpus {
        *lock(&c.irq) = Irq::default();
    }
    console_take();
    g
}

static CONSOLE: Mutex<String> = Mutex::new(String::new());
/// The simulated management line's receive interrupt: routed, and came
/// (host tests set them with [`set_mgmt_irq`] and [`raise_mgmt_rx`]).
static MGMT_IRQ: AtomicBool = AtomicBool::new(false);
static MGMT_RX: AtomicBool = AtomicBool::new(false);

/// Says whether the simulated management line has a receive interrupt.
pub fn set_mgmt_irq(on: bool) {
    MGMT_IRQ.store(on, Ordering::Release);
}

/// The simulated management line's receive interrupt fires.
pub fn raise_mgmt_rx() {
    MGMT_RX.store(true, Ordering::Release);
    crate::hostwork::note(crate::hostwork::MGMT_RX);
}

/// Simulated device-message vectors that came (host tests: [`raise_msi`]).
static MSI: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// A simulated device sends the message carrying vector `v`.
pub fn raise_msi(v: u8) {
    MSI[usize::from(v / 64)].fetch_or(1 << (v % 64), Ordering::AcqRel);
    crate::hostwork::note(crate::hostwork::MSI);
}
static EXITED: AtomicU8 = AtomicU8::new(0);
static ONLINE: AtomicU32 = AtomicU32::new(1);
static MODULES: Mutex<Vec<Module>> = Mutex::new(Vec::new());

/// Everything printed since the last call.
pub fn console_take() -> String {
    core::mem::take(&mut *lock(&CONSOLE))
}

/// How many CPUs `HC_DOMCTL_HOST_INFO` reports.
pub fn set_online_cpus(n: u32) {
    ONLINE.store(n, Ordering::Relaxed);
}

/// The boot modules the control domain sees (`HC_DOMCTL_MODULE_*`).
pub fn set_modules(m: Vec<Module>) {
    *lock(&MODULES) = m;
}

/// Whether the hypervisor asked to end: `Some(success)`.
pub fn exited() -> Option<bool> {
    match EXITED.load(Ordering::Acquire) {
        1 => Some(true),
        2 => Some(false),
        _ => None,
    }
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            console_write(format_args!("[{}] {}\n", r.level(), r.args()));
        }
    }
    fn flush(&self) {}
}

/// Sends `warn!` and `error!` records to the kept console.
pub fn install_logger() {
    static LOGGER: Logger = Logger;
    static ONCE: AtomicBool = AtomicBool::new(false);
    if !ONCE.swap(true, Ordering::AcqRel) {
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(log::LevelFilter::Warn);
    }
}

fn console_write(args: fmt::Arguments<'_>) {
    use fmt::Write;
    let _ = lock(&CONSOLE).write_fmt(args);
}

/// The word holding byte `hpa` and the byte's shift in it.
fn word_of(hpa: u64) -> Option<(&'static AtomicU64, u32)> {
    let off = hpa.checked_sub(PHYS_BASE)?;
    let w = machine().words.get(usize::try_from(off / 8).ok()?)?;
    Some((w, (off % 8) as u32 * 8))
}

fn in_memory(hpa: u64, len: u64) -> bool {
    let ok = hpa >= PHYS_BASE
        && hpa
            .checked_add(len)
            .is_some_and(|e| e <= PHYS_BASE + PHYS_SIZE);
    if !ok {
        console_write(format_args!(
            "[ERROR] physical access {hpa:#x} + {len:#x} outside memory refused\n"
        ));
    }
    ok
}

fn store_byte(hpa: u64, b: u8) {
    if let Some((w, shift)) = word_of(hpa) {
        let mask = 0xffu64 << shift;
        let _ = w.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            Some((v & !mask) | (u64::from(b) << shift))
        });
    }
}

impl Platform for HostMachine {
    fn cpu_index() -> usize {
        THIS_CPU.with(Cell::get)
    }

    fn send_ipi(cpu: usize) {
        if let Some(c) = machine().cpus.get(cpu) {
            lock(&c.irq).pending = true;
            c.cv.notify_all();
        }
    }

    fn arm_timer_ns(ns: u64) {
        lock(&this().irq).deadline = now().saturating_add(ns.max(1));
    }

    fn tsc() -> u64 {
        now()
    }

    fn tsc_hz() -> u64 {
        1_000_000_000
    }

    fn interrupts_off() {}

    fn interrupts_on() {
        let cpu = this();
        let mut irq = lock(&cpu.irq);
        irq.pending = false;
        timer_fired(cpu, &mut irq, now());
    }

    fn halt() {
        wait_for_interrupt();
        Self::interrupts_on();
    }

    fn delay_us(us: u64) {
        let end = now().saturating_add(us.saturating_mul(1000));
        while now() < end {
            std::thread::yield_now();
        }
    }

    fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
        #[cfg(target_arch = "x86_64")]
        {
            let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
            [r.eax, r.ebx, r.ecx, r.edx]
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (leaf, subleaf);
            [0; 4]
        }
    }

    fn alloc_frame() -> Option<u64> {
        lock(&machine().frames).alloc()
    }

    fn alloc_frame_anywhere() -> Option<u64> {
        lock(&machine().frames).alloc()
    }

    fn alloc_aligned(count: u64, align: u64) -> Option<u64> {
        lock(&machine().frames).alloc_contiguous(
            usize::try_from(count).ok()?,
            align,
            PHYS_BASE + PHYS_SIZE,
        )
    }

    fn free_frames(base: u64, count: u64) {
        let mut f = lock(&machine().frames);
        for i in 0..count {
            if let Err(e) = f.free(base + i * 4096) {
                drop(f);
                console_write(format_args!(
                    "[ERROR] freeing frame {:#x}: {e}\n",
                    base + i * 4096
                ));
                f = lock(&machine().frames);
            }
        }
    }

    fn free_frame_count() -> u64 {
        lock(&machine().frames).free_frames()
    }

    fn read_phys(hpa: u64, buf: &mut [u8]) {
        if !in_memory(hpa, buf.len() as u64) {
            return;
        }
        for (i, b) in buf.iter_mut().enumerate() {
            if let Some((w, shift)) = word_of(hpa + i as u64) {
                *b = (w.load(Ordering::Acquire) >> shift) as u8;
            }
        }
    }

    fn write_phys(hpa: u64, bytes: &[u8]) {
        if !in_memory(hpa, bytes.len() as u64) {
            return;
        }
        for (i, &b) in bytes.iter().enumerate() {
            store_byte(hpa + i as u64, b);
        }
    }

    fn fill_phys(hpa: u64, len: u64, byte: u8) {
        if !in_memory(hpa, len) {
            return;
        }
        let whole = u64::from_ne_bytes([byte; 8]);
        let mut a = hpa;
        let end = hpa + len;
        while a < end {
            match word_of(a) {
                Some((w, 0)) if end - a >= 8 => {
                    w.store(whole, Ordering::Release);
                    a += 8;
                }
                _ => {
                    store_byte(a, byte);
                    a += 1;
                }
            }
        }
    }

    fn phys_word(hpa: u64) -> Option<&'static AtomicU64> {
        if !hpa.is_multiple_of(8) || !in_memory(hpa, 8) {
            return None;
        }
        word_of(hpa).map(|(w, _)| w)
    }

    fn console_fmt(args: fmt::Arguments<'_>) {
        console_write(args);
    }

    fn console_raw(bytes: &[u8]) {
        console_write(format_args!("{}", String::from_utf8_lossy(bytes)));
    }

    /// Host tests write the console at once: no ring.
    fn console_push() {}

    fn console_waiting() -> bool {
        false
    }

    fn console_pending() -> usize {
        0
    }

    fn console_guest_room() -> usize {
        usize::MAX
    }

    fn console_input(_buf: &mut [u8]) -> usize {
        0
    }

    fn mgmt_write(_bytes: &[u8]) -> bool {
        false
    }

    fn mgmt_read(_buf: &mut [u8]) -> Option<usize> {
        None
    }

    fn mgmt_irq() -> bool {
        MGMT_IRQ.load(Ordering::Acquire)
    }

    fn take_mgmt_rx() -> bool {
        MGMT_RX.swap(false, Ordering::AcqRel)
    }

    fn msi_dest() -> Option<u8> {
        Some(0)
    }

    fn msi_any() -> bool {
        MSI.iter().any(|w| w.load(Ordering::Acquire) != 0)
    }

    fn take_msi() -> [u64; 4] {
        core::array::from_fn(|i| MSI[i].swap(0, Ordering::AcqRel))
    }

    fn exit(success: bool) {
        EXITED.store(if success { 1 } else { 2 }, Ordering::Release);
    }

    fn module(index: usize) -> Option<Module> {
        lock(&MODULES).get(index).copied()
    }

    fn module_count() -> usize {
        lock(&MODULES).len()
    }

    fn ram_bytes() -> u64 {
        PHYS_SIZE
    }

    fn online_cpus() -> u32 {
        ONLINE.load(Ordering::Relaxed)
    }

    fn heap_used() -> u64 {
        0
    }

    /// The host's heap is the process's: as good as endless.
    fn heap_free() -> u64 {
        1 << 40
    }

    fn heap_bytes() -> u64 {
        1 << 40
    }
}
