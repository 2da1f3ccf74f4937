//! The grant op group (ABI 1.2): [`crate::HC_GRANT_ACCESS`],
//! [`crate::HC_GRANT_REVOKE`], [`crate::HC_GRANT_MAP`],
//! [`crate::HC_GRANT_UNMAP`].
//!
//! The granter calls [`access`] and passes the reference to the grantee
//! (e.g. through a shared page or a well-known number); the grantee makes a
//! hole with [`super::memory`]'s release and [`map`]s the reference there.

use super::{hypercall6, status};
use crate::{
    Error, GRANT_READONLY, GRANT_REVOKE_DEFERRED, HC_GRANT_ACCESS, HC_GRANT_MAP, HC_GRANT_REVOKE,
    HC_GRANT_UNMAP,
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
