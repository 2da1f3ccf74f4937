//! The PCI hypercalls on the live device table: ownership, the filter
//! (`config.rs`) and the hardware access registered at boot.

use alloc::boxed::Box;

use pvabi::zerocopy::IntoBytes;
use pvabi::{Error, PciBar, PciDevice};

use super::assign::Fence;
use super::config::{self, PciOp, Plan};
use super::header::BarKind;
use super::table::{DEVICES, Device};
use super::{Bdf, ConfigAccess};
use crate::domain::ids::DomainId;
use crate::sync::Mutex;

/// How config space is reached, registered once at boot by `start.rs`
/// (`arch/pci.rs` on bare metal, a fake in host tests).
static CONFIG: Mutex<Option<Box<dyn ConfigAccess + Send>>> = Mutex::new(None);

/// Registers the machine's config-space access.
pub fn register(access: Box<dyn ConfigAccess + Send>) {
    *CONFIG.lock() = Some(access);
}

/// The list entry for `d`.
pub fn entry(d: &Device) -> PciDevice {
    let f = &d.f;
    let mut e = PciDevice {
        sbdf: pvabi::sbdf(f.bdf.seg, f.bdf.bus, f.bdf.dev, f.bdf.func),
        vendor: f.vendor,
        device: f.device,
        class: f.class,
        subclass: f.subclass,
        prog_if: f.prog_if,
        caps: (u8::from(f.caps.msi != 0) * pvabi::PCI_CAP_MSI)
            | (u8::from(f.caps.msix != 0) * pvabi::PCI_CAP_MSIX)
            | (u8::from(f.caps.pcie != 0) * pvabi::PCI_CAP_PCIE)
            | (u8::from(d.policy == Ok(Fence::Iommu)) * pvabi::PCI_CAP_IOMMU),
        nr_bars: f.bars.len() as u8,
        ..Default::default()
    };
    for (slot, b) in e.bars.iter_mut().zip(&f.bars) {
        *slot = PciBar {
            base: b.base,
            size: b.size,
            index: b.index,
            kind: match b.kind {
                BarKind::Io => pvabi::PCI_BAR_IO,
                BarKind::Mem32 => pvabi::PCI_BAR_MEM32,
                BarKind::Mem64 => pvabi::PCI_BAR_MEM64,
            },
            flags: if b.prefetchable {
                pvabi::PCI_BAR_PREFETCH
            } else {
                0
            } | if d.mapped & (1 << b.index) != 0 {
                pvabi::PCI_BAR_MAPPED
            } else {
                0
            },
            _pad: [0; 5],
        };
    }
    e
}

/// The owned function at `bdf`: `ENOENT` if none was found there,
/// `EPERM` if it is not `dom`'s.
pub(super) fn owned(t: &[Device], dom: DomainId, bdf: Bdf) -> Result<&Device, Error> {
    let d = t.iter().find(|d| d.f.bdf == bdf).ok_or(Error::NoEntry)?;
    if d.owner != Some(dom) {
        return Err(Error::Perm);
    }
    Ok(d)
}

/// Runs a config read or write for `dom` against `t` through `cfg`.
/// (`List` is [`list`]: it needs the caller's memory.)
pub fn config_op(
    t: &[Device],
    cfg: &dyn ConfigAccess,
    dom: DomainId,
    op: PciOp,
) -> Result<u64, Error> {
    match op {
        PciOp::List { .. } | PciOp::MsiBind { .. } | PciOp::MsiUnbind { .. } => Err(Error::Invalid),
        PciOp::Read { bdf, off, size } => {
            owned(t, dom, bdf)?;
            if off + u16::from(size) > cfg.limit() {
                return Err(Error::Invalid);
            }
            Ok(u64::from(config::extract(
                cfg.read32(bdf, off & !3),
                off,
                size,
            )))
        }
        PciOp::Write {
            bdf,
            off,
            size,
            value,
        } => {
            let d = owned(t, dom, bdf)?;
            let plan = config::check_write(&d.f, cfg.limit(), off, size)?;
            let old = cfg.read32(bdf, off & !3);
            let new = config::merged(plan, old, off, size, value);
            if plan == Plan::Command {
                log::debug!("pci: {bdf}: domain {dom} sets command {:#06x}", new as u16);
            }
            cfg.write32(bdf, off & !3, new);
            Ok(0)
        }
    }
}

/// `HC_PCI_LIST`: `dom`'s devices from index `first`, at most `max`;
/// `put` writes the bytes to the caller's array.
pub fn list(
    dom: DomainId,
    max: u64,
    first: u64,
    put: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
) -> Result<u64, Error> {
    let mut out = [PciDevice::default(); pvabi::PCI_LIST_MAX as usize];
    let t = DEVICES.lock();
    let mut n = 0usize;
    let wanted = usize::try_from(max).unwrap_or(0).min(out.len());
    let skip = usize::try_from(first).unwrap_or(usize::MAX);
    for d in t
        .iter()
        .filter(|d| d.owner == Some(dom))
        .skip(skip)
        .take(wanted)
    {
        out[n] = entry(d);
        n += 1;
    }
    drop(t);
    put(out[..n].as_bytes())?;
    Ok(n as u64)
}

/// A config read or write on the live table.
pub fn live_config(dom: DomainId, op: PciOp) -> Result<u64, Error> {
    let t = DEVICES.lock();
    let cfg = CONFIG.lock();
    // No registered access: no device was found, so none is owned.
    let Some(cfg) = cfg.as_deref() else {
        return Err(Error::NoEntry);
    };
    config_op(&t, cfg, dom, op)
}

/// Runs `f` on the registered config access (`None`: none registered).
pub(super) fn with_config<R>(f: impl FnOnce(&dyn ConfigAccess) -> R) -> Option<R> {
    let cfg = CONFIG.lock();
    cfg.as_deref().map(|c| f(c as &dyn ConfigAccess))
}

/// [`crate::hypercall::Services::pci`] over a real domain.
pub(crate) fn svc_op(
    svc: &mut crate::hypercall::services::Svc<'_>,
    op: PciOp,
) -> Result<u64, Error> {
    use crate::hypercall::Services;
    let id = svc.me.domain.id;
    match op {
        PciOp::List { gpa, max, first } => {
            // The whole array must be the caller's before anything is
            // written (`EFAULT`, nothing written).
            let mut probe = [0u8; pvabi::PCI_LIST_MAX as usize * core::mem::size_of::<PciDevice>()];
            let want = usize::try_from(max).unwrap_or(0) * core::mem::size_of::<PciDevice>();
            let probe = probe.get_mut(..want).ok_or(Error::TooBig)?;
            svc.read(gpa, probe).map_err(|_| Error::Fault)?;
            list(id, max, first, &mut |bytes| {
                svc.write(gpa, bytes).map_err(|_| Error::Fault)
            })
        }
        PciOp::MsiBind { bdf, kind } => {
            super::msi_live::bind(&svc.me.domain, bdf, kind).map(u64::from)
        }
        PciOp::MsiUnbind { port } => super::msi_live::unbind(&svc.me.domain, port).map(|()| 0),
        op => live_config(id, op),
    }
}

#[cfg(test)]
mod tests;
