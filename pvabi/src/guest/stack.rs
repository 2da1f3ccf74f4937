//! Stacks for additional vCPUs, declared as statics with no `unsafe`.
#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// A stack of `N` bytes for a vCPU started with [`super::vcpu::start`],
/// meant to be a `static` (it lives in `.bss`, so it costs nothing in the
/// image):
///
/// ```ignore
/// static STACK1: pvabi::guest::VcpuStack<16384> = pvabi::guest::VcpuStack::new();
/// // ...
/// let stack = STACK1.take().ok_or(pvabi::Error::Busy)?;
/// pvabi::guest::vcpu::start(1, worker, stack, 0)?;
/// ```
///
/// [`VcpuStack::take`] hands out the memory once, as `&'static mut`, so no
/// two vCPUs can ever share it. 16-byte aligned.
#[repr(C, align(16))]
pub struct VcpuStack<const N: usize> {
    taken: AtomicBool,
    mem: UnsafeCell<[u8; N]>,
}

// SAFETY: the only access to `mem` is the one `&mut` that `take` hands out,
// at most once (guarded by the atomic swap), so sharing the static between
// vCPUs cannot create aliasing access.
unsafe impl<const N: usize> Sync for VcpuStack<N> {}

impl<const N: usize> VcpuStack<N> {
    /// A fresh, untaken stack.
    pub const fn new() -> Self {
        Self {
            taken: AtomicBool::new(false),
            mem: UnsafeCell::new([0; N]),
        }
    }

    /// The stack memory, the first time; `None` afterwards.
    // A `&mut` out of `&self` is sound here because it is handed out once.
    #[allow(clippy::mut_from_ref)]
    pub fn take(&'static self) -> Option<&'static mut [u8]> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the swap above returned false exactly once for this
        // static, so this is the only reference to `mem` ever made; it lives
        // as long as the static.
        Some(unsafe { &mut *self.mem.get() })
    }
}

impl<const N: usize> Default for VcpuStack<N> {
    fn default() -> Self {
        Self::new()
    }
}
