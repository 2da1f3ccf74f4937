//! Grant tables: pages a domain shares with another, with revoke.
//!
//! The **granter** grants one of its pages (by guest-physical address) to
//! one **grantee** domain, read-only or read-write, and gets a grant
//! reference ([`GrantRef`]) to pass to the grantee (through a config page or
//! a ring). The grantee **maps** the reference into its own guest-physical
//! space and later **unmaps** it; a [`MapTrack`] per grantee records its
//! mappings by handle, so an unmap names a handle the hypervisor gave out,
//! never a guest-chosen page. Small transfers need no mapping: a **copy**
//! (`HC_GRANT_COPY`) names the granted end by grant reference,
//! validated by [`GrantTable::check_copy`]. Both limits (references a
//! granter may hand out, mappings a grantee may hold) are reported by
//! `HC_GRANT_QUERY` and only grow ([`check_set_max`], `HC_GRANT_SET_MAX`).
//!
//! **Revoke while mapped is deferred** (our choice): [`GrantTable::revoke`]
//! of a mapped grant refuses new mappings at once, leaves the existing ones
//! until the grantee unmaps them, and frees the reference when the last one
//! goes; that unmap returns a [`RevokeDone`] naming the granter and an
//! event-channel port the granter chose at revoke time, so the granter
//! learns when its page is really private again (and only then reuses it).
//! Refusing the revoke would let a grantee that never unmaps keep the
//! granter from ever learning anything; forcing the unmap would pull a
//! page from under a grantee in the middle of I/O. When a domain dies its
//! mappings are torn down ([`MapTrack::take_all`]) and its grants revoked
//! ([`GrantTable::revoke_all`]), with the remaining mappings of its pages
//! in other domains force-unmapped by the caller.
//!
//! Pure logic: the caller translates addresses, edits second-level page
//! tables, checks that a granted page is present in the granter's memory,
//! and locks (granter's table, then grantee's map track). Errors are ABI
//! status codes, listed per op in the order checked; nothing changes on an
//! error.
#![forbid(unsafe_code)]

mod limits;
pub mod live;
pub mod ops;
mod track;

use alloc::sync::Arc;
use alloc::vec::Vec;

use pvabi::{Error, PAGE_SIZE};

use crate::domain::budget::{self, Budget};

pub use self::limits::{check_raise, check_set_max};
pub use self::track::{MAPTRACK_DEFAULT_MAX, MapHandle, MapTrack, Mapping};
pub use crate::domain::ids::DomainId;

/// A grant reference: an index into the granter's table.
pub type GrantRef = u32;

/// Default number of grant entries per domain.
pub const GRANT_DEFAULT_MAX: u32 = 1024;
/// Highest per-domain grant (and map) limit: the ABI's ceiling.
pub const GRANT_LIMIT: u32 = pvabi::GRANT_MAX_CEILING as u32;

const _: () = assert!(GRANT_DEFAULT_MAX as u64 == pvabi::GRANT_DEFAULT_LIMIT);

/// Most bytes one copy op moves (one page, no page crossing on a granted
/// end).
pub const GRANT_COPY_MAX: u32 = PAGE_SIZE as u32;

/// What the grantee may do with a granted page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read only.
    ReadOnly,
    /// Read and write.
    ReadWrite,
}

impl Access {
    /// Whether a grant of `self` allows `wanted`.
    pub fn allows(self, wanted: Access) -> bool {
        self == Access::ReadWrite || wanted == Access::ReadOnly
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Free,
    Active {
        grantee: DomainId,
        gpa: u64,
        access: Access,
        maps: u32,
        /// Revoked while mapped: no new maps; 0 or the port to raise
        /// when the last mapping goes.
        revoking: Option<u32>,
    },
}

/// What one grant entry costs its domain's budget.
pub const GRANT_ENTRY_COST: u64 = budget::table_entry_cost::<Entry>(0);

/// A grant's state, for queries and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantStatus {
    /// The domain allowed to map it.
    pub grantee: DomainId,
    /// The granter's page.
    pub gpa: u64,
    /// What the grantee may do.
    pub access: Access,
    /// Live mappings.
    pub maps: u32,
    /// Revoked, waiting for the mappings to go.
    pub revoking: bool,
}

