//! The control domain's I/O (1.3): the management line
//! ([`crate::HC_MGMT_WRITE`], [`crate::HC_MGMT_READ`]), other domains'
//! console rings ([`crate::HC_DOMCTL_CONSOLE_READ`]) and console input
//! ([`crate::HC_DOMCTL_CONSOLE_WRITE`]), and the hypervisor's
//! console ([`crate::HC_HOST_CONSOLE_WRITE`]). Every call fails with
//! [`Error::Perm`] in an unprivileged domain.

use super::{hypercall6, status};
use crate::{
    Error, HC_DOMCTL_CONSOLE_READ, HC_DOMCTL_CONSOLE_WRITE, HC_HOST_CONSOLE_WRITE, HC_MGMT_READ,
    HC_MGMT_WRITE, MGMT_IO_MAX,
};

fn clamp(len: usize) -> usize {
    len.min(MGMT_IO_MAX as usize)
}

fn count(rax: u64, len: usize) -> Result<usize, Error> {
    // The hypervisor never reports more than asked; do not trust it blindly.
    Ok(usize::try_from(status(rax)?).unwrap_or(len).min(len))
}

/// Sends up to [`MGMT_IO_MAX`] bytes of `bytes` on the management line;
/// returns how many.
pub fn write(bytes: &[u8]) -> Result<usize, Error> {
    let len = clamp(bytes.len());
    let rax = hypercall6(
        HC_MGMT_WRITE,
        [bytes.as_ptr() as u64, len as u64, 0, 0, 0, 0],
    );
    count(rax, len)
}

/// Sends all of `bytes` on the management line.
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

/// Takes what the management line has received (never waits); returns
/// how many bytes (0: nothing).
pub fn read(buf: &mut [u8]) -> Result<usize, Error> {
    let len = clamp(buf.len());
    let rax = hypercall6(
        HC_MGMT_READ,
        [buf.as_mut_ptr() as u64, len as u64, 0, 0, 0, 0],
    );
    count(rax, len)
}

/// Drains domain `id`'s console ring into `buf`; returns how many bytes
/// (0: empty now). [`Error::NoEntry`] once the domain has ended and its
/// ring is empty.
pub fn console_read(id: u32, buf: &mut [u8]) -> Result<usize, Error> {
    let len = clamp(buf.len());
    let rax = hypercall6(
        HC_DOMCTL_CONSOLE_READ,
        [id.into(), buf.as_mut_ptr() as u64, len as u64, 0, 0, 0],
    );
    count(rax, len)
}

/// Queues up to [`MGMT_IO_MAX`] bytes of `bytes` as console input for
/// domain `id`; returns how many were taken (fewer, even 0, when its input
/// queue is full: offer the rest again later).
pub fn console_write(id: u32, bytes: &[u8]) -> Result<usize, Error> {
    let len = clamp(bytes.len());
    let rax = hypercall6(
        HC_DOMCTL_CONSOLE_WRITE,
        [id.into(), bytes.as_ptr() as u64, len as u64, 0, 0, 0],
    );
    count(rax, len)
}

/// Prints `bytes` on the hypervisor's serial console with no prefix (in
/// pieces of at most [`MGMT_IO_MAX`]).
pub fn host_console_write(mut bytes: &[u8]) -> Result<(), Error> {
    while !bytes.is_empty() {
        let len = clamp(bytes.len());
        let rax = hypercall6(
            HC_HOST_CONSOLE_WRITE,
            [bytes.as_ptr() as u64, len as u64, 0, 0, 0, 0],
        );
        let n = count(rax, len)?;
        if n == 0 {
            return Err(Error::Invalid);
        }
        bytes = bytes.get(n..).unwrap_or(&[]);
    }
    Ok(())
}
