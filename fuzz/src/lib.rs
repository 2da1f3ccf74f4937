//! Fuzz targets over everything a guest or a boot loader controls.
//!
//! Each target is a function here taking the fuzzer's bytes; the files in
//! `fuzz_targets/` only hand them over (`libfuzzer_sys::fuzz_target!`). That
//! keeps the targets testable without libFuzzer: `cargo test` in this crate
//! runs every seed through its target and checks the committed seeds are the
//! ones [`seeds`] builds. `cargo xtask fuzz` builds the instrumented binaries
//! on the pinned stable toolchain and runs them (see docs/testing.md).
//!
//! Every path into the hypervisor and the ABI crate is imported in [`hv`]
//! and nowhere else, so a file moved in the hypervisor is fixed in one place.
#![forbid(unsafe_code)]

pub mod boot;
pub mod evtchn;
pub mod grant;
pub mod hv;
pub mod hypercall;
pub mod input;
pub mod ring;
pub mod seeds;
pub mod store;

/// A target's function: any bytes, no panic.
pub type Target = fn(&[u8]);

/// Every target: its name (the binary in `fuzz_targets/` and the folder of
/// its seeds) and its function.
pub const TARGETS: &[(&str, Target)] = &[
    ("multiboot2", boot::multiboot2),
    ("pvh", boot::pvh),
    ("elf", boot::elf),
    ("cmdline", boot::cmdline),
    ("hypercall", hypercall::run),
    ("evtchn", evtchn::run),
    ("grant", grant::run),
    ("ring", ring::run),
    ("store", store::run),
];
