//! dom0's image store (issue 14): images (immutable once committed, with
//! a SHA-256) and volumes (fixed size, writable) kept on one disk across
//! reboots and power cuts, and qcow2 import and export.
//!
//! The layout is copy-on-write metadata under two alternating,
//! checksummed roots ([`layout`], docs/store.md says why this and not a
//! crate): a change writes and flushes its data, then new metadata to
//! free blocks, flushes, then the root of the next generation into the
//! slot of the older one, and flushes. A power cut at any point leaves
//! the state before or after the change. Host tests in `tests/` cut
//! power after every write of an import and a delete.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod disk;
pub mod error;
pub mod layout;
pub mod log;
pub mod qcow2;
pub mod space;
pub mod store;

pub use disk::{BLOCK, Disk, MemDisk};
pub use error::{Result, StoreError};
pub use layout::{Extent, Kind, Object};
pub use store::{Import, Store, hex};
