//! What [`crate::HC_GRANT_QUERY`] (1.3) reports: a domain's grant and map
//! limits and their use.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A domain's grant limits (OUT of [`crate::HC_GRANT_QUERY`]). Every field
/// is OUT; the limits only grow ([`crate::HC_GRANT_SET_MAX`]).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct GrantLimits {
    /// OUT: grant references of this domain in use (granted, or revoked
    /// and still mapped by the grantee).
    pub grants_in_use: u32,
    /// OUT: the most references it may have in use
    /// ([`crate::GRANT_DEFAULT_LIMIT`] at start).
    pub grants_max: u32,
    /// OUT: other domains' grants this domain maps now.
    pub maps_in_use: u32,
    /// OUT: the most it may map at once ([`crate::GRANT_DEFAULT_LIMIT`] at
    /// start).
    pub maps_max: u32,
    /// OUT: the highest value either limit may be raised to,
    /// [`crate::GRANT_MAX_CEILING`].
    pub ceiling: u32,
    /// Zero.
    pub _pad: u32,
}

/// Size of [`GrantLimits`] in bytes.
pub const GRANT_LIMITS_SIZE: usize = 24;

const _: () = assert!(core::mem::size_of::<GrantLimits>() == GRANT_LIMITS_SIZE);
const _: () = assert!(core::mem::align_of::<GrantLimits>() == 4);
const _: () = assert!(core::mem::offset_of!(GrantLimits, grants_in_use) == 0);
const _: () = assert!(core::mem::offset_of!(GrantLimits, grants_max) == 4);
const _: () = assert!(core::mem::offset_of!(GrantLimits, maps_in_use) == 8);
const _: () = assert!(core::mem::offset_of!(GrantLimits, maps_max) == 12);
const _: () = assert!(core::mem::offset_of!(GrantLimits, ceiling) == 16);
const _: () = assert!(core::mem::offset_of!(GrantLimits, _pad) == 20);

impl GrantLimits {
    /// All zero.
    pub const fn zeroed() -> Self {
        Self {
            grants_in_use: 0,
            grants_max: 0,
            maps_in_use: 0,
            maps_max: 0,
            ceiling: 0,
            _pad: 0,
        }
    }
}
