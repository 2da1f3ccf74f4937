//! Event channels: a domain's table of ports.
//!
//! A port is a numbered endpoint in one domain's table. It is **free**,
//! **unbound** (allocated for one remote domain to connect to),
//! **interdomain** (connected to a port of another, or the same, domain),
//! bound to a **virq** (a virtual interrupt the hypervisor raises, such as
//! the timer, on one vCPU) or an **ipi** port (between vCPUs of the domain).
//! Sending on a port makes its peer port *pending*; a pending port that is
//! not *masked* calls for an upcall on the vCPU the port notifies. Pending
//! and mask bits live behind [`EventBits`] so they can later move into a
//! page shared with the guest.
//!
//! This module is pure logic: it decides which port becomes pending and
//! which `(domain, vCPU, port)` must be notified ([`Notify`]); injecting the
//! upcall, waking a blocked vCPU and locking are the caller's job. Ops that
//! involve two domains take both tables (the caller locks them in a fixed
//! order, e.g. by domain id) or, when the peer is the same domain, `None`.
//!
//! Scale: ports are kept in buckets of [`BUCKET_PORTS`] allocated as the
//! table grows, up to a per-domain limit ([`EventTable::max_ports`], 65,536
//! by default, raised with [`EventTable::set_max_ports`] up to
//! [`EVTCHN_PORTS_LIMIT`]). Port 0 is never allocated, so it can mean
//! "none". Allocation is O(1) (free list, then the high-water mark).
//!
//! No lost wake-ups: a send to a masked port sets it pending without a
//! notification; unmasking a pending port returns the notification then
//! ([`EventTable::unmask`]). A port that is already pending is not notified
//! again (one notification covers it until it is taken).
//!
//! Fairness: [`EventTable::take_next_pending`] hands out pending, unmasked
//! ports round-robin from just after the last port it returned, so a port
//! raised again and again cannot starve the others: every pending port is
//! taken within one sweep over the table.
//!
//! Errors are ABI status codes ([`pvabi::Error`]); each op lists them in the
//! order checked, and nothing changes on an error.
#![forbid(unsafe_code)]

pub mod area;
mod bits;
pub mod live;
mod msi;
pub mod ops;
mod pending;
mod shared;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_shared;
mod types;
mod virq;
mod wait;

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use pvabi::Error;

pub use self::bits::{BitmapEvents, EventBits};
pub use self::shared::{AREA_WORDS, DomainBits, SharedBits, SharedWords, upcall_ready};
pub use self::types::{Closed, Notify, PortState, PortStatus, Route};
pub use self::wait::{Sent, WaitCheck};
use crate::domain::budget::{self, Budget};
pub use crate::domain::ids::DomainId;

/// Ports per bucket of the table.
pub const BUCKET_PORTS: u32 = 512;
/// Default per-domain port limit.
pub const EVTCHN_DEFAULT_MAX_PORTS: u32 = 1 << 16;
/// Highest per-domain port limit.
pub const EVTCHN_PORTS_LIMIT: u32 = 1 << 20;
/// Virq numbers (the ABI's): `0..NR_VIRQS`.
pub use pvabi::{NR_VIRQS, VIRQ_CONSOLE, VIRQ_DOM_EXC, VIRQ_TIMER};

#[derive(Clone, Copy)]
struct Port {
    state: PortState,
    vcpu: u32,
}

/// What a bucket of ports costs its domain's budget.
pub const PORT_BUCKET_COST: u64 = budget::port_bucket_cost::<Port>(BUCKET_PORTS);

const FREE: Port = Port {
    state: PortState::Free,
    vcpu: 0,
};