/// The outcome of a revoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revoke {
    /// Not mapped: the reference is free again and the page private.
    Done,
    /// Mapped: no new mappings; a [`RevokeDone`] comes when the last of
    /// `maps` mappings goes.
    Deferred {
        /// Mappings left.
        maps: u32,
    },
}

/// A deferred revoke completed: the grantee unmapped the last mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevokeDone {
    /// The granter to tell.
    pub granter: DomainId,
    /// The reference, now free.
    pub gref: GrantRef,
    /// The granter's event-channel port to raise (0: none asked for).
    pub port: u32,
}

/// A per-domain limit and its use, for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantLimits {
    /// Entries (or mappings) in use.
    pub in_use: u32,
    /// The current limit.
    pub max: u32,
}

/// One end of a copy op, as the guest names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyEnd {
    /// The calling domain's own memory at `gpa` (bounds are checked by the
    /// memory copy itself).
    Local {
        /// Guest-physical address.
        gpa: u64,
    },
    /// `offset` bytes into the page of grant `gref` of `domain`.
    Grant {
        /// The granter.
        domain: DomainId,
        /// The reference.
        gref: GrantRef,
        /// Offset into the page.
        offset: u32,
    },
}

/// A validated copy end: `domain`'s memory at `gpa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyAt {
    /// Whose memory.
    pub domain: DomainId,
    /// Guest-physical address in that domain.
    pub gpa: u64,
}

/// One domain's grant table (the domain as granter).
#[derive(Debug)]
pub struct GrantTable {
    domain: DomainId,
    max: u32,
    entries: Vec<Entry>,
    free: Vec<GrantRef>,
    in_use: u32,
    /// What its growth is charged to (`None`: nothing, host tests).
    budget: Option<Arc<Budget>>,
}

impl GrantTable {
    /// An empty table for `domain` with the default limit.
    pub fn new(domain: DomainId) -> Self {
        Self {
            domain,
            max: GRANT_DEFAULT_MAX,
            entries: Vec::new(),
            free: Vec::new(),
            in_use: 0,
            budget: None,
        }
    }

