//! Randomized tests driven by `proptest` (pvabi's own and, through the
//! feature `testing`, the hypervisor's): [`check`] runs a test body over
//! many cases, each with its own list of random values that the body draws
//! from as it goes ([`Choices::below`]). Proptest generates the lists, and
//! when a case fails it shrinks the values toward zero (simpler operations:
//! the first choice of every `below`) before reporting the smallest failing
//! input. Each list has a fixed length, at least what one case draws, so
//! every case runs on real random values to its end.
//!
//! The bodies are op-sequence tests whose later choices depend on earlier
//! results (which frame to free, which port to close), so drawing values
//! as the body needs them fits them better than a strategy per input.
#![allow(clippy::unwrap_used)]

extern crate std;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestError, TestRunner};
use std::panic;
use std::vec::Vec;

/// The random values of one case; reads past the end give zero (the
/// simplest choice), so a shrunk list still drives the whole body.
#[derive(Debug)]
pub struct Choices<'a> {
    vals: &'a [u64],
    at: usize,
}

impl<'a> Choices<'a> {
    /// Draws from `vals`, in order.
    pub fn new(vals: &'a [u64]) -> Self {
        Self { vals, at: 0 }
    }

    /// The next raw value.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        let v = self.vals.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        v
    }

    /// A value in `0..n` (0 when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        match n {
            0 => 0,
            n => self.next() % n,
        }
    }
}

/// Runs `body` over `cases` cases of `values` random values each;
/// panics with the shrunk failing case if any case panics.
pub fn check(cases: u32, values: usize, body: impl Fn(&mut Choices<'_>)) {
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let strategy = proptest::collection::vec(any::<u64>(), values);
    let result = runner.run(&strategy, |vals: Vec<u64>| {
        body(&mut Choices::new(&vals));
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, vals)) => {
            panic!(
                "failed: {why}; smallest failing case ({} values): {vals:?}",
                vals.len()
            )
        }
        Err(e) => panic!("{e}"),
    }
}
