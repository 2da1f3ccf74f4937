//! The global frame allocator: every physical frame the hypervisor, its
//! page tables, the vendor control pages and guest memory use comes from
//! here. `start.rs` installs it once the memory map is known.

use spin::Mutex;

use super::physmem;
use crate::mm::frame::FrameAllocator;

/// Frames below this are reachable from 32-bit code and the boot identity
/// map.
pub const FOUR_GIB: u64 = 4 << 30;

/// The physical frame allocator, once memory is set up.
static FRAMES: Mutex<Option<FrameAllocator<'static>>> = Mutex::new(None);

/// One frame for hypervisor use (below 4 GiB, reachable from 32-bit code
/// and the boot identity map).
pub fn alloc_frame() -> Option<u64> {
    FRAMES.lock().as_mut()?.alloc_below(FOUR_GIB)
}

/// One zeroed frame below 4 GiB.
pub fn alloc_zeroed_frame() -> Option<u64> {
    let f = alloc_frame()?;
    // SAFETY: a frame we were just given, identity-mapped, unshared.
    unsafe { physmem::zero_frame(f) };
    Some(f)
}

/// `count` contiguous frames, page-aligned, below 4 GiB.
pub fn alloc_frames(count: u64) -> Option<u64> {
    FRAMES
        .lock()
        .as_mut()?
        .alloc_contiguous(usize::try_from(count).ok()?, 4096, FOUR_GIB)
}

/// One frame anywhere in the identity map (guest memory).
pub fn alloc_frame_anywhere() -> Option<u64> {
    FRAMES.lock().as_mut()?.alloc_below(physmem::mapped_limit())
}

/// `count` contiguous frames aligned to `align` bytes, anywhere in RAM the
/// identity map covers (guest memory).
pub fn alloc_aligned(count: u64, align: u64) -> Option<u64> {
    FRAMES.lock().as_mut()?.alloc_contiguous(
        usize::try_from(count).ok()?,
        align,
        physmem::mapped_limit(),
    )
}

/// Returns `count` frames starting at `base` to the allocator. A frame the
/// allocator rejects (never handed out, or already free) is a hypervisor
/// bug: it is logged, not silently ignored.
pub fn free_frames(base: u64, count: u64) {
    let mut guard = FRAMES.lock();
    let Some(frames) = guard.as_mut() else { return };
    for i in 0..count {
        if let Err(e) = frames.free(base + i * 4096) {
            log::error!("freeing frame {:#x}: {e}", base + i * 4096);
        }
    }
}

/// Frames free now.
pub fn free_frame_count() -> u64 {
    FRAMES.lock().as_ref().map_or(0, |f| f.free_frames())
}

/// Hands the allocator over (once, on the boot CPU).
pub fn install(frames: FrameAllocator<'static>) {
    *FRAMES.lock() = Some(frames);
}

/// One frame below 1 MiB (the AP start-up trampoline), if any is left.
pub fn alloc_below_1mib() -> Option<u64> {
    FRAMES.lock().as_mut()?.alloc_below(0x10_0000)
}

/// Frames free and in use now.
pub fn counts() -> (u64, u64) {
    FRAMES
        .lock()
        .as_ref()
        .map_or((0, 0), |f| (f.free_frames(), f.used_frames()))
}
