//! PCI devices (2.1, issue 14): a domain that owns PCI functions
//! (the control domain by default, `docs/pci.md`) lists them and reads and
//! writes their configuration space through the hypervisor, which filters
//! what may be written.
//!
//! A function is named by an *SBDF* word: segment << 16 | bus << 8 |
//! device << 3 | function ([`sbdf`]).
//!
//! Checks, in this order, for the config hypercalls: the arguments
//! (`EINVAL`: size not 1, 2 or 4, offset not a multiple of the size,
//! offset + size past the function's config space — 4096 bytes through
//! ECAM, 256 through the legacy ports — or SBDF above 32 bits or a write
//! value wider than the size); the function (`ENOENT`: the hypervisor found
//! none there at boot); ownership (`EPERM`: not the caller's); and, for
//! writes, the filter (`EPERM`, nothing written): the BARs and the
//! expansion ROM BAR (0x10-0x27, 0x30-0x33), the whole MSI capability and
//! the MSI-X capability's registers are the hypervisor's (it maps the BARs
//! and, later, programs the interrupt messages); in the command register
//! only I/O space, memory space and bus master (bits 0-2) follow the
//! guest's write, the other bits keep their value; the status register is
//! never written (its bits are write-one-to-clear). Everything else in
//! the function's config space is written as given.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The SBDF word of a function.
pub const fn sbdf(seg: u16, bus: u8, dev: u8, func: u8) -> u32 {
    (seg as u32) << 16 | (bus as u32) << 8 | ((dev as u32) & 31) << 3 | ((func as u32) & 7)
}

/// **pci list** (51): the caller's PCI functions.
///
/// - IN: RDI = address of an array of [`PciDevice`], RSI = its length in
///   entries (at most [`PCI_LIST_MAX`]), RDX = index of the first device
///   wanted (0 for the first).
/// - OUT: RAX = entries written: `min(RSI, owned - RDX)`, 0 past the end.
/// - Errors: `E2BIG` when RSI > [`PCI_LIST_MAX`]; `EFAULT` when the array
///   lies outside guest memory (nothing written).
/// - Notes: devices come in the hypervisor's walk order (segment, then
///   bus by bridge, device, function) and keep their index while owned.
pub const HC_PCI_LIST: u64 = 51;
/// Most entries one [`HC_PCI_LIST`] fills.
pub const PCI_LIST_MAX: u64 = 32;

/// **pci config read** (52): reads the caller's function's config space.
///
/// - IN: RDI = SBDF ([`sbdf`]), RSI = offset, RDX = size (1, 2 or 4).
/// - OUT: RAX = the value, zero-extended.
/// - Errors: see the module documentation (`EINVAL`, `ENOENT`, `EPERM`).
pub const HC_PCI_CONFIG_READ: u64 = 52;

/// **pci config write** (53): writes the caller's function's config
/// space, through the filter in the module documentation.
///
/// - IN: RDI = SBDF, RSI = offset, RDX = size (1, 2 or 4), R10 = value.
/// - OUT: RAX = 0.
/// - Errors: see the module documentation (`EINVAL`, `ENOENT`, `EPERM`);
///   a refused write changes nothing.
pub const HC_PCI_CONFIG_WRITE: u64 = 53;

