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

use core::fmt;

/// The `zerocopy` this crate derives with, so users name the same traits.
#[cfg(feature = "guest")]
pub mod guest;

pub use zerocopy;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The ABI version: major in the high 16 bits, minor in the low 16 bits
/// (this is 0.1). A guest built against a different major version must
/// refuse to start.
pub const PVABI_VERSION: u32 = 0x0000_0001;

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

// ---------------------------------------------------------------------------
// Start info
// ---------------------------------------------------------------------------

/// [`StartInfo::magic`]: the bytes `"KSTI"` read as a little-endian `u32`.
pub const START_INFO_MAGIC: u32 = u32::from_le_bytes(*b"KSTI");

/// [`StartInfo::hypercall_insn`]: hypercalls use `VMCALL` (Intel VT-x).
pub const HYPERCALL_VMCALL: u32 = 0;
/// [`StartInfo::hypercall_insn`]: hypercalls use `VMMCALL` (AMD-V).
pub const HYPERCALL_VMMCALL: u32 = 1;

/// Capacity of [`StartInfo::cmdline`] in bytes.
pub const CMDLINE_MAX: usize = 1024;

/// The start-info page's contents, written by the hypervisor before the
/// domain's first instruction. All fields are OUT (hypervisor to guest); the
/// guest reads them and never needs to write them back.
///
/// Every field is a fixed-width integer, so any bit pattern is a valid value:
/// a guest must still check what it relies on (e.g. `cmdline_len` against
/// [`CMDLINE_MAX`], which [`StartInfo::cmdline`] does).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct StartInfo {
    /// OUT: [`START_INFO_MAGIC`]; anything else means RDI does not point at
    /// a start-info page.
    pub magic: u32,
    /// OUT: the ABI version the hypervisor implements ([`PVABI_VERSION`]);
    /// check it with [`is_compatible`].
    pub abi_version: u32,
    /// OUT: which instruction makes a hypercall: [`HYPERCALL_VMCALL`] or
    /// [`HYPERCALL_VMMCALL`].
    pub hypercall_insn: u32,
    /// OUT: this domain's id (0 is the control domain).
    pub domain_id: u32,
    /// OUT: number of vCPUs the domain has. Only vCPU 0 is started.
    pub nr_vcpus: u32,
    /// OUT: feature flags; no bits are defined in 0.1 (all zero).
    pub flags: u32,
    /// OUT: size of guest-physical memory in bytes: RAM is at guest-physical
    /// `0..memory_bytes`, a multiple of 4 KiB.
    pub memory_bytes: u64,
    /// OUT: guest-physical address of this page (also in RDI at entry).
    pub start_info_gpa: u64,
    /// OUT: guest-physical address of the initial PML4 (also in CR3). The
    /// tables lie inside guest memory and belong to the guest.
    pub page_tables_gpa: u64,
    /// OUT: guest-physical (== guest-virtual) address one past the top of the
    /// initial stack (RSP at entry is derived from it, see the hypervisor's
    /// domain builder).
    pub stack_top: u64,
    /// OUT: number of valid bytes in [`StartInfo::cmdline`], at most
    /// [`CMDLINE_MAX`].
    pub cmdline_len: u32,
    /// Padding so that `cmdline` starts 8-byte aligned; zero.
    pub _pad0: u32,
    /// OUT: the domain's command line, `cmdline_len` bytes of UTF-8; not
    /// necessarily NUL-terminated. The bytes after `cmdline_len` are zero.
    pub cmdline: [u8; CMDLINE_MAX],
}

/// Size of [`StartInfo`] in bytes; the rest of the 4 KiB page is zero.
pub const START_INFO_SIZE: usize = 1088;

const _: () = assert!(core::mem::size_of::<StartInfo>() == START_INFO_SIZE);
const _: () = assert!(START_INFO_SIZE <= 4096);
const _: () = assert!(core::mem::align_of::<StartInfo>() == 8);
const _: () = assert!(core::mem::offset_of!(StartInfo, magic) == 0);
const _: () = assert!(core::mem::offset_of!(StartInfo, abi_version) == 4);
const _: () = assert!(core::mem::offset_of!(StartInfo, hypercall_insn) == 8);
const _: () = assert!(core::mem::offset_of!(StartInfo, domain_id) == 12);
const _: () = assert!(core::mem::offset_of!(StartInfo, nr_vcpus) == 16);
const _: () = assert!(core::mem::offset_of!(StartInfo, flags) == 20);
const _: () = assert!(core::mem::offset_of!(StartInfo, memory_bytes) == 24);
const _: () = assert!(core::mem::offset_of!(StartInfo, start_info_gpa) == 32);
const _: () = assert!(core::mem::offset_of!(StartInfo, page_tables_gpa) == 40);
const _: () = assert!(core::mem::offset_of!(StartInfo, stack_top) == 48);
const _: () = assert!(core::mem::offset_of!(StartInfo, cmdline_len) == 56);
const _: () = assert!(core::mem::offset_of!(StartInfo, _pad0) == 60);
const _: () = assert!(core::mem::offset_of!(StartInfo, cmdline) == 64);

