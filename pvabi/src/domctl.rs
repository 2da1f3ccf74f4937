//! The domctl op group (1.3): the control domain builds, starts, pauses,
//! queries and destroys other domains, and reads the boot modules it was
//! given (guest images and its configuration).
//!
//! Every domctl call from a domain without [`crate::START_FLAG_PRIVILEGED`]
//! fails with `EPERM` before any argument is looked at, so an unprivileged
//! guest learns nothing from probing them.
//!
//! Domain ids are never reused while the hypervisor runs, so an id names
//! one domain for good: a call naming a domain that has gone gets
//! `ENOENT`, never another domain.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// **domctl create** (33): builds a new domain from an ELF boot module,
/// paused.
///
/// - IN: RDI = guest-physical address of a [`DomainCreate`].
/// - OUT: RAX = the new domain's id. Its memory is allocated, the image
///   loaded and its start info written; no vCPU runs until
///   [`HC_DOMCTL_UNPAUSE`].
/// - Errors, in the order checked: `EPERM` (caller not privileged);
///   `EFAULT` (the struct is not in the caller's memory); `EINVAL` (a name
///   that is empty, not NUL-padded or has a byte outside `[A-Za-z0-9._-]`;
///   `memory_bytes` not a multiple of [`DOMCTL_MEMORY_ALIGN`] or outside
///   [`DOMCTL_MEMORY_MIN`]`..=`[`DOMCTL_MEMORY_MAX`]; `nr_vcpus` outside
///   `1..=`[`DOMCTL_MAX_VCPUS`]; `weight` outside `1..=65535`; `cap` over
///   `100 * nr_vcpus`; `flags` not 0; `cmdline_len` over
///   [`DOMCTL_CMDLINE_MAX`] or the command line not UTF-8; `heap_budget`
///   neither 0 nor in [`DOMCTL_BUDGET_MIN`]`..=`[`DOMCTL_BUDGET_MAX`]); `ENOENT` (no
///   boot module `module`, or it is the caller's own image); `EINVAL` (the
///   module is not a usable ELF image or does not fit the memory);
///   `ENOMEM` (not enough free memory, or the hypervisor heap is down to
///   the reserve it keeps for itself). On any error nothing is left
///   behind.
/// - Notes: `weight` and `cap` are reported by [`HC_DOMCTL_INFO`] and
///   honoured by the hypervisor's credit scheduler: CPU-bound domains share
///   CPU time in proportion to weight; a capped domain uses at most `cap`
///   percent of one CPU over time, even when CPUs would otherwise idle.
pub const HC_DOMCTL_CREATE: u64 = 33;

/// **domctl unpause** (34): lets domain RDI's vCPUs run.
///
/// - IN: RDI = a domain id.
/// - OUT: RAX = 0.
/// - Errors: `EPERM` (caller not privileged); `EINVAL` (RDI does not fit
///   in 32 bits, or is the caller); `ENOENT` (no such live domain).
/// - Notes: unpausing a running domain does nothing.
pub const HC_DOMCTL_UNPAUSE: u64 = 34;

/// **domctl pause** (35): stops domain RDI's vCPUs from being scheduled.
///
/// - IN: RDI = a domain id.
/// - OUT: RAX = 0.
/// - Errors: as for [`HC_DOMCTL_UNPAUSE`].
/// - Notes: a vCPU running at the time of the call leaves its CPU at its
///   next exit (within one scheduler tick, 10 ms); a paused domain keeps
///   its memory, ports and grants, and its timers wait.
pub const HC_DOMCTL_PAUSE: u64 = 35;

/// **domctl destroy** (36): ends domain RDI.
///
/// - IN: RDI = a domain id.
/// - OUT: RAX = 0.
/// - Errors: as for [`HC_DOMCTL_UNPAUSE`].
/// - Notes: as when a domain dies: its ports close (peers are notified),
///   its grants are revoked and mappings of them removed; its memory
///   returns to the free pool once its last vCPU has left its CPU (at the
///   latest one tick later), after which [`HC_DOMCTL_INFO`] answers
///   `ENOENT`. Until then it reports [`DOMAIN_DYING`].
pub const HC_DOMCTL_DESTROY: u64 = 36;

