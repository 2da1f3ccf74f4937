//! Lifecycle control: graceful shutdown and reboot with a forced end
//! after a timeout (`xl shutdown` / `xl reboot`), and the end policies
//! (`on_poweroff`, `on_reboot`, `on_crash`: `config/policy.rs`) applied
//! when a domain this dom0 built ends.
//!
//! A `shutdown` request records a deadline; [`Lifecycle::tick`] (each
//! pass of dom0's loop) destroys a domain still alive at its deadline and
//! remembers that dom0 forced it, so its end is reported `forced` rather
//! than `destroyed`. When [`super::History`] reports a domain ended,
//! [`Lifecycle::on_end`] picks the policy from how it ended and applies it.
//! What it did is said in [`Lifecycle::notes`] (dom0 prints them).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::{History, Hypervisor, create_all};
use crate::config::{BootConfig, DomainConfig, OnEnd, RESTART_LIMIT, RESTART_WINDOW_NS};
use crate::proto::DomainInfo;

/// How long a guest has to end after `shutdown`/`reboot` when the request
/// names no timeout (as `xl shutdown -w` waits; xl itself has none).
pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 30_000;

/// A domain dom0 built from a configuration: what it needs to build it
/// again.
#[derive(Debug, Clone)]
struct Built {
    file: String,
    cfg: DomainConfig,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    deadline_ns: u64,
    timeout_ns: u64,
    reboot: bool,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Lifecycle {
    built: BTreeMap<u32, Built>,
    pending: BTreeMap<u32, Pending>,
    /// Domains dom0 destroyed after a request timed out (or `--force`):
    /// whether a reboot was asked.
    forced: BTreeMap<u32, bool>,
    /// Restart times by domain name, newest last.
    restarts: BTreeMap<String, VecDeque<u64>>,
    /// What dom0 did, for its log (taken by the caller).
    pub notes: Vec<String>,
}

fn secs(ns: u64) -> String {
    format!("{}.{} s", ns / 1_000_000_000, ns / 100_000_000 % 10)
}

fn what(reboot: bool) -> &'static str {
    if reboot { "reboot" } else { "poweroff" }
}

impl Lifecycle {
    /// Domain `id` was built from `cfg` in `file`: its policies apply when
    /// it ends.
    pub fn adopt(&mut self, id: u32, file: &str, cfg: &DomainConfig) {
        self.built.insert(
            id,
            Built {
                file: String::from(file),
                cfg: cfg.clone(),
            },
        );
    }

    /// The domains (id, name) built from image `name` (as `image`, `kernel`
    /// or `initrd`) that have not ended: they may be built again from it.
    pub fn using_image(&self, name: &str) -> Vec<(u32, String)> {
        self.built
            .iter()
            .filter(|(_, b)| b.cfg.image == name || b.cfg.initrd.as_deref() == Some(name))
            .map(|(&id, b)| (id, b.cfg.name.clone()))
            .collect()
    }

    /// A request was sent to domain `id` (`name`): destroy it if it has not
    /// ended `timeout_ns` from `now`.
    pub fn requested(&mut self, id: u32, name: &str, reboot: bool, timeout_ns: u64, now: u64) {
        self.pending.insert(
            id,
            Pending {
                deadline_ns: now.saturating_add(timeout_ns),
                timeout_ns,
                reboot,
            },
        );
        self.notes.push(format!(
            "domain {id} ({name}): {} requested; destroyed if it has not ended in {}",
            what(reboot),
            secs(timeout_ns)
        ));
    }

    /// The earliest shutdown deadline still pending: dom0 must run its
    /// loop by then even when nothing else wakes it.
    pub fn next_deadline(&self) -> Option<u64> {
        self.pending.values().map(|p| p.deadline_ns).min()
    }

    /// dom0 destroyed domain `id` on purpose (a timeout, or `--force`).
    pub fn forced(&mut self, id: u32, reboot: bool) {
        self.pending.remove(&id);
        self.forced.insert(id, reboot);
    }

