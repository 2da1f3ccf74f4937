//! Randomized tests.