/// **domctl info** (37): reports domain RDI.
///
/// - IN: RDI = a domain id (the caller's own is allowed), RSI =
///   guest-physical address of a [`DomainInfo`] to fill. With
///   [`DOMCTL_INFO_ENDED`] set in RDI (2.1), the report of a domain
///   that has **ended and been freed** instead: state [`DOMAIN_ENDED`], how
///   it ended in `flags` ([`DOMAIN_FLAG_EXITED`], [`DOMAIN_FLAG_KILLED`] or
///   [`DOMAIN_FLAG_DESTROYED`]), its exit code, exits, vCPUs, weight, cap,
///   memory quota (`max_pages`; `current_pages` 0) and name; `cpu_time_ns`
///   and `vcpus_online` are 0 (a control domain keeps the CPU time it last
///   saw). The hypervisor keeps the last [`DOMCTL_ENDED_KEPT`] such reports;
///   `ENOENT` for an id with none (never ended, or too long ago).
/// - OUT: RAX = 0 and the struct filled.
/// - Errors: `EPERM` (caller not privileged); `EINVAL` (RDI does not fit
///   in 32 bits); `ENOENT` (no such domain, or its memory is already
///   freed); `EFAULT` (RSI not in the caller's memory).
pub const HC_DOMCTL_INFO: u64 = 37;

/// **domctl list** (38): the ids of every domain that exists, ascending.
///
/// - IN: RDI = guest-physical address of an array of `u32`, RSI = its
///   capacity in entries.
/// - OUT: RAX = how many domains exist (may exceed RSI: then only the
///   first RSI ids were written).
/// - Errors: `EPERM` (caller not privileged); `E2BIG` (RSI over
///   [`DOMCTL_LIST_MAX`]); `EFAULT` (the array not in the caller's memory).
pub const HC_DOMCTL_LIST: u64 = 38;

/// **domctl module info** (39): describes boot module RDI.
///
/// - IN: RDI = module index (0 is the control domain's own image), RSI =
///   guest-physical address of a [`ModuleInfo`] to fill.
/// - OUT: RAX = 0 and the struct filled.
/// - Errors: `EPERM` (caller not privileged); `ENOENT` (no module RDI);
///   `EFAULT` (RSI not in the caller's memory).
pub const HC_DOMCTL_MODULE_INFO: u64 = 39;

/// **domctl module read** (40): copies bytes of boot module RDI.
///
/// - IN: RDI = module index, RSI = byte offset in the module, RDX =
///   guest-physical address of the buffer, R10 = length (at most
///   [`DOMCTL_READ_MAX`]).
/// - OUT: RAX = bytes copied (fewer than R10 at the module's end, 0 at or
///   past it).
/// - Errors: `EPERM` (caller not privileged); `ENOENT` (no module RDI);
///   `E2BIG` (R10 over [`DOMCTL_READ_MAX`]); `EFAULT` (the buffer not in the
///   caller's memory).
pub const HC_DOMCTL_MODULE_READ: u64 = 40;

/// **domctl host info** (41): the machine as the hypervisor sees it.
///
/// - IN: RDI = guest-physical address of a [`HostInfo`] to fill.
/// - OUT: RAX = 0 and the struct filled.
/// - Errors: `EPERM` (caller not privileged); `EFAULT` (RDI not in the
///   caller's memory).
pub const HC_DOMCTL_HOST_INFO: u64 = 41;

/// Most vCPUs a created domain may have (64 since 1.4). Only vCPUs
/// `0..`[`crate::EVTCHN_CONTROL_VCPUS`] can be notified by ports.
pub const DOMCTL_MAX_VCPUS: u32 = 64;
/// Created domains' memory is a multiple of this (2 MiB).
pub const DOMCTL_MEMORY_ALIGN: u64 = 2 << 20;
/// Least memory of a created domain (4 MiB).
pub const DOMCTL_MEMORY_MIN: u64 = 4 << 20;
/// Most memory of a created domain (1 GiB).
pub const DOMCTL_MEMORY_MAX: u64 = 1 << 30;
/// Longest command line of a created domain, in bytes.
pub const DOMCTL_CMDLINE_MAX: u32 = 256;
/// Most ids one [`HC_DOMCTL_LIST`] call writes.
pub const DOMCTL_LIST_MAX: u64 = 1024;
/// Most bytes one [`HC_DOMCTL_MODULE_READ`] copies.
pub const DOMCTL_READ_MAX: u64 = 4096;
/// [`DomainCreate::weight`] when the configuration names none.
pub const DOMCTL_DEFAULT_WEIGHT: u32 = 256;

