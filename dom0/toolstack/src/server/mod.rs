//! dom0's management service and domain builder, over a [`Hypervisor`]
//! (the domctl hypercalls in dom0, a fake in the host tests):
//!
//! - [`create_all`]: builds every domain of a checked configuration in file
//!   order, then starts the `autostart` ones; if one cannot be built, every
//!   domain built from the file so far is destroyed again and the failure
//!   names the domain and the reason. Used at boot and by `create`.
//! - [`Server`]: answers one protocol line at a time (`docs/toolstack.md`);
//!   every bad line gets an error response, never a panic.

mod create;
mod events;
mod history;
mod images;
mod lifecycle;
mod memtarget;
mod session;
pub mod store;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_events;
#[cfg(test)]
mod tests_fixture;
#[cfg(test)]
mod tests_history;
#[cfg(test)]
mod tests_lifecycle;
#[cfg(test)]
mod tests_logs;
#[cfg(test)]
mod tests_pci;
#[cfg(test)]
mod tests_target;
#[cfg(test)]
mod tests_transfers;
#[cfg(test)]
mod tests_upload;
#[cfg(test)]
mod tests_upload_store;
#[cfg(test)]
mod tests_volume_xfer;
mod transfers;
pub mod upload;
pub mod upload_store;
pub mod volume_xfer;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use pvabi::Error;

use crate::proto::{
    self, DomainRef, DomainState, ErrorCode, Op, ProtoError, Reply, Request, SessionId,
};

pub use create::{CreateFailure, create_all};
pub use history::{DEFAULT_HISTORY, History, HvEnded};
pub use lifecycle::{DEFAULT_SHUTDOWN_TIMEOUT_MS, Lifecycle};
pub use session::{MAX_SESSIONS, Sessions};
pub use transfers::DEFAULT_IDLE_NS as DEFAULT_TRANSFER_IDLE_NS;
pub use upload::{ImageKeeper, MemImages};

/// One domain as the hypervisor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HvDomain {
    pub id: u32,
    pub name: String,
    /// `pvabi::DOMAIN_PAUSED`, `_RUNNING` or `_DYING`.
    pub state: u32,
    /// Exit code once dying.
    pub exit_code: i32,
    pub memory_bytes: u64,
    pub vcpus: u32,
    pub weight: u32,
    pub cap: u32,
    pub cpu_time_ns: u64,
    /// The control domain itself.
    pub privileged: bool,
    /// Hypervisor heap budget and use, in bytes.
    pub heap_budget: u64,
    pub heap_used: u64,
    /// Guest exits so far (`HC_DOMCTL_INFO`).
    pub exits: u64,
    /// Bytes it holds now (`HC_DOMCTL_INFO`'s `current_pages`).
    pub current_bytes: u64,
    /// Its memory target (`HC_DOMCTL_MEM_TARGET`); `None` for dom0 or
    /// from a hypervisor without targets.
    pub target_bytes: Option<u64>,
}

impl HvDomain {
    /// As the protocol reports it.
    pub fn to_proto(&self) -> proto::DomainInfo {
        let state = match self.state {
            pvabi::DOMAIN_PAUSED => DomainState::Paused,
            pvabi::DOMAIN_RUNNING => DomainState::Running,
            pvabi::DOMAIN_DYING if self.exit_code < 0 => DomainState::Crashed,
            pvabi::DOMAIN_DYING => DomainState::Shutdown,
            pvabi::DOMAIN_ENDED => DomainState::Ended,
            _ => DomainState::Unknown,
        };
        proto::DomainInfo {
            id: self.id,
            name: self.name.clone(),
            uuid: None,
            state,
            memory_bytes: self.memory_bytes,
            vcpus: self.vcpus,
            weight: self.weight,
            cap: self.cap,
            cpu_time_ns: self.cpu_time_ns,
            heap_budget_bytes: self.heap_budget,
            heap_used_bytes: self.heap_used,
            exits: self.exits,
            current_bytes: Some(self.current_bytes),
            target_bytes: self.target_bytes,
            uptime_ns: None,
            exit_code: None,
            reason: None,
            kill_reason: None,
        }
    }
}

/// The machine as the hypervisor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HvHost {
    pub cpus: u32,
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub domains: u32,
    /// `PVABI_VERSION` of the hypervisor.
    pub abi: u32,
}

