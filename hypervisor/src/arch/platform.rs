//! The machine behind [`crate::platform::Platform`] on bare metal: the
//! LAPIC (IPIs, the one-shot timer), RDTSC, the frame allocator, the
//! identity map and the serial port.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{cpu, exit, frames, heap, lapic, modules, percpu, physmem, pit, serial};
use crate::platform::{Module, Platform};

/// RAM the machine has (set by `start.rs` from the memory map).
pub static RAM_BYTES: AtomicU64 = AtomicU64::new(0);
/// CPUs online (set by `start.rs` once the APs are up).
pub static ONLINE_CPUS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// This machine.
pub struct Machine;

/// Whether `[hpa, hpa + len)` is in the identity map: the frame-access
/// functions refuse anything else (a runtime bug, not guest input).
fn mapped(hpa: u64, len: u64) -> bool {
    let ok = hpa != 0 && physmem::is_mapped(hpa, len);
    if !ok {
        log::error!("physical access {hpa:#x} + {len:#x} outside the identity map refused");
    }
    ok
}

impl Platform for Machine {
    #[inline]
    fn cpu_index() -> usize {
        percpu::cpu_index()
    }

    fn send_ipi(cpu: usize) {
        if let Some(c) = percpu::cpu(cpu) {
            // The shoot-down vector's handler only acknowledges: a plain kick.
            lapic::send_fixed(
                c.apic_id.load(Ordering::Relaxed),
                super::idt::VECTOR_SHOOTDOWN,
            );
        }
    }

    #[inline]
    fn arm_timer_ns(ns: u64) {
        lapic::arm_ns(ns);
    }

    #[inline]
    fn tsc() -> u64 {
        cpu::rdtsc()
    }

    #[inline]
    fn tsc_hz() -> u64 {
        pit::tsc_hz()
    }

    #[inline]
    fn interrupts_off() {
        x86_64::instructions::interrupts::disable();
    }

    #[inline]
    fn interrupts_on() {
        x86_64::instructions::interrupts::enable();
    }

    fn halt() {
        // STI's one-instruction shadow covers the HLT: an interrupt made
        // pending while they were masked ends the halt (SDM Vol. 2B, STI).
        x86_64::instructions::interrupts::enable_and_hlt();
    }

    fn delay_us(us: u64) {
        pit::delay_us(us);
    }

    fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
        let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
        [r.eax, r.ebx, r.ecx, r.edx]
    }

    fn alloc_frame() -> Option<u64> {
        frames::alloc_frame()
    }

    fn alloc_frame_anywhere() -> Option<u64> {
        frames::alloc_frame_anywhere()
    }

    fn alloc_aligned(count: u64, align: u64) -> Option<u64> {
        frames::alloc_aligned(count, align)
    }

    fn free_frames(base: u64, count: u64) {
        frames::free_frames(base, count);
    }

    fn free_frame_count() -> u64 {
        frames::free_frame_count()
    }

    fn read_phys(hpa: u64, buf: &mut [u8]) {
        if !mapped(hpa, buf.len() as u64) {
            return;
        }
        // SAFETY: the range is identity-mapped (checked) and, by the
        // platform's contract, in frames the caller owns. A guest may write
        // the same bytes meanwhile: they are copied, never interpreted in
        // place.
        unsafe { core::ptr::copy_nonoverlapping(hpa as *const u8, buf.as_mut_ptr(), buf.len()) }
    }

    fn write_phys(hpa: u64, bytes: &[u8]) {
        if !mapped(hpa, bytes.len() as u64) {
            return;
        }
        // SAFETY: as in `read_phys`; the caller owns the frames it writes.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), hpa as *mut u8, bytes.len()) }
    }

    fn fill_phys(hpa: u64, len: u64, byte: u8) {
        if !mapped(hpa, len) {
            return;
        }
        // SAFETY: as in `write_phys`.
        unsafe { core::ptr::write_bytes(hpa as *mut u8, byte, len as usize) }
    }

    fn phys_word(hpa: u64) -> Option<&'static AtomicU64> {
        if !hpa.is_multiple_of(8) || !mapped(hpa, 8) {
            return None;
        }
        // SAFETY: an aligned, identity-mapped word in a frame the caller
        // owns and keeps for as long as it uses the reference (a pinned
        // control area, see `evtchn/area.rs`). The guest writes it
        // concurrently, so it is used through atomic operations only; any
        // bit pattern is a valid u64.
        Some(unsafe { AtomicU64::from_ptr(hpa as *mut u64) })
    }

    fn phys_bytes(hpa: u64, len: usize) -> Option<&'static [u8]> {
        if len == 0 || !mapped(hpa, len as u64) {
            return None;
        }
        // SAFETY: the range is inside the identity map (checked above); the
        // caller took these frames and nobody else writes them while it
        // reads the slice (`domain/staged.rs` frees them only after).
        Some(unsafe { physmem::slice(hpa, len) })
    }

    fn console_fmt(args: fmt::Arguments<'_>) {
        serial::write_fmt(args);
    }

    fn console_raw(bytes: &[u8]) {
        serial::write_raw(bytes);
    }

    #[inline]
    fn console_push() {
        serial::push();
    }

    fn console_waiting() -> bool {
        serial::waiting()
    }

    fn console_pending() -> usize {
        serial::pending()
    }

    fn console_guest_room() -> usize {
        serial::guest_room()
    }

    fn console_input(buf: &mut [u8]) -> usize {
        serial::read_available(buf)
    }

    fn mgmt_write(bytes: &[u8]) -> bool {
        serial::mgmt_write(bytes)
    }

    fn mgmt_read(buf: &mut [u8]) -> Option<usize> {
        serial::mgmt_read(buf)
    }

    fn mgmt_irq() -> bool {
        serial::mgmt_irq()
    }

    #[inline]
    fn take_mgmt_rx() -> bool {
        serial::take_mgmt_rx()
    }

    fn msi_dest() -> Option<u8> {
        super::msi::dest()
    }

    #[inline(always)]
    fn msi_any() -> bool {
        super::msi::any()
    }

    fn take_msi() -> [u64; 4] {
        super::msi::take()
    }

    fn exit(success: bool) {
        exit::exit(success);
    }

    fn module(index: usize) -> Option<Module> {
        modules::modules().get(index).map(|m| Module {
            name: m.name.as_str(),
            args: m.args.as_str(),
            bytes: m.bytes(),
            elf: m.elf,
        })
    }

    fn module_count() -> usize {
        modules::modules().len()
    }

    fn ram_bytes() -> u64 {
        RAM_BYTES.load(Ordering::Relaxed)
    }

    fn online_cpus() -> u32 {
        ONLINE_CPUS.load(Ordering::Relaxed)
    }

    fn heap_used() -> u64 {
        heap::usage().0 as u64
    }

    fn heap_free() -> u64 {
        heap::usage().1 as u64
    }

    fn heap_bytes() -> u64 {
        let (used, free) = heap::usage();
        (used + free) as u64
    }

    fn report_stacks() {
        super::stackmark::report();
    }
}
