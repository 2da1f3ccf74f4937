//! The control domain's I/O hypercalls (numbers 42-46): the
//! management line, other domains' console rings and console input, and
//! the hypervisor's own console. Privilege first, then lengths and buffers are checked here;
//! [`Services::mgmt`] only moves bytes.

use pvabi::Error;
use pvabi::{
    HC_DOMCTL_CONSOLE_READ, HC_DOMCTL_CONSOLE_WRITE, HC_HOST_CONSOLE_WRITE, HC_MGMT_READ,
    HC_MGMT_WRITE, MGMT_IO_MAX,
};

use crate::domain::ids::DomainId;
use crate::hypercall::Services;

/// One validated request for the live system.
#[derive(Debug)]
pub enum MgmtReq<'a> {
    /// Send these bytes on the management line: how many.
    Write(&'a [u8]),
    /// Take received management bytes into the buffer: how many.
    Read(&'a mut [u8]),
    /// Drain domain `id`'s console ring into `buf`: how many.
    ConsoleRead { id: DomainId, buf: &'a mut [u8] },
    /// Print these bytes on the hypervisor's console, unprefixed.
    HostWrite(&'a [u8]),
    /// Queue these bytes as domain `id`'s console input: how many fit.
    ConsoleWrite { id: DomainId, bytes: &'a [u8] },
}

/// Runs hypercall `nr` if it is one of this group; `None` otherwise.
pub fn run(svc: &mut impl Services, nr: u64, a: [u64; 6]) -> Option<Result<u64, Error>> {
    if !(HC_MGMT_WRITE..=HC_DOMCTL_CONSOLE_WRITE).contains(&nr) {
        return None;
    }
    if !svc.privileged() {
        return Some(Err(Error::Perm));
    }
    Some(run_privileged(svc, nr, a))
}

fn run_privileged(svc: &mut impl Services, nr: u64, a: [u64; 6]) -> Result<u64, Error> {
    let mut buf = [0u8; MGMT_IO_MAX as usize];
    let (gpa, len) = if nr == HC_DOMCTL_CONSOLE_READ || nr == HC_DOMCTL_CONSOLE_WRITE {
        (a[1], a[2])
    } else {
        (a[0], a[1])
    };
    if len > MGMT_IO_MAX {
        return Err(Error::TooBig);
    }
    let buf = buf.get_mut(..len as usize).ok_or(Error::TooBig)?;
    // Every byte of the buffer must be the caller's before anything is
    // sent or taken, so no input is consumed and then lost.
    svc.read(gpa, buf).map_err(|_| Error::Fault)?;
    let n = match nr {
        HC_MGMT_WRITE => return svc.mgmt(MgmtReq::Write(buf)),
        HC_HOST_CONSOLE_WRITE => return svc.mgmt(MgmtReq::HostWrite(buf)),
        HC_DOMCTL_CONSOLE_WRITE => {
            let id = u32::try_from(a[0])
                .map(DomainId)
                .map_err(|_| Error::Invalid)?;
            return svc.mgmt(MgmtReq::ConsoleWrite { id, bytes: buf });
        }
        HC_MGMT_READ => svc.mgmt(MgmtReq::Read(buf))?,
        HC_DOMCTL_CONSOLE_READ => {
            let id = u32::try_from(a[0])
                .map(DomainId)
                .map_err(|_| Error::Invalid)?;
            svc.mgmt(MgmtReq::ConsoleRead { id, buf })?
        }
        _ => return Err(Error::Invalid),
    };
    let got = buf.get(..n as usize).ok_or(Error::Invalid)?;
    svc.write(gpa, got).map_err(|_| Error::Fault)?;
    Ok(n)
}
