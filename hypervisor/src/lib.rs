//! Kestrel, a type-1 paravirtualizing hypervisor for x86_64.
//!
//! The generic parts (boot-information parsing, memory-map handling, the
//! frame allocator, command-line and ELF checks) build and are unit-tested on
//! the host. Everything that touches hardware lives in [`arch`], which only
//! exists for the bare-metal target.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(not(target_os = "none"), deny(unsafe_code))]

extern crate alloc;

pub mod boot;
pub mod console;
pub mod domain;
pub mod elf;
pub mod evtchn;
pub mod grant;
pub mod hypercall;
pub mod mm;
pub mod platform;
pub mod run;
pub mod sched;
#[cfg(test)]
mod testing;
pub mod virt;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod start;

/// The hypervisor's version, from Cargo.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
