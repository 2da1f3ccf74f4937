//! The grant op group: its hypercall numbers (1.2, completed in 1.3) and
//! what [`crate::HC_GRANT_QUERY`] reports, a domain's grant and map limits
//! and their use.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

// For the documentation's links to other op groups.
#[allow(unused_imports)]
use crate::*;

// grant (1.2)

/// Flag of [`HC_GRANT_ACCESS`] and [`HC_GRANT_MAP`] (1.2): read-only. The
/// only flag defined; any other bit set is `EINVAL`.
pub const GRANT_READONLY: u64 = 1;

/// Status of [`HC_GRANT_REVOKE`] (1.2) when the grant is still mapped: the
/// revoke took effect (no new mappings) but the page stays shared until
/// the grantee unmaps it; then the grant's reference is free again and
/// the port named in the revoke (if not 0) is made pending.
pub const GRANT_REVOKE_DEFERRED: u64 = 1;

/// **grant access** (21): lets domain RSI map this domain's page at RDI.
///
/// - IN: RDI = guest-physical address of a page of the caller's, RSI =
///   the grantee's domain id, RDX = flags ([`GRANT_READONLY`] or 0).
/// - OUT: RAX = a grant reference (a small number, to pass to the grantee).
/// - Errors, in the order checked: `EINVAL` (RSI does not fit in 32 bits,
///   or RDX has an undefined bit); `EINVAL` (RDI not page aligned);
///   `EFAULT` (RDI outside the domain, or the page is not present:
///   released, or itself a mapped grant); `EINVAL` (the grantee is the
///   caller); `ENOMEM` (the domain's grant limit, 1024, is reached).
/// - Notes: the grantee need not exist yet. While any grantee maps the
///   page, the granter's [`HC_MEM_RELEASE`] of it fails with `EBUSY`.
pub const HC_GRANT_ACCESS: u64 = 21;

/// **grant revoke** (22): ends grant RDI.
///
/// - IN: RDI = a grant reference of the caller's, RSI = a local
///   event-channel port to make pending when a deferred revoke completes
///   (0: none).
/// - OUT: RAX = 0 (done: the reference is free and the page private) or
///   [`GRANT_REVOKE_DEFERRED`] (still mapped: see there).
/// - Errors, in the order checked: `EINVAL` (RDI or RSI does not fit in 32
///   bits, or RDI is beyond the grant limit); `ENOENT` (not granted);
///   `EBUSY` (already being revoked).
pub const HC_GRANT_REVOKE: u64 = 22;

/// **grant map** (23): maps grant RSI of domain RDI at the caller's
/// guest-physical address RDX.
///
/// - IN: RDI = the granter's domain id, RSI = its grant reference, RDX =
///   where to map it: a page-aligned address inside the caller's
///   guest-physical space where the caller has no page (a hole it made
///   with [`HC_MEM_RELEASE`]), R10 = flags ([`GRANT_READONLY`] or 0).
/// - OUT: RAX = a map handle, for [`HC_GRANT_UNMAP`].
/// - Errors, in the order checked: `EINVAL` (RDI or RSI does not fit in 32
///   bits, R10 has an undefined bit, RDX is not page aligned, or RDI is
///   the caller); `EFAULT` (RDX outside the domain); `EEXIST` (a page or
///   another mapping is at RDX); `ENOENT` (no such live granter);
///   `EINVAL` (RSI beyond the granter's limit); `ENOENT` (RSI never
///   granted, or revoked); `EPERM` (granted to another domain, or
///   read-only and R10 asks read-write); `ENOMEM` (the caller's map limit,
///   1024, is reached, or no memory for a page-table frame).
/// - Notes: a write to a read-only mapping is a nested-paging violation:
///   the writer is killed. The mapped page is not the caller's own memory:
///   hypercall buffers there get `EFAULT`, and it is not counted in
///   `current_pages`. When the granter dies (1.3) the mapping stays but
///   its page is swapped for a zeroed page of the grantee's own (writable
///   if the mapping was), so a grantee in the middle of using it does not
///   fault; the granter's frame is freed at once. The grantee learns of
///   the death through its event channel (the port goes unbound) and
///   unmaps as usual, which frees the zeroed page. (1.2 removed the
///   mapping, so touching the page killed the grantee.)
pub const HC_GRANT_MAP: u64 = 23;