/// One domain's event-channel table.
pub struct EventTable<B: EventBits = BitmapEvents> {
    domain: DomainId,
    nr_vcpus: u32,
    max_ports: u32,
    /// Every port's slot, port `p` at `buckets[p / BUCKET_PORTS][p %
    /// BUCKET_PORTS]`: port 0 and the slots at or past `high_water` are
    /// always free.
    buckets: Vec<Box<[Port; BUCKET_PORTS as usize]>>,
    /// Ports `1..high_water` have been allocated at least once.
    high_water: u32,
    free: Vec<u32>,
    in_use: u32,
    /// Per vCPU, the port bound to each virq (0: none).
    virqs: Vec<[u32; NR_VIRQS as usize]>,
    bits: B,
    /// Bit `w` set: pending word `w` may be nonzero (cleared lazily).
    hint: Vec<u64>,
    /// Where the next round-robin scan starts.
    cursor: u32,
    /// What its growth is charged to (`None`: nothing, a table alone in
    /// a host test).
    budget: Option<Arc<Budget>>,
}

impl core::fmt::Debug for EventTable<BitmapEvents> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EventTable")
            .field("domain", &self.domain)
            .field("in_use", &self.in_use)
            .field("max_ports", &self.max_ports)
            .finish()
    }
}

impl EventTable<BitmapEvents> {
    /// An empty table for `domain` with `nr_vcpus` vCPUs and the default
    /// port limit.
    pub fn new(domain: DomainId, nr_vcpus: u32) -> Self {
        Self::with_bits(domain, nr_vcpus, BitmapEvents::new())
    }
}

impl<B: EventBits> EventTable<B> {
    /// An empty table keeping its pending and mask bits in `bits`.
    pub fn with_bits(domain: DomainId, nr_vcpus: u32, bits: B) -> Self {
        Self {
            domain,
            nr_vcpus,
            max_ports: EVTCHN_DEFAULT_MAX_PORTS,
            buckets: Vec::new(),
            high_water: 1,
            free: Vec::new(),
            in_use: 0,
            virqs: (0..nr_vcpus).map(|_| [0; NR_VIRQS as usize]).collect(),
            bits,
            hint: Vec::new(),
            cursor: 0,
            budget: None,
        }
    }

