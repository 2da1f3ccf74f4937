//! Interrupt remapping as `msi_live.rs` sees it: the message a bound
//! interrupt is programmed with, and giving its remapping entry back.
//!
//! Where an IOMMU unit that remaps interrupts covers the function
//! (`crate::iommu::irq_bind`: VT-d with queued invalidation, AMD-Vi), the
//! unit's entry names the vector, the destination and (VT-d) the
//! function's requester id, and the device is given the message that
//! names the entry: a message it is driven to forge, to any other entry
//! or in the compatibility format, is blocked and logged by the unit
//! (docs/threat-model.md, *Device interrupts*). Elsewhere (no IOMMU:
//! `iommu=off-unsafe`, Bochs, host tests) the ordinary message is used.

use pvabi::Error;

use super::Bdf;
use super::msi::{self, Message};

/// The message `bdf` is to send for `vector` at APIC `dest`, its
/// remapping entry made first. `ENOMEM`: the unit could not make it (no
/// frame for its table, or it did not confirm).
pub fn message(bdf: Bdf, dest: u8, vector: u8) -> Result<Message, Error> {
    #[cfg(target_os = "none")]
    match crate::iommu::irq_bind(bdf.seg, bdf.rid(), vector, dest) {
        Ok(Some((addr, data))) => return Ok(Message { addr, data }),
        Ok(None) => {}
        Err(e) => {
            log::warn!("pci: {bdf}: no interrupt-remapping entry for vector {vector:#x}: {e}");
            return Err(Error::NoMem);
        }
    }
    let _ = bdf;
    Ok(msi::message(dest, vector))
}

/// Clears `bdf`'s remapping entry for `vector` (its message already
/// disabled at the device) and waits for the unit to drop its copy.
/// Returns whether the vector may be reused: not when the unit did not
/// confirm (it might still deliver the old entry), which is logged and
/// leaves the vector taken for good.
pub fn release(bdf: Bdf, vector: u8) -> bool {
    #[cfg(target_os = "none")]
    if let Err(e) = crate::iommu::irq_unbind(bdf.seg, bdf.rid(), vector) {
        log::error!(
            "pci: {bdf}: interrupt-remapping entry for vector {vector:#x} not confirmed cleared: {e}; the vector is kept out of use"
        );
        return false;
    }
    let _ = (bdf, vector);
    true
}
