//! Randomized tests driven by `proptest`: pvabi's helper
//! ([`pvabi::testing`], its feature `testing`): [`check`] runs a test body
//! over many cases, each with its own list of random values that the body
//! draws from as it goes ([`Choices::below`]); a failing case is shrunk
//! toward zero (simpler operations) before it is reported.
//!
//! The bodies are op-sequence tests whose later choices depend on earlier
//! results (which frame to free, which port to close), so drawing values
//! as the body needs them fits them better than a strategy per input.
//! [`interleave`] and [`rt`] are the hypervisor's own.

pub use pvabi::testing::{Choices, check};

pub mod interleave;
pub mod rt;
