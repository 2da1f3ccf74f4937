//! What ended is not forgotten: dom0 remembers every domain it sees
//! (uptime from when it first saw it, the CPU time it last saw) and, when
//! one is gone, asks the hypervisor how it ended (`HC_DOMCTL_INFO` with
//! `DOMCTL_INFO_ENDED`) and keeps it listed as `ended`, with its exit code
//! and reason, until `forget` or until [`History::max`] newer ones push it
//! out.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use super::Hypervisor;
use crate::proto::{DomainInfo, DomainRef, DomainState};

/// How long a domain gone from the list may lack its end report before
/// it is recorded as ended for an `unknown` reason.
pub const PENDING_NS: u64 = 2_000_000_000;

/// How many ended domains dom0 keeps unless told otherwise (`history=N`
/// on dom0's command line).
pub const DEFAULT_HISTORY: usize = 32;

/// How a freed domain ended, as the hypervisor kept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HvEnded {
    pub exit_code: i32,
    /// `exited`, `rebooted`, `crashed` (the guest said so), `killed` (by
    /// the hypervisor) or `destroyed`.
    pub reason: &'static str,
    /// Why the hypervisor killed it, as it said (`killed` only).
    pub kill_reason: Option<String>,
}

#[derive(Debug)]
struct Seen {
    info: DomainInfo,
    first_ns: u64,
}

#[derive(Debug)]
pub struct History {
    seen: BTreeMap<u32, Seen>,
    /// Gone from the domain list, but not yet reported ended: the table
    /// drops a domain a moment before its last reference (and its end
    /// report) goes. With when it was first missed.
    pending: BTreeMap<u32, (Seen, u64)>,
    /// Ended domains, oldest first.
    ended: VecDeque<DomainInfo>,
    /// Most ended domains kept.
    pub max: usize,
    /// Ended domains kept until `forget` whatever `max` says (their
    /// `preserve` policy, `lifecycle.rs`).
    pinned: BTreeSet<u32>,
}

impl Default for History {
    fn default() -> Self {
        Self::new(DEFAULT_HISTORY)
    }
}

impl History {
    pub fn new(max: usize) -> Self {
        Self {
            seen: BTreeMap::new(),
            pending: BTreeMap::new(),
            ended: VecDeque::new(),
            max,
            pinned: BTreeSet::new(),
        }
    }

    /// Looks at every domain now: remembers the live ones, records the
    /// ones that are gone and returns those. The control domain is left
    /// out (it never ends while anyone can ask).
    pub fn observe(&mut self, hv: &mut impl Hypervisor) -> Vec<DomainInfo> {
        let mut newly = Vec::new();
        let Ok(ids) = hv.list() else { return newly };
        let now = hv.now_ns();
        for &id in &ids {
            let Ok(d) = hv.info(id) else { continue };
            if d.privileged {
                continue;
            }
            let info = d.to_proto();
            self.seen
                .entry(id)
                .and_modify(|s| {
                    // The UUID is dom0's, not the hypervisor's: kept.
                    let uuid = s.info.uuid.take();
                    s.info = info.clone();
                    s.info.uuid = uuid;
                })
                .or_insert(Seen {
                    info,
                    first_ns: now,
                });
        }
        let gone: Vec<u32> = self
            .seen
            .keys()
            .copied()
            .filter(|id| !ids.contains(id))
            .collect();
        for id in gone {
            if let Some(s) = self.seen.remove(&id) {
                self.pending.insert(id, (s, now));
            }
        }
        let waiting: Vec<u32> = self.pending.keys().copied().collect();
        for id in waiting {
            let end = hv.ended(id);
            let expired = self
                .pending
                .get(&id)
                .is_some_and(|(_, since)| now.saturating_sub(*since) >= PENDING_NS);
            if end.is_err() && !expired {
                continue;
            }
            let Some((s, since)) = self.pending.remove(&id) else {
                continue;
            };
            let mut info = s.info;
            info.state = DomainState::Ended;
            // Its memory is back with the hypervisor.
            (info.current_bytes, info.target_bytes) = (None, None);
            info.uptime_ns = Some(since.saturating_sub(s.first_ns));
            match end {
                Ok(e) => {
                    info.exit_code = Some(e.exit_code);
                    info.reason = Some(String::from(e.reason));
                    info.kill_reason = e.kill_reason;
                }
                Err(_) => info.reason = Some(String::from("unknown")),
            }
            newly.push(info.clone());
            self.ended.push_back(info);
        }
        self.trim();
        newly
    }

