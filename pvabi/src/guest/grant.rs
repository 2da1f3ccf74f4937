//! The grant op group (ABI 1.2): [`crate::HC_GRANT_ACCESS`],
//! [`crate::HC_GRANT_REVOKE`], [`crate::HC_GRANT_MAP`],
//! [`crate::HC_GRANT_UNMAP`].
//!
//! 1.3 adds [`copy_from`]/[`copy_to`] ([`crate::HC_GRANT_COPY`]),
//! [`query`] ([`crate::HC_GRANT_QUERY`]) and [`set_max`]
//! ([`crate::HC_GRANT_SET_MAX`]).
//!
//! The granter calls [`access`] and passes the reference to the grantee
//! (e.g. through a shared page or a well-known number); the grantee makes a
//! hole with [`super::memory`]'s release and [`map`]s the reference there,
//! or copies to and from the page with no mapping at all.

use super::{hypercall6, status};
use crate::{
    Error, GRANT_COPY_MAX, GRANT_COPY_TO_GRANT, GRANT_READONLY, GRANT_REVOKE_DEFERRED, GrantLimits,
    HC_GRANT_ACCESS, HC_GRANT_COPY, HC_GRANT_MAP, HC_GRANT_QUERY, HC_GRANT_REVOKE,
    HC_GRANT_SET_MAX, HC_GRANT_UNMAP,
};

fn flags(read_only: bool) -> u64 {
    if read_only { GRANT_READONLY } else { 0 }
}

fn small(v: u64) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Invalid)
}

/// Lets domain `grantee` map this domain's page at `gpa`; returns the grant
/// reference.
pub fn access(gpa: u64, grantee: u32, read_only: bool) -> Result<u32, Error> {
    small(status(hypercall6(
        HC_GRANT_ACCESS,
        [gpa, grantee.into(), flags(read_only), 0, 0, 0],
    ))?)
}

/// How a revoke went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// The page is private again, the reference free.
    Done,
    /// Still mapped: no new mappings; `port` (if not 0) becomes pending when
    /// the grantee unmaps.
    Deferred,
}

/// Ends grant `gref`; `port` (0: none) is raised when a deferred revoke
/// completes.
pub fn revoke(gref: u32, port: u32) -> Result<Revoked, Error> {
    let r = status(hypercall6(
        HC_GRANT_REVOKE,
        [gref.into(), port.into(), 0, 0, 0, 0],
    ))?;
    Ok(if r == GRANT_REVOKE_DEFERRED {
        Revoked::Deferred
    } else {
        Revoked::Done
    })
}

/// Maps grant `gref` of domain `granter` at `gpa` (a hole in this domain's
/// space); returns the map handle.
pub fn map(granter: u32, gref: u32, gpa: u64, read_only: bool) -> Result<u32, Error> {
    small(status(hypercall6(
        HC_GRANT_MAP,
        [granter.into(), gref.into(), gpa, flags(read_only), 0, 0],
    ))?)
}

/// Removes mapping `handle`.
pub fn unmap(handle: u32) -> Result<(), Error> {
    status(hypercall6(HC_GRANT_UNMAP, [handle.into(), 0, 0, 0, 0, 0])).map(|_| ())
}

fn copy_len(len: usize) -> Result<u64, Error> {
    match len as u64 {
        0 => Err(Error::Invalid),
        l if l > GRANT_COPY_MAX => Err(Error::TooBig),
        l => Ok(l),
    }
}

/// Copies `buf.len()` bytes (`1..=`[`GRANT_COPY_MAX`]) from `offset` in
/// grant `gref` of domain `granter` into `buf`; returns how many (all).
/// Errors as [`crate::HC_GRANT_COPY`] lists them.
pub fn copy_from(granter: u32, gref: u32, offset: u32, buf: &mut [u8]) -> Result<usize, Error> {
    let len = copy_len(buf.len())?;
    // `buf` is ours (a unique borrow); the hypervisor writes only its
    // `len` bytes, and any bytes are valid there.
    let args = [
        granter.into(),
        gref.into(),
        offset.into(),
        buf.as_mut_ptr() as u64,
        len,
        0,
    ];
    status(hypercall6(HC_GRANT_COPY, args)).map(|n| n as usize)
}

/// Copies `bytes` (`1..=`[`GRANT_COPY_MAX`] of them) to `offset` in grant
/// `gref` of domain `granter` (a read-write grant); returns how many.
pub fn copy_to(granter: u32, gref: u32, offset: u32, bytes: &[u8]) -> Result<usize, Error> {
    let len = copy_len(bytes.len())?;
    let args = [
        granter.into(),
        gref.into(),
        offset.into(),
        bytes.as_ptr() as u64,
        len,
        GRANT_COPY_TO_GRANT,
    ];
    status(hypercall6(HC_GRANT_COPY, args)).map(|n| n as usize)
}

/// This domain's grant and map limits and their use.
pub fn query() -> Result<GrantLimits, Error> {
    let mut out = GrantLimits::zeroed();
    // `out` is ours; the hypervisor fills it in (any bytes are valid).
    status(hypercall6(
        HC_GRANT_QUERY,
        [&raw mut out as u64, 0, 0, 0, 0, 0],
    ))?;
    Ok(out)
}

/// Raises this domain's grant limit to `grants` and map limit to `maps`
/// (neither may be lower than now; at most [`crate::GRANT_MAX_CEILING`]).
pub fn set_max(grants: u32, maps: u32) -> Result<(), Error> {
    status(hypercall6(
        HC_GRANT_SET_MAX,
        [grants.into(), maps.into(), 0, 0, 0, 0],
    ))
    .map(|_| ())
}
