//! dom0's toolstack logic, kept apart from hardware so it builds for the
//! bare-metal control domain (`x86_64-unknown-none`) and is tested on the
//! host, where `hvctl` links it too:
//!
//! - [`config`]: the boot configuration (TOML): which domains to build.
//! - [`proto`]: the management protocol, line-delimited JSON between
//!   `hvctl` and dom0's management service.
//! - [`server`]: the management service and the domain builder, over a
//!   [`server::Hypervisor`] trait (domctl hypercalls in dom0, fakes here).
//! - [`console`]: guests' console bytes to clean, whole lines.
//! - [`textring`]: bounded line histories (dom0's log, consoles).
//! - [`secure`]: the authenticated channel for management over TCP.
//! - [`uuid`]: domain UUIDs (given or generated).
//!
//! The format and the protocol are documented in `docs/toolstack.md`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod config;
pub mod console;
pub mod proto;
pub mod secure;
pub mod server;
pub mod textring;
pub mod uuid;