impl StartInfo {
    /// An all-zero start info (not valid until the fields are filled in).
    pub const fn zeroed() -> Self {
        Self {
            magic: 0,
            abi_version: 0,
            hypercall_insn: 0,
            domain_id: 0,
            nr_vcpus: 0,
            flags: 0,
            memory_bytes: 0,
            start_info_gpa: 0,
            page_tables_gpa: 0,
            stack_top: 0,
            cmdline_len: 0,
            _pad0: 0,
            cmdline: [0; CMDLINE_MAX],
        }
    }

    /// The valid part of the command line. A `cmdline_len` beyond
    /// [`CMDLINE_MAX`] (a corrupted page) is clamped, never trusted.
    pub fn cmdline(&self) -> &[u8] {
        let len = usize::try_from(self.cmdline_len)
            .unwrap_or(CMDLINE_MAX)
            .min(CMDLINE_MAX);
        self.cmdline.get(..len).unwrap_or(&[])
    }

    /// Stores `bytes` as the command line, zeroing the rest of the field.
    /// Fails with [`Error::TooBig`] (leaving `self` unchanged) when `bytes`
    /// is longer than [`CMDLINE_MAX`].
    pub fn set_cmdline(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let len = u32::try_from(bytes.len()).map_err(|_| Error::TooBig)?;
        let dst = self.cmdline.get_mut(..bytes.len()).ok_or(Error::TooBig)?;
        dst.copy_from_slice(bytes);
        for b in self.cmdline.iter_mut().skip(bytes.len()) {
            *b = 0;
        }
        self.cmdline_len = len;
        Ok(())
    }

    /// The structure's bytes as they lie in the page (little-endian, no
    /// padding hidden: every byte is a field or explicit padding).
    pub fn bytes(&self) -> &[u8] {
        IntoBytes::as_bytes(self)
    }

    /// Reads a start info from the first [`START_INFO_SIZE`] bytes of
    /// `page`; `None` if `page` is shorter. Any bytes are a valid value, so
    /// the caller still checks [`StartInfo::is_valid`].
    pub fn from_page(page: &[u8]) -> Option<Self> {
        Self::read_from_prefix(page).ok().map(|(si, _)| si)
    }

    /// Whether `magic` is right and the ABI version is one this guest
    /// supports ([`is_compatible`]).
    pub fn is_valid(&self) -> bool {
        self.magic == START_INFO_MAGIC && is_compatible(self.abi_version)
    }
}

impl Default for StartInfo {
    fn default() -> Self {
        Self::zeroed()
    }
}

// ---------------------------------------------------------------------------
// Hypercall numbers (RAX IN); see the crate documentation for IN/OUT/errors.
// ---------------------------------------------------------------------------

/// Console write: RDI = address, RSI = length (<= [`CONSOLE_WRITE_MAX`]);
/// returns the number of bytes written. Errors: `E2BIG`, `EFAULT`.
pub const HC_CONSOLE_WRITE: u64 = 1;
/// Most bytes one [`HC_CONSOLE_WRITE`] accepts.
pub const CONSOLE_WRITE_MAX: u64 = 4096;

/// Shutdown: RDI = reason ([`SHUTDOWN_POWEROFF`], [`SHUTDOWN_CRASH`]), RSI =
/// exit code. Does not return on success. Errors: `EINVAL` (unknown reason).
pub const HC_SHUTDOWN: u64 = 2;
/// [`HC_SHUTDOWN`] reason: orderly power-off.
pub const SHUTDOWN_POWEROFF: u64 = 0;
/// [`HC_SHUTDOWN`] reason: the guest crashed (panicked).
pub const SHUTDOWN_CRASH: u64 = 1;

/// Yield: gives up the rest of the time slice; returns 0. No errors.
pub const HC_YIELD: u64 = 3;

// ---------------------------------------------------------------------------
// Status codes
// ---------------------------------------------------------------------------

