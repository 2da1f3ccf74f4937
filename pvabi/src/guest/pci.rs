//! PCI devices the domain owns (2.1, `crate::HC_PCI_LIST`, ...).

use super::{hypercall6, status};
use crate::{
    Error, HC_DOMCTL_PCI_ASSIGN, HC_PCI_CONFIG_READ, HC_PCI_CONFIG_WRITE, HC_PCI_LIST,
    HC_PCI_MSI_BIND, HC_PCI_MSI_UNBIND, PCI_LIST_MAX, PciDevice,
};

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

/// Binds function `sbdf`'s MSI (`kind` = `crate::PCI_MSI`, `entry` 0)
/// or MSI-X table entry `entry` (`crate::PCI_MSIX`) to a new port of
/// this domain; returns the port (`crate::HC_PCI_MSI_BIND`).
pub fn msi_bind(sbdf: u32, kind: u64, entry: u32) -> Result<u32, Error> {
    let rax = hypercall6(HC_PCI_MSI_BIND, [sbdf.into(), kind, entry.into(), 0, 0, 0]);
    status(rax).map(|p| p as u32)
}

/// Disables the message bound to `port` at its device and frees the port
/// (`crate::HC_PCI_MSI_UNBIND`).
pub fn msi_unbind(port: u32) -> Result<(), Error> {
    status(hypercall6(HC_PCI_MSI_UNBIND, [port.into(), 0, 0, 0, 0, 0])).map(|_| ())
}

/// Moves function `sbdf` from this (the control) domain to domain `id`,
/// which has not run yet (`crate::HC_DOMCTL_PCI_ASSIGN`).
pub fn assign(id: u32, sbdf: u32) -> Result<(), Error> {
    status(hypercall6(
        HC_DOMCTL_PCI_ASSIGN,
        [id.into(), sbdf.into(), 0, 0, 0, 0],
    ))
    .map(|_| ())
}

/// Raw form for hostile tests: any argument registers.
pub fn raw(nr: u64, args: [u64; 6]) -> Result<u64, Error> {
    status(hypercall6(nr, args))
}
