//! A live domain's port table ([`Table`]): the pure [`EventTable`] and,
//! beside it, what only the live layer can keep: for each port connected
//! to another domain a reference to that domain (Xen keeps one in the
//! bound port), and the domain's own vCPUs by index. An interdomain send
//! then finds the peer's table, and there the vCPU its port notifies,
//! without the domain table's lock or its look-up by id
//! (`live::deliver_remote`).
//!
//! Both kinds are weak. A domain's table names its peers and its own
//! vCPUs, and each vCPU entry holds its domain: strong references would
//! keep a bound pair of domains (and every domain with its vCPUs) alive
//! for ever, and `Drop for Domain` would never run. A failed upgrade
//! means what a failed look-up in the domain table meant: gone.
//!
//! A reference only finds the domain; what a send does there is still
//! decided by the peer's table, under its lock: a port closed or reused
//! in the meantime is left alone (`EventTable::deliver_to` checks the
//! connection), a dying peer is left alone. So a reference is a cache of
//! the domain table's answer: the ops that connect and disconnect ports
//! keep it exact (all of them are here: a bind sets it on both ports, a
//! close and a peer's close clear it, `close_all` drops them all), and a
//! port without one (its room could not be charged to the budget) sends
//! the slow way, through the domain table.

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};

use pvabi::Error;

use crate::domain::budget::{self, ALLOC_SLACK, Budget, Cost};
use crate::domain::lifecycle::{Domain, VcpuEntry};
use crate::evtchn::area::GuestArea;
use crate::evtchn::{Closed, DomainBits, DomainId, EventTable, Notify, PortState};

/// The peer references grow by this many ports at a time.
const PEER_CHUNK: usize = 64;

/// A live domain's port table, with its peer references and its vCPUs.
/// Derefs to the pure table for every op that connects or disconnects
/// nothing; those that do are methods of its own, so no caller can skip
/// the references.
pub(crate) struct Table {
    pub(super) ports: EventTable<DomainBits<GuestArea>>,
    /// By port: the other domain a port is connected to (`None`: not
    /// connected to another domain, or no room could be charged).
    peers: Vec<Option<Weak<Domain>>>,
    /// The domain's vCPUs by index, set once they exist
    /// ([`Table::set_vcpus`]).
    pub(super) vcpus: Box<[Weak<VcpuEntry>]>,
    /// What the references' room is charged to.
    budget: Arc<Budget>,
}

impl Deref for Table {
    type Target = EventTable<DomainBits<GuestArea>>;

    fn deref(&self) -> &Self::Target {
        &self.ports
    }
}

impl DerefMut for Table {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.ports
    }
}

/// What a domain's vCPU list in its table costs: a weak reference per
/// vCPU (charged with the domain's records, `domain::lifecycle`).
pub(crate) const fn vcpu_list_cost(nr_vcpus: u32) -> u64 {
    nr_vcpus as u64 * size_of::<Weak<VcpuEntry>>() as u64 + ALLOC_SLACK
}

impl Table {
    /// A new domain's empty table; its growth is charged to `budget`.
    pub(crate) fn new(id: DomainId, nr_vcpus: u32, budget: Arc<Budget>) -> Self {
        Self {
            ports: EventTable::with_bits(id, nr_vcpus, DomainBits::default())
                .charge_to(budget.clone()),
            peers: Vec::new(),
            vcpus: (0..nr_vcpus).map(|_| Weak::new()).collect(),
            budget,
        }
    }

    /// Records the domain's vCPUs (index `i` is `entries[i]`), once they
    /// were made: before the domain is in the domain table, so before any
    /// port of another domain can be connected to it.
    pub(crate) fn set_vcpus(&mut self, entries: &[Arc<VcpuEntry>]) {
        for (slot, e) in self.vcpus.iter_mut().zip(entries) {
            *slot = Arc::downgrade(e);
        }
    }