    /// When a domain gone from the list without its end report is to be
    /// recorded anyway ([`PENDING_NS`] after it went): the service must
    /// look again then even if nothing wakes it (`Server::next_deadline`).
    pub fn next_deadline(&self) -> Option<u64> {
        self.pending
            .values()
            .map(|(_, since)| since.saturating_add(PENDING_NS))
            .min()
    }

    /// Drops the oldest ended domains beyond [`Self::max`], pinned ones
    /// aside.
    fn trim(&mut self) {
        while self.ended.len().saturating_sub(self.pinned.len()) > self.max {
            let Some(i) = self.ended.iter().position(|d| !self.pinned.contains(&d.id)) else {
                break;
            };
            self.ended.remove(i);
        }
    }

    /// Keeps ended domain `id` listed until `forget` (`preserve`).
    pub fn pin(&mut self, id: u32) {
        if self.ended.iter().any(|d| d.id == id) {
            self.pinned.insert(id);
        }
    }

    /// Replaces the reason recorded for ended domain `id` (dom0 knows
    /// better than the hypervisor: `forced`).
    pub fn set_reason(&mut self, id: u32, reason: &str) {
        if let Some(d) = self.ended.iter_mut().rev().find(|d| d.id == id) {
            d.reason = Some(String::from(reason));
        }
    }

    /// Remembers a domain just created (it may end before it is first
    /// listed: its end is still recorded). `now` is when it was created:
    /// its uptime counts from there.
    pub fn track(&mut self, info: DomainInfo, now: u64) {
        let uuid = info.uuid.clone();
        self.seen
            .entry(info.id)
            .and_modify(|s| {
                if uuid.is_some() {
                    s.info.uuid = uuid;
                }
            })
            .or_insert(Seen {
                info,
                first_ns: now,
            });
    }

    /// The UUID of live domain `id`, if dom0 gave it one.
    pub fn uuid(&self, id: u32) -> Option<&str> {
        self.seen.get(&id).and_then(|s| s.info.uuid.as_deref())
    }

    /// Gives live domain `id` (seen, not tracked) a UUID; `false` if it
    /// is not seen.
    pub fn set_uuid(&mut self, id: u32, uuid: &str) -> bool {
        self.seen
            .get_mut(&id)
            .map(|s| s.info.uuid = Some(String::from(uuid)))
            .is_some()
    }

    /// The live domain with UUID `uuid` (lower case).
    pub fn live_by_uuid(&self, uuid: &str) -> Option<u32> {
        self.seen
            .values()
            .find(|s| s.info.uuid.as_deref() == Some(uuid))
            .map(|s| s.info.id)
    }

    /// Nanoseconds since domain `id` was first seen.
    pub fn uptime(&self, id: u32, now: u64) -> Option<u64> {
        self.seen.get(&id).map(|s| now.saturating_sub(s.first_ns))
    }

    /// Ended domains, oldest first.
    pub fn ended(&self) -> impl Iterator<Item = &DomainInfo> {
        self.ended.iter()
    }

    /// The newest ended domain `r` names.
    pub fn find(&self, r: &DomainRef) -> Option<&DomainInfo> {
        self.ended.iter().rev().find(|d| matches(d, r))
    }

    /// Drops the ended domains `r` names; how many.
    pub fn forget(&mut self, r: &DomainRef) -> usize {
        let before = self.ended.len();
        let pinned = &mut self.pinned;
        self.ended.retain(|d| {
            let keep = !matches(d, r);
            if !keep {
                pinned.remove(&d.id);
            }
            keep
        });
        before - self.ended.len()
    }
}

fn matches(d: &DomainInfo, r: &DomainRef) -> bool {
    match r {
        DomainRef::Id(id) => d.id == *id,
        DomainRef::Name(n) => {
            d.name == *n
                || crate::uuid::Uuid::parse(n).is_some_and(|u| {
                    d.uuid.as_deref() == Some(alloc::string::ToString::to_string(&u).as_str())
                })
        }
    }
}