/// A hypercall error: the negative values of RAX. The numbers are Linux's
/// errno values, negated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// `E2BIG` (-7): an argument (typically a length) is over its limit.
    TooBig,
    /// `EFAULT` (-14): a guest address is outside the guest's memory.
    Fault,
    /// `EINVAL` (-22): an argument has a value the hypercall rejects.
    Invalid,
    /// `ENOSYS` (-38): no hypercall has the number in RAX.
    NoSys,
}

/// Status code of [`Error::TooBig`].
pub const E2BIG: i64 = -7;
/// Status code of [`Error::Fault`].
pub const EFAULT: i64 = -14;
/// Status code of [`Error::Invalid`].
pub const EINVAL: i64 = -22;
/// Status code of [`Error::NoSys`].
pub const ENOSYS: i64 = -38;

impl Error {
    /// The status code (negative) the hypervisor puts in RAX.
    pub const fn code(self) -> i64 {
        match self {
            Self::TooBig => E2BIG,
            Self::Fault => EFAULT,
            Self::Invalid => EINVAL,
            Self::NoSys => ENOSYS,
        }
    }

    /// The conventional name (`"EFAULT"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::TooBig => "E2BIG",
            Self::Fault => "EFAULT",
            Self::Invalid => "EINVAL",
            Self::NoSys => "ENOSYS",
        }
    }

    /// The status code as the raw RAX value.
    pub const fn to_rax(self) -> u64 {
        self.code() as u64
    }
}

/// A status code that is neither success nor a known [`Error`] (e.g. from a
/// newer hypervisor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownStatus(pub i64);

impl fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown hypercall status {}", self.0)
    }
}

impl TryFrom<i64> for Error {
    type Error = UnknownStatus;

    fn try_from(code: i64) -> Result<Self, UnknownStatus> {
        match code {
            E2BIG => Ok(Self::TooBig),
            EFAULT => Ok(Self::Fault),
            EINVAL => Ok(Self::Invalid),
            ENOSYS => Ok(Self::NoSys),
            other => Err(UnknownStatus(other)),
        }
    }
}

impl From<Error> for i64 {
    fn from(e: Error) -> i64 {
        e.code()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Self::TooBig => "argument too large",
            Self::Fault => "bad guest address",
            Self::Invalid => "invalid argument",
            Self::NoSys => "unknown hypercall",
        };
        write!(f, "{} ({what})", self.name())
    }
}

/// Decodes RAX after a hypercall: `Ok(value)` for success (`>= 0` as
/// `i64`), `Err(Ok(error))` for a known error, `Err(Err(unknown))` for a
/// negative code this version does not know.
pub fn decode_status(rax: u64) -> Result<u64, Result<Error, UnknownStatus>> {
    let signed = rax as i64;
    if signed >= 0 {
        Ok(rax)
    } else {
        Err(Error::try_from(signed))
    }
}

