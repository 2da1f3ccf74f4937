//! Boot tests: boot real images under QEMU and Bochs and judge serial output
//! and exit codes.
//!
//! The kernel is the release build `cargo xtask test` makes before it runs
//! these tests (`cargo xtask build` does too). Every emulator run has a hard
//! deadline and is killed if it passes it; a failing test prints the whole
//! serial log and the emulator's own messages.
//!
//! Layout: [`artifacts`] finds the kernel and makes module payloads and ISOs
//! once per test process; [`qemu`] and [`bochs`] run an emulator to an
//! [`Outcome`]; [`outcome`] holds the checks on it, [`domains`] those on
//! the domains (guests) it ran; [`session`] runs a machine beside a test
//! that talks to its dom0, [`mgmt`] gives that test `hvctl`; [`slots`]
//! keeps the emulators at one per core.

pub mod artifacts;
pub mod backend;
pub mod bochs;
pub mod domains;
pub mod edu_vm;
pub mod guest_run;
pub mod hvconsole;
pub mod idle;
pub mod linux_dom;
pub mod mgmt;
pub mod outcome;
pub mod qemu;
pub mod relay;
pub mod session;
pub mod shared;
pub mod slots;
pub mod stacks;
pub mod store_vm;
pub mod tcp;

pub use backend::Backend;
pub use outcome::{ModuleLine, Outcome};
pub use xtask::serial::Stats;

/// 1 MiB.
pub const MIB: u64 = 1 << 20;

/// Scales every deadline by `KESTREL_TEST_TIMEOUT_SCALE` (default 1) for
/// slow or busy machines.
pub fn scaled(secs: u64) -> std::time::Duration {
    let scale: f64 = std::env::var("KESTREL_TEST_TIMEOUT_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(1.0);
    std::time::Duration::from_secs_f64(secs as f64 * scale)
}
