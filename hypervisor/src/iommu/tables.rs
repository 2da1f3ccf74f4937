//! The raw bytes of an ACPI table by signature (DMAR, IVRS), found through
//! the `acpi` crate's RSDT/XSDT walk; the parsers check everything else.

use acpi::sdt::{SdtHeader, Signature};
use acpi::{AcpiTable, AcpiTables};

use crate::arch::acpi::IdentityHandler;
use crate::arch::physmem;

#[repr(C, packed)]
struct Dmar {
    header: SdtHeader,
}

#[repr(C, packed)]
struct Ivrs {
    header: SdtHeader,
}

// SAFETY: each type is exactly an SDT header, `#[repr(C, packed)]`, and its
// signature is its table's (the crate's contract for `AcpiTable`).
unsafe impl AcpiTable for Dmar {
    const SIGNATURE: Signature = Signature::DMAR;
    fn header(&self) -> &SdtHeader {
        &self.header
    }
}

// SAFETY: as for `Dmar`.
unsafe impl AcpiTable for Ivrs {
    const SIGNATURE: Signature = Signature::IVRS;
    fn header(&self) -> &SdtHeader {
        &self.header
    }
}

/// The table with signature `sig` (`DMAR` or `IVRS`), whole, if the
/// firmware has one and its header checks out.
pub fn find(rsdp: Option<u64>, sig: [u8; 4]) -> Option<&'static [u8]> {
    // SAFETY: as in `arch::acpi::read_topology`: the RSDP comes from the
    // loader or the BIOS-area search, and the handler maps only
    // identity-mapped memory.
    let tables = unsafe {
        match rsdp {
            Some(addr) => AcpiTables::from_rsdp(IdentityHandler, addr as usize),
            None => AcpiTables::search_for_rsdp_bios(IdentityHandler),
        }
    }
    .ok()?;
    let (start, len) = match &sig {
        b"DMAR" => {
            let m = tables.find_table::<Dmar>().ok()?;
            (m.physical_start() as u64, m.header().length)
        }
        b"IVRS" => {
            let m = tables.find_table::<Ivrs>().ok()?;
            (m.physical_start() as u64, m.header().length)
        }
        _ => return None,
    };
    let len = u64::from(len);
    if !physmem::is_mapped(start, len) {
        log::error!("iommu: ACPI table at {start:#x} lies outside the identity map");
        return None;
    }
    // SAFETY: `start..start+len` is identity-mapped (checked), firmware
    // memory the hypervisor never writes; the crate validated the header
    // (signature, length, checksum) over exactly these bytes.
    Some(unsafe { core::slice::from_raw_parts(start as *const u8, len as usize) })
}
