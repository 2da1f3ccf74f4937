//! The console op group: [`crate::HC_CONSOLE_WRITE`],
//! [`crate::HC_CONSOLE_READ`].

use super::{hypercall6, status};
use crate::{CONSOLE_READ_MAX, CONSOLE_WRITE_MAX, Error, HC_CONSOLE_READ, HC_CONSOLE_WRITE};

/// Writes up to [`CONSOLE_WRITE_MAX`] bytes of `bytes` to the domain's
/// console in one hypercall; returns how many were written. Use
/// [`write_all`] (or [`crate::print!`]) for longer output.
pub fn write(bytes: &[u8]) -> Result<usize, Error> {
    let len = bytes.len().min(CONSOLE_WRITE_MAX as usize);
    // The guest is identity-mapped: an address is a guest-physical address.
    let n = status(hypercall6(
        HC_CONSOLE_WRITE,
        [bytes.as_ptr() as u64, len as u64, 0, 0, 0, 0],
    ))?;
    // The hypervisor never reports more than asked; do not trust it blindly.
    Ok(usize::try_from(n).unwrap_or(len).min(len))
}

/// Writes all of `bytes` to the console, in as many hypercalls as needed.
pub fn write_all(mut bytes: &[u8]) -> Result<(), Error> {
    while !bytes.is_empty() {
        let n = write(bytes)?;
        if n == 0 {
            return Err(Error::Invalid);
        }
        bytes = bytes.get(n..).unwrap_or(&[]);
    }
    Ok(())
}

/// Takes up to `buf.len()` (at most [`CONSOLE_READ_MAX`]) bytes of waiting
/// console input into `buf`; returns how many (0 when none is waiting).
/// Never blocks. The privileged domain reads the serial console, others
/// their own input queue (what the control domain's `hvctl console`
/// sends; bind [`crate::VIRQ_CONSOLE`] to wait for it); on a machine
/// without a control domain others get [`Error::Perm`].
pub fn read(buf: &mut [u8]) -> Result<usize, Error> {
    let len = buf.len().min(CONSOLE_READ_MAX as usize);
    // `buf` is ours (a unique borrow), so the hypervisor writing into it
    // changes nothing the compiler assumes about other memory.
    let n = status(hypercall6(
        HC_CONSOLE_READ,
        [buf.as_mut_ptr() as u64, len as u64, 0, 0, 0, 0],
    ))?;
    Ok(usize::try_from(n).unwrap_or(len).min(len))
}