/// Encodes a hypercall result as RAX: the value for success (which must fit
/// in `i64`; larger values become `EINVAL`), the negative code for an error.
pub fn encode_status(result: Result<u64, Error>) -> u64 {
    match result {
        Ok(v) if i64::try_from(v).is_ok() => v,
        Ok(_) => Error::Invalid.to_rax(),
        Err(e) => e.to_rax(),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;
    use zerocopy::FromZeros;

    #[test]
    fn version_encoding() {
        assert_eq!(version_major(PVABI_VERSION), 0);
        assert_eq!(version_minor(PVABI_VERSION), 1);
        assert_eq!(version_major(0x0003_0002), 3);
        assert_eq!(version_minor(0x0003_0002), 2);
        assert!(is_compatible(PVABI_VERSION));
        assert!(is_compatible(0x0000_0005));
        assert!(!is_compatible(0x0000_0000));
        assert!(!is_compatible(0x0001_0001));
    }

    #[test]
    fn start_info_layout() {
        assert_eq!(core::mem::size_of::<StartInfo>(), START_INFO_SIZE);
        assert_eq!(core::mem::offset_of!(StartInfo, memory_bytes), 24);
        assert_eq!(core::mem::offset_of!(StartInfo, cmdline), 64);
        assert_eq!(START_INFO_MAGIC.to_le_bytes(), *b"KSTI");
    }

    #[test]
    fn start_info_bytes_round_trip() {
        let mut si = StartInfo::new_zeroed();
        assert_eq!(si, StartInfo::zeroed());
        assert_eq!(si, StartInfo::default());
        si.magic = START_INFO_MAGIC;
        si.abi_version = PVABI_VERSION;
        si.hypercall_insn = HYPERCALL_VMMCALL;
        si.memory_bytes = 0x1234_5678_9abc_d000;
        si.stack_top = 0xdead_b000;
        si.set_cmdline(b"console=hvc0").ok();
        let bytes = si.as_bytes();
        assert_eq!(bytes.len(), START_INFO_SIZE);
        assert_eq!(&bytes[0..4], b"KSTI");
        assert_eq!(&bytes[4..8], &PVABI_VERSION.to_le_bytes());
        assert_eq!(&bytes[8..12], &1u32.to_le_bytes());
        assert_eq!(&bytes[24..32], &0x1234_5678_9abc_d000u64.to_le_bytes());
        assert_eq!(&bytes[48..56], &0xdead_b000u64.to_le_bytes());
        assert_eq!(&bytes[56..60], &12u32.to_le_bytes());
        assert_eq!(&bytes[64..76], b"console=hvc0");
        let back = StartInfo::read_from_bytes(bytes).ok();
        assert_eq!(back, Some(si));
        assert_eq!(si.bytes(), bytes);
        let mut page = [0u8; 4096];
        page[..START_INFO_SIZE].copy_from_slice(bytes);
        assert_eq!(StartInfo::from_page(&page), Some(si));
        assert_eq!(StartInfo::from_page(&page[..START_INFO_SIZE - 1]), None);
        assert!(si.is_valid());
        si.magic ^= 1;
        assert!(!si.is_valid());
    }

    #[test]
    fn cmdline_handling() {
        let mut si = StartInfo::zeroed();
        assert_eq!(si.cmdline(), b"");
        si.set_cmdline(b"abcdef").ok();
        si.set_cmdline(b"xy").ok();
        assert_eq!(si.cmdline(), b"xy");
        assert!(si.cmdline[2..].iter().all(|&b| b == 0));
        let long = [b'a'; CMDLINE_MAX + 1];
        assert_eq!(si.set_cmdline(&long), Err(Error::TooBig));
        assert_eq!(si.cmdline(), b"xy");
        assert_eq!(si.set_cmdline(&long[..CMDLINE_MAX]), Ok(()));
        assert_eq!(si.cmdline().len(), CMDLINE_MAX);
        // A corrupted length is clamped.
        si.cmdline_len = u32::MAX;
        assert_eq!(si.cmdline().len(), CMDLINE_MAX);
    }

    #[test]
    fn error_round_trips() {
        for e in [Error::TooBig, Error::Fault, Error::Invalid, Error::NoSys] {
            assert!(e.code() < 0);
            assert_eq!(Error::try_from(e.code()), Ok(e));
            assert_eq!(i64::from(e), e.code());
            assert_eq!(decode_status(e.to_rax()), Err(Ok(e)));
            assert_eq!(encode_status(Err(e)), e.to_rax());
            assert!(format!("{e}").starts_with(e.name()));
        }
        assert_eq!(Error::NoSys.code(), -38);
        assert_eq!(Error::Invalid.code(), -22);
        assert_eq!(Error::Fault.code(), -14);
        assert_eq!(Error::TooBig.code(), -7);
        assert_eq!(format!("{}", Error::Fault), "EFAULT (bad guest address)");
        assert_eq!(Error::try_from(-1), Err(UnknownStatus(-1)));
        assert_eq!(Error::try_from(0), Err(UnknownStatus(0)));
        assert_eq!(Error::try_from(5), Err(UnknownStatus(5)));
        assert_eq!(
            format!("{}", UnknownStatus(-99)),
            "unknown hypercall status -99"
        );
    }

    #[test]
    fn status_encoding() {
        assert_eq!(decode_status(0), Ok(0));
        assert_eq!(decode_status(4096), Ok(4096));
        assert_eq!(decode_status(i64::MAX as u64), Ok(i64::MAX as u64));
        assert_eq!(decode_status(-1i64 as u64), Err(Err(UnknownStatus(-1))));
        assert_eq!(encode_status(Ok(17)), 17);
        assert_eq!(encode_status(Ok(u64::MAX)), Error::Invalid.to_rax());
    }

    #[test]
    fn hypercall_numbers_are_distinct() {
        let n = [HC_CONSOLE_WRITE, HC_SHUTDOWN, HC_YIELD];
        assert_eq!(n, [1, 2, 3]);
        assert_ne!(HYPERCALL_VMCALL, HYPERCALL_VMMCALL);
        assert_ne!(SHUTDOWN_POWEROFF, SHUTDOWN_CRASH);
    }
}