/// [`DomainInfo::state`]: created or paused; no vCPU is scheduled.
pub const DOMAIN_PAUSED: u32 = 0;
/// [`DomainInfo::state`]: running (its vCPUs are scheduled).
pub const DOMAIN_RUNNING: u32 = 1;
/// [`DomainInfo::state`]: ended (exited, crashed, killed or destroyed);
/// its memory is being returned.
pub const DOMAIN_DYING: u32 = 2;

/// [`DomainInfo::state`] (2.1): ended and freed; only reported
/// for [`DOMCTL_INFO_ENDED`] requests.
pub const DOMAIN_ENDED: u32 = 3;

/// [`DomainInfo::flags`]: the control domain.
pub const DOMAIN_FLAG_PRIVILEGED: u32 = 1;
/// [`DomainInfo::flags`] of a [`DOMAIN_ENDED`] report: it exited by itself
/// (`HC_SCHED_SHUTDOWN`; the code is its own).
pub const DOMAIN_FLAG_EXITED: u32 = 1 << 1;
/// [`DomainInfo::flags`] of a [`DOMAIN_ENDED`] report: the hypervisor
/// killed it (a fault or a broken rule; the reason is in the log).
pub const DOMAIN_FLAG_KILLED: u32 = 1 << 2;
/// [`DomainInfo::flags`] of a [`DOMAIN_ENDED`] report: destroyed by the
/// control domain ([`HC_DOMCTL_DESTROY`]).
pub const DOMAIN_FLAG_DESTROYED: u32 = 1 << 3;

/// [`DomainInfo::flags`] of a [`DOMAIN_ENDED`] report (2.1): the
/// guest ended itself reporting a crash (`HC_SHUTDOWN` with
/// [`SHUTDOWN_CRASH`](crate::SHUTDOWN_CRASH); the code is its own). Before, such an end was
/// reported as [`DOMAIN_FLAG_KILLED`], which now means only that the
/// hypervisor killed it.
pub const DOMAIN_FLAG_CRASHED: u32 = 1 << 5;

/// Bit of [`HC_DOMCTL_INFO`]'s RDI (2.1), with
/// [`DOMCTL_INFO_ENDED`]: instead of the report, write why the hypervisor
/// killed the ended domain (UTF-8, at most [`DOMCTL_REASON_MAX`] bytes, no
/// NUL) to the buffer at RSI, which must hold [`DOMCTL_REASON_MAX`] bytes;
/// RAX = its length, 0 when the hypervisor did not kill it. `ENOENT` when
/// no report is kept. A hypervisor before this bit answers `EINVAL`.
pub const DOMCTL_INFO_REASON: u64 = 1 << 33;
/// Longest kill reason [`DOMCTL_INFO_REASON`] writes, in bytes.
pub const DOMCTL_REASON_MAX: u64 = 160;

/// Bit of [`HC_DOMCTL_INFO`]'s RDI (2.1): ask for the report of an
/// ended domain. Before, any RDI over 32 bits was `EINVAL`, so no older
/// caller sets it.
pub const DOMCTL_INFO_ENDED: u64 = 1 << 32;
/// How many ended domains' reports the hypervisor keeps (the oldest goes).
pub const DOMCTL_ENDED_KEPT: usize = 64;

/// [`ModuleInfo::kind`]: an ELF64 image a domain can be created from.
pub const MODULE_ELF: u32 = 1;
/// [`ModuleInfo::kind`]: any other data (e.g. a configuration file).
pub const MODULE_DATA: u32 = 2;

