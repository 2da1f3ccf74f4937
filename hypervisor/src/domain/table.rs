//! The domain table: every domain that still has vCPUs, keyed by its
//! [`DomainId`], with the entries of those vCPUs by index.
//!
//! It replaces a single list of vCPUs that every lookup scanned (finding a
//! domain, a port's target vCPU, a domain's siblings, the domctl list):
//! a domain is found in O(log n) by id and a vCPU of it in O(1) by index.
//!
//! A domain is in the table from its creation until its last vCPU leaves
//! the scheduler (`sched::live::retire`), dying ones included: that is what
//! "the domain exists" means to domctl and to the console's ring reader.
//! Removal hands the removed values back so the caller drops them after it
//! has let the table's lock go (the last reference to a domain frees its
//! memory and prints).
//!
//! The table is generic over what it stores so its bookkeeping is tested on
//! the host; the runtime keeps `Arc<Domain>` and `Arc<VcpuEntry>` in it
//! (`domain::lifecycle::DOMAINS`).
//!
//! Lock order (the runtime's table lock, which replaces the old vCPU list
//! lock in the same place): the table, then a vCPU's state lock, then the
//! scheduler lock; a grant table (`grants`) or a grantee's `maps` may be
//! held when the table is taken (TLB shoot-down), never the other way. A
//! domain's event-channel table is a leaf: taken under the table's lock
//! only by an interdomain send from a port that keeps no reference to its
//! peer (`evtchn/live.rs`, `deliver_by_id`), which reads the peer domain
//! and the vCPU its port names in one hold of the table's lock. A port
//! that keeps one (every port bound while its room could be charged:
//! `evtchn/live/table.rs`) finds both without this table.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::domain::ids::DomainId;

/// One domain and its vCPUs that have not left yet (`None`: gone).
struct Slot<D, V> {
    domain: D,
    vcpus: Vec<Option<V>>,
}

/// Every domain that still has vCPUs, by id.
pub struct DomainTable<D, V> {
    domains: BTreeMap<DomainId, Slot<D, V>>,
}

/// What [`DomainTable::remove_vcpu`] took out, to be dropped by the caller
/// once it released the table.
pub struct Removed<D, V> {
    /// The vCPU's entry.
    pub vcpu: V,
    /// The domain, when that was its last vCPU (it left the table).
    pub domain: Option<D>,
}

impl<D, V> Default for DomainTable<D, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D, V> DomainTable<D, V> {
    /// An empty table (`const`, for a `static`).
    pub const fn new() -> Self {
        Self {
            domains: BTreeMap::new(),
        }
    }

    /// Adds domain `id` with its vCPUs (index `i` is `vcpus[i]`). Ids are
    /// never reused, so a present `id` is a bug: refused, the values given
    /// back.
    pub fn insert(&mut self, id: DomainId, domain: D, vcpus: Vec<V>) -> Result<(), (D, Vec<V>)> {
        if self.domains.contains_key(&id) || vcpus.is_empty() {
            return Err((domain, vcpus));
        }
        let vcpus = vcpus.into_iter().map(Some).collect();
        self.domains.insert(id, Slot { domain, vcpus });
        Ok(())
    }

    /// Domain `id`, dying or not.
    pub fn get(&self, id: DomainId) -> Option<&D> {
        self.domains.get(&id).map(|s| &s.domain)
    }

    /// Whether domain `id` is in the table.
    pub fn contains(&self, id: DomainId) -> bool {
        self.domains.contains_key(&id)
    }

    /// Domain `id` with its vCPUs by index (`None`: left), in one look-up:
    /// an event send from a port without a peer reference reads the
    /// domain, then the vCPU its port names.
    pub fn with_vcpus(&self, id: DomainId) -> Option<(&D, &[Option<V>])> {
        self.domains
            .get(&id)
            .map(|s| (&s.domain, s.vcpus.as_slice()))
    }

    /// vCPU `index` of domain `id`, while it has not left.
    pub fn vcpu(&self, id: DomainId, index: u32) -> Option<&V> {
        let slot = self.domains.get(&id)?;
        slot.vcpus.get(usize::try_from(index).ok()?)?.as_ref()
    }

    /// The vCPUs of domain `id` that have not left, in index order.
    pub fn vcpus(&self, id: DomainId) -> impl Iterator<Item = &V> {
        self.domains
            .get(&id)
            .into_iter()
            .flat_map(|s| s.vcpus.iter().flatten())
    }

    /// Every domain, in ascending id.
    pub fn domains(&self) -> impl Iterator<Item = (DomainId, &D)> {
        self.domains.iter().map(|(&id, s)| (id, &s.domain))
    }

    /// Every vCPU of every domain, by domain id and then index.
    pub fn all_vcpus(&self) -> impl Iterator<Item = &V> {
        self.domains.values().flat_map(|s| s.vcpus.iter().flatten())
    }

    /// Takes vCPU `index` of domain `id` out; when it was the domain's
    /// last, the domain leaves too. `None` if it was not there.
    pub fn remove_vcpu(&mut self, id: DomainId, index: u32) -> Option<Removed<D, V>> {
        let slot = self.domains.get_mut(&id)?;
        let vcpu = slot.vcpus.get_mut(usize::try_from(index).ok()?)?.take()?;
        let domain = if slot.vcpus.iter().all(Option::is_none) {
            self.domains.remove(&id).map(|s| s.domain)
        } else {
            None
        };
        Some(Removed { vcpu, domain })
    }

    /// How many domains the table holds.
    pub fn len(&self) -> usize {
        self.domains.len()
    }

    /// Whether the table holds no domain.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }
}

#[cfg(test)]
mod tests;
