//! Helpers shared by the host unit tests.

/// xorshift64: a tiny deterministic generator for the host property tests,
/// so they need no extra crates and every failure reproduces from its seed.
pub struct TestRng(pub u64);

impl TestRng {
    /// The next value.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub mod interleave;
pub mod rt;
