//! Staging an image in the hypervisor in bounded pieces (control domain
//! only; `pvabi::HC_DOMCTL_STAGE_*`, the module doc of `stage.rs` in the
//! ABI): [`begin`], [`write()`] each piece, then
//! [`crate::guest::domctl::create_staged`] (which frees the stages) or
//! [`abort`].

use super::{hypercall6, status};
use crate::{
    DOMCTL_STAGE_WRITE_MAX, Error, HC_DOMCTL_STAGE_ABORT, HC_DOMCTL_STAGE_BEGIN,
    HC_DOMCTL_STAGE_WRITE,
};

/// Takes a stage of `size` bytes; its handle.
pub fn begin(size: u64) -> Result<u64, Error> {
    status(hypercall6(HC_DOMCTL_STAGE_BEGIN, [size, 0, 0, 0, 0, 0]))
}

/// Copies `bytes` (at most [`DOMCTL_STAGE_WRITE_MAX`]) to `offset` of
/// stage `handle`; the bytes filled after it.
pub fn write(handle: u64, offset: u64, bytes: &[u8]) -> Result<u64, Error> {
    status(hypercall6(
        HC_DOMCTL_STAGE_WRITE,
        [
            handle,
            offset,
            bytes.as_ptr() as u64,
            bytes.len() as u64,
            0,
            0,
        ],
    ))
}

/// [`write()`] of any length: one call per [`DOMCTL_STAGE_WRITE_MAX`]
/// bytes. The bytes filled after the last.
pub fn write_all(handle: u64, offset: u64, bytes: &[u8]) -> Result<u64, Error> {
    let mut filled = 0;
    let mut at = offset;
    for piece in bytes.chunks(DOMCTL_STAGE_WRITE_MAX as usize) {
        filled = write(handle, at, piece)?;
        at += piece.len() as u64;
    }
    Ok(filled)
}

/// Frees stage `handle`.
pub fn abort(handle: u64) -> Result<(), Error> {
    status(hypercall6(HC_DOMCTL_STAGE_ABORT, [handle, 0, 0, 0, 0, 0])).map(|_| ())
}
