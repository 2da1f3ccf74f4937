//! The domctl hypercalls (`HC_DOMCTL_*`): privilege first, then
//! the guest's registers and IN structures become a typed [`DomctlReq`]
//! with every field validated here, and OUT structures are written back
//! here. What is left to [`Services::domctl`] is only what needs the live
//! system: does the domain or module exist, is there memory.

use pvabi::Error;
use pvabi::zerocopy::{FromBytes, IntoBytes};
use pvabi::{
    DOMAIN_CREATE_SIZE, DOMCTL_CMDLINE_MAX, DOMCTL_CREATE_LINUX, DOMCTL_INFO_ENDED,
    DOMCTL_INFO_REASON, DOMCTL_LINUX_CMDLINE_MAX, DOMCTL_LIST_MAX, DOMCTL_MAX_VCPUS,
    DOMCTL_MEMORY_ALIGN, DOMCTL_MEMORY_MAX, DOMCTL_MEMORY_MIN, DOMCTL_NO_INITRD, DOMCTL_READ_MAX,
    DomainCreate, DomainCreateLinux, DomainInfo, HC_DOMCTL_CREATE, HC_DOMCTL_DESTROY,
    HC_DOMCTL_HOST_INFO, HC_DOMCTL_INFO, HC_DOMCTL_LIST, HC_DOMCTL_MODULE_INFO,
    HC_DOMCTL_MODULE_READ, HC_DOMCTL_PAUSE, HC_DOMCTL_UNPAUSE, HostInfo, ModuleInfo,
};

use crate::domain::ids::DomainId;
use crate::hypercall::{Services, put};

/// A validated [`DomainCreate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateParams {
    /// 1 to 31 bytes of `[A-Za-z0-9._-]`.
    pub name: arrayvec::ArrayString<32>,
    /// A multiple of 2 MiB in the allowed range.
    pub memory_bytes: u64,
    /// Boot module index (existence checked by the services).
    pub module: u32,
    /// `1..=DOMCTL_MAX_VCPUS`.
    pub nr_vcpus: u32,
    /// `1..=65535`.
    pub weight: u32,
    /// `0..=100 * nr_vcpus`.
    pub cap: u32,
    /// UTF-8, at most `DOMCTL_CMDLINE_MAX` bytes (a Linux domain's:
    /// `DOMCTL_LINUX_CMDLINE_MAX`, no NUL).
    pub cmdline: arrayvec::ArrayString<{ DOMCTL_LINUX_CMDLINE_MAX as usize }>,
    /// Heap budget in bytes, 0 for the default (`domain/budget.rs`).
    pub heap_budget: u64,
    /// `Some` for a Linux domain (`DOMCTL_CREATE_LINUX`): its initramfs
    /// module, if any (not 0, not `module`; existence checked by the
    /// services).
    pub linux: Option<Option<u32>>,
    /// `Some((image, initrd))` for stages of the caller's
    /// (`DOMCTL_CREATE_STAGED`, `stage.rs`; `initrd` 0: none).
    pub staged: Option<(u64, u64)>,
}

