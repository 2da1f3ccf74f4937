//! Driver domains (issue 14): `HC_DOMCTL_PCI_ASSIGN` moves a function the
//! control domain owns to a domain that has not run yet, and a dying
//! owner's functions are cut off and quarantined (`docs/pci.md`, *Driver
//! domains*; `docs/threat-model.md`, *Quarantine*).
//!
//! The move, in this order, so that at no moment two domains reach the
//! function and no DMA of it lands in memory its new owner does not hold:
//!
//! 1. under the MSI bindings' and the device table's locks: the checks
//!    ([`check`], pure), then the function marked unowned (the caller's
//!    config hypercalls and binds now fail), its bus-master bit cleared
//!    (no new DMA), its BARs unmapped from the caller's nested tables;
//! 2. with no lock held (the shoot-down takes the domain table): the
//!    caller's TLBs shot down, as for a balloon release or a grant unmap;
//! 3. under the device table's lock: `fence_detach` (blocked, the unit's
//!    caches invalidated and the invalidation complete), `fence_attach`
//!    to the new owner's guest-physical map, its BARs mapped into the new
//!    owner (uncached, as at boot), the owner recorded. A failure here
//!    leaves the function quarantined: blocked and owned by nobody.
#![deny(unsafe_code)]

use alloc::sync::Arc;

use pvabi::{Error, HC_DOMCTL_PCI_ASSIGN};

use super::Bdf;
use super::assign::{self, Fence, Keep};
use super::config::{self, Plan};
use super::header::{BarKind, CMD_BUS_MASTER, Function};
use super::table::{DEVICES, Device};
use crate::domain::ids::DomainId;
use crate::domain::lifecycle::Domain;
use crate::hypercall::{DomctlReply, DomctlReq, Services};

/// Runs `HC_DOMCTL_PCI_ASSIGN`; `None` when `nr` is another number.
/// Privilege first, then every argument, as the other domctls.
pub fn run(svc: &mut impl Services, nr: u64, a: [u64; 6]) -> Option<Result<u64, Error>> {
    if nr != HC_DOMCTL_PCI_ASSIGN {
        return None;
    }
    if !svc.privileged() {
        return Some(Err(Error::Perm));
    }
    Some(decode(a).and_then(|req| match svc.domctl(req)? {
        DomctlReply::Value(v) => Ok(v),
        _ => Err(Error::Invalid),
    }))
}

/// The request of registers `a`: RDI a domain id, RSI an SBDF, both
/// 32 bits (the id being the caller's is the live check's).
pub fn decode(a: [u64; 6]) -> Result<DomctlReq<'static>, Error> {
    let id = u32::try_from(a[0])
        .map(DomainId)
        .map_err(|_| Error::Invalid)?;
    let sbdf = u32::try_from(a[1]).map_err(|_| Error::Invalid)?;
    Ok(DomctlReq::PciAssign {
        id,
        bdf: bdf_of(sbdf),
    })
}

/// The function an SBDF word names (pvabi `sbdf`).
pub fn bdf_of(sbdf: u32) -> Bdf {
    Bdf {
        seg: (sbdf >> 16) as u16,
        bus: (sbdf >> 8) as u8,
        dev: ((sbdf >> 3) & 31) as u8,
        func: (sbdf & 7) as u8,
    }
}

/// Whether `from` may give the function at `bdf` away now; its index in
/// `t`. In the ABI's order: `ENOENT` (not found at boot), `EPERM` (the
/// hypervisor keeps it), `EEXIST` (another domain's), `EPERM` (nobody's:
/// quarantined, or being moved), `EBUSY` (`from` has a message of it
/// bound: its driver holds it).
pub fn check(t: &[Device], from: DomainId, bdf: Bdf, bound: bool) -> Result<usize, Error> {
    let i = t
        .iter()
        .position(|d| d.f.bdf == bdf)
        .ok_or(Error::NoEntry)?;
    let d = &t[i];
    if d.policy.is_err() {
        return Err(Error::Perm);
    }
    match d.owner {
        Some(o) if o == from => {}
        Some(_) => return Err(Error::Exists),
        None => return Err(Error::Perm),
    }
    if bound {
        return Err(Error::Busy);
    }
    Ok(i)
}

/// Whether `d` has never run: created paused, never unpaused long enough
/// to exit once.
fn never_ran(d: &Domain) -> bool {
    use core::sync::atomic::Ordering;
    d.paused() && d.exits.load(Ordering::Relaxed) == 0 && !d.dying()
}

/// The dword to write at offset 4 to clear `old`'s bus-master bit: the
/// other command bits kept, the status register (write-one-to-clear)
/// written as 0, as for a guest's write (`config::merged`).
pub fn bus_master_off(old: u32) -> u32 {
    let cmd = old as u16 & !CMD_BUS_MASTER;
    config::merged(Plan::Command, old, 4, 2, u32::from(cmd))
}

