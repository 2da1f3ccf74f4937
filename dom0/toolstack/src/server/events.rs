//! What a fleet engine needs from the service (issue 15): every domain has
//! a UUID ([`crate::uuid`]), accepted wherever a domain is named, and
//! sessions that `subscribe` get one [`Event::Domain`] per life-cycle
//! change, so they need not poll `list`.
//!
//! UUIDs: a domain dom0 builds takes its configuration's `uuid`, else a
//! generated one, which is written into the configuration dom0 keeps for
//! its `on_*` policies, so a restart keeps it. Domains dom0 did not build
//! (itself; boot modules the hypervisor started) get one when first seen.
//!
//! Events are queued here, in the order dom0 saw the changes, and sent by
//! the caller ([`Server::take_events`]) to [`Server::subscribers`].

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::Server;
use crate::proto::{Change, DomainEvent, DomainInfo, DomainRef, Event, Op, Reply, SessionId};
use crate::uuid::{Uuid, UuidSource};

/// The service's UUID source and event queue.
#[derive(Debug, Default)]
pub struct Fleet {
    source: UuidSource,
    /// UUIDs of domains dom0 did not build, by id.
    others: BTreeMap<u32, String>,
    queue: Vec<Event>,
}

/// The domain an operation names, to be resolved by UUID.
fn target(op: &mut Op) -> Option<&mut DomainRef> {
    match op {
        Op::Destroy { domain }
        | Op::Pause { domain }
        | Op::Unpause { domain }
        | Op::Info { domain }
        | Op::ConsoleAttach { domain }
        | Op::ConsoleDetach { domain }
        | Op::ConsoleInput { domain, .. }
        | Op::Shutdown { domain, .. }
        | Op::SetSched { domain, .. }
        | Op::ConsoleHistory { domain }
        | Op::Forget { domain } => Some(domain),
        _ => None,
    }
}

impl Server {
    /// Seeds the UUID source (dom0: RDRAND, else the TSC).
    pub fn seed_uuids(&mut self, seed: u64) {
        self.fleet.source = UuidSource::new(seed);
    }

    /// A new version 4 UUID; `fresh`: entropy the caller has now.
    pub(super) fn new_uuid(&mut self, fresh: u64) -> Uuid {
        self.fleet.source.uuid(fresh)
    }

    /// The UUID of live domain `id`, generated at first sight for one dom0
    /// did not build.
    fn uuid_of(&mut self, id: u32) -> String {
        if let Some(u) = self.history.uuid(id) {
            return u.to_string();
        }
        if let Some(u) = self.fleet.others.get(&id) {
            return u.clone();
        }
        let u = self.new_uuid(u64::from(id)).to_string();
        if !self.history.set_uuid(id, &u) {
            self.fleet.others.insert(id, u.clone());
        }
        u
    }

    /// Fills in the UUIDs of the live domains a reply reports.
    pub(super) fn decorate(&mut self, reply: &mut Reply) {
        let one = |s: &mut Self, d: &mut DomainInfo| {
            if d.uuid.is_none() {
                d.uuid = Some(s.uuid_of(d.id));
            }
        };
        match reply {
            Reply::Domain { domain } => one(self, domain),
            Reply::Domains { domains } => domains.iter_mut().for_each(|d| one(self, d)),
            _ => {}
        }
    }

    /// A UUID written where a domain is named becomes that live domain's
    /// id (an ended one's is matched by the history, which keeps UUIDs).
    pub(super) fn resolve(&mut self, op: &mut Op) {
        let Some(r) = target(op) else { return };
        let DomainRef::Name(n) = r else { return };
        let Some(u) = Uuid::parse(n).map(|u| u.to_string()) else {
            return;
        };
        let live = self.history.live_by_uuid(&u).or_else(|| {
            self.fleet
                .others
                .iter()
                .find(|(_, o)| **o == u)
                .map(|(&id, _)| id)
        });
        if let Some(id) = live {
            *r = DomainRef::Id(id);
        }
    }

    /// `pause`/`unpause`, with its event.
    pub(super) fn set_paused(
        &mut self,
        hv: &mut impl super::Hypervisor,
        r: &DomainRef,
        pause: bool,
    ) -> Result<Reply, crate::proto::ProtoError> {
        let reply = super::set_paused(hv, r, pause)?;
        if let Reply::Domain { domain } = &reply {
            let change = if pause {
                Change::Paused
            } else {
                Change::Unpaused
            };
            let d = domain.clone();
            self.emit(change, &d, None);
        }
        Ok(reply)
    }

    /// Queues a change of domain `d`.
    pub(super) fn emit(&mut self, change: Change, d: &DomainInfo, reason: Option<&str>) {
        let uuid = d.uuid.clone().or_else(|| Some(self.uuid_of(d.id)));
        self.fleet.queue.push(Event::Domain(DomainEvent {
            change,
            domain: d.id,
            name: d.name.clone(),
            uuid,
            reason: reason.map(String::from),
            exit_code: if change == Change::Ended {
                d.exit_code
            } else {
                None
            },
        }));
    }

    /// The changes queued since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<Event> {
        core::mem::take(&mut self.fleet.queue)
    }

    /// Sessions that asked for domain events.
    pub fn subscribers(&self) -> Vec<SessionId> {
        self.sessions.subscribers()
    }
}