    /// Charges the table's growth to `budget` from now on.
    pub fn charge_to(mut self, budget: Arc<Budget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The granting domain.
    pub fn domain(&self) -> DomainId {
        self.domain
    }

    /// Entries in use and the limit.
    pub fn limits(&self) -> GrantLimits {
        GrantLimits {
            in_use: self.in_use,
            max: self.max,
        }
    }

    /// Raises the limit. Errors: `Invalid` (lower than now), `TooBig`
    /// (over [`GRANT_LIMIT`]).
    pub fn set_max(&mut self, max: u32) -> Result<(), Error> {
        check_raise(self.max, max)?;
        self.max = max;
        Ok(())
    }

    /// **grant**: lets `grantee` map the page at `gpa` with `access`.
    /// Returns the reference. Errors: `Invalid` (`gpa` not page aligned,
    /// or the grantee is the granter), `NoMem` (limit reached).
    pub fn grant(
        &mut self,
        grantee: DomainId,
        gpa: u64,
        access: Access,
    ) -> Result<GrantRef, Error> {
        if !gpa.is_multiple_of(PAGE_SIZE) || grantee == self.domain {
            return Err(Error::Invalid);
        }
        let entry = Entry::Active {
            grantee,
            gpa,
            access,
            maps: 0,
            revoking: None,
        };
        let gref = match self.free.pop() {
            Some(r) => r,
            None => {
                let r = self.entries.len() as u32;
                if r >= self.max {
                    return Err(Error::NoMem);
                }
                // Charged before it is allocated (never given back while
                // the domain lives: the table keeps its capacity).
                let budget = self.budget.clone();
                budget::charged(budget.as_deref(), GRANT_ENTRY_COST, || {
                    self.entries.try_reserve(1).map_err(|_| Error::NoMem)?;
                    // Room for it on the free list once it is revoked.
                    self.free.try_reserve(1).map_err(|_| Error::NoMem)
                })?;
                self.entries.push(Entry::Free);
                r
            }
        };
        if let Some(e) = self.entries.get_mut(gref as usize) {
            *e = entry;
        }
        self.in_use += 1;
        Ok(gref)
    }

    /// Whether any page in `[start, end)` is granted (until revoked and
    /// unmapped): such pages stay in the granter's memory.
    pub fn granted_in(&self, start: u64, end: u64) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e, Entry::Active { gpa, .. } if (start..end).contains(gpa)))
    }

    /// **query** a reference. Errors: `Invalid` (out of range), `NoEntry`
    /// (not granted).
    pub fn status(&self, gref: GrantRef) -> Result<GrantStatus, Error> {
        match self.entry(gref)? {
            Entry::Active {
                grantee,
                gpa,
                access,
                maps,
                revoking,
            } => Ok(GrantStatus {
                grantee,
                gpa,
                access,
                maps,
                revoking: revoking.is_some(),
            }),
            Entry::Free => Err(Error::NoEntry),
        }
    }

    fn entry(&self, gref: GrantRef) -> Result<Entry, Error> {
        if gref >= self.max {
            return Err(Error::Invalid);
        }
        Ok(self
            .entries
            .get(gref as usize)
            .copied()
            .unwrap_or(Entry::Free))
    }

    /// The checks of map and copy: the granter's page, if `grantee` may
    /// access `gref` with `access`. Errors: `Invalid` (reference out of
    /// range), `NoEntry` (never granted, or revoked), `Perm` (granted to
    /// another domain, or read-only and `access` is read-write).
    pub fn check(&self, grantee: DomainId, gref: GrantRef, access: Access) -> Result<u64, Error> {
        match self.entry(gref)? {
            Entry::Active {
                revoking: Some(_), ..
            }
            | Entry::Free => Err(Error::NoEntry),
            Entry::Active { grantee: g, .. } if g != grantee => Err(Error::Perm),
            Entry::Active { access: a, .. } if !a.allows(access) => Err(Error::Perm),
            Entry::Active { gpa, .. } => Ok(gpa),
        }
    }

    /// **map**: `grantee` maps `gref` with `access` and records it in its
    /// `track` (the mapping lands at `at_gpa` in the grantee; placing it is
    /// the caller's job). Returns the handle and the granter's page.
    /// Errors: those of [`GrantTable::check`], then `Busy` (the map count
    /// would overflow), then `NoMem` (the grantee's map track is full).
    pub fn map(
        &mut self,
        track: &mut MapTrack,
        grantee: DomainId,
        gref: GrantRef,
        access: Access,
        at_gpa: u64,
    ) -> Result<(MapHandle, u64), Error> {
        let gpa = self.check(grantee, gref, access)?;
        let Some(Entry::Active { maps, .. }) = self.entries.get_mut(gref as usize) else {
            return Err(Error::NoEntry);
        };
        let more = maps.checked_add(1).ok_or(Error::Busy)?;
        let handle = track.insert(Mapping {
            granter: self.domain,
            gref,
            at_gpa,
            access,
            scratch: 0,
        })?;
        *maps = more;
        Ok((handle, gpa))
    }

    /// **unmap**: `track`'s mapping `handle`, of a grant of this table,
    /// goes. Returns the mapping (for the caller to remove from the
    /// grantee's guest-physical space) and, when it was the last mapping of
    /// a revoked grant, the [`RevokeDone`] to deliver. Errors: `NoEntry`
    /// (no such handle), `Invalid` (the mapping is of another granter's
    /// table); nothing changes then.
    pub fn unmap(
        &mut self,
        track: &mut MapTrack,
        handle: MapHandle,
    ) -> Result<(Mapping, Option<RevokeDone>), Error> {
        let m = track.get(handle)?;
        if m.granter != self.domain {
            return Err(Error::Invalid);
        }
        track.remove_handle(handle)?;
        Ok((m, self.drop_map(m.gref)))
    }

    /// A mapping of `gref` went (unmap, or a dying grantee's teardown).
    /// Returns the completed revoke, if it was the last mapping of a
    /// revoked grant.
    pub fn drop_map(&mut self, gref: GrantRef) -> Option<RevokeDone> {
        let e = self.entries.get_mut(gref as usize)?;
        let Entry::Active { maps, revoking, .. } = e else {
            return None;
        };
        *maps = maps.saturating_sub(1);
        match (*maps, *revoking) {
            (0, Some(port)) => {
                self.release(gref);
                Some(RevokeDone {
                    granter: self.domain,
                    gref,
                    port,
                })
            }
            _ => None,
        }
    }

    fn release(&mut self, gref: GrantRef) {
        if let Some(e) = self.entries.get_mut(gref as usize) {
            *e = Entry::Free;
            self.free.push(gref);
            self.in_use -= 1;
        }
    }

    /// **revoke** `gref`: at once if unmapped, else deferred until the last
    /// mapping goes (then `port`, 0 for none, is named in the
    /// [`RevokeDone`]). Errors: `Invalid` (out of range), `NoEntry` (not
    /// granted), `Busy` (already being revoked).
    pub fn revoke(&mut self, gref: GrantRef, port: u32) -> Result<Revoke, Error> {
        match self.entry(gref)? {
            Entry::Free => Err(Error::NoEntry),
            Entry::Active {
                revoking: Some(_), ..
            } => Err(Error::Busy),
            Entry::Active { maps: 0, .. } => {
                self.release(gref);
                Ok(Revoke::Done)
            }
            Entry::Active { maps, .. } => {
                if let Some(Entry::Active { revoking, .. }) = self.entries.get_mut(gref as usize) {
                    *revoking = Some(port);
                }
                Ok(Revoke::Deferred { maps })
            }
        }
    }

    /// Revokes every grant (the granter is dying). Returns the grantees that
    /// still map its pages and which references: the caller force-unmaps
    /// them ([`MapTrack::take_granter`], then [`GrantTable::drop_map`]),
    /// and only then frees the granter's frames.
    pub fn revoke_all(&mut self) -> Vec<(DomainId, GrantRef)> {
        let mut mapped = Vec::new();
        for gref in 0..self.entries.len() as u32 {
            // Errors: free, or already being revoked (and still mapped).
            let _ = self.revoke(gref, 0);
            // What is still granted now is mapped and being revoked.
            if let Ok(st) = self.status(gref) {
                mapped.push((st.grantee, gref));
            }
        }
        mapped
    }

    /// **copy** validation for one granted end: `caller` reads (`src`) or
    /// writes (`!src`) `len` bytes at `offset` in grant `gref` of this
    /// table. Returns where in the granter's memory. The caller does the
    /// copy under this table's lock, so a revoke cannot slip in between.
    /// Errors: `Invalid` (`len` 0), `TooBig` (`len` over
    /// [`GRANT_COPY_MAX`]), `Invalid` (the range crosses the page's end),
    /// then those of [`GrantTable::check`] (a write needs read-write).
    pub fn check_copy(
        &self,
        caller: DomainId,
        gref: GrantRef,
        offset: u32,
        len: u32,
        src: bool,
    ) -> Result<CopyAt, Error> {
        check_len(len)?;
        if u64::from(offset) + u64::from(len) > PAGE_SIZE {
            return Err(Error::Invalid);
        }
        let access = if src {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        };
        let gpa = self.check(caller, gref, access)?;
        Ok(CopyAt {
            domain: self.domain,
            gpa: gpa + u64::from(offset),
        })
    }
}

