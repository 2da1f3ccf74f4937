//! Images in the control domain's memory (`DOMCTL_CREATE_IMAGE`, pvabi
//! `domctl_image.rs`): the extension after the `DomainCreate` is read and
//! checked, and at build time the bytes are copied into frames the
//! hypervisor takes for the build ([`Staged`]) and frees when it is done.
//!
//! Why a copy and not the control domain's frames in place: its memory is
//! 2 MiB chunks that are not contiguous in host memory, the loader wants one
//! slice, and another of its vCPUs could change the bytes while the loader
//! parses them. Why frames and not the heap: the hypervisor heap is 1 MiB on
//! small machines (`mm/memmap.rs`), images are larger.
#![forbid(unsafe_code)]

use pvabi::zerocopy::FromBytes;
use pvabi::{DOMAIN_CREATE_SIZE, DOMCTL_IMAGE_MAX, DomainCreateImage, Error};

use crate::hypercall::{GuestRead, Services};
use crate::platform::{P, Platform};

const PAGE: u64 = 4096;

/// Reads and checks the [`DomainCreateImage`] after the `DomainCreate` at
/// `at`: the image's (gpa, len).
pub fn read_extension(svc: &impl Services, at: u64) -> Result<(u64, u64), Error> {
    let at = at
        .checked_add(DOMAIN_CREATE_SIZE as u64)
        .ok_or(Error::Fault)?;
    let mut raw = [0u8; core::mem::size_of::<DomainCreateImage>()];
    svc.read(at, &mut raw).map_err(|_| Error::Fault)?;
    let ext = DomainCreateImage::read_from_bytes(&raw).map_err(|_| Error::Fault)?;
    if !(1..=DOMCTL_IMAGE_MAX).contains(&ext.image_len) {
        return Err(Error::Invalid);
    }
    // The whole range must be the caller's (checked again while copying).
    ext.image_gpa
        .checked_add(ext.image_len)
        .ok_or(Error::Fault)?;
    Ok((ext.image_gpa, ext.image_len))
}

/// A copy of an image in frames owned by the hypervisor until dropped.
pub struct Staged {
    base: u64,
    pages: u64,
    len: usize,
}

impl Staged {
    /// Copies `len` bytes at `gpa` of `mem` (the caller's memory):
    /// `EFAULT` when any of it is not there, `ENOMEM` when no frames are
    /// free for it.
    pub fn copy(mem: &impl GuestRead, gpa: u64, len: u64) -> Result<Self, Error> {
        let size = usize::try_from(len).map_err(|_| Error::Invalid)?;
        let pages = len.div_ceil(PAGE);
        let base = P::alloc_aligned(pages, PAGE).ok_or(Error::NoMem)?;
        // Owned from here: dropped (freed) on every error below.
        let staged = Self {
            base,
            pages,
            len: size,
        };
        let mut buf = [0u8; 512];
        let mut off = 0u64;
        while off < len {
            let n = (len - off).min(buf.len() as u64) as usize;
            let piece = buf.get_mut(..n).ok_or(Error::Invalid)?;
            let from = gpa.checked_add(off).ok_or(Error::Fault)?;
            mem.read(from, piece).map_err(|_| Error::Fault)?;
            P::write_phys(base + off, piece);
            off += n as u64;
        }
        Ok(staged)
    }

    /// The copied bytes; `None` on a platform without plain physical
    /// memory (host tests).
    pub fn bytes(&self) -> Option<&[u8]> {
        P::phys_bytes(self.base, self.len)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        P::free_frames(self.base, self.pages);
    }
}
