//! Decoding of the staging domctls (pvabi `stage.rs`, issue 14):
//! `HC_DOMCTL_STAGE_BEGIN/WRITE/ABORT` become [`DomctlReq`]s with every
//! register checked here, and the [`pvabi::DomainCreateStaged`] after a
//! `DomainCreate` with `DOMCTL_CREATE_STAGED` is read and checked into
//! the [`CreateParams`]. What needs the live system (does the stage
//! exist, is it the caller's, is it filled, are there frames) is
//! `stage.rs`.
#![forbid(unsafe_code)]

use pvabi::zerocopy::FromBytes;
use pvabi::{
    DOMAIN_CREATE_SIZE, DOMCTL_CREATE_LINUX, DOMCTL_LINUX_CMDLINE_MAX, DOMCTL_NO_INITRD,
    DOMCTL_STAGE_WRITE_MAX, DomainCreateLinux, DomainCreateStaged, Error, HC_DOMCTL_STAGE_ABORT,
    HC_DOMCTL_STAGE_BEGIN, HC_DOMCTL_STAGE_WRITE,
};

use crate::hypercall::{CreateParams, DomctlReply, DomctlReq, Services};

/// Runs staging domctl `nr`; `None` when `nr` is not one. Privilege
/// first, then every argument, as the other domctls.
pub fn run(svc: &mut impl Services, nr: u64, a: [u64; 6]) -> Option<Result<u64, Error>> {
    if !(HC_DOMCTL_STAGE_BEGIN..=HC_DOMCTL_STAGE_ABORT).contains(&nr) {
        return crate::pci::reassign::run(svc, nr, a);
    }
    if !svc.privileged() {
        return Some(Err(Error::Perm));
    }
    Some(decode(nr, a).and_then(|req| match svc.domctl(req)? {
        DomctlReply::Value(v) => Ok(v),
        _ => Err(Error::Invalid),
    }))
}

/// The request of staging domctl `nr` with registers `a`.
pub fn decode(nr: u64, a: [u64; 6]) -> Result<DomctlReq<'static>, Error> {
    match nr {
        // The size's bounds and the caller's share are the table's
        // (`Stages::begin`), with the rest of its accounting.
        HC_DOMCTL_STAGE_BEGIN => Ok(DomctlReq::StageBegin(a[0])),
        HC_DOMCTL_STAGE_WRITE => {
            let [handle, offset, gpa, len, ..] = a;
            if len > DOMCTL_STAGE_WRITE_MAX {
                return Err(Error::TooBig);
            }
            if len == 0 || offset.checked_add(len).is_none() {
                return Err(Error::Invalid);
            }
            gpa.checked_add(len).ok_or(Error::Fault)?;
            Ok(DomctlReq::StageWrite {
                handle,
                offset,
                gpa,
                len,
            })
        }
        HC_DOMCTL_STAGE_ABORT => Ok(DomctlReq::StageAbort(a[0])),
        _ => Err(Error::Invalid),
    }
}

/// Reads the [`DomainCreateStaged`] after the `DomainCreate` at `at` and
/// completes `p` (validated from a `DomainCreate` with
/// `DOMCTL_CREATE_STAGED`, `flags` its flags) with it: `EFAULT` when the
/// extension or its command line is not in the caller's memory, `EINVAL`
/// on the first bad field.
///
/// Not inlined: its 2 KiB command-line buffer must be off the stack
/// before the create runs the image loader (inlined into
/// `run_privileged`, it overflowed the hypervisor's stack: a double fault
/// in the ELF loader in `upload_qemu_tcp`).
#[inline(never)]
pub fn read_extension(
    svc: &impl Services,
    at: u64,
    flags: u32,
    p: &mut CreateParams,
) -> Result<(), Error> {
    let at = at
        .checked_add(DOMAIN_CREATE_SIZE as u64)
        .ok_or(Error::Fault)?;
    let mut raw = [0u8; core::mem::size_of::<DomainCreateStaged>()];
    svc.read(at, &mut raw).map_err(|_| Error::Fault)?;
    let ext = DomainCreateStaged::read_from_bytes(&raw).map_err(|_| Error::Fault)?;
    if ext._pad != 0 || ext.image == 0 || ext.initrd == ext.image {
        return Err(Error::Invalid);
    }
    if flags & DOMCTL_CREATE_LINUX == 0 {
        // A pvabi image: its command line is the `DomainCreate`'s.
        if ext.initrd != 0 || ext.cmdline_len != 0 {
            return Err(Error::Invalid);
        }
    } else {
        if ext.cmdline_len > DOMCTL_LINUX_CMDLINE_MAX {
            return Err(Error::Invalid);
        }
        let mut line = [0u8; DOMCTL_LINUX_CMDLINE_MAX as usize];
        let line = line
            .get_mut(..ext.cmdline_len as usize)
            .ok_or(Error::Invalid)?;
        if !line.is_empty() {
            svc.read(ext.cmdline_gpa, line).map_err(|_| Error::Fault)?;
        }
        // The same checks as a Linux create from boot modules; the
        // initramfs is a stage here, not a module.
        let as_linux = DomainCreateLinux {
            initrd_module: DOMCTL_NO_INITRD,
            cmdline_len: ext.cmdline_len,
            cmdline_gpa: ext.cmdline_gpa,
            _pad: 0,
        };
        crate::domain::ctl_ops::validate_linux(p, &as_linux, line)?;
    }
    p.staged = Some((ext.image, ext.initrd));
    Ok(())
}