/// **grant unmap** (24): removes mapping RDI.
///
/// - IN: RDI = a map handle from [`HC_GRANT_MAP`].
/// - OUT: RAX = 0; the address is a hole again.
/// - Errors: `EINVAL` (RDI does not fit in 32 bits); `ENOENT` (no such
///   mapping, e.g. already unmapped).
/// - Notes: returns once no vCPU of the caller can still reach the page
///   (TLB shoot-down). If it was the last mapping of a revoked grant, the
///   granter's revoke completes.
pub const HC_GRANT_UNMAP: u64 = 24;

// ---------------------------------------------------------------------------
// grant, completed (1.3): copy, limits (numbers 30-32)
// ---------------------------------------------------------------------------

/// Flag of [`HC_GRANT_COPY`] (1.3): copy *into* the granted page (needs a
/// read-write grant). Without it the copy goes from the granted page into
/// the caller's buffer. The only flag defined; any other bit is `EINVAL`.
pub const GRANT_COPY_TO_GRANT: u64 = 1;
/// Most bytes one [`HC_GRANT_COPY`] moves: one page.
pub const GRANT_COPY_MAX: u64 = 4096;

/// **grant copy** (30): copies bytes between the caller's own memory and a
/// page another domain granted to it, without mapping the page.
///
/// - IN: RDI = the granter's domain id, RSI = its grant reference, RDX =
///   offset in the granted page, R10 = guest-physical address of the
///   caller's buffer, R8 = length in bytes, R9 = flags
///   ([`GRANT_COPY_TO_GRANT`] or 0).
/// - OUT: RAX = the number of bytes copied (= R8).
/// - Errors, in the order checked: `EINVAL` (RDI or RSI does not fit in 32
///   bits, or R9 has an undefined bit); `EINVAL` (R8 is 0); `E2BIG` (R8 >
///   [`GRANT_COPY_MAX`]); `EINVAL` (RDX + R8 > 4096: the range would cross
///   the granted page's end); `EINVAL` (RDI is the caller); `EFAULT` (a
///   byte of the caller's buffer lies outside its memory: released, beyond
///   the domain, or a mapped grant, like any hypercall buffer); `ENOENT`
///   (no such live granter); `EINVAL` (RSI beyond the granter's limit);
///   `ENOENT` (RSI never granted, or revoked); `EPERM` (granted to another
///   domain, or read-only and R9 has [`GRANT_COPY_TO_GRANT`]).
/// - Notes: the copy is done under the granter's grant-table lock, so a
///   revoke either happens before (the copy fails with `ENOENT`) or after
///   it. A read-only grant allows copies from it only. Nothing is copied
///   on an error. Mapped or not, a grant can be copied to and from.
pub const HC_GRANT_COPY: u64 = 30;

/// Highest grant and map limit a domain may raise itself to with
/// [`HC_GRANT_SET_MAX`] (1.3): 2^20. Both limits start at 1024.
pub const GRANT_MAX_CEILING: u64 = 1 << 20;
/// The grant and map limits a domain starts with.
pub const GRANT_DEFAULT_LIMIT: u64 = 1024;

/// **grant query** (31): reports the caller's grant and map limits and
/// their use.
///
/// - IN: RDI = address of a [`crate::GrantLimits`] (24 bytes) to fill.
/// - OUT: RAX = 0; the `GrantLimits` is filled in.
/// - Errors: `EFAULT` when any byte of it lies outside the caller's memory.
/// - Notes: a snapshot; other vCPUs (and, for `maps_in_use`, dying
///   granters) may change the counts right after.
pub const HC_GRANT_QUERY: u64 = 31;

/// **grant set max** (32): raises the caller's own grant limit (references
/// it may hand out) and map limit (grants of others it may map at once).
///
/// - IN: RDI = the new grant limit, RSI = the new map limit.
/// - OUT: RAX = 0.
/// - Errors, in the order checked: `EINVAL` (RDI or RSI does not fit in 32
///   bits); `EINVAL` (either is lower than the current limit: limits never
///   shrink); `E2BIG` (either is over [`GRANT_MAX_CEILING`]). Both or
///   neither change.
/// - Notes: a limit equal to the current one is accepted (no change). The
///   memory for the larger tables is taken only as entries are used;
///   `ENOMEM` from [`HC_GRANT_ACCESS`] or [`HC_GRANT_MAP`] then means the
///   host is out of memory.
pub const HC_GRANT_SET_MAX: u64 = 32;

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
