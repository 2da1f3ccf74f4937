//! The domctl op group (1.3), for the control domain: [`crate::HC_DOMCTL_CREATE`]
//! and the calls after it. Every call fails with [`Error::Perm`] in a domain
//! without [`crate::START_FLAG_PRIVILEGED`].
//!
//! ```ignore
//! let mut req = pvabi::DomainCreate::new("web", module, 16 << 20, 1);
//! req.set_cmdline("port=80");
//! let id = pvabi::guest::domctl::create(&req)?;
//! pvabi::guest::domctl::unpause(id)?;
//! ```

use zerocopy::FromZeros;

use super::{hypercall6, status};
use crate::{
    DomainCreate, DomainInfo, Error, HC_DOMCTL_CREATE, HC_DOMCTL_DESTROY, HC_DOMCTL_HOST_INFO,
    HC_DOMCTL_INFO, HC_DOMCTL_LIST, HC_DOMCTL_MODULE_INFO, HC_DOMCTL_MODULE_READ, HC_DOMCTL_PAUSE,
    HC_DOMCTL_UNPAUSE, HostInfo, ModuleInfo,
};

fn call(nr: u64, a: [u64; 4]) -> Result<u64, Error> {
    status(hypercall6(nr, [a[0], a[1], a[2], a[3], 0, 0]))
}

/// Builds a paused domain; returns its id.
pub fn create(req: &DomainCreate) -> Result<u32, Error> {
    let id = call(
        HC_DOMCTL_CREATE,
        [req as *const DomainCreate as u64, 0, 0, 0],
    )?;
    u32::try_from(id).map_err(|_| Error::Invalid)
}

/// Builds a Linux domain, paused (`DOMCTL_CREATE_LINUX`): `req` with
/// that flag and its extension; `cmdline` is where its command line is
/// (`req.linux.cmdline_gpa` is set to it here). Returns the new id.
pub fn create_linux(
    req: &mut crate::DomainCreateLinuxRequest,
    cmdline: &[u8],
) -> Result<u32, Error> {
    req.create.flags = crate::DOMCTL_CREATE_LINUX;
    req.create.cmdline_len = 0;
    req.linux.cmdline_len = u32::try_from(cmdline.len()).map_err(|_| Error::TooBig)?;
    req.linux.cmdline_gpa = cmdline.as_ptr() as u64;
    let id = call(
        HC_DOMCTL_CREATE,
        [
            req as *const crate::DomainCreateLinuxRequest as u64,
            0,
            0,
            0,
        ],
    )?;
    u32::try_from(id).map_err(|_| Error::Invalid)
}

/// Builds a domain, paused, from stages of this domain's
/// (`DOMCTL_CREATE_STAGED`, `crate::guest::stage`): a pvabi ELF from
/// stage `image` (`linux` `None`), or a Linux `vmlinux` from `image` with
/// the initramfs stage `initrd` (0: none) and its command line
/// (`linux` `Some((initrd, cmdline))`). Frees the stages when it
/// succeeds. Returns the new id.
pub fn create_staged(
    req: &mut crate::DomainCreateStagedRequest,
    image: u64,
    linux: Option<(u64, &[u8])>,
) -> Result<u32, Error> {
    req.create.flags = crate::DOMCTL_CREATE_STAGED;
    req.create.module = 0;
    req.staged = crate::DomainCreateStaged {
        image,
        initrd: 0,
        cmdline_gpa: 0,
        cmdline_len: 0,
        _pad: 0,
    };
    if let Some((initrd, cmdline)) = linux {
        req.create.flags |= crate::DOMCTL_CREATE_LINUX;
        req.create.cmdline_len = 0;
        req.staged.initrd = initrd;
        req.staged.cmdline_gpa = cmdline.as_ptr() as u64;
        req.staged.cmdline_len = u32::try_from(cmdline.len()).map_err(|_| Error::TooBig)?;
    }
    create_staged_raw(req)
}

