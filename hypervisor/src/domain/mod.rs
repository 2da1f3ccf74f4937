//! Domains: isolated guests, each with its own guest-physical memory.
//!
//! This module holds what is independent of the CPU vendor and host-testable:
//! the [`GuestMemory`] abstraction over a domain's memory and the
//! [`builder`] that places a guest ELF image, its start-info page, stack,
//! page tables and GDT in it.
#![forbid(unsafe_code)]

pub mod bootparams;
pub mod budget;
pub mod builder;
pub mod ctl;
pub mod ctl_life;
pub mod ctl_ops;
pub mod dma;
pub mod ended;
pub mod ids;
pub mod lifecycle;
pub mod linux;
pub mod linux_args;
pub mod memory;
pub mod memtarget;
pub mod stage;
pub mod stage_ops;
pub mod table;

use core::fmt;

/// A guest-physical access outside the domain's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds {
    /// First guest-physical address of the access.
    pub gpa: u64,
    /// Length of the access in bytes.
    pub len: u64,
    /// Size of the guest memory.
    pub size: u64,
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "guest-physical access {:#x} + {:#x} is outside guest memory of {:#x} bytes",
            self.gpa, self.len, self.size
        )
    }
}

/// A domain's guest-physical RAM, `0..size()`, as the hypervisor sees it.
///
/// Bare metal implements this over the domain's frames (through the
/// hypervisor's map of host memory); host tests over a `Vec`. Memory handed
/// to a new domain must already be zeroed, so nothing of a previous owner
/// leaks; the builder relies on that only for speed, not for correctness.
pub trait GuestMemory {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Copies `bytes` to guest-physical `gpa`. Fails, writing nothing, when
    /// any byte would fall outside `0..size()`.
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfBounds>;
    /// Sets `len` bytes from `gpa` to `byte`, with the same bounds rule.
    fn fill(&mut self, gpa: u64, len: u64, byte: u8) -> Result<(), OutOfBounds>;
}

/// Checks that `gpa..gpa+len` lies inside memory of `size` bytes; a helper
/// for [`GuestMemory`] implementations.
pub fn check_range(gpa: u64, len: u64, size: u64) -> Result<(), OutOfBounds> {
    match gpa.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(OutOfBounds { gpa, len, size }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn range_checks() {
        assert_eq!(check_range(0, 0x1000, 0x1000), Ok(()));
        assert_eq!(check_range(0x1000, 0, 0x1000), Ok(()));
        let e = OutOfBounds {
            gpa: 0xfff,
            len: 2,
            size: 0x1000,
        };
        assert_eq!(check_range(0xfff, 2, 0x1000), Err(e));
        assert!(check_range(u64::MAX, 2, u64::MAX).is_err());
        assert_eq!(
            e.to_string(),
            "guest-physical access 0xfff + 0x2 is outside guest memory of 0x1000 bytes"
        );
    }
}