/// IN of [`HC_DOMCTL_CREATE`]: the new domain.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct DomainCreate {
    /// IN: name, `[A-Za-z0-9._-]`, 1 to 31 bytes, NUL-padded (shown in
    /// its console lines and by [`HC_DOMCTL_INFO`]; need not be unique).
    pub name: [u8; 32],
    /// IN: memory in bytes (see [`HC_DOMCTL_CREATE`] for the bounds).
    pub memory_bytes: u64,
    /// IN: index of the boot module with its ELF image.
    pub module: u32,
    /// IN: vCPUs it may bring up (vCPU 0 starts at the image's entry).
    pub nr_vcpus: u32,
    /// IN: scheduling weight, 1 to 65535 ([`DOMCTL_DEFAULT_WEIGHT`] usual).
    pub weight: u32,
    /// IN: CPU cap in percent of one CPU, 0 for none.
    pub cap: u32,
    /// IN: must be 0.
    pub flags: u32,
    /// IN: bytes of `cmdline` used.
    pub cmdline_len: u32,
    /// IN: the guest's command line (UTF-8).
    pub cmdline: [u8; DOMCTL_CMDLINE_MAX as usize],
    /// IN: its hypervisor heap budget in bytes (what the hypervisor may
    /// allocate on its behalf: its records, vCPUs, event-channel ports,
    /// grant and map entries, console input): 0 for the default, which
    /// grows with `memory_bytes` and `nr_vcpus`; otherwise
    /// [`DOMCTL_BUDGET_MIN`]`..=`[`DOMCTL_BUDGET_MAX`]. Past it the domain's
    /// hypercalls that would allocate fail with `ENOMEM`.
    pub heap_budget: u64,
}

/// The smallest [`DomainCreate::heap_budget`] other than 0.
pub const DOMCTL_BUDGET_MIN: u64 = 16 << 10;
/// The largest [`DomainCreate::heap_budget`].
pub const DOMCTL_BUDGET_MAX: u64 = 64 << 20;

/// Size of [`DomainCreate`] in bytes.
pub const DOMAIN_CREATE_SIZE: usize = 328;
const _: () = assert!(core::mem::size_of::<DomainCreate>() == DOMAIN_CREATE_SIZE);
const _: () = assert!(core::mem::offset_of!(DomainCreate, memory_bytes) == 32);
const _: () = assert!(core::mem::offset_of!(DomainCreate, module) == 40);
const _: () = assert!(core::mem::offset_of!(DomainCreate, nr_vcpus) == 44);
const _: () = assert!(core::mem::offset_of!(DomainCreate, weight) == 48);
const _: () = assert!(core::mem::offset_of!(DomainCreate, cap) == 52);
const _: () = assert!(core::mem::offset_of!(DomainCreate, flags) == 56);
const _: () = assert!(core::mem::offset_of!(DomainCreate, cmdline_len) == 60);
const _: () = assert!(core::mem::offset_of!(DomainCreate, cmdline) == 64);
const _: () = assert!(core::mem::offset_of!(DomainCreate, heap_budget) == 320);

impl DomainCreate {
    /// A request with `name` (cut at 31 bytes), the given sizes, default
    /// weight, no cap and an empty command line.
    pub fn new(name: &str, module: u32, memory_bytes: u64, nr_vcpus: u32) -> Self {
        let mut n = [0u8; 32];
        let len = name.len().min(31);
        n[..len].copy_from_slice(&name.as_bytes()[..len]);
        Self {
            name: n,
            memory_bytes,
            module,
            nr_vcpus,
            weight: DOMCTL_DEFAULT_WEIGHT,
            cap: 0,
            flags: 0,
            cmdline_len: 0,
            cmdline: [0; DOMCTL_CMDLINE_MAX as usize],
            heap_budget: 0,
        }
    }

    /// Sets the command line; `false` (and unchanged) when it is longer
    /// than [`DOMCTL_CMDLINE_MAX`].
    pub fn set_cmdline(&mut self, cmdline: &str) -> bool {
        let b = cmdline.as_bytes();
        if b.len() > self.cmdline.len() {
            return false;
        }
        self.cmdline = [0; DOMCTL_CMDLINE_MAX as usize];
        self.cmdline[..b.len()].copy_from_slice(b);
        self.cmdline_len = b.len() as u32;
        true
    }
}

