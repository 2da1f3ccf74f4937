//! The domctl services over the live system: the control domain
//! creates, pauses, unpauses, destroys and queries domains, and reads the
//! boot modules. Arguments arrive validated (`domain::exits::domctl_ops`);
//! what is checked here needs the live system: does the domain or module
//! exist, is there memory.
//!
//! Locks: only the domain table, then a vCPU's state or a domain's inner
//! state, then the scheduler lock (pause, unpause), as everywhere in the
//! scheduler; `Domain::finish` (destroy) is called with none held.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use crate::platform::{Module, P, Platform};
use pvabi::Error;
use pvabi::{
    DOMAIN_DYING, DOMAIN_FLAG_PRIVILEGED, DOMAIN_PAUSED, DOMAIN_RUNNING, DomainInfo, HostInfo,
    MODULE_DATA, MODULE_ELF, ModuleInfo,
};

use crate::domain::ids::DomainId;
use crate::domain::lifecycle::{CreateError, DOMAINS, Domain, DomainSpec, Run};
use crate::hypercall::services::Svc;
use crate::hypercall::{CreateParams, DomctlReply, DomctlReq};
use crate::sched::live as policy;

/// Whether domain `id` exists (dying ones included).
pub(crate) fn exists(id: DomainId) -> bool {
    DOMAINS.lock().contains(id)
}

fn find(id: DomainId) -> Result<Arc<Domain>, Error> {
    DOMAINS.lock().get(id).cloned().ok_or(Error::NoEntry)
}

/// A domain other than the caller that has not ended.
pub(crate) fn live_other(me: &Domain, id: DomainId) -> Result<Arc<Domain>, Error> {
    if id == me.id {
        return Err(Error::Invalid);
    }
    let d = find(id)?;
    if d.dying() {
        return Err(Error::NoEntry);
    }
    Ok(d)
}

fn module(index: u64) -> Result<Module, Error> {
    usize::try_from(index)
        .ok()
        .and_then(P::module)
        .ok_or(Error::NoEntry)
}

fn copy_str(dst: &mut [u8], s: &str) -> u32 {
    let n = s.len().min(dst.len());
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
    n as u32
}

fn info(d: &Domain) -> DomainInfo {
    let mut out = DomainInfo {
        id: d.id.0,
        flags: if d.privileged {
            DOMAIN_FLAG_PRIVILEGED
        } else {
            0
        },
        nr_vcpus: d.nr_vcpus,
        weight: d.weight.load(Ordering::Relaxed),
        cap: d.cap.load(Ordering::Relaxed),
        exits: d.exits.load(Ordering::Relaxed),
        heap_budget: d.budget.limit(),
        heap_used: d.budget.used(),
        heap_refused: d.budget.refused(),
        ..Default::default()
    };
    out.state = if d.dying() {
        out.exit_code = d.end.lock().map_or(-1, |e| e.code as i32);
        DOMAIN_DYING
    } else if d.paused() {
        DOMAIN_PAUSED
    } else {
        DOMAIN_RUNNING
    };
    for v in DOMAINS.lock().vcpus(d.id) {
        out.cpu_time_ns = out
            .cpu_time_ns
            .saturating_add(v.cpu_time_ns.load(Ordering::Relaxed));
        if !matches!(v.st.lock().run, Run::Down | Run::Dead) {
            out.vcpus_online += 1;
        }
    }
    {
        let inner = d.inner.lock();
        out.current_pages = inner.mem.present_pages();
        out.max_pages = inner.mem.max_pages();
    }
    copy_str(&mut out.name, &d.name);
    out
}

fn create(me: &Domain, p: &CreateParams) -> Result<u64, Error> {
    if let Some((image, initrd)) = p.staged {
        return crate::domain::stage::live_create(me, p, image, initrd);
    }
    let m = module(u64::from(p.module))?;
    // Module 0 is the control domain's own image.
    if p.module == 0 || !m.elf {
        return Err(if p.module == 0 {
            Error::NoEntry
        } else {
            Error::Invalid
        });
    }
    build(me, p, m.bytes, m.name)
}

/// Builds the domain `p` describes from `image` (`from` names where it
/// came from, for the log).
fn build(me: &Domain, p: &CreateParams, image: &[u8], from: &str) -> Result<u64, Error> {
    let initrd: &[u8] = match p.linux {
        Some(Some(i)) => module(u64::from(i))?.bytes,
        _ => &[],
    };
    build_with(me, p, image, initrd, from)
}

