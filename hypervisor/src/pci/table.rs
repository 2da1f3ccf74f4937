//! The device table: every function found at boot, its owner, and why a
//! kept one is kept. Filled once at boot (`start.rs`), then changed only
//! by assignment and by a domain's end.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

use super::Bdf;
use super::assign::{self, Fence, Keep, Policy};
use super::bars;
use super::header::{BarKind, Function};
use crate::domain::ids::DomainId;
use crate::domain::lifecycle::Domain;
use crate::mm::gpt::Perms;
use crate::sync::Mutex;

/// One function and what became of it.
#[derive(Debug, Clone)]
pub struct Device {
    /// What the walk found.
    pub f: Function,
    /// The fence it would be assigned with, or why it is kept.
    pub policy: Result<Fence, Keep>,
    /// Its owner, once assigned.
    pub owner: Option<DomainId>,
    /// Bit `i`: BAR register `i` is mapped into the owner (some pages of
    /// it at least: the MSI-X table's are never).
    pub mapped: u8,
}

/// Every function found at boot.
pub static DEVICES: Mutex<Vec<Device>> = Mutex::new(Vec::new());

/// One log line for a function: address, ids, class, BARs, capabilities.
pub fn describe(f: &Function) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "{} {:04x}:{:04x} class {:02x}.{:02x}",
        f.bdf, f.vendor, f.device, f.class, f.subclass
    );
    for b in &f.bars {
        let _ = write!(s, " {b}");
    }
    let c = f.caps;
    for (on, name) in [(c.msi, "msi"), (c.msix, "msix"), (c.pcie, "pcie")] {
        if on != 0 {
            let _ = write!(s, " {name}");
        }
    }
    if c.broken {
        s.push_str(" (capability list cut: it loops or points into the header)");
    }
    if let Some((sec, sub)) = f.bridge {
        let _ = write!(s, " buses {sec:02x}-{sub:02x}");
    }
    s
}

/// Records the functions found, decides for each, and logs one line each.
pub fn install(found: Vec<Function>, policy: &Policy) {
    let mut t = DEVICES.lock();
    for f in found {
        let decision = assign::decide(&f, policy);
        match decision {
            Ok(_) => log::info!("pci: {}", describe(&f)),
            Err(k) => log::info!("pci: {} kept: {}", describe(&f), k.name()),
        }
        t.push(Device {
            f,
            policy: decision,
            owner: None,
            mapped: 0,
        });
    }
}

/// Whether the summary line was logged (by [`assign_boot`] or [`boot_done`]).
static SUMMARIZED: AtomicBool = AtomicBool::new(false);

/// Gives every assignable, unowned device to `dom` (the control domain,
/// not yet running), fencing each first and mapping its memory BARs, and
/// logs the summary line. `None`: there is no control domain, so
/// everything is kept.
pub fn assign_boot(domain: Option<&Domain>) {
    SUMMARIZED.store(true, Ordering::Relaxed);
    let mut t = DEVICES.lock();
    let all_bars = memory_bars(&t);
    for d in t.iter_mut() {
        let Ok(fence) = d.policy else { continue };
        if d.owner.is_some() {
            continue;
        }
        let Some(domain) = domain else {
            d.policy = Err(Keep::NoDom0);
            continue;
        };
        let dom = domain.id;
        let fenced = assign::fence_attach(d.f.bdf, dom, &domain.inner.lock().mem, fence);
        match fenced {
            Ok(()) => {
                d.owner = Some(dom);
                d.mapped = map_bars(domain, &d.f, &others_of(&all_bars, d.f.bdf));
            }
            Err(e) => {
                log::warn!("pci: {} kept: {e}", d.f.bdf);
                d.policy = Err(Keep::FenceFailed);
            }
        }
    }
    log::info!("{}", summary(&t));
}

/// Every memory BAR of `t` as (function, base, size).
fn memory_bars(t: &[Device]) -> Vec<(Bdf, u64, u64)> {
    t.iter()
        .flat_map(|d| {
            d.f.bars
                .iter()
                .filter(|b| b.kind != BarKind::Io)
                .map(|b| (d.f.bdf, b.base, b.size))
        })
        .collect()
}

