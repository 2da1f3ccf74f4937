//! The boot CPU's hardware set-up, as safe steps for `start.rs`: the early
//! descriptor tables, the frame allocator's bitmap, the hypervisor's own
//! page tables, the heap and the exception stacks. Each step's `unsafe`
//! is here, guarded so that it runs once, in order, on the boot CPU
//! (`start.rs` has none: it only orchestrates).

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use x86_64::PhysAddr;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;

use super::{entry, frames, gdt, heap, idt, paging, physmem, smp};
use crate::boot::MemoryRegion;
use crate::mm::frame::{FrameAllocator, FrameError};

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
}

fn sym(s: *const u8) -> u64 {
    s as u64
}

/// The hypervisor image's physical range `[start, end)` (the linker script
/// places it; it runs identity-mapped).
pub fn image_range() -> (u64, u64) {
    (sym(&raw const __image_start), sym(&raw const __image_end))
}

/// The TSC value the entry code read before Rust ran.
pub fn boot_tsc() -> u64 {
    // SAFETY: written once by the entry code before any Rust code ran and
    // never again; a plain aligned read.
    unsafe { core::ptr::read_volatile(&raw const entry::__boot_tsc) }
}

/// How far the boot CPU's set-up has come: each step runs once, in order.
static STEP: AtomicU8 = AtomicU8::new(0);