/// Clears `bdf`'s bus-master bit: it starts no new DMA (PCI Local Bus
/// 3.0 6.2.2). `false` when no config access is registered.
pub fn stop_dma(bdf: Bdf) -> bool {
    super::live::with_config(|cfg| {
        let old = cfg.read32(bdf, 4);
        cfg.write32(bdf, 4, bus_master_off(old));
    })
    .is_some()
}

/// The page ranges of `f`'s BARs in `mask` (as mapped: whole pages).
fn mapped_ranges(f: &Function, mask: u8) -> impl Iterator<Item = (u64, u64)> + '_ {
    f.bars
        .iter()
        .filter(move |b| b.kind != BarKind::Io && mask & (1 << b.index) != 0)
        .filter_map(|b| {
            let s = b.base & !0xfff;
            let e = b
                .base
                .checked_add(b.size)?
                .checked_next_multiple_of(0x1000)?;
            Some((s, e - s))
        })
}

/// Unmaps `f`'s BARs in `mask` from `d`'s nested tables; the caller
/// shoots `d`'s TLBs down after. `false` if a range could not be unmapped
/// (no memory to split a large page: never for BARs, mapped in 4 KiB and
/// 2 MiB pieces of their own).
fn unmap_bars(d: &Domain, f: &Function, mask: u8) -> bool {
    let mut inner = d.inner.lock();
    let inner = &mut *inner;
    let Some(gpt) = inner.gpt.as_mut() else {
        return true;
    };
    let mut ok = true;
    for (s, len) in mapped_ranges(f, mask) {
        if let Err(e) = gpt.unmap(s, len, &mut inner.tables) {
            log::error!(
                "pci: {} BAR pages {s:#x}+{len:#x} not unmapped: {e:?}",
                f.bdf
            );
            ok = false;
        }
    }
    ok
}

/// `HC_DOMCTL_PCI_ASSIGN` for control domain `me` (its vCPU `vcpu`):
/// moves `bdf` to `to`.
pub fn assign(me: &Domain, vcpu: u32, to: &Arc<Domain>, bdf: Bdf) -> Result<(), Error> {
    // 1. Checked and taken from the caller, under the bindings' lock so
    // that no bind of it can come in between.
    let (f, mask, fence) = super::msi_live::with_bindings(bdf, |bound| {
        let mut t = DEVICES.lock();
        let i = check(&t, me.id, bdf, bound)?;
        if !never_ran(to) {
            return Err(Error::Busy);
        }
        let d = &mut t[i];
        let fence = d.policy.unwrap_or(Fence::None);
        d.owner = None;
        let mask = core::mem::take(&mut d.mapped);
        stop_dma(bdf);
        Ok((d.f.clone(), mask, fence))
    })?;
    let unmapped = unmap_bars(me, &f, mask);
    // 2. No lock held: the shoot-down takes the domain table.
    let shot = crate::hypercall::services::shoot_down_domain(me, Some(vcpu));
    let mut t = DEVICES.lock();
    let Some(d) = t.iter_mut().find(|d| d.f.bdf == bdf) else {
        return Err(Error::NoEntry);
    };
    // 3. The IOMMU context moves, then the BARs.
    let detached = assign::fence_detach(bdf, me.id, fence);
    if let Err(e) = detached {
        log::error!("pci: {bdf}: {e} on detach from domain {}", me.id);
        return Err(quarantine(d, me.id, "the IOMMU did not confirm the detach"));
    }
    if !(unmapped && shot) {
        // The caller may still reach the registers: nobody gets it.
        return Err(quarantine(
            d,
            me.id,
            "the caller's mappings could not be removed",
        ));
    }
    if !never_ran(to) {
        return Err(quarantine(d, me.id, "the new owner ran meanwhile"));
    }
    let attached = assign::fence_attach(bdf, to.id, &to.inner.lock().mem, fence);
    if let Err(e) = attached {
        log::warn!("pci: {bdf}: {e} on attach to domain {}", to.id);
        return Err(quarantine(d, me.id, "the IOMMU could not attach it"));
    }
    d.owner = Some(to.id);
    let others = super::table::other_bars(&t, bdf);
    let d = t
        .iter_mut()
        .find(|d| d.f.bdf == bdf)
        .ok_or(Error::NoEntry)?;
    d.mapped = super::table::map_bars(to, &d.f, &others);
    log::info!(
        "pci: {bdf} assigned to domain {} ({}) by domain {}: {}, BARs {:#04x} mapped uncached, bus master off",
        to.id,
        to.name,
        me.id,
        match fence {
            Fence::Iommu => "its DMA translated through the new owner's IOMMU context",
            _ => "no IOMMU fence (iommu=off-unsafe)",
        },
        d.mapped
    );
    Ok(())
}

/// Leaves `d` owned by nobody, its DMA blocked (the IOMMU context
/// cleared by the caller, bus master off); the error for the caller.
fn quarantine(d: &mut Device, from: DomainId, why: &str) -> Error {
    d.owner = None;
    d.mapped = 0;
    d.policy = Err(Keep::Quarantined);
    log::warn!(
        "pci: {} quarantined while leaving domain {from}: {why}",
        d.f.bdf
    );
    Error::NoMem
}

#[cfg(test)]
mod tests;
