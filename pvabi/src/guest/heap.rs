//! An opt-in global allocator over a static heap.
//!
//! A guest that wants `alloc` (`Box`, `Vec`, `String`, ...) declares a heap
//! with [`crate::guest_heap!`]:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! extern crate alloc;
//!
//! pvabi::entry_point!(main);
//! pvabi::guest_heap!(1 << 20); // 1 MiB
//!
//! fn main(_: &pvabi::StartInfo) -> i32 {
//!     let v: alloc::vec::Vec<u32> = (0..10).collect();
//!     pvabi::println!("{v:?}");
//!     0
//! }
//! ```
//!
//! The heap is a `static` in `.bss`: it costs nothing in the image file,
//! and the hypervisor's loader zeroes it with the rest of `.bss`; the
//! domain's memory must be large enough to hold it. **Cost**: all N bytes
//! of domain memory from the start, used or not (a domain built from a bare
//! boot module has 8 MiB in all, see `StartInfo::memory_bytes`); each
//! allocation takes its size rounded up to a multiple of 8 bytes and 16 at
//! least, plus any padding its alignment needs, and no header (the free
//! list lives in the free blocks). Allocation is first fit
//! over a free list (the `linked_list_allocator` crate) under a spin lock,
//! so every vCPU can allocate; freed memory is reused and neighbouring free
//! blocks merge. Guests run with interrupts off, so the lock is never taken
//! re-entrantly. Out of memory is reported to `alloc` as a null pointer,
//! which panics (and so shuts the domain down as crashed).
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

/// Smallest heap [`Heap::new`] accepts.
pub const HEAP_MIN: usize = 4096;

/// A heap of `N` bytes; use it through [`crate::guest_heap!`], which makes it
/// the `#[global_allocator]`.
#[repr(C, align(4096))]
pub struct Heap<const N: usize> {
    lock: AtomicBool,
    state: UnsafeCell<State>,
    mem: UnsafeCell<[u8; N]>,
}

struct State {
    ready: bool,
    list: linked_list_allocator::Heap,
}

// SAFETY: `state` and `mem` are only reached through `with`, which holds the
// spin lock, so at most one vCPU touches them at a time; the memory handed
// out by the allocator belongs to its caller.
unsafe impl<const N: usize> Sync for Heap<N> {}

/// Usage figures of a [`Heap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes of the heap.
    pub size: usize,
    /// Bytes allocated now (including the allocator's rounding).
    pub used: usize,
}

impl<const N: usize> Heap<N> {
    /// An empty heap; it is set up on the first allocation. `N` must be at
    /// least [`HEAP_MIN`] (checked when the `static` is compiled).
    pub const fn new() -> Self {
        assert!(N >= HEAP_MIN, "a guest heap needs at least 4 KiB");
        Self {
            lock: AtomicBool::new(false),
            state: UnsafeCell::new(State {
                ready: false,
                list: linked_list_allocator::Heap::empty(),
            }),
            mem: UnsafeCell::new([0; N]),
        }
    }

    /// Runs `f` on the allocator state with the lock held, setting the heap
    /// up the first time.
    fn with<R>(&self, f: impl FnOnce(&mut linked_list_allocator::Heap) -> R) -> R {
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        // SAFETY: the lock is held, so this is the only reference to the
        // state until it is released below.
        let state = unsafe { &mut *self.state.get() };
        if !state.ready {
            // SAFETY: `mem` is N bytes that live forever (the heap is a
            // static), used by nothing but this allocator from now on.
            unsafe { state.list.init(self.mem.get().cast::<u8>(), N) };
            state.ready = true;
        }
        let r = f(&mut state.list);
        self.lock.store(false, Ordering::Release);
        r
    }

    /// How much of the heap is in use.
    pub fn stats(&self) -> HeapStats {
        self.with(|list| HeapStats {
            size: N,
            used: list.used(),
        })
    }
}

impl<const N: usize> Default for Heap<N> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: allocations come from the free list over `mem`, which hands out
// each byte to at most one live allocation, with the requested alignment;
// all access to the list is serialized by the lock.
unsafe impl<const N: usize> GlobalAlloc for Heap<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.with(|list| list.allocate_first_fit(layout))
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = NonNull::new(ptr) {
            // SAFETY: per `GlobalAlloc::dealloc`'s contract, `ptr` came from
            // `alloc` on this heap with this layout.
            self.with(|list| unsafe { list.deallocate(ptr, layout) });
        }
    }
}

/// Declares the guest's heap of `$size` bytes as the global allocator, so
/// `alloc` works. Optionally names the static, to read its
/// [`Heap::stats`]: `guest_heap!(HEAP, 1 << 20)`. See [`crate::guest::heap`].
#[macro_export]
macro_rules! guest_heap {
    ($name:ident, $size:expr) => {
        #[global_allocator]
        static $name: $crate::guest::heap::Heap<{ $size }> = $crate::guest::heap::Heap::new();
    };
    ($size:expr) => {
        $crate::guest_heap!(__PVABI_GUEST_HEAP, $size);
    };
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    static HEAP: Heap<{ 16 * 4096 }> = Heap::new();

    #[test]
    fn allocates_frees_and_reuses() {
        let layouts = [
            Layout::from_size_align(24, 8),
            Layout::from_size_align(4096, 4096),
            Layout::from_size_align(1, 1),
            Layout::from_size_align(1000, 64),
        ];
        let mut live = Vec::new();
        for round in 0..50 {
            for l in layouts.iter().flatten() {
                // SAFETY: non-zero sizes; freed below with the same layout.
                let p = unsafe { HEAP.alloc(*l) };
                assert!(!p.is_null(), "round {round}: {l:?}");
                assert_eq!(p as usize % l.align(), 0);
                let base = HEAP.mem.get() as usize;
                assert!(p as usize >= base && p as usize + l.size() <= base + 16 * 4096);
                live.push((p, *l));
            }
            for (p, l) in live.drain(..) {
                // SAFETY: allocated above with this layout, freed once.
                unsafe { HEAP.dealloc(p, l) };
            }
            assert_eq!(HEAP.stats().used, 0);
        }
        // More than the heap holds is a null pointer, not a panic.
        // SAFETY: a non-zero size; the result is null.
        let p = unsafe {
            HEAP.alloc(Layout::from_size_align(1 << 20, 8).unwrap_or(Layout::new::<u8>()))
        };
        assert!(p.is_null());
        assert_eq!(HEAP.stats().size, 16 * 4096);
    }
}