    /// The domain `port` is connected to (`domain`, as the port's state
    /// says), if the port keeps a reference to it and it is not gone.
    ///
    /// The id is not compared on this path: only a bind sets a reference,
    /// to the domain it connects, and every op that disconnects clears it.
    /// Even a wrong one could deliver nothing: the receiving table raises
    /// only a port connected to this sender's port
    /// ([`EventTable::deliver_to`]).
    #[inline(always)]
    pub(super) fn peer(&self, port: u32, domain: DomainId) -> Option<Arc<Domain>> {
        let peer = self.peers.get(port as usize)?.as_ref()?.upgrade()?;
        debug_assert_eq!(peer.id, domain, "port {port}'s reference");
        Some(peer)
    }

    /// **bind_interdomain** of a new port of this domain (`me`) to
    /// `remote_port` of `peer`'s table `theirs` (both locked by the
    /// caller, in ascending domain id): [`EventTable::bind_interdomain`],
    /// and then each of the two ports keeps a reference to the other's
    /// domain.
    pub(crate) fn bind_to(
        &mut self,
        theirs: &mut Table,
        me: &Arc<Domain>,
        peer: &Arc<Domain>,
        remote_port: u32,
    ) -> Result<u32, Error> {
        let local = self
            .ports
            .bind_interdomain(Some(&mut theirs.ports), remote_port)?;
        self.keep_peer(local, peer);
        theirs.keep_peer(remote_port, me);
        Ok(local)
    }

    /// `port` keeps a reference to `peer`. Room for it is charged to the
    /// budget; over budget, the port keeps none and sends the slow way
    /// (the bind itself does not fail for it).
    fn keep_peer(&mut self, port: u32, peer: &Arc<Domain>) {
        let i = port as usize;
        if i >= self.peers.len() {
            let len = (i / PEER_CHUNK + 1) * PEER_CHUNK;
            let more = len - self.peers.len();
            let cost = more as u64 * Cost::vec_elem::<Option<Weak<Domain>>>() + ALLOC_SLACK;
            let peers = &mut self.peers;
            let room = budget::charged(Some(&*self.budget), cost, || {
                peers.try_reserve_exact(more).map_err(|_| Error::NoMem)
            });
            if room.is_err() {
                return;
            }
            self.peers.resize(len, None);
        }
        if let Some(slot) = self.peers.get_mut(i) {
            *slot = Some(Arc::downgrade(peer));
        }
    }

    /// Drops `port`'s reference unless the port is (still, or again)
    /// connected to another domain.
    fn forget_unless_connected(&mut self, port: u32) {
        let connected = matches!(
            self.ports.status(port).map(|s| s.state),
            Ok(PortState::Interdomain { remote, .. }) if remote != self.ports.domain()
        );
        if !connected && let Some(slot) = self.peers.get_mut(port as usize) {
            *slot = None;
        }
    }

    /// **close** ([`EventTable::close`]), dropping the port's reference.
    pub(crate) fn close(&mut self, port: u32) -> Result<Closed, Error> {
        let closed = self.ports.close(port)?;
        self.forget_unless_connected(port);
        Ok(closed)
    }

    /// The peer of `port` closed ([`EventTable::peer_closed`]): the port,
    /// unbound now, drops its reference.
    pub(crate) fn peer_closed(&mut self, port: u32, sender: DomainId, from: u32) -> Option<Notify> {
        let n = self.ports.peer_closed(port, sender, from);
        self.forget_unless_connected(port);
        n
    }

    /// Closes every port ([`EventTable::close_all`]) and drops every
    /// reference.
    pub(crate) fn close_all(&mut self) -> Vec<Closed> {
        let peers = self.ports.close_all();
        self.peers = Vec::new();
        peers
    }

    /// Whether `port` keeps a reference to a domain (host tests).
    #[cfg(test)]
    pub(crate) fn keeps_peer(&self, port: u32) -> bool {
        self.peers.get(port as usize).is_some_and(Option::is_some)
    }
}
