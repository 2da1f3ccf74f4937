//! The hypervisor heap: a linked-list allocator over contiguous frames.

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Hands `[start, start + size)` (identity-mapped RW, owned) to the heap.
///
/// # Safety
/// The range must be mapped, unused by anything else, and given only once.
pub unsafe fn init(start: u64, size: usize) {
    // SAFETY: the caller hands over exclusive, mapped memory.
    unsafe { HEAP.lock().init(start as *mut u8, size) };
}

/// Bytes in use and free.
pub fn usage() -> (usize, usize) {
    let heap = HEAP.lock();
    (heap.used(), heap.free())
}