fn check_len(len: u32) -> Result<(), Error> {
    match len {
        0 => Err(Error::Invalid),
        l if l > GRANT_COPY_MAX => Err(Error::TooBig),
        _ => Ok(()),
    }
}

/// Validates a whole copy op of `caller`: `len` bytes from `src` to `dst`,
/// finding granters' tables with `table`. Returns both ends. Errors: those
/// of [`GrantTable::check_copy`] for the source, then the destination;
/// `NoEntry` for a granter that does not exist; `Invalid` for a local end
/// whose range overflows.
pub fn check_copy<'t>(
    caller: DomainId,
    src: CopyEnd,
    dst: CopyEnd,
    len: u32,
    table: impl Fn(DomainId) -> Option<&'t GrantTable>,
) -> Result<(CopyAt, CopyAt), Error> {
    check_len(len)?;
    let resolve = |end: CopyEnd, is_src: bool| match end {
        CopyEnd::Local { gpa } => {
            gpa.checked_add(u64::from(len)).ok_or(Error::Invalid)?;
            Ok(CopyAt {
                domain: caller,
                gpa,
            })
        }
        CopyEnd::Grant {
            domain,
            gref,
            offset,
        } => table(domain)
            .ok_or(Error::NoEntry)?
            .check_copy(caller, gref, offset, len, is_src),
    };
    Ok((resolve(src, true)?, resolve(dst, false)?))
}

#[cfg(test)]
mod tests;