/// [`DomainCreate::flags`] bit (2.1, issue 13): a Linux domain.
/// The [`DomainCreate`] at RDI is followed directly (at RDI +
/// [`DOMAIN_CREATE_SIZE`]) by a [`DomainCreateLinux`]; `module` is an
/// uncompressed `vmlinux` entered through Linux's 64-bit boot protocol
/// (docs/linux-guest.md), and the inline `cmdline` must be empty
/// (`cmdline_len` 0): the command line is the extension's. Errors besides
/// [`HC_DOMCTL_CREATE`]'s: `EFAULT` (the extension or its command line not
/// in the caller's memory); `EINVAL` (inline command line not empty,
/// extension command line over [`DOMCTL_LINUX_CMDLINE_MAX`], not UTF-8 or
/// with a NUL, `_pad` not 0, `initrd_module` 0 or the kernel's own
/// module); `ENOENT` (no boot module `initrd_module`).
pub const DOMCTL_CREATE_LINUX: u32 = 1 << 0;
/// Longest command line of a Linux domain (Linux's `COMMAND_LINE_SIZE`
/// 2,048 with its NUL).
pub const DOMCTL_LINUX_CMDLINE_MAX: u32 = 2047;
/// [`DomainCreateLinux::initrd_module`]: no initramfs.
pub const DOMCTL_NO_INITRD: u32 = u32::MAX;

/// IN of [`HC_DOMCTL_CREATE`] with [`DOMCTL_CREATE_LINUX`], right after
/// the [`DomainCreate`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct DomainCreateLinux {
    /// IN: boot module with the initramfs, or [`DOMCTL_NO_INITRD`].
    pub initrd_module: u32,
    /// IN: bytes of the command line at `cmdline_gpa`, at most
    /// [`DOMCTL_LINUX_CMDLINE_MAX`] (no NUL needed).
    pub cmdline_len: u32,
    /// IN: guest-physical address of the command line in the caller's
    /// memory (ignored when `cmdline_len` is 0).
    pub cmdline_gpa: u64,
    /// Must be 0.
    pub _pad: u64,
}

/// Size of [`DomainCreateLinux`] in bytes.
pub const DOMAIN_CREATE_LINUX_SIZE: usize = 24;
const _: () = assert!(core::mem::size_of::<DomainCreateLinux>() == DOMAIN_CREATE_LINUX_SIZE);
const _: () = assert!(core::mem::offset_of!(DomainCreateLinux, cmdline_len) == 4);
const _: () = assert!(core::mem::offset_of!(DomainCreateLinux, cmdline_gpa) == 8);

/// [`DomainCreate`] followed by its [`DomainCreateLinux`], as a control
/// domain lays them out for [`DOMCTL_CREATE_LINUX`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct DomainCreateLinuxRequest {
    /// The request, with [`DOMCTL_CREATE_LINUX`] in `flags`.
    pub create: DomainCreate,
    /// The extension.
    pub linux: DomainCreateLinux,
}

const _: () = assert!(core::mem::offset_of!(DomainCreateLinuxRequest, linux) == DOMAIN_CREATE_SIZE);

/// OUT of [`HC_DOMCTL_INFO`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct DomainInfo {
    /// OUT: the domain's id.
    pub id: u32,
    /// OUT: [`DOMAIN_PAUSED`], [`DOMAIN_RUNNING`] or [`DOMAIN_DYING`].
    pub state: u32,
    /// OUT: [`DOMAIN_FLAG_PRIVILEGED`] or 0.
    pub flags: u32,
    /// OUT: vCPUs it may bring up.
    pub nr_vcpus: u32,
    /// OUT: vCPUs brought up (not down).
    pub vcpus_online: u32,
    /// OUT: scheduling weight.
    pub weight: u32,
    /// OUT: CPU cap in percent (0: none).
    pub cap: u32,
    /// OUT: how it ended (its shutdown code, or -1 when killed or
    /// destroyed); 0 while not [`DOMAIN_DYING`].
    pub exit_code: i32,
    /// OUT: pages it holds now.
    pub current_pages: u64,
    /// OUT: its memory quota in pages.
    pub max_pages: u64,
    /// OUT: nanoseconds its vCPUs have run, summed.
    pub cpu_time_ns: u64,
    /// OUT: guest exits so far.
    pub exits: u64,
    /// OUT: its name, NUL-padded.
    pub name: [u8; 32],
    /// OUT: its hypervisor heap budget in bytes (see
    /// [`DomainCreate::heap_budget`]).
    pub heap_budget: u64,
    /// OUT: bytes of it in use now.
    pub heap_used: u64,
    /// OUT: allocations refused for want of budget so far (each an
    /// `ENOMEM` to the domain, or to the control domain acting for it).
    pub heap_refused: u64,
}

