//! Staging (Unreleased, issue 14): the control domain hands the hypervisor
//! an image (a pvabi ELF, or a Linux `vmlinux` and its initramfs) in
//! bounded pieces, then builds a domain from the staged copies
//! ([`DOMCTL_CREATE_STAGED`]). Each call does a bounded amount of work
//! (at most [`DOMCTL_STAGE_WRITE_MAX`] bytes copied), and the control
//! domain never needs the whole image in its own memory (it streams it
//! from its disk).
//!
//! ```ignore
//! let h = stage::begin(len)?;                   // HC_DOMCTL_STAGE_BEGIN
//! for (off, piece) in chunks { stage::write(h, off, piece)?; }
//! let id = domctl::create_staged(&mut req, h, None, b"")?;  // frees h
//! // on any error before that: stage::abort(h)
//! ```
//!
//! Rules (the hypervisor checks every one):
//! - A stage belongs to the domain that began it; another domain's handle
//!   (or a stale one) is `ENOENT`. At most [`DOMCTL_STAGE_MAX_HANDLES`]
//!   stages per domain and [`DOMCTL_STAGE_TOTAL_MAX`] bytes in all
//!   (`EBUSY` past either); its frames come from the hypervisor's free
//!   memory (`ENOMEM` when there are not enough) and are freed by
//!   [`HC_DOMCTL_STAGE_ABORT`], by a successful create that names it, and
//!   when its domain ends.
//! - Writes may repeat or overlap bytes already written (a retry), but
//!   never leave a gap: `offset` at most the bytes written so far
//!   ("filled"), and `offset + len` at most the stage's size. A stage is
//!   used by a create only once it is filled to its size (`EINVAL`
//!   otherwise), so a domain is never built from bytes nobody wrote.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::DomainCreate;

/// `HC_DOMCTL_STAGE_BEGIN(size)` (privileged): takes frames for `size`
/// bytes (`1..=`[`DOMCTL_IMAGE_MAX`]) and returns a handle (never
/// 0). Errors: `EPERM` (not the control domain); `EINVAL` (`size` 0 or
/// too big); `EBUSY` (the caller already has
/// [`DOMCTL_STAGE_MAX_HANDLES`] stages, or [`DOMCTL_STAGE_TOTAL_MAX`]
/// bytes would be staged); `ENOMEM` (not enough free frames).
pub const HC_DOMCTL_STAGE_BEGIN: u64 = 60;
/// `HC_DOMCTL_STAGE_WRITE(handle, offset, gpa, len)` (privileged): copies
/// `len` bytes (`1..=`[`DOMCTL_STAGE_WRITE_MAX`]) at `gpa` in the
/// caller's memory to `offset` of the stage; returns the bytes filled
/// after it. Errors: `EPERM`; `ENOENT` (no such stage of the caller's, or
/// one being built from); `EINVAL` (`len` 0, `offset` past the filled
/// bytes, or `offset + len` past the stage's size); `E2BIG` (`len` over
/// the maximum); `EFAULT` (the source range not in the caller's memory:
/// the filled count is unchanged, bytes past it may have changed).
pub const HC_DOMCTL_STAGE_WRITE: u64 = 61;
/// `HC_DOMCTL_STAGE_ABORT(handle)` (privileged): frees the stage.
/// Errors: `EPERM`; `ENOENT` (no such stage of the caller's).
pub const HC_DOMCTL_STAGE_ABORT: u64 = 62;

/// Most bytes one [`HC_DOMCTL_STAGE_WRITE`] copies.
pub const DOMCTL_STAGE_WRITE_MAX: u64 = 64 << 10;
/// Most stages one domain holds at once.
pub const DOMCTL_STAGE_MAX_HANDLES: usize = 8;
/// Most bytes one domain has staged at once (all its stages together).
pub const DOMCTL_STAGE_TOTAL_MAX: u64 = DOMCTL_IMAGE_MAX;

/// Largest stage (an image must also fit the domain it builds).
pub const DOMCTL_IMAGE_MAX: u64 = DOMCTL_IMAGE_MAX_MIB << 20;
/// [`DOMCTL_IMAGE_MAX`] in MiB (the largest domain's memory).
pub const DOMCTL_IMAGE_MAX_MIB: u64 = crate::DOMCTL_MEMORY_MAX >> 20;

/// [`DomainCreate::flags`] bit: the image is a stage of the caller's,
/// named (with the rest) by a [`DomainCreateStaged`] right after the
/// [`DomainCreate`] (at RDI + [`crate::DOMAIN_CREATE_SIZE`]); `module`
/// must be 0. Alone: a pvabi ELF image, the command line the
/// `DomainCreate`'s own, the extension's `initrd` 0 and `cmdline_len` 0.
/// With [`crate::DOMCTL_CREATE_LINUX`]: a Linux `vmlinux`, `initrd` a
/// second stage (or 0 for none), the command line the extension's (the
/// `DomainCreate`'s `cmdline_len` 0). A successful create frees the
/// stages it names; on any error they are left as they were (the caller
/// retries or aborts them). Errors besides [`crate::HC_DOMCTL_CREATE`]'s:
/// `EFAULT` (the extension or its command line not in the caller's
/// memory); `EINVAL` (`module` not 0, `_pad` not 0, `image` 0, `initrd`
/// equal to `image`, an `initrd` or extension command line on a pvabi
/// create, a bad Linux command line, a stage not filled to its size, or
/// bytes that are not a usable image); `ENOENT` (a handle that is not a
/// stage of the caller's).
pub const DOMCTL_CREATE_STAGED: u32 = 1 << 2;

/// IN of [`crate::HC_DOMCTL_CREATE`] with [`DOMCTL_CREATE_STAGED`], right
/// after the [`DomainCreate`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct DomainCreateStaged {
    /// IN: the stage with the image (ELF or `vmlinux`).
    pub image: u64,
    /// IN: the stage with the initramfs (Linux only), 0 for none.
    pub initrd: u64,
    /// IN: guest-physical address of the Linux command line in the
    /// caller's memory (ignored when `cmdline_len` is 0).
    pub cmdline_gpa: u64,
    /// IN: its length, at most [`crate::DOMCTL_LINUX_CMDLINE_MAX`]; 0 on
    /// a pvabi create.
    pub cmdline_len: u32,
    /// Must be 0.
    pub _pad: u32,
}

/// Size of [`DomainCreateStaged`] in bytes.
pub const DOMAIN_CREATE_STAGED_SIZE: usize = 32;
const _: () = assert!(core::mem::size_of::<DomainCreateStaged>() == DOMAIN_CREATE_STAGED_SIZE);
const _: () = assert!(core::mem::offset_of!(DomainCreateStaged, initrd) == 8);
const _: () = assert!(core::mem::offset_of!(DomainCreateStaged, cmdline_gpa) == 16);
const _: () = assert!(core::mem::offset_of!(DomainCreateStaged, cmdline_len) == 24);

/// [`DomainCreate`] followed by its [`DomainCreateStaged`], as a control
/// domain lays them out for [`DOMCTL_CREATE_STAGED`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct DomainCreateStagedRequest {
    /// The request, with [`DOMCTL_CREATE_STAGED`] in `flags`.
    pub create: DomainCreate,
    /// The extension.
    pub staged: DomainCreateStaged,
}

const _: () =
    assert!(core::mem::offset_of!(DomainCreateStagedRequest, staged) == crate::DOMAIN_CREATE_SIZE);
