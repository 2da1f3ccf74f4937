//! The management line's receive interrupt: COM2's ISA IRQ 3 (the PC's
//! legacy assignment) through the I/O APIC to
//! [`super::idt::VECTOR_MGMT_RX`] on the boot CPU. Where it cannot be had
//! (no MADT, no I/O APIC serving the GSI, an APIC ID over 255) the boot log
//! says why, once, and the control domain keeps polling the line
//! (binding pvabi `VIRQ_MGMT_RX` fails with `ENOENT`).

use super::acpi::Topology;
use super::{idt, ioapic, serial};

/// COM2's ISA IRQ.
const COM2_IRQ: u8 = 3;

/// Routes and enables the interrupt; logs the outcome.
pub fn enable(topo: Option<&Topology>, bsp_apic: u32) {
    let Some(topo) = topo else {
        log::info!("dom0: management line polled (no ACPI MADT: no I/O APIC known)");
        return;
    };
    match ioapic::route_isa_irq(topo, COM2_IRQ, idt::VECTOR_MGMT_RX, bsp_apic) {
        Ok(gsi) if serial::mgmt_enable_irq() => {
            log::info!("dom0: management line interrupt: IRQ {COM2_IRQ} -> GSI {gsi}");
        }
        Ok(_) => log::info!("dom0: management line polled (the UART went away)"),
        Err(e) => log::info!("dom0: management line polled: {e}"),
    }
}