/// Checks every field of a create request; `EINVAL` on the first bad one.
pub fn validate_create(c: &DomainCreate) -> Result<CreateParams, Error> {
    let len = c.name.iter().position(|&b| b == 0).ok_or(Error::Invalid)?;
    let (name, pad) = c.name.split_at(len);
    let name_ok = !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && pad.iter().all(|&b| b == 0);
    if !name_ok {
        return Err(Error::Invalid);
    }
    let m = c.memory_bytes;
    if !m.is_multiple_of(DOMCTL_MEMORY_ALIGN)
        || !(DOMCTL_MEMORY_MIN..=DOMCTL_MEMORY_MAX).contains(&m)
    {
        return Err(Error::Invalid);
    }
    if !(1..=DOMCTL_MAX_VCPUS).contains(&c.nr_vcpus)
        || !(1..=65535).contains(&c.weight)
        || c.cap > 100 * c.nr_vcpus
        || ![
            0,
            DOMCTL_CREATE_LINUX,
            pvabi::DOMCTL_CREATE_STAGED,
            pvabi::DOMCTL_CREATE_STAGED | DOMCTL_CREATE_LINUX,
        ]
        .contains(&c.flags)
        || (c.flags & pvabi::DOMCTL_CREATE_STAGED != 0 && c.module != 0)
        || c.cmdline_len > DOMCTL_CMDLINE_MAX
        || (c.flags & DOMCTL_CREATE_LINUX != 0 && c.cmdline_len != 0)
        || crate::domain::budget::check_request(c.heap_budget).is_err()
    {
        return Err(Error::Invalid);
    }
    let cmdline = c
        .cmdline
        .get(..c.cmdline_len as usize)
        .and_then(|b| core::str::from_utf8(b).ok())
        .ok_or(Error::Invalid)?;
    Ok(CreateParams {
        name: arrayvec::ArrayString::from(core::str::from_utf8(name).map_err(|_| Error::Invalid)?)
            .map_err(|_| Error::Invalid)?,
        memory_bytes: m,
        module: c.module,
        nr_vcpus: c.nr_vcpus,
        weight: c.weight,
        cap: c.cap,
        cmdline: arrayvec::ArrayString::from(cmdline).map_err(|_| Error::Invalid)?,
        heap_budget: c.heap_budget,
        linux: None,
        staged: None,
    })
}

/// Completes `p` (validated from the [`DomainCreate`] with
/// `DOMCTL_CREATE_LINUX`) with its extension `ext` and the command line
/// bytes read from `ext.cmdline_gpa`: `EINVAL` on the first bad field.
pub fn validate_linux(
    p: &mut CreateParams,
    ext: &DomainCreateLinux,
    cmdline: &[u8],
) -> Result<(), Error> {
    if ext._pad != 0
        || ext.cmdline_len > DOMCTL_LINUX_CMDLINE_MAX
        || cmdline.len() != ext.cmdline_len as usize
        || cmdline.contains(&0)
        || ext.initrd_module == 0
        || ext.initrd_module == p.module
    {
        return Err(Error::Invalid);
    }
    let s = core::str::from_utf8(cmdline).map_err(|_| Error::Invalid)?;
    p.cmdline = arrayvec::ArrayString::from(s).map_err(|_| Error::Invalid)?;
    p.linux = Some((ext.initrd_module != DOMCTL_NO_INITRD).then_some(ext.initrd_module));
    Ok(())
}

/// One domctl request for the live system.
#[derive(Debug)]
pub enum DomctlReq<'a> {
    /// Build a paused domain: its id.
    Create(&'a CreateParams),
    /// Let a domain run.
    Unpause(DomainId),
    /// Stop scheduling a domain.
    Pause(DomainId),
    /// End a domain.
    Destroy(DomainId),
    /// Report a domain.
    Info(DomainId),
    /// Fill the slice with ids, ascending: how many exist.
    List(&'a mut [u32]),
    /// Describe a boot module.
    ModuleInfo(u64),
    /// Copy bytes of a boot module from an offset: how many.
    ModuleRead {
        index: u64,
        offset: u64,
        buf: &'a mut [u8],
    },
    /// Report the machine.
    HostInfo,
    /// The report of a domain that ended and was freed
    /// (`DOMCTL_INFO_ENDED`).
    Ended(DomainId),
    /// Why the hypervisor killed an ended domain (`DOMCTL_INFO_REASON`).
    EndReason(DomainId),
    /// Ask a domain to end (`ctl_life.rs`): a `SHUTDOWN_REQUEST_*` reason.
    ShutdownRequest { id: DomainId, reason: u64 },
    /// Change a domain's weight and cap (`ctl_life.rs`).
    SetSched { id: DomainId, weight: u32, cap: u32 },
    /// Set (`Some`) or read a domain's memory target in pages
    /// (`memtarget.rs`).
    MemTarget { id: DomainId, pages: Option<u64> },
    /// Take a stage of this many bytes: its handle (`stage.rs`).
    StageBegin(u64),
    /// Copy `len` bytes at `gpa` of the caller's memory to `offset` of a
    /// stage: the bytes filled after it.
    StageWrite {
        handle: u64,
        offset: u64,
        gpa: u64,
        len: u64,
    },
    /// Free a stage.
    StageAbort(u64),
    /// Move a PCI function from the caller to a domain that has not run
    /// (`pci/reassign.rs`).
    PciAssign { id: DomainId, bdf: crate::pci::Bdf },
}

/// What a [`DomctlReq`] produced (returned by value once per domctl call,
/// never stored: the size difference between variants costs nothing).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum DomctlReply {
    /// A value for RAX.
    Value(u64),
    /// [`DomctlReq::Info`]'s answer.
    Info(DomainInfo),
    /// [`DomctlReq::ModuleInfo`]'s answer.
    Module(ModuleInfo),
    /// [`DomctlReq::HostInfo`]'s answer.
    Host(HostInfo),
    /// [`DomctlReq::EndReason`]'s answer.
    Reason(crate::domain::ended::Reason),
}