/// Takes step `n` if the previous one was `n - 1`; `false`: already taken
/// (or out of order), do nothing.
fn step(n: u8) -> bool {
    STEP.compare_exchange(n - 1, n, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// First thing on the boot CPU: an IDT and a GDT without IST stacks, so a
/// fault from here on is reported instead of triple-faulting.
pub fn early_tables() {
    if !step(1) {
        return;
    }
    // SAFETY: the first step on the boot CPU (guarded above): interrupts
    // are off and no other CPU runs, as `idt::init` and `gdt::load` ask.
    unsafe {
        idt::init();
        gdt::load(0, [0; 3]);
    }
    idt::load();
}

/// Why the frame allocator could not be set up.
#[derive(Debug)]
pub enum FramesError {
    /// No usable range holds the bitmap (its size in bytes).
    NoRoom(u64),
    /// The chosen range is outside the boot identity map (its address).
    Unmapped(u64),
    /// The allocator refused the map.
    Allocator(FrameError),
    /// No room left in the list of reserved ranges.
    TooManyReserved,
    /// Called twice, or before [`early_tables`].
    OutOfOrder,
}

/// Puts the frame allocator's bitmap in usable RAM that no range in
/// `reserved` touches (the bitmap's range is added to it) and installs the
/// allocator. Returns the bitmap's size in bytes.
pub fn install_frames<const N: usize>(
    map: &[MemoryRegion],
    reserved: &mut arrayvec::ArrayVec<(u64, u64), N>,
) -> Result<u64, FramesError> {
    if !step(2) {
        return Err(FramesError::OutOfOrder);
    }
    let words = FrameAllocator::storage_words(map);
    let bitmap_bytes = (words as u64 * 8).next_multiple_of(4096);
    let bitmap = FrameAllocator::find_storage(map, reserved, bitmap_bytes)
        .ok_or(FramesError::NoRoom(bitmap_bytes))?;
    if !physmem::is_mapped(bitmap, bitmap_bytes) {
        return Err(FramesError::Unmapped(bitmap));
    }
    if reserved.try_push((bitmap, bitmap + bitmap_bytes)).is_err() {
        return Err(FramesError::TooManyReserved);
    }
    // SAFETY: `find_storage` chose usable RAM that no reserved range (image,
    // modules, loader data) touches; it is identity-mapped (checked) and the
    // allocator is its only user from now on (this step runs once).
    let storage = unsafe { core::slice::from_raw_parts_mut(bitmap as *mut u64, words) };
    let a = FrameAllocator::new(map, reserved, storage).map_err(FramesError::Allocator)?;
    frames::install(a);
    Ok(bitmap_bytes)
}

/// Builds the hypervisor's own page tables (identity map to `top`, the
/// image mapped by section, W^X; page 0 and the boot stack's guard page
/// unmapped) and switches to them.
pub fn switch_page_tables(top: u64) -> Result<(), paging::MapError> {
    if !step(3) {
        return Err(paging::MapError::BadAddress(top));
    }
    use paging::{NX, PCD, PWT, W};
    let mut alloc = || frames::alloc_frame();
    let mut space = paging::AddressSpace::new(&mut alloc)?;
    // Everything (RAM, ACPI, MMIO below 4 GiB) read/write, never executable.
    space.map(0, 0, top, W | NX, &mut alloc)?;
    // The local and I/O APIC pages uncached (MTRRs normally agree).
    space.map(
        0xfec0_0000,
        0xfec0_0000,
        4 << 20,
        W | NX | PCD | PWT,
        &mut alloc,
    )?;
    // The image by section.
    let (image_start, image_end) = image_range();
    let text_start = sym(&raw const __text_start);
    let text_end = sym(&raw const __text_end);
    let rodata_start = sym(&raw const __rodata_start);
    let rodata_end = sym(&raw const __rodata_end);
    let data_start = sym(&raw const __data_start);
    space.map(
        image_start,
        image_start,
        text_start - image_start,
        NX,
        &mut alloc,
    )?;
    space.map(text_start, text_start, text_end - text_start, 0, &mut alloc)?;
    space.map(
        rodata_start,
        rodata_start,
        rodata_end - rodata_start,
        NX,
        &mut alloc,
    )?;
    space.map(
        data_start,
        data_start,
        image_end - data_start,
        W | NX,
        &mut alloc,
    )?;
    space.unmap_page(0, &mut alloc)?;
    let boot_guard = sym(&raw const entry::__boot_stack_guard);
    space.unmap_page(boot_guard, &mut alloc)?;
    paging::register_guard(boot_guard);
    let root = space.root();
    let Some(frame) = PhysFrame::from_start_address(PhysAddr::new(root)).ok() else {
        return Err(paging::MapError::BadAddress(root));
    };
    // SAFETY: the new tables map the whole image with the rights its
    // sections need, the boot stack, all RAM and the APIC pages; every
    // address used from here on stays valid.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
    physmem::set_mapped_limit(top);
    *paging::KERNEL_SPACE.lock() = Some(space);
    Ok(())
}

/// Why the heap or the exception stacks could not be set up.
#[derive(Debug)]
pub enum StacksError {
    /// No frames for a heap of this many bytes.
    Heap(u64),
    /// No frames for the exception stacks.
    Ist,
    /// Called twice, or out of order.
    OutOfOrder,
}

/// Gives the heap `heap_bytes` of fresh frames, then the boot CPU its
/// exception (IST) stacks in a GDT/TSS of their own.
pub fn heap_and_stacks(heap_bytes: u64) -> Result<(), StacksError> {
    if !step(4) {
        return Err(StacksError::OutOfOrder);
    }
    let base = frames::alloc_frames(heap_bytes / 4096).ok_or(StacksError::Heap(heap_bytes))?;
    // SAFETY: freshly allocated, identity-mapped RW frames owned by the heap
    // from now on; the heap is set up once (this step runs once).
    unsafe { heap::init(base, heap_bytes as usize) };
    // The boot CPU's own stack, for its high-water mark (`stacks:`).
    let guard = sym(&raw const entry::__boot_stack_guard);
    super::stackmark::paint_running(0, guard + 4096, sym(&raw const entry::__boot_stack_top));
    let ist = smp::prepare_ist(0).ok_or(StacksError::Ist)?;
    // SAFETY: on the boot CPU (the steps run there, in order) with its own
    // freshly allocated IST stacks; no other CPU runs yet.
    unsafe { gdt::load(0, ist) };
    Ok(())
}

/// The boot CPU's run stack, taken at boot ([`prepare_run_stack`]) so the
/// `stats:` line's free memory already excludes it (boot tests compare it
/// with the free memory after every domain ended).
static RUN_STACK: AtomicU64 = AtomicU64::new(0);

/// Allocates the stack [`run_on_own_stack`] will use. `false` if no frames.
pub fn prepare_run_stack() -> bool {
    match paging::alloc_stack(smp::AP_STACK_PAGES) {
        Some(top) => {
            RUN_STACK.store(top, Ordering::Release);
            true
        }
        None => false,
    }
}

/// Runs `run` (the scheduling loop) on a fresh stack of an AP's size, so
/// the boot CPU's guests do not run above the boot path's frames: those
/// (`boot_cpu`'s locals and, until it moved to a static, `kestrel_main`'s
/// boot information: about 22 KiB then)
/// stayed on the boot stack under every hypercall the boot CPU served,
/// which with a domain create on top came within 1.5 KiB of its 64 KiB
/// (issue 13, measured with `stacks:`). Without a free stack it runs where
/// it is.
pub fn run_on_own_stack(run: fn() -> !) -> ! {
    let top = match RUN_STACK.swap(0, Ordering::AcqRel) {
        0 => paging::alloc_stack(smp::AP_STACK_PAGES),
        top => Some(top),
    };
    let Some(top) = top else {
        log::warn!("no frames for the boot CPU's run stack; it stays on the boot stack");
        run()
    };
    super::stackmark::boot_cpu_moved(top, smp::AP_STACK_PAGES);
    // SAFETY: `top` is the top of a fresh, mapped stack of
    // `AP_STACK_PAGES` pages (16-byte aligned: page aligned) that nothing
    // else uses; `run` never returns, so nothing on the old stack is
    // needed again (its memory, in the image's .bss, stays untouched, so
    // references into it stay valid). The `call` pushes its return
    // address onto the new stack, leaving RSP 8 mod 16 at `run`'s entry as
    // the System V ABI expects.
    unsafe {
        core::arch::asm!(
            "mov rsp, {top}",
            "xor ebp, ebp",
            "call {run}",
            "ud2",
            top = in(reg) top,
            run = in(reg) run,
            options(noreturn)
        )
    }
}