/// **domctl pci assign** (63, privileged): moves function RSI from the
/// caller (the control domain) to domain RDI, which has not run yet: a
/// driver domain (`docs/pci.md`, *Driver domains*).
///
/// - IN: RDI = a domain id, RSI = SBDF ([`sbdf`]).
/// - OUT: RAX = 0. The function is the domain's: its memory BARs mapped
///   into the domain at their host addresses (uncached, [`PCI_BAR_MAPPED`]
///   in its [`HC_PCI_LIST`]), its DMA translated through the domain's
///   guest-physical map where an IOMMU unit covers it, its bus-master bit
///   cleared (the new owner's driver sets it). The caller's mappings of the
///   BARs are gone when the call returns (its TLBs shot down).
/// - Errors, in the order checked: `EPERM` (caller not privileged);
///   `EINVAL` (RDI does not fit in 32 bits or is the caller, RSI does not
///   fit in 32 bits); `ENOENT` (no such live domain, or no function at
///   RSI); `EPERM` (the hypervisor keeps the function: a bridge, an
///   IOMMU, its console, `pci-hide`, no DMA fence, or quarantined after
///   a driver domain ended); `EEXIST` (another domain owns it already);
///   `EBUSY` (the caller has a message of it bound, [`crate::HC_PCI_MSI_BIND`],
///   or the domain has already run); `ENOMEM` (the IOMMU or the nested
///   tables could not be built: the function is then quarantined).
/// - Notes: when the domain ends, the function's DMA is cut off (bus
///   master off, IOMMU context cleared and the unit's caches invalidated)
///   before any of its frames is freed, and the function is then
///   **quarantined**: owned by no domain, its DMA blocked, until the
///   hypervisor restarts.
pub const HC_DOMCTL_PCI_ASSIGN: u64 = 63;

/// [`PciBar::kind`]: I/O ports.
pub const PCI_BAR_IO: u8 = 1;
/// [`PciBar::kind`]: memory below 4 GiB.
pub const PCI_BAR_MEM32: u8 = 2;
/// [`PciBar::kind`]: 64-bit memory.
pub const PCI_BAR_MEM64: u8 = 3;
/// [`PciBar::flags`]: prefetchable.
pub const PCI_BAR_PREFETCH: u8 = 1;
/// [`PciBar::flags`]: mapped into the owner's guest-physical space at
/// its host address (GPA = HPA), uncached.
pub const PCI_BAR_MAPPED: u8 = 2;

/// [`PciDevice::caps`]: has MSI.
pub const PCI_CAP_MSI: u8 = 1;
/// [`PciDevice::caps`]: has MSI-X.
pub const PCI_CAP_MSIX: u8 = 2;
/// [`PciDevice::caps`]: PCI Express.
pub const PCI_CAP_PCIE: u8 = 4;
/// [`PciDevice::caps`] (unreleased): an IOMMU unit translates the
/// function's DMA through its owner's guest-physical map, so a bus
/// address is a guest-physical address of the owner. Clear under
/// `iommu=off-unsafe`, where bus addresses are host-physical and a driver
/// that hands the device guest-physical addresses makes it read and write
/// the wrong memory.
pub const PCI_CAP_IOMMU: u8 = 8;

/// One BAR of a [`PciDevice`] (OUT).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct PciBar {
    /// Address the firmware assigned (I/O port or physical address).
    pub base: u64,
    /// Bytes decoded.
    pub size: u64,
    /// Register index, 0..=5.
    pub index: u8,
    /// `PCI_BAR_*` kind; 0 for an unused slot.
    pub kind: u8,
    /// `PCI_BAR_PREFETCH`, `PCI_BAR_MAPPED`.
    pub flags: u8,
    /// Zero.
    pub _pad: [u8; 5],
}

/// One function (OUT of [`HC_PCI_LIST`]).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct PciDevice {
    /// [`sbdf`] of the function.
    pub sbdf: u32,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Base class.
    pub class: u8,
    /// Subclass.
    pub subclass: u8,
    /// Programming interface.
    pub prog_if: u8,
    /// `PCI_CAP_*` bits.
    pub caps: u8,
    /// How many of [`PciDevice::bars`] are used (from index 0).
    pub nr_bars: u8,
    /// Zero.
    pub _pad: [u8; 3],
    /// The implemented BARs.
    pub bars: [PciBar; 6],
}

const _: () = assert!(core::mem::size_of::<PciBar>() == 24);
const _: () = assert!(core::mem::size_of::<PciDevice>() == 16 + 6 * 24);
const _: () = assert!(core::mem::offset_of!(PciDevice, bars) == 16);
