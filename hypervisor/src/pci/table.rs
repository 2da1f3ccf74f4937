//! The device table: every function found at boot, its owner, and why a
//! kept one is kept. Filled once at boot (`start.rs`), then changed only
//! by assignment and by a domain's end.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

use super::assign::{self, Fence, Keep, Policy};
use super::header::Function;
use crate::domain::ids::DomainId;
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
        });
    }
}

/// Whether the summary line was logged (by [`assign_boot`] or [`boot_done`]).
static SUMMARIZED: AtomicBool = AtomicBool::new(false);

/// Gives every assignable, unowned device to `dom` (the control domain),
/// fencing each first, and logs the summary line. `None`: there is no
/// control domain, so everything is kept.
pub fn assign_boot(dom: Option<DomainId>) {
    SUMMARIZED.store(true, Ordering::Relaxed);
    let mut t = DEVICES.lock();
    for d in t.iter_mut() {
        let Ok(fence) = d.policy else { continue };
        if d.owner.is_some() {
            continue;
        }
        let Some(dom) = dom else {
            d.policy = Err(Keep::NoDom0);
            continue;
        };
        match assign::fence_attach(d.f.bdf, dom, fence) {
            Ok(()) => d.owner = Some(dom),
            Err(e) => {
                log::warn!("pci: {} kept: {e}", d.f.bdf);
                d.policy = Err(Keep::FenceFailed);
            }
        }
    }
    log::info!("{}", summary(&t));
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

/// `dom` is ending: cut each of its devices' DMA off and take them back.
/// Called before any of its frames is freed (`Drop for Domain`).
pub fn release_domain(dom: DomainId) {
    let mut t = DEVICES.lock();
    for d in t.iter_mut().filter(|d| d.owner == Some(dom)) {
        if let Err(e) = assign::fence_detach(d.f.bdf, dom) {
            // The device keeps an owner that no longer exists rather than
            // being handed to anyone else with its DMA still live.
            log::error!(
                "pci: {}: {e} on detach from domain {dom}: device withheld from every domain",
                d.f.bdf
            );
            d.policy = Err(Keep::FenceFailed);
            continue;
        }
        d.owner = None;
        log::info!("pci: {} released by domain {dom}", d.f.bdf);
    }
}

#[cfg(test)]
mod tests;
