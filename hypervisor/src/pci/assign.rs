//! Who may own a device: the assignment policy and the DMA fence.
//!
//! A device is given to a domain only when its DMA is fenced to that
//! domain's memory: an IOMMU unit covers it ([`Fence::Iommu`]), or the
//! operator said `iommu=off-unsafe` ([`Fence::Unsafe`], warned about at
//! boot). Otherwise it is listed and kept, and the log says why: a device
//! that can bus-master with no fence can write anywhere in memory, the
//! hypervisor included (docs/threat-model.md, *PCI*).
//!
//! The IOMMU side lives in `crate::iommu`. It is reached through three
//! functions here and nowhere else: [`iommu_covers`], [`fence_attach`]
//! and [`fence_detach`]. On the host (unit tests) there is no IOMMU
//! driver: nothing is covered, and only [`Fence::Unsafe`] can be
//! attached.

use core::fmt;

use super::Bdf;
use super::header::Function;
use crate::boot::pciopts::{IommuMode, PciHide};
use crate::domain::ids::DomainId;
use crate::domain::memory::DomainMemory;
use crate::iommu::IommuError;

/// What keeps a device's DMA inside its owner's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// An IOMMU unit translates its requests through the owner's map.
    Iommu,
    /// Nothing: `iommu=off-unsafe`.
    Unsafe,
    /// Nothing, and the operator did not allow that: not assignable.
    None,
}

/// Whether a running IOMMU unit translates this requester's DMA (never on
/// the host, which has no IOMMU driver).
fn iommu_covers(bdf: Bdf) -> bool {
    #[cfg(target_os = "none")]
    return crate::iommu::covers(bdf.seg, bdf.rid());
    #[cfg(not(target_os = "none"))]
    {
        let _ = bdf;
        false
    }
}

/// The fence a device would have if it were assigned now.
///
/// `iommu=off-unsafe` means the operator turned DMA isolation off: it
/// wins even where a unit exists, so the log never claims a fence that
/// the IOMMU code was told not to build.
pub fn dma_fence(bdf: Bdf, mode: IommuMode) -> Fence {
    match mode {
        IommuMode::OffUnsafe => Fence::Unsafe,
        IommuMode::On if iommu_covers(bdf) => Fence::Iommu,
        IommuMode::On => Fence::None,
    }
}

/// Why the IOMMU refused to attach or detach a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FenceError(pub IommuError);

impl fmt::Display for FenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the IOMMU could not fence the device: {}", self.0)
    }
}

/// Points the device's DMA at `dom`'s guest-physical map (`mem`, every
/// page it holds now) when `fence` is [`Fence::Iommu`]; runs before the
/// device is recorded as `dom`'s. [`Fence::Unsafe`]: nothing to build.
pub fn fence_attach(
    bdf: Bdf,
    dom: DomainId,
    mem: &DomainMemory,
    fence: Fence,
) -> Result<(), FenceError> {
    match fence {
        #[cfg(target_os = "none")]
        Fence::Iommu => crate::iommu::attach(bdf.seg, bdf.rid(), dom, mem).map_err(FenceError),
        #[cfg(not(target_os = "none"))]
        Fence::Iommu => {
            let _ = (dom, mem);
            Err(FenceError(IommuError::NotCovered {
                seg: bdf.seg,
                rid: bdf.rid(),
            }))
        }
        Fence::Unsafe => Ok(()),
        Fence::None => Err(FenceError(IommuError::NoIommu)),
    }
}

/// Cuts the device's DMA off (blocked, the unit's caches invalidated and
/// the invalidation complete) when it was attached through the IOMMU.
/// Runs before any frame of the owner is freed (`domain/lifecycle.rs`,
/// `Drop for Domain`, through [`super::table::release_domain`]).
pub fn fence_detach(bdf: Bdf, dom: DomainId, fence: Fence) -> Result<(), FenceError> {
    let _ = (&bdf, dom);
    match fence {
        #[cfg(target_os = "none")]
        Fence::Iommu => crate::iommu::detach(bdf.seg, bdf.rid()).map_err(FenceError),
        _ => Ok(()),
    }
}

/// Why the hypervisor keeps a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Keep {
    /// A host, ISA or PCI-to-PCI bridge: the topology is the hypervisor's
    /// (a guest reprogramming bus numbers or windows, or the LPC decode
    /// that reaches the hypervisor's serial port, would move devices under
    /// every owner).
    Bridge,
    /// An IOMMU (class 08.06): the hypervisor programs it.
    Iommu,
    /// Its I/O BAR holds the hypervisor's console UART.
    Console,
    /// `pci-hide=` names it.
    Hidden,
    /// No IOMMU covers it and `iommu=off-unsafe` was not given.
    NoIommu,
    /// No control domain was started to give it to.
    NoDom0,
    /// The IOMMU refused to attach it.
    FenceFailed,
    /// Its owner ended (or a move failed half-way): its DMA is blocked
    /// and nobody owns it until the hypervisor restarts
    /// (docs/threat-model.md, *Quarantine*).
    Quarantined,
}

impl Keep {
    /// Every reason, in the order the summary lists them.
    pub const ALL: [Keep; 8] = [
        Keep::Bridge,
        Keep::Iommu,
        Keep::Console,
        Keep::Hidden,
        Keep::NoIommu,
        Keep::NoDom0,
        Keep::FenceFailed,
        Keep::Quarantined,
    ];

    /// Short form for the log.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Iommu => "IOMMU",
            Self::Console => "hypervisor console",
            Self::Hidden => "pci-hide",
            Self::NoIommu => "no IOMMU covers it and iommu=off-unsafe is not set",
            Self::NoDom0 => "no dom0",
            Self::FenceFailed => "IOMMU attach failed",
            Self::Quarantined => "quarantined",
        }
    }
}

/// What the policy is told about the machine.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// `iommu=`.
    pub iommu: IommuMode,
    /// `pci-hide=`.
    pub hide: PciHide,
    /// The hypervisor's console UART I/O port, if any.
    pub console_port: Option<u16>,
}

/// Whether `f` may be given to a domain (with which fence), or why not.
/// Checks run in a fixed order so the reason logged is the first that
/// applies: what the hypervisor itself needs before what the operator
/// hid, before the DMA fence.
pub fn decide(f: &Function, p: &Policy) -> Result<Fence, Keep> {
    if f.is_bridge() {
        return Err(Keep::Bridge);
    }
    // Class 08.06 is an IOMMU (the AMD IOMMU is a PCI function): a guest
    // that owned it could move its register block or rewrite its config
    // behind the hypervisor, which programs it.
    if f.class == 0x08 && f.subclass == 0x06 {
        return Err(Keep::Iommu);
    }
    if let Some(port) = p.console_port
        && f.bars.iter().any(|b| {
            b.kind == super::header::BarKind::Io
                && (b.base..b.base.saturating_add(b.size)).contains(&u64::from(port))
        })
    {
        return Err(Keep::Console);
    }
    let b = f.bdf;
    if p.hide.hides(b.seg, b.bus, b.dev, b.func) {
        return Err(Keep::Hidden);
    }
    match dma_fence(b, p.iommu) {
        Fence::None => Err(Keep::NoIommu),
        fence => Ok(fence),
    }
}

#[cfg(test)]
mod tests;
