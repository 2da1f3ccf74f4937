//! Kestrel, a type-1 paravirtualizing hypervisor for x86_64.
//!
//! The crate is a stack of layers; a module imports only from layers below
//! its own (`docs/architecture.md` has the rule for each and one hypercall
//! followed through them):
//!
//! ```text
//! start.rs    boot orchestration in phases (bare metal)
//! run.rs      each CPU's loop: pick a vCPU, run it, act on its exit
//! hypercall/  the one dispatch over op groups, multicall, the exit policy;
//!             the one place a pvabi::Error becomes a status code
//! evtchn/ grant/ console/ domain/ sched/ pci/
//!             op groups and domains: tables and decoding (pure), live
//!             effects; domain/table.rs finds domains by DomainId
//! platform/   what the runtime asks of the machine (a trait; the host
//! sync.rs     implementation drives the runtime in tests); the runtime's
//!             lock
//! virt/       trait VcpuBackend, VmExit, BootState; svm.rs and vmx.rs
//! mm/ boot/ elf.rs
//!             pure: frames, memory map, nested page tables, boot
//!             information, CPUID clock rates, ELF checks
//! arch/       x86_64 hardware only; reaches up only through functions
//!             registered at boot, traits defined above it and the
//!             `kestrel_main` link name
//! hostwork.rs a leaf: the word of host work interrupts leave for the run
//!             loop (atomics only, imports nothing from the crate)
//! ```
//!
//! `unsafe` lives in `arch/` and the vendor backends (`virt/svm.rs`,
//! `virt/vmx*.rs`) only: every other module is compiled with
//! `deny(unsafe_code)` (below, and inside `virt/`). Everything but those
//! builds and is unit-tested on the host.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(not(target_os = "none"), deny(unsafe_code))]

extern crate alloc;

#[deny(unsafe_code)]
pub mod boot;
#[deny(unsafe_code)]
pub mod console;
#[deny(unsafe_code)]
pub mod domain;
#[deny(unsafe_code)]
pub mod elf;
#[deny(unsafe_code)]
pub mod evtchn;
#[deny(unsafe_code)]
pub mod grant;
pub mod hostwork;
#[deny(unsafe_code)]
pub mod hypercall;
pub mod iommu;
#[deny(unsafe_code)]
pub mod mm;
#[deny(unsafe_code)]
pub mod pci;
#[deny(unsafe_code)]
pub mod platform;
#[deny(unsafe_code)]
pub mod run;
#[deny(unsafe_code)]
pub mod sched;
#[deny(unsafe_code)]
pub mod sync;
#[cfg(test)]
#[deny(unsafe_code)]
mod testing;
#[deny(unsafe_code)]
pub mod txbuf;
pub mod virt;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
#[deny(unsafe_code)]
pub mod start;

/// The hypervisor's version, from Cargo.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
