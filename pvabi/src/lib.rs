//! The Kestrel paravirtual ABI.
//!
//! Guests and dom0 link this crate; the hypervisor implements it. Everything
//! a guest can see is defined here: the version, the start-info page, the
//! register convention, the hypercall numbers and the status codes. Changes
//! are listed by ABI version in `CHANGELOG.md` in this crate.
//!
//! # Versioning
//!
//! [`PVABI_VERSION`] is `major << 16 | minor`. A guest must refuse to start
//! when [`StartInfo::abi_version`] has a different major version from the one
//! it was built against ([`is_compatible`]); a newer minor version only adds
//! things (hypercalls, start-info fields in the page's reserved tail).
//!
//! # Register convention
//!
//! A hypercall is one `VMCALL` (Intel) or `VMMCALL` (AMD) instruction. The
//! guest never guesses which: [`StartInfo::hypercall_insn`] says
//! ([`HYPERCALL_VMCALL`] or [`HYPERCALL_VMMCALL`]); the other instruction
//! faults.
//!
//! | register | IN                  | OUT                    |
//! |----------|---------------------|------------------------|
//! | RAX      | hypercall number    | status (see below)     |
//! | RDI      | argument 1          | preserved              |
//! | RSI      | argument 2          | preserved              |
//! | RDX      | argument 3          | preserved              |
//! | R10      | argument 4          | preserved              |
//! | R8       | argument 5          | preserved              |
//! | R9       | argument 6          | preserved              |
//!
//! All other registers are preserved as well; only RAX changes. The argument
//! registers match the Linux `syscall` convention (R10 instead of RCX), so a
//! guest can reuse its system-call stubs. Unused arguments are ignored.
//!
//! # Status codes
//!
//! RAX read as an `i64`: a value `>= 0` is success (and carries the
//! hypercall's result, e.g. a byte count); a negative value is an
//! [`Error`]. The numbers are Linux's errno values, negated, so a Linux guest
//! can pass them on unchanged. [`decode_status`] turns RAX into a `Result`.
//!
//! | code        | value | meaning                                        |
//! |-------------|-------|------------------------------------------------|
//! | `E2BIG`     | -7    | an argument (a length) is over its limit       |
//! | `EFAULT`    | -14   | a guest address is not inside guest memory     |
//! | `EINVAL`    | -22   | an argument has a value the hypercall rejects  |
//! | `ENOSYS`    | -38   | no hypercall has this number                   |
//!
//! # The start-info page
//!
//! A domain's vCPU 0 starts in 64-bit long mode at the ELF entry point with
//! RDI holding the guest-physical address of a 4 KiB page whose beginning is
//! a [`StartInfo`] (the first argument in the System V calling convention, so
//! the entry point can be `extern "sysv64" fn(&StartInfo) -> !`). RSP points
//! at a stack, CR3 at page tables that identity-map all guest memory
//! (guest-virtual == guest-physical), and a GDT with a 64-bit code segment is
//! loaded. The rest of the page after the structure is zero; later minor
//! versions may place new fields there. The page is ordinary guest memory: the
//! guest may overwrite it once it has read what it needs.
//!
//! # Hypercalls
//!
//! ## [`HC_CONSOLE_WRITE`] (1)
//! Writes bytes to the domain's console.
//! - IN: RDI = address of the bytes (guest-physical; with the initial
//!   identity map this equals the guest-virtual address), RSI = length, at
//!   most [`CONSOLE_WRITE_MAX`].
//! - OUT: RAX = number of bytes written (all of them on success; 0 for a
//!   zero length).
//! - Errors: `E2BIG` when RSI > [`CONSOLE_WRITE_MAX`]; `EFAULT` when any byte
//!   of the range lies outside guest memory (nothing is written then).
//!
//! ## [`HC_SHUTDOWN`] (2)
//! Stops the whole domain; does not return on success.
//! - IN: RDI = reason ([`SHUTDOWN_POWEROFF`] or [`SHUTDOWN_CRASH`]), RSI =
//!   exit code (reported to the control domain and in the log).
//! - OUT: nothing on success.
//! - Errors: `EINVAL` for an unknown reason.
//!
//! ## [`HC_YIELD`] (3)
//! Gives up the rest of this vCPU's time slice; the vCPU stays runnable.
//! - IN: nothing.
//! - OUT: RAX = 0.
//! - Errors: none.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]

#[cfg(feature = "guest")]
pub mod guest;
mod hypercalls;
mod shared;
mod start_info;
mod status;

/// The `zerocopy` this crate derives with, so users name the same traits.
pub use zerocopy;

pub use hypercalls::*;
pub use shared::*;
pub use start_info::*;
pub use status::*;

/// The ABI version: major in the high 16 bits, minor in the low 16 bits
/// (this is 1.0). A guest built against a different major version must
/// refuse to start.
pub const PVABI_VERSION: u32 = 0x0001_0000;

/// The major part of an ABI version number.
pub const fn version_major(version: u32) -> u16 {
    (version >> 16) as u16
}

/// The minor part of an ABI version number.
pub const fn version_minor(version: u32) -> u16 {
    (version & 0xffff) as u16
}

/// Whether a hypervisor offering `offered` can run a guest built against
/// [`PVABI_VERSION`]: same major version, and at least our minor version.
pub const fn is_compatible(offered: u32) -> bool {
    version_major(offered) == version_major(PVABI_VERSION)
        && version_minor(offered) >= version_minor(PVABI_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_encoding() {
        assert_eq!(PVABI_VERSION, 0x0001_0000);
        assert_eq!(version_major(PVABI_VERSION), 1);
        assert_eq!(version_minor(PVABI_VERSION), 0);
        assert_eq!(version_major(0x0003_0002), 3);
        assert_eq!(version_minor(0x0003_0002), 2);
        assert!(is_compatible(PVABI_VERSION));
        assert!(is_compatible(0x0001_0005), "a newer minor only adds");
        assert!(!is_compatible(0x0000_0001), "0.1 was pre-release");
        assert!(!is_compatible(0x0000_0000));
        assert!(!is_compatible(0x0002_0000));
        assert!(!is_compatible(u32::MAX));
    }
}
