//! The runtime's lock, and the points where a test may switch threads.
//!
//! On bare metal [`Mutex`] is `spin::Mutex` itself and [`point`] is empty:
//! nothing here costs anything. In host builds the mutex is a thin wrapper
//! that, on a thread a test has put under an interleaving controller
//! ([`set_hook`]), gives the controller a chance to switch threads before
//! every lock, lets it run others while the lock is held elsewhere, and
//! tells it when the lock is let go. That is how `sched/live/tests.rs`
//! steps the real block, notify, deschedule and wake code through every
//! interleaving of its critical sections, without a copy of that code.
//! Threads without a hook (every other test) only pay a thread-local look.
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
pub use spin::{Mutex, MutexGuard};

/// A place where another thread may run first (bare metal: nothing).
#[cfg(target_os = "none")]
#[inline(always)]
pub fn point() {}

#[cfg(not(target_os = "none"))]
pub use host::{Hook, Mutex, MutexGuard, point, set_hook, site};

#[cfg(not(target_os = "none"))]
mod host {
    use core::ops::{Deref, DerefMut};
    use core::panic::Location;
    use std::cell::{Cell, RefCell};
    use std::sync::Arc;

    /// What an interleaving controller is told by the threads it runs.
    pub trait Hook {
        /// The thread is at a switch point: the controller may run
        /// another thread before it returns.
        fn point(&self);
        /// The thread waits for a lock another thread holds: run others.
        fn blocked(&self);
        /// The thread let go of a lock.
        fn released(&self);
    }

    std::thread_local! {
        static HOOK: RefCell<Option<Arc<dyn Hook + Send + Sync>>> = const { RefCell::new(None) };
        static SITE: Cell<Option<&'static Location<'static>>> = const { Cell::new(None) };
    }

    /// Where the calling thread last reached a switch point (the source
    /// line of its `lock` or `point` call): a controller names it when two
    /// runs of the same picks part ways.
    pub fn site() -> Option<&'static Location<'static>> {
        SITE.with(Cell::get)
    }

    /// Puts the calling thread under `hook` (or takes it out, `None`).
    pub fn set_hook(hook: Option<Arc<dyn Hook + Send + Sync>>) {
        HOOK.with(|h| *h.borrow_mut() = hook);
    }

    fn hook() -> Option<Arc<dyn Hook + Send + Sync>> {
        HOOK.with(|h| h.borrow().clone())
    }

    /// A place where another thread may run first.
    #[track_caller]
    pub fn point() {
        if let Some(h) = hook() {
            let here = Location::caller();
            SITE.with(|s| s.set(Some(here)));
            h.point();
        }
    }

    /// `spin::Mutex` with switch points for the interleaving tests.
    pub struct Mutex<T: ?Sized> {
        inner: spin::Mutex<T>,
    }

    /// Its guard; tells the controller when the lock is let go.
    pub struct MutexGuard<'a, T: ?Sized> {
        guard: Option<spin::MutexGuard<'a, T>>,
    }

    impl<T> Mutex<T> {
        /// A new unlocked mutex.
        pub const fn new(value: T) -> Self {
            Self {
                inner: spin::Mutex::new(value),
            }
        }
    }

    impl<T: ?Sized> Mutex<T> {
        /// Takes the lock (a switch point under a controller).
        #[track_caller]
        pub fn lock(&self) -> MutexGuard<'_, T> {
            let Some(h) = hook() else {
                return MutexGuard {
                    guard: Some(self.inner.lock()),
                };
            };
            let here = Location::caller();
            SITE.with(|s| s.set(Some(here)));
            h.point();
            loop {
                if let Some(g) = self.inner.try_lock() {
                    return MutexGuard { guard: Some(g) };
                }
                h.blocked();
            }
        }

        /// Takes the lock if nobody holds it, without waiting and without
        /// a switch point (a caller that already holds a lock uses it to
        /// take a second one out of order: it never waits for it).
        pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            self.inner.try_lock().map(|g| MutexGuard { guard: Some(g) })
        }

        /// The value, through exclusive access (no locking).
        pub fn get_mut(&mut self) -> &mut T {
            self.inner.get_mut()
        }

        /// Whether someone holds the lock now.
        pub fn is_locked(&self) -> bool {
            self.inner.is_locked()
        }
    }

    impl<T: ?Sized> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.guard.as_deref().unwrap_or_else(|| unreachable!())
        }
    }

    impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.guard.as_deref_mut().unwrap_or_else(|| unreachable!())
        }
    }

    impl<T: ?Sized> Drop for MutexGuard<'_, T> {
        fn drop(&mut self) {
            drop(self.guard.take());
            if let Some(h) = hook() {
                h.released();
            }
        }
    }
}
