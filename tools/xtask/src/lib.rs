//! Build, image, run, test and benchmark helpers for Kestrel.
//!
//! The binary (`cargo xtask ...`) is the entry point for people and CI; the
//! library part is shared with the boot tests (`tests/`), so both build ISOs
//! and QEMU command lines the same way.

pub mod bochs;
pub mod cpio;
pub mod elfinfo;
pub mod error;
pub mod faultmon;
pub mod iso;
pub mod linux;
pub mod paths;
pub mod qemu;
pub mod reset;
pub mod runner;
pub mod serial;
pub mod server;
pub mod tools;