/// [`build`] with the initramfs (of a Linux domain) given.
pub(crate) fn build_with(
    me: &Domain,
    p: &CreateParams,
    image: &[u8],
    initrd: &[u8],
    from: &str,
) -> Result<u64, Error> {
    let kind = match p.linux {
        None => crate::domain::lifecycle::ImageKind::Pvabi,
        Some(_) => crate::domain::lifecycle::ImageKind::Linux { initrd },
    };
    let spec = DomainSpec {
        name: &p.name,
        image,
        kind,
        cmdline: &p.cmdline,
        memory: p.memory_bytes,
        nr_vcpus: p.nr_vcpus,
        weight: p.weight,
        cap: p.cap,
        privileged: false,
        paused: true,
        budget: p.heap_budget,
    };
    match create_domain(me.backend, &spec) {
        Ok(id) => {
            log::info!(
                "domain {id} ({}) created by domain {} ({}) from {}{from}",
                p.name,
                me.id,
                me.name,
                if p.staged.is_some() { "" } else { "module " }
            );
            Ok(u64::from(id.0))
        }
        Err(e) => {
            log::info!("domain {}: create refused: {e}", p.name);
            Err(match e {
                CreateError::Build(_) | CreateError::Sched => Error::Invalid,
                CreateError::OutOfMemory | CreateError::Paging(_) | CreateError::Budget(_) => {
                    Error::NoMem
                }
            })
        }
    }
}

impl Svc<'_> {
    /// One domctl request of this (privileged) vCPU's domain.
    pub(crate) fn domctl_req(&mut self, req: DomctlReq<'_>) -> Result<DomctlReply, Error> {
        let me = &*self.me.domain;
        let done = |r: Result<u64, Error>| r.map(DomctlReply::Value);
        match req {
            DomctlReq::Create(p) => done(create(me, p)),
            DomctlReq::Unpause(id) => {
                policy::unpause(&*live_other(me, id)?);
                Ok(DomctlReply::Value(0))
            }
            DomctlReq::Pause(id) => {
                policy::pause(&*live_other(me, id)?);
                Ok(DomctlReply::Value(0))
            }
            DomctlReq::Destroy(id) => {
                let d = live_other(me, id)?;
                log::info!("domain {id} ({}) destroyed by domain {}", d.name, me.id);
                d.finish("destroyed", -1, None);
                Ok(DomctlReply::Value(0))
            }
            DomctlReq::Info(id) => Ok(DomctlReply::Info(info(&*find(id)?))),
            DomctlReq::ShutdownRequest { id, reason } => {
                crate::domain::ctl_life::request_shutdown(&*live_other(me, id)?, reason);
                Ok(DomctlReply::Value(0))
            }
            DomctlReq::SetSched { id, weight, cap } => {
                // The control domain may set its own (not `live_other`).
                let d = find(id)?;
                if d.dying() {
                    return Err(Error::NoEntry);
                }
                crate::domain::ctl_life::set_sched(&d, weight, cap)?;
                Ok(DomctlReply::Value(0))
            }
            DomctlReq::MemTarget { id, pages } => {
                done(crate::domain::memtarget::set(&*live_other(me, id)?, pages))
            }
            DomctlReq::StageBegin(size) => done(crate::domain::stage::live_begin(me, size)),
            DomctlReq::StageWrite {
                handle,
                offset,
                gpa,
                len,
            } => done(crate::domain::stage::live_write(
                me, handle, offset, gpa, len,
            )),
            DomctlReq::StageAbort(handle) => done(crate::domain::stage::live_abort(me, handle)),
            DomctlReq::PciAssign { id, bdf } => {
                let to = live_other(me, id)?;
                crate::pci::reassign::assign(me, self.me.index, &to, bdf)?;
                Ok(DomctlReply::Value(0))
            }
            DomctlReq::Ended(id) => crate::domain::ended::get(id.0)
                .map(DomctlReply::Info)
                .ok_or(Error::NoEntry),
            DomctlReq::EndReason(id) => crate::domain::ended::reason(id.0)
                .map(DomctlReply::Reason)
                .ok_or(Error::NoEntry),
            DomctlReq::List(ids) => {
                let table = DOMAINS.lock();
                for (slot, (id, _)) in ids.iter_mut().zip(table.domains()) {
                    *slot = id.0;
                }
                Ok(DomctlReply::Value(table.len() as u64))
            }
            DomctlReq::ModuleInfo(index) => {
                let m = module(index)?;
                let mut out = ModuleInfo {
                    size: m.bytes.len() as u64,
                    kind: if m.elf { MODULE_ELF } else { MODULE_DATA },
                    name_len: 0,
                    name: [0; 64],
                    args_len: 0,
                    _pad: 0,
                    args: [0; 256],
                };
                out.name_len = copy_str(&mut out.name, m.name);
                out.args_len = copy_str(&mut out.args, m.args);
                Ok(DomctlReply::Module(out))
            }
            DomctlReq::ModuleRead { index, offset, buf } => {
                let bytes = module(index)?.bytes;
                let from = usize::try_from(offset)
                    .ok()
                    .and_then(|o| bytes.get(o..))
                    .unwrap_or(&[]);
                let n = from.len().min(buf.len());
                buf[..n].copy_from_slice(&from[..n]);
                Ok(DomctlReply::Value(n as u64))
            }
            DomctlReq::HostInfo => Ok(DomctlReply::Host(HostInfo {
                total_bytes: P::ram_bytes(),
                free_bytes: P::free_frame_count() * 4096,
                nr_cpus: P::online_cpus(),
                nr_domains: DOMAINS.lock().len() as u32,
                nr_modules: P::module_count() as u32,
                _pad: 0,
                heap_used_bytes: P::heap_used(),
            })),
        }
    }
}

use crate::domain::lifecycle::create as create_domain;
