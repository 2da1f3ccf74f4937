//! A grantee's record of the grants it has mapped.

use alloc::sync::Arc;
use alloc::vec::Vec;

use pvabi::Error;

use crate::domain::budget::{self, Budget, Cost};

use super::{Access, DomainId, GrantRef};

/// Default number of mappings a domain may hold.
pub const MAPTRACK_DEFAULT_MAX: u32 = 1024;

/// A handle the grantee gets from a map and gives back to unmap.
pub type MapHandle = u32;

/// One mapping held by a grantee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Whose page.
    pub granter: DomainId,
    /// The granter's reference.
    pub gref: GrantRef,
    /// Where the page is mapped in the grantee's guest-physical space.
    pub at_gpa: u64,
    /// How it is mapped.
    pub access: Access,
    /// 0 while the granter lives. When the granter died while this
    /// mapping was in place, the page was swapped for this zeroed frame
    /// (owned by the mapping, freed when it goes) so the grantee can
    /// finish with it instead of faulting.
    pub scratch: u64,
}

/// A grantee's mappings by handle, with a limit that can grow.
#[derive(Debug)]
pub struct MapTrack {
    max: u32,
    slots: Vec<Option<Mapping>>,
    free: Vec<MapHandle>,
    in_use: u32,
    /// What its growth is charged to (`None`: nothing, host tests).
    budget: Option<Arc<Budget>>,
}

impl Default for MapTrack {
    fn default() -> Self {
        Self::new()
    }
}

impl MapTrack {
    /// No mappings, the default limit.
    pub fn new() -> Self {
        Self {
            max: MAPTRACK_DEFAULT_MAX,
            slots: Vec::new(),
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

    /// Mappings held and the limit.
    pub fn limits(&self) -> super::GrantLimits {
        super::GrantLimits {
            in_use: self.in_use,
            max: self.max,
        }
    }

    /// Raises the limit. Errors: `Invalid` (lower than now), `TooBig`
    /// (over [`super::GRANT_LIMIT`]).
    pub fn set_max(&mut self, max: u32) -> Result<(), Error> {
        super::check_raise(self.max, max)?;
        self.max = max;
        Ok(())
    }

    /// Records a mapping. Errors: `NoMem` (limit reached).
    pub(super) fn insert(&mut self, m: Mapping) -> Result<MapHandle, Error> {
        let h = match self.free.pop() {
            Some(h) => h,
            None => {
                let h = self.slots.len() as u32;
                if h >= self.max {
                    return Err(Error::NoMem);
                }
                // Charged first, with the grantee's record of where the
                // page is mapped (`Inner::foreign`: one entry per mapping
                // at most, so per slot).
                let cost =
                    budget::table_entry_cost::<Option<Mapping>>(Cost::btree_entry::<u64, ()>());
                let budget = self.budget.clone();
                budget::charged(budget.as_deref(), cost, || {
                    self.slots.try_reserve(1).map_err(|_| Error::NoMem)?;
                    // Room for its handle on the free list once it is unmapped.
                    self.free.try_reserve(1).map_err(|_| Error::NoMem)
                })?;
                self.slots.push(None);
                h
            }
        };
        if let Some(s) = self.slots.get_mut(h as usize) {
            *s = Some(m);
        }
        self.in_use += 1;
        Ok(h)
    }

    /// The mapping of `handle`. Errors: `NoEntry`.
    pub fn get(&self, handle: MapHandle) -> Result<Mapping, Error> {
        self.slots
            .get(handle as usize)
            .copied()
            .flatten()
            .ok_or(Error::NoEntry)
    }

    pub(super) fn remove_handle(&mut self, handle: MapHandle) -> Result<Mapping, Error> {
        let m = self
            .slots
            .get_mut(handle as usize)
            .and_then(Option::take)
            .ok_or(Error::NoEntry)?;
        self.free.push(handle);
        self.in_use -= 1;
        Ok(m)
    }

    /// Removes every mapping (the grantee is dying); the caller unmaps each
    /// and calls [`super::GrantTable::drop_map`] on its granter's table.
    pub fn take_all(&mut self) -> Vec<Mapping> {
        self.take_where(|_| true)
    }

    /// Removes every mapping of `granter`'s pages (the granter is dying):
    /// the caller unmaps each and calls [`super::GrantTable::drop_map`].
    pub fn take_granter(&mut self, granter: DomainId) -> Vec<Mapping> {
        self.take_where(|m| m.granter == granter)
    }

    /// `granter` died: each of its mappings gets a scratch frame from
    /// `alloc` (kept, with its handle) or, when `alloc` gives none, is
    /// removed (returned in the second list, for the caller to unmap).
    pub fn orphan_granter(
        &mut self,
        granter: DomainId,
        mut alloc: impl FnMut() -> Option<u64>,
    ) -> (Vec<(MapHandle, Mapping)>, Vec<Mapping>) {
        let (mut kept, mut gone) = (Vec::new(), Vec::new());
        for h in 0..self.slots.len() as u32 {
            let Some(Some(m)) = self.slots.get_mut(h as usize) else {
                continue;
            };
            if m.granter != granter || m.scratch != 0 {
                continue;
            }
            match alloc() {
                Some(f) => {
                    m.scratch = f;
                    kept.push((h, *m));
                }
                None => {
                    if let Ok(m) = self.remove_handle(h) {
                        gone.push(m);
                    }
                }
            }
        }
        (kept, gone)
    }

    /// Removes mapping `handle` if its granter is gone (it has a scratch
    /// frame). Errors: `NoEntry` (no such mapping), `Busy` (its granter
    /// lives: unmap through the granter's table).
    pub fn remove_orphan(&mut self, handle: MapHandle) -> Result<Mapping, Error> {
        if self.get(handle)?.scratch == 0 {
            return Err(Error::Busy);
        }
        self.remove_handle(handle)
    }

    fn take_where(&mut self, pick: impl Fn(&Mapping) -> bool) -> Vec<Mapping> {
        let mut out = Vec::new();
        for h in 0..self.slots.len() as u32 {
            if let Ok(m) = self.get(h)
                && pick(&m)
                && self.remove_handle(h).is_ok()
            {
                out.push(m);
            }
        }
        out
    }
}