/// The BARs of `all` that are not `bdf`'s, as (base, size).
fn others_of(all: &[(Bdf, u64, u64)], bdf: Bdf) -> Vec<(u64, u64)> {
    all.iter()
        .filter(|(b, _, _)| *b != bdf)
        .map(|&(_, s, l)| (s, l))
        .collect()
}

/// Every memory BAR of `t` but `bdf`'s, as (base, size): what
/// `bars::plan` must not share a page with.
pub(super) fn other_bars(t: &[Device], bdf: Bdf) -> Vec<(u64, u64)> {
    others_of(&memory_bars(t), bdf)
}

/// Maps `f`'s memory BARs into `domain` (GPA = HPA, uncached) as
/// `bars::plan` says; returns the mask of BARs mapped. Into a domain that
/// has not run yet: fresh mappings in empty space need no TLB flush
/// (`mm/gpt.rs`).
pub(super) fn map_bars(domain: &Domain, f: &Function, others: &[(u64, u64)]) -> u8 {
    let mut inner = domain.inner.lock();
    let inner = &mut *inner;
    let ram_end = inner.mem.phys_size();
    let mut mask = 0u8;
    for p in bars::plan(f, others, ram_end) {
        let ranges = match p.ranges {
            Ok(r) => r,
            Err(why) => {
                log::warn!("pci: {} BAR{} not mapped: {why}", f.bdf, p.index);
                continue;
            }
        };
        let Some(gpt) = inner.gpt.as_mut() else {
            return mask;
        };
        let perms = Perms::READ_WRITE.uncached();
        let mut ok = true;
        for (s, len) in ranges {
            if let Err(e) = gpt.map_range_perms(s, s, len, perms, &mut inner.tables) {
                log::warn!("pci: {} BAR{} not mapped: {e:?}", f.bdf, p.index);
                ok = false;
                break;
            }
        }
        if ok {
            mask |= 1 << p.index;
        }
    }
    mask
}

/// Boot is over: if no control domain took the devices, say so.
pub fn boot_done() {
    if !SUMMARIZED.load(Ordering::Relaxed) {
        assign_boot(None);
    }
}

/// `pci: N devices, M assigned to dom0, K kept (reasons)`.
pub fn summary(t: &[Device]) -> String {
    let assigned = t.iter().filter(|d| d.owner.is_some()).count();
    let kept = t.len() - assigned;
    let mut s = String::new();
    let _ = write!(
        s,
        "pci: {} devices, {assigned} assigned to dom0, {kept} kept",
        t.len()
    );
    let mut sep = " (";
    for k in Keep::ALL {
        let n = t.iter().filter(|d| d.policy == Err(k)).count();
        if n > 0 {
            let _ = write!(s, "{sep}{n} {}", k.name());
            sep = ", ";
        }
    }
    if sep == ", " {
        s.push(')');
    }
    s
}

/// `dom` is ending: cut each of its devices' DMA off (bus master off,
/// then the IOMMU context cleared and the unit's caches invalidated,
/// completed) and quarantine them: owned by nobody, blocked
/// (docs/threat-model.md, *Quarantine*). Called before any of its frames
/// is freed (`Drop for Domain`); returns how many devices it had.
pub fn release_domain(dom: DomainId) -> usize {
    let mut t = DEVICES.lock();
    let mut n = 0;
    for d in t.iter_mut().filter(|d| d.owner == Some(dom)) {
        n += 1;
        super::reassign::stop_dma(d.f.bdf);
        let fence = d.policy.unwrap_or(Fence::None);
        if let Err(e) = assign::fence_detach(d.f.bdf, dom, fence) {
            // The device keeps an owner that no longer exists rather than
            // being handed to anyone else with its DMA still live.
            log::error!(
                "pci: {}: {e} on detach from domain {dom}: device withheld from every domain",
                d.f.bdf
            );
            d.policy = Err(Keep::FenceFailed);
            continue;
        }
        // Its BAR mappings go with its nested tables (`Drop for Domain`,
        // right after this).
        d.owner = None;
        d.mapped = 0;
        d.policy = Err(Keep::Quarantined);
        log::info!(
            "pci: {} released by domain {dom}: DMA cut off (bus master off, {}), quarantined",
            d.f.bdf,
            match fence {
                Fence::Iommu => "IOMMU context cleared",
                _ => "no IOMMU context",
            }
        );
    }
    n
}

#[cfg(test)]
mod tests;
