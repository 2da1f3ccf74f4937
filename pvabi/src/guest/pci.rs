//! PCI devices the domain owns (2.1, `crate::HC_PCI_LIST`, ...).

use super::{hypercall6, status};
use crate::{Error, HC_PCI_CONFIG_READ, HC_PCI_CONFIG_WRITE, HC_PCI_LIST, PCI_LIST_MAX, PciDevice};

/// Fills `out` with the caller's devices from index `first`; returns how
/// many were written (0 past the last).
pub fn list(out: &mut [PciDevice], first: u32) -> Result<usize, Error> {
    let len = out.len().min(PCI_LIST_MAX as usize);
    let rax = hypercall6(
        HC_PCI_LIST,
        [out.as_mut_ptr() as u64, len as u64, first.into(), 0, 0, 0],
    );
    Ok(usize::try_from(status(rax)?).unwrap_or(len).min(len))
}

/// Reads `size` (1, 2 or 4) bytes at `off` of function `sbdf`'s config
/// space.
pub fn config_read(sbdf: u32, off: u16, size: u8) -> Result<u32, Error> {
    let rax = hypercall6(
        HC_PCI_CONFIG_READ,
        [sbdf.into(), off.into(), size.into(), 0, 0, 0],
    );
    status(rax).map(|v| v as u32)
}

/// Writes `size` bytes of `value` at `off` of function `sbdf`'s config
/// space (filtered by the hypervisor: `crate::HC_PCI_CONFIG_WRITE`).
pub fn config_write(sbdf: u32, off: u16, size: u8, value: u32) -> Result<(), Error> {
    let rax = hypercall6(
        HC_PCI_CONFIG_WRITE,
        [sbdf.into(), off.into(), size.into(), value.into(), 0, 0],
    );
    status(rax).map(|_| ())
}

/// Raw form for hostile tests: any argument registers.
pub fn raw(nr: u64, args: [u64; 6]) -> Result<u64, Error> {
    status(hypercall6(nr, args))
}