    /// Destroys every domain whose request timed out.
    pub fn tick(&mut self, hv: &mut impl Hypervisor, now: u64) {
        let due: Vec<(u32, Pending)> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.deadline_ns)
            .map(|(&id, &p)| (id, p))
            .collect();
        for (id, p) in due {
            self.pending.remove(&id);
            let Ok(d) = hv.info(id) else { continue };
            if d.state == pvabi::DOMAIN_DYING {
                continue;
            }
            // Marked first: its end may be observed inside `destroy`.
            self.forced.insert(id, p.reboot);
            let how = match hv.destroy(id) {
                Ok(()) => String::from("destroyed (forced)"),
                Err(e) => format!("could not be destroyed: {}", e.description()),
            };
            self.notes.push(format!(
                "domain {id} ({}) did not end within {} of the {} request: {how}",
                d.name,
                secs(p.timeout_ns),
                what(p.reboot)
            ));
        }
    }

    /// Domain `d` ended (its record is already in `history`): notes how,
    /// applies its policy; returns the id of the domain that replaces it
    /// (`restart`), if any.
    pub fn on_end(
        &mut self,
        hv: &mut impl Hypervisor,
        history: &mut History,
        d: &mut DomainInfo,
        now: u64,
    ) -> Option<u32> {
        self.pending.remove(&d.id);
        let forced = self.forced.remove(&d.id);
        if forced.is_some() {
            d.reason = Some(String::from("forced"));
            history.set_reason(d.id, "forced");
        }
        let built = self.built.remove(&d.id)?;
        let p = built.cfg.on_end;
        let (key, policy, how) = match (forced, d.reason.as_deref()) {
            (Some(true), _) => (
                "on_reboot",
                p.on_reboot,
                "was forced after a reboot request",
            ),
            (Some(false), _) => return None,
            (None, Some("exited")) => ("on_poweroff", p.on_poweroff, "powered off"),
            (None, Some("rebooted")) => ("on_reboot", p.on_reboot, "asked to reboot"),
            (None, Some("crashed")) => ("on_crash", p.on_crash, "crashed"),
            (None, Some("killed")) => ("on_crash", p.on_crash, "was killed by the hypervisor"),
            // Destroyed by an operator, or unknown: nothing to apply.
            _ => return None,
        };
        let who = format!("domain {} ({})", d.id, d.name);
        match policy {
            OnEnd::Destroy => None,
            OnEnd::Preserve => {
                history.pin(d.id);
                self.notes.push(format!(
                    "{who} {how}: preserved ({key} = \"preserve\"): listed until hvctl forget"
                ));
                None
            }
            OnEnd::Restart => self.restart(hv, history, d, built, key, how, now),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn restart(
        &mut self,
        hv: &mut impl Hypervisor,
        history: &mut History,
        d: &DomainInfo,
        built: Built,
        key: &str,
        how: &str,
        now: u64,
    ) -> Option<u32> {
        let who = format!("domain {} ({})", d.id, d.name);
        let times = self.restarts.entry(d.name.clone()).or_default();
        while times
            .front()
            .is_some_and(|&t| now.saturating_sub(t) >= RESTART_WINDOW_NS)
        {
            times.pop_front();
        }
        if times.len() >= RESTART_LIMIT {
            history.pin(d.id);
            self.notes.push(format!(
                "{who} {how}: not restarted: it was restarted {} times in the last {} \
                 (the limit); preserved, listed until hvctl forget",
                times.len(),
                secs(RESTART_WINDOW_NS)
            ));
            return None;
        }
        let mut cfg = built.cfg.clone();
        cfg.autostart = true;
        let one = BootConfig {
            domains: vec![cfg.clone()],
            network: None,
            store: None,
        };
        let id = match create_all(hv, &built.file, &one) {
            Ok(ids) => ids.first().copied()?,
            Err(f) => {
                history.pin(d.id);
                self.notes
                    .push(format!("{who} {how}: could not be restarted: {f}"));
                return None;
            }
        };
        times.push_back(now);
        let n = times.len();
        self.notes.push(format!(
            "{who} {how}: restarted as domain {id} ({key} = \"restart\", restart {n} of at most \
             {RESTART_LIMIT} in {})",
            secs(RESTART_WINDOW_NS)
        ));
        let mut info = hv
            .info(id)
            .map_or_else(|_| super::configured(id, &cfg), |i| i.to_proto());
        info.uuid = cfg.uuid.map(|u| alloc::string::ToString::to_string(&u));
        history.track(info, now);
        self.built.insert(id, Built { cfg, ..built });
        Some(id)
    }
}
