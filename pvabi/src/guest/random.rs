//! Random numbers for guests: the CPU's RDRAND where CPUID offers it (the
//! hypervisor passes leaf 1 ECX bit 30 through unchanged), else nothing:
//! the caller decides what a weaker source (the TSC) is good enough for.

pub use super::sys::rdrand64;