fn dom_id(v: u64) -> Result<DomainId, Error> {
    u32::try_from(v).map(DomainId).map_err(|_| Error::Invalid)
}

/// Runs domctl hypercall `nr`; `None` when `nr` is not one.
pub fn run(svc: &mut impl Services, nr: u64, a: [u64; 6]) -> Option<Result<u64, Error>> {
    if !(HC_DOMCTL_CREATE..=HC_DOMCTL_HOST_INFO).contains(&nr) {
        return crate::domain::ctl_life::run(svc, nr, a);
    }
    if !svc.privileged() {
        return Some(Err(Error::Perm));
    }
    Some(run_privileged(svc, nr, a))
}

fn value(r: Result<DomctlReply, Error>) -> Result<u64, Error> {
    match r? {
        DomctlReply::Value(v) => Ok(v),
        _ => Err(Error::Invalid),
    }
}

fn run_privileged(svc: &mut impl Services, nr: u64, a: [u64; 6]) -> Result<u64, Error> {
    match nr {
        HC_DOMCTL_CREATE => {
            let mut raw = [0u8; core::mem::size_of::<DomainCreate>()];
            svc.read(a[0], &mut raw).map_err(|_| Error::Fault)?;
            let req = DomainCreate::read_from_bytes(&raw).map_err(|_| Error::Fault)?;
            let mut params = validate_create(&req)?;
            if req.flags == DOMCTL_CREATE_LINUX {
                read_linux(svc, a[0], &mut params)?;
            }
            if req.flags & pvabi::DOMCTL_CREATE_STAGED != 0 {
                crate::domain::stage_ops::read_extension(svc, a[0], req.flags, &mut params)?;
            }
            value(svc.domctl(DomctlReq::Create(&params)))
        }
        HC_DOMCTL_UNPAUSE => value(svc.domctl(DomctlReq::Unpause(dom_id(a[0])?))),
        HC_DOMCTL_PAUSE => value(svc.domctl(DomctlReq::Pause(dom_id(a[0])?))),
        HC_DOMCTL_DESTROY => value(svc.domctl(DomctlReq::Destroy(dom_id(a[0])?))),
        HC_DOMCTL_INFO if a[0] & DOMCTL_INFO_ENDED != 0 && a[0] & DOMCTL_INFO_REASON != 0 => {
            let id = dom_id(a[0] & !(DOMCTL_INFO_ENDED | DOMCTL_INFO_REASON))?;
            match svc.domctl(DomctlReq::EndReason(id))? {
                DomctlReply::Reason(r) => {
                    put(svc, a[1], r.as_bytes())?;
                    Ok(r.len() as u64)
                }
                _ => Err(Error::Invalid),
            }
        }
        HC_DOMCTL_INFO if a[0] & DOMCTL_INFO_ENDED != 0 => {
            match svc.domctl(DomctlReq::Ended(dom_id(a[0] & !DOMCTL_INFO_ENDED)?))? {
                DomctlReply::Info(info) => put(svc, a[1], info.as_bytes()),
                _ => Err(Error::Invalid),
            }
        }
        HC_DOMCTL_INFO => match svc.domctl(DomctlReq::Info(dom_id(a[0])?))? {
            DomctlReply::Info(info) => put(svc, a[1], info.as_bytes()),
            _ => Err(Error::Invalid),
        },
        HC_DOMCTL_LIST => list(svc, a),
        HC_DOMCTL_MODULE_INFO => match svc.domctl(DomctlReq::ModuleInfo(a[0]))? {
            DomctlReply::Module(m) => put(svc, a[1], m.as_bytes()),
            _ => Err(Error::Invalid),
        },
        HC_DOMCTL_MODULE_READ => module_read(svc, a),
        HC_DOMCTL_HOST_INFO => match svc.domctl(DomctlReq::HostInfo)? {
            DomctlReply::Host(h) => put(svc, a[0], h.as_bytes()),
            _ => Err(Error::Invalid),
        },
        _ => Err(Error::Invalid),
    }
}

