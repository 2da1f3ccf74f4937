//! The grant and map limits' checks (`HC_GRANT_SET_MAX`): limits
//! only grow, up to the ABI's ceiling.

use pvabi::Error;

use super::{GRANT_LIMIT, GrantTable, MapTrack};

/// The checks of raising one limit from `cur` to `new`: `Invalid` (lower),
/// `TooBig` (over [`GRANT_LIMIT`]).
pub fn check_raise(cur: u32, new: u32) -> Result<(), Error> {
    if new < cur {
        return Err(Error::Invalid);
    }
    if new > GRANT_LIMIT {
        return Err(Error::TooBig);
    }
    Ok(())
}

/// The checks of `HC_GRANT_SET_MAX`, both limits at once, in the ABI's
/// order: `Invalid` (either lower than now), then `TooBig` (either over
/// [`GRANT_LIMIT`]). On `Ok` both may be raised.
pub fn check_set_max(
    table: &GrantTable,
    track: &MapTrack,
    grants: u32,
    maps: u32,
) -> Result<(), Error> {
    let (g, m) = (table.limits().max, track.limits().max);
    if grants < g || maps < m {
        return Err(Error::Invalid);
    }
    check_raise(g, grants)?;
    check_raise(m, maps)
}