fn abi(v: u32) -> String {
    format!("{}.{}", v >> 16, v & 0xffff)
}

/// What the service needs from the hypervisor. Errors are the ABI's.
pub trait Hypervisor {
    /// Ids of every domain, ascending (the control domain included).
    fn list(&mut self) -> Result<Vec<u32>, Error>;
    /// One domain.
    fn info(&mut self, id: u32) -> Result<HvDomain, Error>;
    /// Names of the boot modules a domain can be built from.
    fn images(&mut self) -> Vec<String>;
    /// Builds a paused domain from `d` (image already checked to exist).
    fn create(&mut self, d: &crate::config::DomainConfig) -> Result<u32, Error>;
    fn unpause(&mut self, id: u32) -> Result<(), Error>;
    fn pause(&mut self, id: u32) -> Result<(), Error>;
    /// Ends a domain and waits (a few seconds at most) until its memory
    /// is back.
    fn destroy(&mut self, id: u32) -> Result<(), Error>;
    /// Queues console input for domain `id` (`HC_DOMCTL_CONSOLE_WRITE`):
    /// how many bytes were taken, from the start of `bytes` (fewer, even 0,
    /// when its input queue is full).
    fn console_input(&mut self, id: u32, bytes: &[u8]) -> Result<usize, Error>;
    /// How domain `id` ended, once it is freed (`NoEntry`: not known).
    fn ended(&mut self, id: u32) -> Result<HvEnded, Error> {
        let _ = id;
        Err(Error::NoEntry)
    }
    /// The machine (`HC_DOMCTL_HOST_INFO`) and the hypervisor's pvabi
    /// version.
    fn host(&mut self) -> Result<HvHost, Error> {
        Err(Error::NoEntry)
    }
    /// Free memory now, if known (for error messages).
    fn free_bytes(&mut self) -> Option<u64> {
        None
    }
    /// The PCI functions dom0 owns, one line each (`HC_PCI_LIST`,
    /// docs/pci.md); none by default.
    fn pci_devices(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// dom0's disks, one line each (docs/disks.md); none by default.
    fn disks(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// dom0's log lines kept, and how many older ones were dropped.
    fn log(&mut self) -> (Vec<String>, u64) {
        (Vec::new(), 0)
    }
    /// Domain `id`'s console lines kept (`None`: none kept).
    fn console_history(&mut self, id: u32) -> Option<(Vec<String>, u64)> {
        let _ = id;
        None
    }
    /// The console history of a domain of an earlier boot, by name
    /// (dom0's store keeps it: issue 15); `None` by default.
    fn console_history_named(&mut self, name: &str) -> Option<(Vec<String>, u64)> {
        let _ = name;
        None
    }
    /// Nanoseconds on a clock that only goes forward (for uptimes).
    fn now_ns(&mut self) -> u64 {
        0
    }
    /// Asks domain `id` to power off or reboot
    /// (`HC_DOMCTL_SHUTDOWN_REQUEST`).
    fn request_shutdown(&mut self, id: u32, reboot: bool) -> Result<(), Error> {
        let _ = (id, reboot);
        Err(Error::NoSys)
    }
    /// Sets domain `id`'s weight and cap (`HC_DOMCTL_SET_SCHED`).
    fn set_sched(&mut self, id: u32, weight: u32, cap: u32) -> Result<(), Error> {
        let _ = (id, weight, cap);
        Err(Error::NoSys)
    }
    /// The boot modules as images (`image_list`): name, size, SHA-256.
    fn module_images(&mut self) -> Vec<proto::ImageInfo> {
        Vec::new()
    }
    /// Where images sent at run time are kept (`upload.rs`); `None`: this
    /// dom0 takes no uploads. Its names count as images for `create`
    /// ([`Self::images`] lists them too) and [`Self::create`] builds from
    /// them.
    fn keeper(&mut self) -> Option<&mut dyn ImageKeeper> {
        None
    }
    /// dom0's image store, if it has one (docs/store.md).
    fn store(&mut self) -> Option<&mut dyn store::ImageStore> {
        None
    }
    /// Sets domain `id`'s memory target to `pages` (`HC_DOMCTL_MEM_TARGET`,
    /// `memtarget.rs`): the target now.
    fn set_mem_target(&mut self, id: u32, pages: u64) -> Result<u64, Error> {
        let _ = (id, pages);
        Err(Error::NoSys)
    }
    /// Moves PCI function `sbdf` from dom0 to domain `id`, which has not
    /// run yet (`HC_DOMCTL_PCI_ASSIGN`, a configuration's `pci = [...]`).
    fn assign_pci(&mut self, id: u32, sbdf: u32) -> Result<(), Error> {
        let _ = (id, sbdf);
        Err(Error::NoSys)
    }
}

/// The service's state: its sessions (`hello` seen, consoles attached).
/// Each session needs its own `hello`; see [`Sessions`].
#[derive(Debug, Default)]
pub struct Server {
    sessions: Sessions,
    /// Domains seen and ended.
    pub history: History,
    /// Shutdown requests and end policies.
    pub lifecycle: Lifecycle,
    /// UUIDs and domain events (`events.rs`).
    fleet: events::Fleet,
    /// Images being uploaded (`upload.rs`).
    uploads: upload::Uploads,
    /// Images being uploaded into the store (`upload_store.rs`).
    store_uploads: upload_store::StoreUploads,
    /// Store objects being imported or exported (`volume_xfer.rs`).
    xfers: volume_xfer::Xfers,
    /// When each transfer last had a request (`transfers.rs`).
    idle: transfers::Idle,
}

/// Server name and version sent in the `hello` reply.
pub const SERVER: &str = concat!("kestrel-dom0 ", env!("CARGO_PKG_VERSION"));

fn err(code: ErrorCode, message: impl Into<String>) -> ProtoError {
    ProtoError::new(code, message)
}

fn hv_err(e: Error) -> ProtoError {
    match e {
        Error::NoEntry => err(ErrorCode::NoSuchDomain, "the domain has gone"),
        Error::NoMem => err(ErrorCode::NoResources, "not enough free memory"),
        Error::Busy | Error::Invalid => err(ErrorCode::BadState, e.description()),
        other => err(
            ErrorCode::Internal,
            format!("hypervisor: {}", other.description()),
        ),
    }
}

impl Server {
    pub fn new() -> Self {
        Self::default()
    }

    /// A server keeping at most `max` ended domains.
    pub fn with_history(max: usize) -> Self {
        Self {
            history: History::new(max),
            ..Self::default()
        }
    }

    /// Looks at every domain now (see [`History::observe`]): those that
    /// ended since the last look.
    /// Requests that timed out end first (their domains are then
    /// reported `forced`), and each ended domain's policy is applied
    /// (`lifecycle.rs`; what it did is in `self.lifecycle.notes`).
    pub fn observe(&mut self, hv: &mut impl Hypervisor) -> Vec<proto::DomainInfo> {
        let now = hv.now_ns();
        self.lifecycle.tick(hv, now);
        self.expire_idle(hv, now);
        let mut ended = self.history.observe(hv);
        for d in &mut ended {
            let again = self.lifecycle.on_end(hv, &mut self.history, d, now);
            let reason = d.reason.clone();
            self.emit(proto::Change::Ended, d, reason.as_deref());
            if let Some(id) = again {
                // Restarted under the same UUID (its kept configuration
                // has it).
                let mut new = d.clone();
                new.id = id;
                new.exit_code = None;
                self.emit(proto::Change::Created, &new, None);
                self.emit(proto::Change::Started, &new, None);
            }
        }
        ended
    }

    /// When the service must look again even if no event comes (a
    /// shutdown request's timeout, an end report that is late), in system
    /// time; `None`: only events.
    pub fn next_deadline(&self) -> Option<u64> {
        [
            self.lifecycle.next_deadline(),
            self.history.next_deadline(),
            self.idle_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Domain `id`, built from `cfg` in `file` at `created_ns`: its uptime
    /// counts from then, its end is recorded even if it ends before it is
    /// first listed, and its policies apply.
    pub fn adopt(
        &mut self,
        info: proto::DomainInfo,
        file: &str,
        cfg: &crate::config::DomainConfig,
        created_ns: u64,
    ) {
        // Its UUID: the configuration's, else a new one, kept in the
        // configuration its restarts are built from.
        let mut cfg = cfg.clone();
        let uuid = match cfg.uuid {
            Some(u) => u,
            None => *cfg.uuid.insert(self.new_uuid(created_ns)),
        };
        let mut info = info;
        info.uuid = Some(uuid.to_string());
        self.lifecycle.adopt(info.id, file, &cfg);
        self.emit(proto::Change::Created, &info, None);
        if cfg.autostart {
            self.emit(proto::Change::Started, &info, None);
        }
        self.history.track(info, created_ns);
    }

    /// Sessions that have domain `id`'s console attached.
    pub fn watchers(&self, id: u32) -> Vec<SessionId> {
        self.sessions.watchers(id)
    }

    /// Detaches domain `id` everywhere (it ended); returns the sessions
    /// that had it attached.
    pub fn detach_domain(&mut self, id: u32) -> Vec<SessionId> {
        self.sessions.detach_domain(id)
    }

    /// [`Self::handle_session_line`] for an untagged client.
    pub fn handle_line(
        &mut self,
        hv: &mut impl Hypervisor,
        line: Result<Vec<u8>, ProtoError>,
    ) -> String {
        self.handle_session_line(hv, None, line)
    }

    /// Answers one line (its session tag already split off) from
    /// [`proto::LineBuffer`]: the response line, newline included, not
    /// tagged.
    pub fn handle_session_line(
        &mut self,
        hv: &mut impl Hypervisor,
        session: SessionId,
        line: Result<Vec<u8>, ProtoError>,
    ) -> String {
        let resp = match line.map_err(|error| proto::DecodeError { id: None, error }) {
            Err(e) => e.into_response(),
            Ok(line) => match proto::decode_request(&line) {
                Err(e) => e.into_response(),
                Ok(req) => {
                    let id = req.id;
                    proto::Response {
                        id: Some(id),
                        result: match self.handle(hv, session, req) {
                            Ok(mut r) => {
                                self.decorate(&mut r);
                                proto::Outcome::Ok(r)
                            }
                            Err(e) => proto::Outcome::Error(e),
                        },
                    }
                }
            },
        };
        proto::encode_response(&resp)
    }

    fn handle(
        &mut self,
        hv: &mut impl Hypervisor,
        session: SessionId,
        mut req: Request,
    ) -> Result<Reply, ProtoError> {
        self.resolve(&mut req.op);
        if let Op::Hello { version, .. } = req.op {
            if version != proto::VERSION {
                return Err(err(
                    ErrorCode::VersionMismatch,
                    format!("this server speaks version {}", proto::VERSION),
                ));
            }
            self.sessions.hello(session);
            // A new client on the session: what the last one left
            // half-sent is dropped.
            self.uploads.end_session(session);
            self.end_store_upload(hv, session);
            self.xfers.end_session(hv, session);
            return Ok(Reply::Hello {
                version: proto::VERSION,
                server: SERVER.to_string(),
            });
        }
        if let Op::Bye = req.op {
            self.sessions.end(session);
            self.uploads.end_session(session);
            self.end_store_upload(hv, session);
            self.xfers.end_session(hv, session);
            return Ok(Reply::Done);
        }
        if !self.sessions.is_open(session) {
            return Err(err(ErrorCode::VersionMismatch, "send hello first"));
        }
        self.note_transfer(session, &req.op, hv.now_ns());
        self.check_maker(session, &req.op)?;
        match req.op {
            Op::Hello { .. } | Op::Bye => Err(err(ErrorCode::Internal, "unreachable")),
            op @ (Op::ImageList
            | Op::ImageDelete { .. }
            | Op::UploadBegin { .. }
            | Op::UploadChunk { .. }
            | Op::UploadEnd { .. }
            | Op::UploadAbort { .. }) => self.image_op(hv, session, op),
            op @ (Op::VolumeCreate { .. } | Op::VolumeList | Op::VolumeDelete { .. }) => {
                store::handle(hv, op)
            }
            op @ (Op::ImportBegin { .. }
            | Op::ImportChunk { .. }
            | Op::ImportZeros { .. }
            | Op::ImportEnd { .. }
            | Op::ImportAbort { .. }
            | Op::ExportBegin { .. }
            | Op::ExportNext { .. }
            | Op::ExportAbort { .. }) => self.xfers.handle(hv, session, op, &self.uploads),
            Op::List => {
                let _ = self.observe(hv);
                let now = hv.now_ns();
                let mut domains = Vec::new();
                for id in hv.list().map_err(hv_err)? {
                    // A domain that ends between the two calls is left out.
                    if let Ok(d) = hv.info(id) {
                        let mut info = d.to_proto();
                        info.uptime_ns = self.history.uptime(id, now);
                        domains.push(info);
                    }
                }
                domains.extend(self.history.ended().cloned());
                Ok(Reply::Domains { domains })
            }
            Op::Info { domain } => {
                let _ = self.observe(hv);
                match find(hv, &domain) {
                    Ok(d) => {
                        let now = hv.now_ns();
                        let mut info = d.to_proto();
                        info.uptime_ns = self.history.uptime(d.id, now);
                        Ok(Reply::Domain { domain: info })
                    }
                    Err(e) => match self.history.find(&domain) {
                        Some(d) => Ok(Reply::Domain { domain: d.clone() }),
                        None => Err(e),
                    },
                }
            }
            Op::Host => {
                let h = hv.host().map_err(hv_err)?;
                Ok(Reply::Host(proto::HostReport {
                    cpus: h.cpus,
                    memory_total_bytes: h.total_bytes,
                    memory_free_bytes: h.free_bytes,
                    domains: h.domains,
                    ended_domains: u32::try_from(self.history.ended().count()).unwrap_or(u32::MAX),
                    dom0: SERVER.to_string(),
                    pvabi: abi(pvabi::PVABI_VERSION),
                    hypervisor_pvabi: abi(h.abi),
                    uptime_ns: hv.now_ns(),
                    pci: hv.pci_devices(),
                    disks: hv.disks(),
                }))
            }
            Op::Log => {
                let (lines, dropped) = hv.log();
                Ok(Reply::Lines { lines, dropped })
            }
            Op::ConsoleHistory { domain } => {
                let id = match (find(hv, &domain), self.history.find(&domain)) {
                    (Ok(d), _) => d.id,
                    (Err(_), Some(d)) => d.id,
                    (Err(e), None) => {
                        // A domain of an earlier boot, by name.
                        let kept = match &domain {
                            DomainRef::Name(n) => hv.console_history_named(n),
                            DomainRef::Id(_) => None,
                        };
                        let (lines, dropped) = kept.ok_or(e)?;
                        return Ok(Reply::Lines { lines, dropped });
                    }
                };
                let (lines, dropped) = hv.console_history(id).ok_or_else(|| {
                    err(
                        ErrorCode::NoSuchDomain,
                        format!("no console history kept for domain {id} (\"{domain}\")"),
                    )
                })?;
                Ok(Reply::Lines { lines, dropped })
            }
            Op::Forget { domain } => {
                let _ = self.observe(hv);
                if self.history.forget(&domain) > 0 {
                    return Ok(Reply::Done);
                }
                match find(hv, &domain) {
                    Ok(d) => Err(err(
                        ErrorCode::BadState,
                        format!(
                            "domain {} ({}) has not ended: destroy it first",
                            d.id, d.name
                        ),
                    )),
                    Err(_) => Err(err(
                        ErrorCode::NoSuchDomain,
                        format!("no ended domain \"{domain}\""),
                    )),
                }
            }
            Op::Create { file, config } => {
                // Uptimes count from before the domains are built (a
                // domain may run and end before `create` returns), and a
                // domain that ends at once is still recorded.
                let created_ns = hv.now_ns();
                let (domains, cfg) = create(hv, &file, &config)?;
                for (d, c) in domains.iter().zip(&cfg.domains) {
                    self.adopt(d.clone(), &file, c, created_ns);
                }
                Ok(Reply::Domains { domains })
            }
            Op::Shutdown {
                domain,
                reboot,
                timeout_ms,
                force,
            } => {
                let d = managed(hv, &domain)?;
                if force {
                    self.lifecycle.forced(d.id, reboot);
                    self.lifecycle.notes.push(format!(
                        "domain {} ({}): destroyed without asking ({} --force)",
                        d.id,
                        d.name,
                        if reboot { "reboot" } else { "shutdown" }
                    ));
                    hv.destroy(d.id).map_err(hv_err)?;
                    self.sessions.detach_domain(d.id);
                    let _ = self.observe(hv);
                    return Ok(Reply::Done);
                }
                hv.request_shutdown(d.id, reboot).map_err(hv_err)?;
                let what = if reboot { "reboot" } else { "poweroff" };
                self.emit(proto::Change::ShutdownRequested, &d.to_proto(), Some(what));
                let timeout = timeout_ms
                    .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT_MS)
                    .saturating_mul(1_000_000);
                let now = hv.now_ns();
                self.lifecycle
                    .requested(d.id, &d.name, reboot, timeout, now);
                Ok(Reply::Done)
            }
            Op::SetSched {
                domain,
                weight,
                cap,
            } => set_sched(hv, &domain, weight, cap),
            Op::MemSet {
                domain,
                target_bytes,
            } => memtarget::mem_set(hv, &domain, target_bytes),
            Op::Destroy { domain } => {
                let d = managed(hv, &domain)?;
                hv.destroy(d.id).map_err(hv_err)?;
                self.sessions.detach_domain(d.id);
                let _ = self.observe(hv);
                Ok(Reply::Done)
            }
            Op::Pause { domain } => self.set_paused(hv, &domain, true),
            Op::Unpause { domain } => self.set_paused(hv, &domain, false),
            Op::Subscribe => {
                self.sessions.subscribe(session);
                Ok(Reply::Done)
            }
            Op::ConsoleAttach { domain } => {
                let d = managed(hv, &domain)?;
                self.sessions.attach(session, d.id);
                Ok(Reply::Attached {
                    domain: d.id,
                    name: d.name,
                })
            }
            Op::ConsoleDetach { domain } => {
                let d = find(hv, &domain)?;
                self.sessions.detach(session, d.id);
                Ok(Reply::Done)
            }
            Op::ConsoleInput { domain, data } => console_input(hv, &domain, data.as_bytes()),
        }
    }
}

/// The domain `r` names, live or dying.
pub fn find(hv: &mut impl Hypervisor, r: &DomainRef) -> Result<HvDomain, ProtoError> {
    let missing = || err(ErrorCode::NoSuchDomain, format!("no domain \"{r}\""));
    match r {
        DomainRef::Id(id) => hv.info(*id).map_err(|_| missing()),
        DomainRef::Name(name) => {
            for id in hv.list().map_err(hv_err)? {
                if let Ok(d) = hv.info(id)
                    && d.name == *name
                    && d.state != pvabi::DOMAIN_DYING
                {
                    return Ok(d);
                }
            }
            Err(missing())
        }
    }
}

/// A domain the service may act on: not the control domain, not ending.
fn managed(hv: &mut impl Hypervisor, r: &DomainRef) -> Result<HvDomain, ProtoError> {
    let d = find(hv, r)?;
    if d.privileged {
        return Err(err(ErrorCode::BadState, "that is the control domain"));
    }
    if d.state == pvabi::DOMAIN_DYING {
        return Err(err(ErrorCode::BadState, "the domain is ending"));
    }
    Ok(d)
}

fn set_paused(hv: &mut impl Hypervisor, r: &DomainRef, pause: bool) -> Result<Reply, ProtoError> {
    let d = managed(hv, r)?;
    let want = if pause {
        pvabi::DOMAIN_PAUSED
    } else {
        pvabi::DOMAIN_RUNNING
    };
    if d.state == want {
        let msg = format!(
            "domain {} ({}) is already {}",
            d.id,
            d.name,
            d.to_proto().state.as_str()
        );
        return Err(err(ErrorCode::BadState, msg));
    }
    if pause {
        hv.pause(d.id)
    } else {
        hv.unpause(d.id)
    }
    .map_err(hv_err)?;
    Ok(Reply::Domain {
        domain: hv.info(d.id).map_err(hv_err)?.to_proto(),
    })
}

/// Hands `data` to the domain's console input queue, in as many calls as
/// it takes; a queue that stops taking bytes (the guest does not read)
/// gets `no_resources`, saying how much went in.
fn console_input(
    hv: &mut impl Hypervisor,
    r: &DomainRef,
    data: &[u8],
) -> Result<Reply, ProtoError> {
    let d = managed(hv, r)?;
    let mut sent = 0;
    while let Some(rest) = data.get(sent..).filter(|b| !b.is_empty()) {
        let n = hv.console_input(d.id, rest).map_err(hv_err)?;
        if n == 0 {
            return Err(err(
                ErrorCode::NoResources,
                format!(
                    "the console input of domain {} ({}) is full: {sent} of {} bytes taken",
                    d.id,
                    d.name,
                    data.len()
                ),
            ));
        }
        sent = sent.saturating_add(n);
    }
    Ok(Reply::Done)
}

/// `set_sched`: a live domain (the control domain included), a weight in
/// `1..=65535`, a cap in `0..=100 × vcpus`.
fn set_sched(
    hv: &mut impl Hypervisor,
    r: &DomainRef,
    weight: Option<u32>,
    cap: Option<u32>,
) -> Result<Reply, ProtoError> {
    let d = find(hv, r)?;
    if d.state == pvabi::DOMAIN_DYING {
        return Err(err(ErrorCode::BadState, "the domain is ending"));
    }
    let who = format!("domain {} ({})", d.id, d.name);
    if weight.is_none() && cap.is_none() {
        return Err(err(ErrorCode::BadRequest, "give a weight, a cap or both"));
    }
    let w = weight.unwrap_or(d.weight);
    let c = cap.unwrap_or(d.cap);
    if !(1..=crate::config::MAX_WEIGHT).contains(&w) {
        return Err(err(
            ErrorCode::BadRequest,
            format!("weight {w} is out of range 1 ..= 65535"),
        ));
    }
    let cap_max = d.vcpus.saturating_mul(100);
    if c > cap_max {
        return Err(err(
            ErrorCode::BadRequest,
            format!(
                "cap {c} is over {cap_max} (100 per vCPU; {who} has {} vCPUs)",
                d.vcpus
            ),
        ));
    }
    hv.set_sched(d.id, w, c).map_err(hv_err)?;
    Ok(Reply::Domain {
        domain: hv.info(d.id).map_err(hv_err)?.to_proto(),
    })
}

/// Builds the domains of configuration `text`: their reports and the
/// configuration (for their end policies).
fn create(
    hv: &mut impl Hypervisor,
    file: &str,
    text: &str,
) -> Result<(Vec<proto::DomainInfo>, crate::config::BootConfig), ProtoError> {
    let images = hv.images();
    let names: Vec<&str> = images.iter().map(String::as_str).collect();
    let cfg = crate::config::parse(
        file,
        text,
        &crate::config::Limits::default(),
        crate::config::Images::Only(&names),
    )
    .map_err(|e| err(ErrorCode::BadConfig, e.to_string()))?;
    if cfg.network.is_some() || cfg.store.is_some() {
        let table = if cfg.network.is_some() {
            "[network]"
        } else {
            "[store]"
        };
        return Err(err(
            ErrorCode::BadConfig,
            format!(
                "{file}: {table} configures dom0 at boot (its boot configuration), not \
                 domains created at run time: remove it"
            ),
        ));
    }
    if cfg.domains.is_empty() {
        return Err(err(
            ErrorCode::BadConfig,
            format!("{file}: no [[domain]] in it: nothing to create"),
        ));
    }
    let ids = create_all(hv, file, &cfg).map_err(|f| f.to_proto())?;
    let mut domains = Vec::new();
    for (d, id) in cfg.domains.iter().zip(ids) {
        // A domain that already ended (it ran and exited at once) is
        // reported as the configuration built it.
        domains.push(
            hv.info(id)
                .map_or_else(|_| configured(id, d), |i| i.to_proto()),
        );
    }
    Ok((domains, cfg))
}

/// Domain `id` as configuration `d` built it (not yet seen running).
pub fn configured(id: u32, d: &crate::config::DomainConfig) -> proto::DomainInfo {
    proto::DomainInfo {
        id,
        name: d.name.clone(),
        uuid: None,
        state: DomainState::Created,
        memory_bytes: d.memory_bytes(),
        vcpus: d.vcpus,
        weight: d.weight,
        cap: d.cap,
        cpu_time_ns: 0,
        heap_budget_bytes: 0,
        heap_used_bytes: 0,
        exits: 0,
        current_bytes: None,
        target_bytes: None,
        uptime_ns: None,
        exit_code: None,
        reason: None,
        kill_reason: None,
    }
}
