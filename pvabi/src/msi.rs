//! Device interrupts as events (unreleased, issue 14): a domain that owns
//! a PCI function binds the function's MSI, or one entry of its MSI-X
//! table, to a new event-channel port of its own. The hypervisor then owns
//! the message: it picks a host vector, writes the address and data into
//! the device (the MSI capability, or the MSI-X table entry in the BAR,
//! neither of which a guest can write: `crate::HC_PCI_CONFIG_WRITE`, and
//! the MSI-X table's pages are never mapped into a guest), and each
//! interrupt the device sends makes the port pending. The model is Xen's
//! `PHYSDEVOP_map_pirq` + `EVTCHNOP_bind_pirq`, made one call.
//!
//! Masking is the port's: [`crate::HC_EVTCHN_MASK`] / `UNMASK` (or the
//! mask bit in the control area) hold back the upcall; interrupts that
//! come meanwhile leave the port pending (one event for any number of
//! them, as for every port), and unmasking a pending port notifies.
//! The device is never masked on the guest's behalf: a driver that wants
//! fewer interrupts tells its device (its own registers).
//!
//! Delivery: one event per interrupt the device sends while the port is
//! not pending; interrupts that come while it is pending are merged into
//! that event (edge-triggered, like an interrupt controller's IRR). A
//! driver reads its device's own status after taking the event. The port
//! notifies vCPU 0 at first; [`crate::HC_EVTCHN_BIND_VCPU`] moves it.
//! [`crate::HC_EVTCHN_STATUS`] reports it as [`EVTCHN_STATE_MSI`].
//!
//! The port is freed only by [`HC_PCI_MSI_UNBIND`] (a
//! [`crate::HC_EVTCHN_CLOSE`] on it fails with `EBUSY`) or by the domain's
//! end; both disable the message at the device first, then free the host
//! vector and the port.

/// **pci msi bind** (54): binds a message of the caller's function to a
/// new port of the caller.
///
/// - IN: RDI = SBDF (`crate::sbdf`), RSI = [`PCI_MSI`] or [`PCI_MSIX`],
///   RDX = the MSI-X table entry (0 for MSI).
/// - OUT: RAX = the new port (notifies vCPU 0, unmasked, not pending).
/// - Errors, in the order checked: `EINVAL` (SBDF over 32 bits, RSI not
///   [`PCI_MSI`] or [`PCI_MSIX`], RDX over 2047, or not 0 for MSI);
///   `ENOENT` (no function at SBDF); `EPERM` (not the caller's);
///   `EINVAL` (the function has no such capability, or RDX is not below
///   its MSI-X table size); `EBUSY` (that message is bound already, or
///   the function's other kind is: a function uses MSI or MSI-X, never
///   both, PCI Local Bus 3.0 6.8); `ENOMEM` (the caller has
///   [`PCI_MSI_MAX_BOUND`] messages bound, the hypervisor has no host
///   vector left, the IOMMU unit could not make the message's
///   interrupt-remapping entry, or the caller's port table is full).
///   Nothing changes on an error.
/// - Notes: the device's bus-master bit (command register, through
///   [`crate::HC_PCI_CONFIG_WRITE`]) is the driver's to set: a device that may
///   not master cannot send its message.
pub const HC_PCI_MSI_BIND: u64 = 54;

/// **pci msi unbind** (55): disables the message bound to port RDI at its
/// device, then frees the host vector and the port.
///
/// - IN: RDI = a port returned by [`HC_PCI_MSI_BIND`].
/// - OUT: RAX = 0.
/// - Errors, in the order checked: `EINVAL` (RDI over 32 bits); `ENOENT`
///   (RDI is not a port of the caller's bound to a message).
/// - Notes: for MSI the capability's enable bit is cleared; for MSI-X the
///   entry is masked and its message cleared. An interrupt already in
///   flight is dropped (counted by the hypervisor), never delivered to a
///   later owner of the vector.
pub const HC_PCI_MSI_UNBIND: u64 = 55;

/// [`HC_PCI_MSI_BIND`] RSI: the MSI capability's message.
pub const PCI_MSI: u64 = 1;
/// [`HC_PCI_MSI_BIND`] RSI: an entry of the MSI-X table.
pub const PCI_MSIX: u64 = 2;
/// Most messages one domain may have bound at once.
pub const PCI_MSI_MAX_BOUND: u32 = 32;
/// [`crate::EvtchnStatus::state`]: bound to a device's message
/// ([`HC_PCI_MSI_BIND`]).
pub const EVTCHN_STATE_MSI: u32 = 5;
