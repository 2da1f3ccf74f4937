//! dom0 takes a device's interrupt as an event (issue 14, pvabi
//! `HC_PCI_MSI_BIND`): the QEMU `edu` device's MSI is bound to a port, the
//! device is made to interrupt through its raise register, and each
//! interrupt is waited for on the port, checked in the device's status
//! register and acknowledged. The count delivered is logged; then the
//! message is unbound and the port is gone.
//!
//! QEMU docs/specs/edu.rst: 0x24 interrupt status, 0x60 interrupt raise
//! (the value is ORed into the status and an interrupt is sent: an MSI
//! when enabled), 0x64 interrupt acknowledge (clears those status bits).

use alloc::format;

use pvabi::guest::{evtchn, mmio, pci, time};
use pvabi::{PCI_BAR_MAPPED, PCI_MSI, PciDevice};

use crate::say;

/// How long one interrupt may take to arrive before it counts as lost
/// (system time; generous for TCG under a loaded host).
const WAIT_NS: u64 = 2_000_000_000;

/// Binds `d`'s MSI, has it interrupt `n` times, counts the events.
pub fn edu(d: &PciDevice, n: u32) {
    let sbdf = d.sbdf;
    let name = crate::pci::bdf(sbdf);
    let Some(b) = d
        .bars
        .iter()
        .find(|b| b.index == 0 && b.flags & PCI_BAR_MAPPED != 0)
    else {
        say(&format!("edu msi {name}: BAR0 not mapped"));
        return;
    };
    let m = match mmio::map(b.base, 4096) {
        Ok(m) => m,
        Err(e) => return say(&format!("edu msi {name}: BAR0: {e}")),
    };
    let port = match pci::msi_bind(sbdf, PCI_MSI, 0) {
        Ok(p) => p,
        Err(e) => return say(&format!("edu msi {name}: bind failed: {e}")),
    };
    // A message is a memory write by the device: it must be a bus master.
    if let Ok(cmd) = pci::config_read(sbdf, 4, 2) {
        let _ = pci::config_write(sbdf, 4, 2, cmd | 0x6);
    }
    let mut delivered = 0u32;
    let mut wrong = 0u32;
    for i in 0..n {
        let bit = 1u32 << (i % 8);
        let _ = m.write32(0x60, bit);
        let deadline = time::now_ns().saturating_add(WAIT_NS);
        // Other events may wake dom0 first: wait again until the port or
        // the deadline.
        let got = loop {
            match evtchn::send_wait(None, port, Some(deadline)) {
                Ok(true) => break true,
                Ok(false) if time::now_ns() < deadline => continue,
                _ => break false,
            }
        };
        let status = m.read32(0x24).unwrap_or(0);
        if got {
            delivered += 1;
            if status & bit == 0 {
                wrong += 1;
            }
        }
        let _ = m.write32(0x64, status);
    }
    say(&format!(
        "edu msi -> port {port}: {delivered} interrupts delivered of {n} raised{}",
        if wrong > 0 {
            format!(", {wrong} without their status bit")
        } else {
            alloc::string::String::new()
        }
    ));
    match pci::msi_unbind(port) {
        Ok(()) => {
            let state = match evtchn::status_of(port).map(|s| s.state) {
                Ok(pvabi::EVTCHN_STATE_FREE) => "now free".into(),
                other => format!("still in state {other:?}"),
            };
            say(&format!("edu msi {name}: unbound, port {port} {state}"));
        }
        Err(e) => say(&format!("edu msi {name}: unbind failed: {e}")),
    }
}