/// Size of [`DomainInfo`] in bytes.
pub const DOMAIN_INFO_SIZE: usize = 120;
const _: () = assert!(core::mem::size_of::<DomainInfo>() == DOMAIN_INFO_SIZE);
const _: () = assert!(core::mem::offset_of!(DomainInfo, exit_code) == 28);
const _: () = assert!(core::mem::offset_of!(DomainInfo, current_pages) == 32);
const _: () = assert!(core::mem::offset_of!(DomainInfo, exits) == 56);
const _: () = assert!(core::mem::offset_of!(DomainInfo, name) == 64);
const _: () = assert!(core::mem::offset_of!(DomainInfo, heap_budget) == 96);

/// OUT of [`HC_DOMCTL_MODULE_INFO`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct ModuleInfo {
    /// OUT: size in bytes.
    pub size: u64,
    /// OUT: [`MODULE_ELF`] or [`MODULE_DATA`].
    pub kind: u32,
    /// OUT: bytes of `name` used.
    pub name_len: u32,
    /// OUT: its name (the file name the loader gave, without directories;
    /// `module<i>` when it gave none), NUL-padded.
    pub name: [u8; 64],
    /// OUT: bytes of `args` used.
    pub args_len: u32,
    /// Padding, 0.
    pub _pad: u32,
    /// OUT: the arguments after the name on the module's line.
    pub args: [u8; 256],
}

/// Size of [`ModuleInfo`] in bytes.
pub const MODULE_INFO_SIZE: usize = 344;
const _: () = assert!(core::mem::size_of::<ModuleInfo>() == MODULE_INFO_SIZE);
const _: () = assert!(core::mem::offset_of!(ModuleInfo, name) == 16);
const _: () = assert!(core::mem::offset_of!(ModuleInfo, args_len) == 80);
const _: () = assert!(core::mem::offset_of!(ModuleInfo, args) == 88);

/// OUT of [`HC_DOMCTL_HOST_INFO`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct HostInfo {
    /// OUT: usable RAM in bytes.
    pub total_bytes: u64,
    /// OUT: bytes free for new domains now.
    pub free_bytes: u64,
    /// OUT: CPUs the hypervisor runs on.
    pub nr_cpus: u32,
    /// OUT: domains that exist (including dying ones).
    pub nr_domains: u32,
    /// OUT: boot modules.
    pub nr_modules: u32,
    /// Padding, 0.
    pub _pad: u32,
    /// OUT: bytes of the hypervisor's own heap in use now (its
    /// bookkeeping: domains, vCPUs, ports, grants), apart from the frames
    /// [`Self::free_bytes`] counts. For measuring what a domain costs the
    /// hypervisor; the figure is the allocator's and includes no slack.
    pub heap_used_bytes: u64,
}

/// Size of [`HostInfo`] in bytes.
pub const HOST_INFO_SIZE: usize = 40;
const _: () = assert!(core::mem::size_of::<HostInfo>() == HOST_INFO_SIZE);
const _: () = assert!(core::mem::offset_of!(HostInfo, free_bytes) == 8);
const _: () = assert!(core::mem::offset_of!(HostInfo, nr_modules) == 24);
const _: () = assert!(core::mem::offset_of!(HostInfo, heap_used_bytes) == 32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_request_helpers() {
        let mut c = DomainCreate::new("a-very-long-name-that-does-not-fit-in-31", 2, 8 << 20, 1);
        assert_eq!(c.name[30], b'-');
        assert_eq!(c.name[31], 0, "always NUL-terminated");
        assert!(c.set_cmdline("peer=1"));
        assert_eq!(&c.cmdline[..c.cmdline_len as usize], b"peer=1");
        let long = [b'x'; 257];
        assert!(!c.set_cmdline(core::str::from_utf8(&long).unwrap_or_default()));
        assert_eq!(c.cmdline_len, 6, "unchanged on failure");
        assert_eq!(c.weight, DOMCTL_DEFAULT_WEIGHT);
    }
}