// The arms below with large buffers are functions of their own, not
// inlined: `run_privileged`'s frame is on the stack while a create runs
// the image loader, whose depth nearly fills the hypervisor's 64 KiB
// stack (a double fault when 2 KiB more were inlined here).

/// Reads the `DomainCreateLinux` after the `DomainCreate` at `at` and its
/// command line into `params`.
#[inline(never)]
fn read_linux(svc: &impl Services, at: u64, params: &mut CreateParams) -> Result<(), Error> {
    let at = at
        .checked_add(DOMAIN_CREATE_SIZE as u64)
        .ok_or(Error::Fault)?;
    let mut raw = [0u8; core::mem::size_of::<DomainCreateLinux>()];
    svc.read(at, &mut raw).map_err(|_| Error::Fault)?;
    let ext = DomainCreateLinux::read_from_bytes(&raw).map_err(|_| Error::Fault)?;
    let mut line = [0u8; DOMCTL_LINUX_CMDLINE_MAX as usize];
    let line = line
        .get_mut(..ext.cmdline_len as usize)
        .ok_or(Error::Invalid)?;
    if !line.is_empty() {
        svc.read(ext.cmdline_gpa, line).map_err(|_| Error::Fault)?;
    }
    validate_linux(params, &ext, line)
}

#[inline(never)]
fn list(svc: &mut impl Services, a: [u64; 6]) -> Result<u64, Error> {
    if a[1] > DOMCTL_LIST_MAX {
        return Err(Error::TooBig);
    }
    let mut ids = [0u32; DOMCTL_LIST_MAX as usize];
    let ids = ids.get_mut(..a[1] as usize).ok_or(Error::TooBig)?;
    // The whole array must be writable before anything is listed.
    svc.write(a[0], ids.as_bytes()).map_err(|_| Error::Fault)?;
    let n = value(svc.domctl(DomctlReq::List(ids)))?;
    put(svc, a[0], ids.as_bytes())?;
    Ok(n)
}

#[inline(never)]
fn module_read(svc: &mut impl Services, a: [u64; 6]) -> Result<u64, Error> {
    if a[3] > DOMCTL_READ_MAX {
        return Err(Error::TooBig);
    }
    let mut buf = [0u8; DOMCTL_READ_MAX as usize];
    let buf = buf.get_mut(..a[3] as usize).ok_or(Error::TooBig)?;
    svc.read(a[2], buf).map_err(|_| Error::Fault)?;
    let n = value(svc.domctl(DomctlReq::ModuleRead {
        index: a[0],
        offset: a[1],
        buf,
    }))?;
    let got = buf.get(..n as usize).ok_or(Error::Invalid)?;
    put(svc, a[2], got)?;
    Ok(n)
}
