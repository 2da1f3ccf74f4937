//! One emulator run read by several tests, made by the first test that asks
//! for it, and kept whether making it worked or failed.
//!
//! A plain `OnceLock::get_or_init` is wrong for this: when the initializer
//! panics (the run timed out, or its boot checks failed), the cell stays
//! empty and the next test that asks runs the emulator again. Only the first
//! reader then fails, the others pass on a second run, and that second run
//! overwrites the first one's files in `target/boot-tests/runs/`. CI saw
//! exactly that: `abi_vtx_bochs_balloon` (the first reader of the Bochs ABI
//! suite, by name order) failed while `abi_vtx_bochs_hypercalls` and
//! `abi_vtx_bochs_multicall` passed on a run of their own, and the failing
//! run's log was gone. [`Once`] runs the maker once; if it panics, every
//! reader fails with its message.

use std::panic::{self, AssertUnwindSafe};
use std::sync::OnceLock;

/// A value made once, by the first caller of [`Once::get`].
pub struct Once<T> {
    cell: OnceLock<Result<T, String>>,
}

impl<T> Once<T> {
    /// Nothing made yet.
    pub const fn new() -> Self {
        Self {
            cell: OnceLock::new(),
        }
    }

    /// The value, made with `make` by the first caller (the others wait for
    /// it). If `make` panicked, this panics in every caller, naming `what`,
    /// the test that made it and the original message; `make` is never
    /// called again.
    pub fn get(&self, what: &str, make: impl FnOnce() -> T) -> &T {
        let made = self.cell.get_or_init(|| {
            let by = std::thread::current()
                .name()
                .unwrap_or("an unnamed thread")
                .to_string();
            panic::catch_unwind(AssertUnwindSafe(make)).map_err(|p| {
                format!(
                    "made by test `{by}` (its output has the log): {}",
                    text(&*p)
                )
            })
        });
        match made {
            Ok(v) => v,
            Err(e) => panic!(
                "{what}: the run this test reads failed, so every test reading it fails; {e}"
            ),
        }
    }
}

impl<T> Default for Once<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A panic payload's message (`panic!` gives a `&str` or a `String`).
fn text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    fn message(r: std::thread::Result<u32>) -> String {
        r.map_or_else(|p| text(&*p), |v| format!("ok {v}"))
    }

    /// The CI failure's shape: three tests read one run, the first run
    /// fails. With `OnceLock::get_or_init` the second reader made a second
    /// run and two of the three passed (checked with that code in place of
    /// `Once::get`: `ok 1` twice, `made` 2).
    #[test]
    fn a_failed_run_fails_every_reader_and_is_made_once() {
        static RUN: Once<u32> = Once::new();
        static MADE: AtomicU32 = AtomicU32::new(0);
        let readers: Vec<_> = (0..3u64)
            .map(|i| {
                std::thread::Builder::new()
                    .name(format!("reader{i}"))
                    .spawn(move || {
                        // reader0 asks first; the others wait on its run.
                        std::thread::sleep(Duration::from_millis(50 * i));
                        panic::catch_unwind(|| {
                            *RUN.get("the suite", || {
                                let n = MADE.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(Duration::from_millis(300));
                                assert!(n != 0, "the first run timed out");
                                n
                            })
                        })
                    })
                    .unwrap()
            })
            .collect();
        let got: Vec<String> = readers
            .into_iter()
            .map(|h| message(h.join().unwrap()))
            .collect();
        assert_eq!(
            MADE.load(Ordering::SeqCst),
            1,
            "made more than once: {got:?}"
        );
        for g in &got {
            assert!(
                g.starts_with("the suite: the run this test reads failed")
                    && g.contains("made by test `reader0`")
                    && g.ends_with("the first run timed out"),
                "{got:?}"
            );
        }
    }

    #[test]
    fn a_good_run_is_shared() {
        let run = Once::new();
        assert_eq!(*run.get("x", || 7), 7);
        assert_eq!(*run.get("x", || unreachable!("made twice")), 7);
    }
}