/// [`create_staged`] with `req` exactly as given (flags and extension
/// included): for tests of the refusals.
pub fn create_staged_raw(req: &crate::DomainCreateStagedRequest) -> Result<u32, Error> {
    let id = call(
        HC_DOMCTL_CREATE,
        [
            req as *const crate::DomainCreateStagedRequest as u64,
            0,
            0,
            0,
        ],
    )?;
    u32::try_from(id).map_err(|_| Error::Invalid)
}

/// Lets domain `id` run.
pub fn unpause(id: u32) -> Result<(), Error> {
    call(HC_DOMCTL_UNPAUSE, [id.into(), 0, 0, 0]).map(|_| ())
}

/// Stops scheduling domain `id`.
pub fn pause(id: u32) -> Result<(), Error> {
    call(HC_DOMCTL_PAUSE, [id.into(), 0, 0, 0]).map(|_| ())
}

/// Ends domain `id` (its memory returns once its vCPUs are off their CPUs).
pub fn destroy(id: u32) -> Result<(), Error> {
    call(HC_DOMCTL_DESTROY, [id.into(), 0, 0, 0]).map(|_| ())
}

/// Reports domain `id`.
pub fn info(id: u32) -> Result<DomainInfo, Error> {
    let mut out = DomainInfo::new_zeroed();
    call(HC_DOMCTL_INFO, [id.into(), &raw mut out as u64, 0, 0])?;
    Ok(out)
}

/// The report of domain `id` once it has ended and been freed
/// ([`crate::DOMCTL_INFO_ENDED`]): state [`crate::DOMAIN_ENDED`].
pub fn ended(id: u32) -> Result<DomainInfo, Error> {
    let mut out = DomainInfo::new_zeroed();
    let arg = u64::from(id) | crate::DOMCTL_INFO_ENDED;
    call(HC_DOMCTL_INFO, [arg, &raw mut out as u64, 0, 0])?;
    Ok(out)
}

/// Why the hypervisor killed ended domain `id`
/// ([`crate::DOMCTL_INFO_REASON`]), into `buf`: its length, 0 when it did
/// not kill it.
pub fn end_reason(
    id: u32,
    buf: &mut [u8; crate::DOMCTL_REASON_MAX as usize],
) -> Result<usize, Error> {
    let arg = u64::from(id) | crate::DOMCTL_INFO_ENDED | crate::DOMCTL_INFO_REASON;
    let n = call(HC_DOMCTL_INFO, [arg, buf.as_mut_ptr() as u64, 0, 0])?;
    Ok((n as usize).min(buf.len()))
}

/// Fills `ids` with domain ids, ascending; returns how many domains exist
/// (more than `ids.len()` means the list was cut).
pub fn list(ids: &mut [u32]) -> Result<usize, Error> {
    let n = call(
        HC_DOMCTL_LIST,
        [ids.as_mut_ptr() as u64, ids.len() as u64, 0, 0],
    )?;
    usize::try_from(n).map_err(|_| Error::Invalid)
}

/// Describes boot module `index`.
pub fn module_info(index: u32) -> Result<ModuleInfo, Error> {
    let mut out = ModuleInfo::new_zeroed();
    call(
        HC_DOMCTL_MODULE_INFO,
        [index.into(), &raw mut out as u64, 0, 0],
    )?;
    Ok(out)
}

/// Copies bytes of boot module `index` from `offset` into `buf` (at most
/// [`crate::DOMCTL_READ_MAX`] per call); returns how many (0 at the end).
pub fn module_read(index: u32, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
    let n = call(
        HC_DOMCTL_MODULE_READ,
        [
            index.into(),
            offset,
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
        ],
    )?;
    usize::try_from(n).map_err(|_| Error::Invalid)
}

/// Reports the machine.
pub fn host_info() -> Result<HostInfo, Error> {
    let mut out = HostInfo::new_zeroed();
    call(HC_DOMCTL_HOST_INFO, [&raw mut out as u64, 0, 0, 0])?;
    Ok(out)
}
