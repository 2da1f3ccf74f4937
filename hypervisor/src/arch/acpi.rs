//! ACPI tables through the `acpi` crate: the MADT tells which CPUs exist
//! (ACPI 6.5 5.2.12) and where the interrupt controllers are.

use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use arrayvec::ArrayVec;

use super::percpu::MAX_CPUS;
use super::physmem;

/// Maps ACPI tables through the identity map.
#[derive(Clone, Copy, Debug)]
pub struct IdentityHandler;

impl AcpiHandler for IdentityHandler {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        assert!(
            physmem::is_mapped(physical_address as u64, size as u64),
            "ACPI table at {physical_address:#x} outside the identity map"
        );
        let Some(ptr) = NonNull::new(physical_address as *mut T) else {
            panic!("ACPI table at physical address 0");
        };
        // SAFETY: the range is identity-mapped (asserted above) and the
        // firmware's tables are not written while we read them.
        unsafe { PhysicalMapping::new(physical_address, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// What the MADT says.
#[derive(Debug, Clone)]
pub struct Topology {
    /// APIC IDs of usable CPUs (enabled or online-capable), MADT order.
    pub apic_ids: ArrayVec<u32, MAX_CPUS>,
    /// CPUs listed beyond `MAX_CPUS` (not driven).
    pub ignored: usize,
    /// I/O APICs.
    pub io_apics: usize,
    /// Local APIC physical address.
    pub local_apic_address: u64,
    /// The I/O APICs' addresses and first GSIs (ACPI 6.5 5.2.12.3).
    pub io_apic_list: ArrayVec<IoApic, 8>,
    /// ISA IRQs wired to another GSI or with other polarity/trigger than
    /// ISA's default (ACPI 6.5 5.2.12.5): `(irq, gsi, MPS INTI flags)`.
    pub isa_overrides: ArrayVec<(u8, u32, u16), 16>,
}

/// One I/O APIC from the MADT.
#[derive(Debug, Clone, Copy)]
pub struct IoApic {
    pub address: u64,
    pub gsi_base: u32,
    /// Its I/O APIC id (a DMAR device scope's enumeration id names it).
    pub id: u8,
}

/// Why ACPI could not be read.
#[derive(Debug)]
pub struct AcpiError(pub acpi::AcpiError);

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Reads the MADT, from the loader's RSDP or a BIOS-area search.
pub fn read_topology(rsdp: Option<u64>) -> Result<(Topology, u64), AcpiError> {
    // SAFETY: the RSDP address comes from the loader (or the search below
    // scans only the BIOS areas the ACPI spec names); the handler only maps
    // identity-mapped memory.
    let tables = unsafe {
        match rsdp {
            Some(addr) => AcpiTables::from_rsdp(IdentityHandler, addr as usize),
            None => AcpiTables::search_for_rsdp_bios(IdentityHandler),
        }
    }
    .map_err(AcpiError)?;
    let rsdp_addr = rsdp.unwrap_or(0);
    let madt = tables.find_table::<Madt>().map_err(AcpiError)?;
    let mut topo = Topology {
        apic_ids: ArrayVec::new(),
        ignored: 0,
        io_apics: 0,
        local_apic_address: u64::from(madt.get().local_apic_address),
        io_apic_list: ArrayVec::new(),
        isa_overrides: ArrayVec::new(),
    };
    let mut add = |id: u32, flags: u32| {
        // Flags bit 0: enabled; bit 1: online capable (ACPI 6.3+).
        if flags & 0b11 != 0 && !topo.apic_ids.contains(&id) && topo.apic_ids.try_push(id).is_err()
        {
            topo.ignored += 1;
        }
    };
    for entry in madt.get().entries() {
        match entry {
            MadtEntry::LocalApic(e) => add(u32::from(e.apic_id), e.flags),
            MadtEntry::LocalX2Apic(e) => add(e.x2apic_id, e.flags),
            MadtEntry::IoApic(e) => {
                topo.io_apics += 1;
                let _ = topo.io_apic_list.try_push(IoApic {
                    address: u64::from(e.io_apic_address),
                    gsi_base: e.global_system_interrupt_base,
                    id: e.io_apic_id,
                });
            }
            MadtEntry::InterruptSourceOverride(e) if e.bus == 0 => {
                let _ = topo
                    .isa_overrides
                    .try_push((e.irq, e.global_system_interrupt, e.flags));
            }
            MadtEntry::LocalApicAddressOverride(e) => {
                topo.local_apic_address = e.local_apic_address
            }
            _ => {}
        }
    }
    Ok((topo, rsdp_addr))
}
