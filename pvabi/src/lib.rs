//! The Kestrel paravirtual ABI.
//!
//! Guests and dom0 link this crate; the hypervisor implements it. Version 0
//! defines only the version constant; the hypercall groups arrive with the
//! pvabi v1 work (see `CHANGELOG.md` in this crate).
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]

/// The ABI version: major in the high 16 bits, minor in the low 16 bits.
/// A guest built against a different major version must refuse to start.
pub const PVABI_VERSION: u32 = 0x0000_0000;
