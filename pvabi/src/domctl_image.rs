//! domctl create from an image in the caller's memory (Unreleased, issue
//! 14): the control domain builds a domain from bytes it holds (an image
//! sent to it at run time) instead of a boot module.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{DOMAIN_CREATE_SIZE, DomainCreate};

/// [`DomainCreate::flags`] bit: the image is not a boot module but
/// `image_len` bytes at guest-physical `image_gpa` in the caller's memory,
/// described by a [`DomainCreateImage`] right after the [`DomainCreate`]
/// (at RDI + [`DOMAIN_CREATE_SIZE`]); `module` must be 0. The hypervisor
/// copies the bytes into frames it takes for the build and frees them
/// before it returns, so the caller may reuse its memory at once and
/// changing it meanwhile (another vCPU) changes only what is built, never
/// the hypervisor. A pvabi ELF image only: not with
/// [`crate::DOMCTL_CREATE_LINUX`]. Errors besides
/// [`crate::HC_DOMCTL_CREATE`]'s: `EFAULT` (the extension or the image
/// range not in the caller's memory); `EINVAL` (`module` not 0, `_pad` not
/// 0, `image_len` 0 or over [`DOMCTL_IMAGE_MAX`], together with
/// `DOMCTL_CREATE_LINUX`, or the bytes not a usable ELF image); `ENOMEM`
/// (no free frames for the copy).
pub const DOMCTL_CREATE_IMAGE: u32 = 1 << 1;

/// Largest [`DomainCreateImage::image_len`] (it must also fit the
/// domain's memory).
pub const DOMCTL_IMAGE_MAX: u64 = DOMCTL_IMAGE_MAX_MIB << 20;
/// [`DOMCTL_IMAGE_MAX`] in MiB (the largest domain's memory).
pub const DOMCTL_IMAGE_MAX_MIB: u64 = crate::DOMCTL_MEMORY_MAX >> 20;

/// IN of [`crate::HC_DOMCTL_CREATE`] with [`DOMCTL_CREATE_IMAGE`], right
/// after the [`DomainCreate`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct DomainCreateImage {
    /// IN: guest-physical address of the image in the caller's memory.
    pub image_gpa: u64,
    /// IN: its length in bytes, `1..=`[`DOMCTL_IMAGE_MAX`].
    pub image_len: u64,
}

/// Size of [`DomainCreateImage`] in bytes.
pub const DOMAIN_CREATE_IMAGE_SIZE: usize = 16;
const _: () = assert!(core::mem::size_of::<DomainCreateImage>() == DOMAIN_CREATE_IMAGE_SIZE);
const _: () = assert!(core::mem::offset_of!(DomainCreateImage, image_len) == 8);

/// [`DomainCreate`] followed by its [`DomainCreateImage`], as a control
/// domain lays them out for [`DOMCTL_CREATE_IMAGE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct DomainCreateImageRequest {
    /// The request, with [`DOMCTL_CREATE_IMAGE`] in `flags`.
    pub create: DomainCreate,
    /// The extension.
    pub image: DomainCreateImage,
}

const _: () = assert!(core::mem::offset_of!(DomainCreateImageRequest, image) == DOMAIN_CREATE_SIZE);
