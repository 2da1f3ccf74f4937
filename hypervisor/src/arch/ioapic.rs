//! The I/O APIC, only as far as the hypervisor needs it: one ISA IRQ
//! (the management line's UART, COM2 = IRQ 3) routed to a hypervisor
//! vector on the boot CPU. Every other pin stays as the firmware left it
//! (masked after reset: 82093AA datasheet 3.2.4, "Mask ... 1 after reset").
//!
//! Registers (Intel 82093AA I/O APIC datasheet, 3.0 and 3.2): an index
//! register IOREGSEL at offset 0x00 and a data window IOWIN at 0x10;
//! register 0x01 is the version (bits 23:16: the highest redirection
//! entry), redirection entry `n` is the pair 0x10 + 2n (low dword) and
//! 0x11 + 2n (high dword: destination APIC ID in bits 31:24).

use crate::sync::Mutex;

use super::acpi::Topology;

/// The window the boot page tables map uncached for the local and I/O
/// APICs (`bootcpu::switch_page_tables`): an I/O APIC elsewhere is not
/// driven.
const MMIO_WINDOW: core::ops::Range<u64> = 0xfec0_0000..0xfec0_0000 + (4 << 20);

/// Whether an I/O APIC's registers at `a` lie in [`MMIO_WINDOW`].
fn in_window(a: u64) -> bool {
    MMIO_WINDOW.contains(&a) && MMIO_WINDOW.contains(&(a + 0x1f))
}

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const REG_VERSION: u32 = 0x01;
const REG_REDTBL: u32 = 0x10;

/// Redirection entry bits (82093AA 3.2.4).
const POLARITY_LOW: u32 = 1 << 13;
const TRIGGER_LEVEL: u32 = 1 << 15;

#[path = "ioapic_remap.rs"]
mod remap;
pub use remap::{Pin, remap_unmasked};

/// Serialises the index/data register pair.
static LOCK: Mutex<()> = Mutex::new(());

fn read(base: u64, reg: u32) -> u32 {
    // SAFETY: `base` is an I/O APIC's register page inside the uncached
    // identity-mapped APIC window (checked by `route_isa_irq`); the
    // caller holds `LOCK`, so the index and data accesses pair up.
    unsafe {
        core::ptr::write_volatile((base + IOREGSEL) as *mut u32, reg);
        core::ptr::read_volatile((base + IOWIN) as *const u32)
    }
}

fn write(base: u64, reg: u32, value: u32) {
    // SAFETY: as in `read`.
    unsafe {
        core::ptr::write_volatile((base + IOREGSEL) as *mut u32, reg);
        core::ptr::write_volatile((base + IOWIN) as *mut u32, value);
    }
}

/// Why an IRQ could not be routed (said once in the boot log).
#[derive(Debug, Clone, Copy)]
pub enum RouteError {
    /// The MADT names no I/O APIC serving the IRQ's GSI.
    NoIoApic(u32),
    /// The I/O APIC is outside the mapped APIC window.
    Unmapped(u64),
    /// The boot CPU's APIC ID does not fit the 8-bit destination field.
    WideApicId(u32),
}

impl core::fmt::Display for RouteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoIoApic(gsi) => write!(f, "no I/O APIC in the MADT serves GSI {gsi}"),
            Self::Unmapped(a) => write!(f, "I/O APIC at {a:#x} is outside the APIC window"),
            Self::WideApicId(id) => write!(f, "boot CPU APIC ID {id} needs interrupt remapping"),
        }
    }
}

/// Routes ISA IRQ `irq` (after the MADT's source overrides) to `vector`
/// on the CPU with APIC ID `dest`, fixed delivery, physical destination,
/// unmasked. Returns the GSI it used.
pub fn route_isa_irq(topo: &Topology, irq: u8, vector: u8, dest: u32) -> Result<u32, RouteError> {
    // ISA IRQs are active-high, edge-triggered unless an override says
    // otherwise (ACPI 6.5 5.2.12.5, MPS INTI flags: bits 1:0 polarity,
    // 3:2 trigger; 0b11 = active low / level).
    let (gsi, flags) = topo
        .isa_overrides
        .iter()
        .find(|o| o.0 == irq)
        .map_or((u32::from(irq), 0u16), |o| (o.1, o.2));
    let mut low = u32::from(vector);
    if flags & 0b11 == 0b11 {
        low |= POLARITY_LOW;
    }
    if (flags >> 2) & 0b11 == 0b11 {
        low |= TRIGGER_LEVEL;
    }
    let dest = u8::try_from(dest).map_err(|_| RouteError::WideApicId(dest))?;
    let _guard = LOCK.lock();
    for io in &topo.io_apic_list {
        if !MMIO_WINDOW.contains(&io.address) || !MMIO_WINDOW.contains(&(io.address + 0x1f)) {
            continue;
        }
        let entries = (read(io.address, REG_VERSION) >> 16 & 0xff) + 1;
        let Some(pin) = gsi.checked_sub(io.gsi_base).filter(|&p| p < entries) else {
            continue;
        };
        let reg = REG_REDTBL + 2 * pin;
        // Masked while the two halves change, then unmasked with the low
        // half (82093AA 3.2.4: the entry takes effect as written).
        write(io.address, reg, 1 << 16);
        write(io.address, reg + 1, u32::from(dest) << 24);
        write(io.address, reg, low);
        return Ok(gsi);
    }
    match topo.io_apic_list.first() {
        Some(io) if !MMIO_WINDOW.contains(&io.address) => Err(RouteError::Unmapped(io.address)),
        _ => Err(RouteError::NoIoApic(gsi)),
    }
}