    /// Charges the table's growth to `budget` from now on.
    pub fn charge_to(mut self, budget: Arc<Budget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The domain this table belongs to.
    pub fn domain(&self) -> DomainId {
        self.domain
    }

    /// Ports allocated now.
    pub fn ports_in_use(&self) -> u32 {
        self.in_use
    }

    /// The most ports this domain may have (port numbers `1..max_ports`).
    pub fn max_ports(&self) -> u32 {
        self.max_ports
    }

    /// Raises the port limit. `Invalid` when lower than the current limit;
    /// `TooBig` over [`EVTCHN_PORTS_LIMIT`].
    pub fn set_max_ports(&mut self, max: u32) -> Result<(), Error> {
        if max < self.max_ports {
            return Err(Error::Invalid);
        }
        if max > EVTCHN_PORTS_LIMIT {
            return Err(Error::TooBig);
        }
        self.max_ports = max;
        Ok(())
    }

    #[inline(always)]
    fn slot(&self, port: u32) -> Option<&Port> {
        if port == 0 || port >= self.high_water {
            return None;
        }
        self.any_slot(port)
    }

    /// The slot of `port` if its bucket exists, free or not (one bounds
    /// check: a bucket is an array).
    #[inline(always)]
    fn any_slot(&self, port: u32) -> Option<&Port> {
        let b = self.buckets.get((port / BUCKET_PORTS) as usize)?;
        Some(&b[(port % BUCKET_PORTS) as usize])
    }

    fn slot_mut(&mut self, port: u32) -> Option<&mut Port> {
        if port == 0 || port >= self.high_water {
            return None;
        }
        let b = self.buckets.get_mut((port / BUCKET_PORTS) as usize)?;
        Some(&mut b[(port % BUCKET_PORTS) as usize])
    }

    /// The port if it is allocated; `NoEntry` otherwise. Port 0 and the
    /// ports at or past the high-water mark have free slots (or none), so
    /// the bucket's bounds check is the only range test. Inlined by force:
    /// a send and a wait look up ports about a dozen times per round trip.
    #[inline(always)]
    fn bound(&self, port: u32) -> Result<Port, Error> {
        match self.any_slot(port) {
            Some(p) if !matches!(p.state, PortState::Free) => Ok(*p),
            _ => Err(Error::NoEntry),
        }
    }

    /// A vCPU a port may notify: one of the domain's, and one with a
    /// record in the shared control area (`pvabi::EVTCHN_CONTROL_VCPUS`;
    /// a domain may have more vCPUs than that).
    fn check_vcpu(&self, vcpu: u32) -> Result<(), Error> {
        if vcpu < self.nr_vcpus && (vcpu as usize) < pvabi::EVTCHN_CONTROL_VCPUS {
            Ok(())
        } else {
            Err(Error::Invalid)
        }
    }

    /// Allocates a port in `state`, notifying `vcpu`, with its pending bit
    /// clear. `NoMem` at the limit or when memory runs out.
    fn alloc(&mut self, state: PortState, vcpu: u32) -> Result<u32, Error> {
        let port = match self.free.last() {
            Some(&p) => p,
            None => {
                let p = self.high_water;
                if p >= self.max_ports {
                    return Err(Error::NoMem);
                }
                if self.buckets.len() <= (p / BUCKET_PORTS) as usize {
                    // Charged first, for all the bucket's ports (its slots,
                    // free-list room, bitmaps and hint): a guest allocating
                    // ports meets its budget, never an exhausted heap.
                    let budget = self.budget.clone();
                    budget::charged(budget.as_deref(), PORT_BUCKET_COST, || self.new_bucket())?;
                }
                // Room for this port on the free list once it is closed.
                self.free.try_reserve(1).map_err(|_| Error::NoMem)?;
                let end = (p / BUCKET_PORTS + 1) * BUCKET_PORTS;
                self.bits.grow(end)?;
                let words = end.div_ceil(64 * 64) as usize;
                if self.hint.len() < words {
                    self.hint.try_reserve(words).map_err(|_| Error::NoMem)?;
                    self.hint.resize(words, 0);
                }
                self.high_water = p + 1;
                p
            }
        };
        self.free.pop_if(|&mut p| p == port);
        self.bits.test_and_clear_pending(port);
        let slot = self.slot_mut(port).ok_or(Error::NoMem)?;
        *slot = Port { state, vcpu };
        self.in_use += 1;
        Ok(port)
    }

    /// One more bucket of free ports (fallible).
    fn new_bucket(&mut self) -> Result<(), Error> {
        self.buckets.try_reserve(1).map_err(|_| Error::NoMem)?;
        let mut bucket = Vec::new();
        bucket
            .try_reserve_exact(BUCKET_PORTS as usize)
            .map_err(|_| Error::NoMem)?;
        bucket.resize(BUCKET_PORTS as usize, FREE);
        let bucket = bucket
            .into_boxed_slice()
            .try_into()
            .map_err(|_| Error::NoMem)?;
        self.buckets.push(bucket);
        Ok(())
    }

    fn release(&mut self, port: u32) {
        if let Some(slot) = self.slot_mut(port) {
            *slot = FREE;
            self.bits.test_and_clear_pending(port);
            self.free.push(port);
            self.in_use -= 1;
        }
    }

    /// **alloc_unbound**: a new port that `remote` may connect to.
    /// Errors: `NoMem`.
    pub fn alloc_unbound(&mut self, remote: DomainId) -> Result<u32, Error> {
        self.alloc(PortState::Unbound { remote }, 0)
    }

    /// **bind_interdomain**: connects a new local port to `remote_port` of
    /// `remote`'s table (`None`: this domain's own), which must be unbound
    /// for this domain. Returns the local port, which notifies vCPU 0.
    /// Errors: `NoEntry` (remote port not allocated), `Busy` (not
    /// unbound), `Perm` (unbound for another domain), `NoMem`.
    pub fn bind_interdomain(
        &mut self,
        remote: Option<&mut EventTable<B>>,
        remote_port: u32,
    ) -> Result<u32, Error> {
        let me = self.domain;
        match remote {
            Some(peer) => {
                peer.check_bindable(remote_port, me)?;
                let state = PortState::Interdomain {
                    remote: peer.domain,
                    remote_port,
                };
                let local = self.alloc(state, 0)?;
                peer.connect(remote_port, me, local);
                Ok(local)
            }
            None => {
                self.check_bindable(remote_port, me)?;
                let state = PortState::Interdomain {
                    remote: me,
                    remote_port,
                };
                let local = self.alloc(state, 0)?;
                self.connect(remote_port, me, local);
                Ok(local)
            }
        }
    }

    fn check_bindable(&self, port: u32, by: DomainId) -> Result<(), Error> {
        match self.bound(port)?.state {
            PortState::Unbound { remote } if remote == by => Ok(()),
            PortState::Unbound { .. } => Err(Error::Perm),
            _ => Err(Error::Busy),
        }
    }

    fn connect(&mut self, port: u32, remote: DomainId, remote_port: u32) {
        if let Some(slot) = self.slot_mut(port) {
            slot.state = PortState::Interdomain {
                remote,
                remote_port,
            };
        }
    }

    /// **send**: where a send on `port` goes; the caller then raises the
    /// receiving port ([`EventTable::raise`] or [`EventTable::deliver`]).
    /// Errors: `NoEntry` (port not allocated), `Busy` (unbound: no peer has
    /// connected, or the peer closed), `Invalid` (a virq port: only the
    /// hypervisor raises those).
    pub fn send(&self, port: u32) -> Result<Route, Error> {
        match self.bound(port)?.state {
            PortState::Interdomain {
                remote,
                remote_port,
            } if remote == self.domain => Ok(Route::Local(remote_port)),
            PortState::Interdomain {
                remote,
                remote_port,
            } => Ok(Route::Remote {
                domain: remote,
                port: remote_port,
                from: port,
            }),
            PortState::Ipi => Ok(Route::Local(port)),
            PortState::Unbound { .. } => Err(Error::Busy),
            PortState::Virq { .. } | PortState::Msi | PortState::Free => Err(Error::Invalid),
        }
    }

    /// Makes an allocated `port` pending. Returns the upcall to make, if
    /// the port was not pending already and is not masked; a masked port
    /// stays pending and is notified by [`EventTable::unmask`].
    pub fn raise(&mut self, port: u32) -> Option<Notify> {
        let p = self.bound(port).ok()?;
        if self.bits.test_and_set_pending(port) {
            return None;
        }
        self.hint_pending(port);
        if self.bits.is_masked(port) {
            return None;
        }
        self.bits.notify(p.vcpu, port);
        Some(Notify {
            domain: self.domain,
            vcpu: p.vcpu,
            port,
        })
    }

    /// Sets `port`'s pending bit (it was clear) and its word's hint.
    fn set_pending(&mut self, port: u32) {
        self.bits.test_and_set_pending(port);
        self.hint_pending(port);
    }

    /// Notes that `port`'s pending word may be nonzero (for `scan`).
    #[inline(always)]
    fn hint_pending(&mut self, port: u32) {
        if let Some(h) = self.hint.get_mut(port as usize / 4096) {
            *h |= 1 << (port as usize / 64 % 64);
        }
    }

    /// Delivers a send from port `from` of `sender` to `port`: raises it if
    /// it is still connected to that port (a port closed and reused in the
    /// meantime is left alone).
    pub fn deliver(&mut self, port: u32, sender: DomainId, from: u32) -> Option<Notify> {
        self.deliver_to(port, sender, from, |_| false)
    }

    /// **close**: frees `port`. A connected port leaves its peer to be told
    /// ([`Closed::Peer`]). Errors: `NoEntry`, `Busy` (a device's message is
    /// bound to it: only its unbind may free it, after the message is
    /// disabled at the device).
    pub fn close(&mut self, port: u32) -> Result<Closed, Error> {
        let p = self.bound(port)?;
        let closed = match p.state {
            PortState::Msi => return Err(Error::Busy),
            PortState::Interdomain {
                remote,
                remote_port,
            } => Closed::Peer {
                domain: remote,
                port: remote_port,
                from: port,
            },
            PortState::Virq { virq } => {
                self.set_virq_port(p.vcpu, virq, 0);
                Closed::Done
            }
            _ => Closed::Done,
        };
        self.release(port);
        Ok(closed)
    }

    /// The peer of `port` (`sender`'s port `from`) closed: the port goes
    /// back to unbound (the same domain may connect again) and becomes
    /// pending so its owner notices. Returns the upcall to make. Nothing
    /// happens unless the port is still connected to that peer.
    pub fn peer_closed(&mut self, port: u32, sender: DomainId, from: u32) -> Option<Notify> {
        let connected = PortState::Interdomain {
            remote: sender,
            remote_port: from,
        };
        if self.bound(port).ok()?.state != connected {
            return None;
        }
        if let Some(slot) = self.slot_mut(port) {
            slot.state = PortState::Unbound { remote: sender };
        }
        self.raise(port)
    }

    /// Closes every port (the domain is dying). Returns the peers to tell
    /// ([`EventTable::peer_closed`]), loopback ones already handled. Its
    /// messages were unbound before (`Domain::finish`); any port still
    /// bound to one is freed too.
    pub fn close_all(&mut self) -> Vec<Closed> {
        let mut peers = Vec::new();
        for port in 1..self.high_water {
            let _ = self.close_msi(port);
            if let Ok(Closed::Peer {
                domain,
                port: rp,
                from,
            }) = self.close(port)
                && domain != self.domain
            {
                peers.push(Closed::Peer {
                    domain,
                    port: rp,
                    from,
                });
            }
        }
        peers
    }

    /// **mask**: holds back upcalls for `port`. Errors: `NoEntry`.
    pub fn mask(&mut self, port: u32) -> Result<(), Error> {
        self.bound(port)?;
        self.bits.set_masked(port, true);
        Ok(())
    }

    /// **unmask**: lets `port` notify again. If it was masked (or the bits
    /// are in a guest's area, where the guest unmasks by itself) and is
    /// pending, returns the upcall to make now (whether or not one was made
    /// before it was masked: an extra upcall is harmless, a missing one
    /// would be a lost wake-up). Errors: `NoEntry`.
    pub fn unmask(&mut self, port: u32) -> Result<Option<Notify>, Error> {
        let p = self.bound(port)?;
        let was = self.bits.set_masked(port, false);
        // With a shared area the guest clears the mask bit itself and then
        // calls this because the port is pending: notify then too.
        if !((was || self.bits.guest_owned()) && self.bits.is_pending(port)) {
            return Ok(None);
        }
        self.bits.notify(p.vcpu, port);
        Ok(Some(Notify {
            domain: self.domain,
            vcpu: p.vcpu,
            port,
        }))
    }

    /// **status** of `port` (0 or beyond the table: `NoEntry`; a free port
    /// reports [`PortState::Free`]).
    pub fn status(&self, port: u32) -> Result<PortStatus, Error> {
        let p = self.slot(port).ok_or(Error::NoEntry)?;
        Ok(PortStatus {
            state: p.state,
            vcpu: p.vcpu,
            pending: self.bits.is_pending(port),
            masked: self.bits.is_masked(port),
        })
    }

    /// Clears `port`'s pending bit (the guest has seen it); returns whether
    /// it was pending. Errors: `NoEntry`.
    pub fn clear_pending(&mut self, port: u32) -> Result<bool, Error> {
        self.bound(port)?;
        Ok(self.bits.test_and_clear_pending(port))
    }
}
