//! The memory target (unreleased, issue 15): the control domain sets how
//! many pages a running domain should hold ([`HC_DOMCTL_MEM_TARGET`], as
//! Xen's `xl mem-set` writes `memory/target` in xenstore), the domain
//! reads it ([`HC_MEM_TARGET`]) when [`VIRQ_MEM_TARGET`] tells it that it
//! changed, and a cooperating guest balloons toward it with
//! [`crate::HC_MEM_RELEASE`] / [`crate::HC_MEM_POPULATE`]
//! (`pvabi::guest::memory::balloon_toward_target`).
//!
//! The target forces nothing: a guest that ignores it keeps its pages,
//! and its quota ([`crate::MemInfo::max_pages`]) is unchanged (a policy
//! that enforces, or moves memory between domains, is built on top of
//! this by the control domain later). Old guests never call it and see
//! nothing new; on a hypervisor without it [`HC_MEM_TARGET`] is `ENOSYS`.

/// Virq: the control domain changed this domain's memory target
/// ([`HC_DOMCTL_MEM_TARGET`]). Raised on every vCPU that bound it, after
/// the new target is readable with [`HC_MEM_TARGET`] (a target set before
/// the bind is still readable there; virqs are not remembered).
pub const VIRQ_MEM_TARGET: u32 = 6;

/// The lowest target, in pages: [`crate::DOMCTL_MEMORY_MIN`] (4 MiB), the
/// smallest domain [`crate::HC_DOMCTL_CREATE`] makes. The hypervisor does
/// not know how much of a guest is program image and boot area (what a
/// guest can never release); a guest whose image and boot area exceed the
/// target stops at the end of its free region and says how far it got.
pub const MEM_TARGET_MIN_PAGES: u64 = crate::DOMCTL_MEMORY_MIN / crate::PAGE_SIZE;

/// [`HC_DOMCTL_MEM_TARGET`]'s RSI: read the target, change nothing.
pub const MEM_TARGET_QUERY: u64 = u64::MAX;

/// **mem target** (56): the number of pages the control domain wants
/// this domain to hold. Any domain may call it.
///
/// - IN: nothing.
/// - OUT: RAX = the target in pages: [`crate::MemInfo::max_pages`] until
///   the control domain sets one.
/// - Errors: none.
/// - Notes: compare with [`crate::MemInfo::current_pages`]; release pages
///   while above it, populate while below.
pub const HC_MEM_TARGET: u64 = 56;

/// **domctl mem target** (57): sets domain RDI's memory target to RSI
/// pages and raises [`VIRQ_MEM_TARGET`] in it; or, with RSI =
/// [`MEM_TARGET_QUERY`], only reads it.
///
/// - IN: RDI = a domain id, RSI = pages ([`MEM_TARGET_MIN_PAGES`]`..=`
///   its `max_pages`) or [`MEM_TARGET_QUERY`].
/// - OUT: RAX = the domain's target in pages (the new one when set).
/// - Errors: `EPERM` (caller not privileged); `EINVAL` (RDI does not fit
///   in 32 bits or is the caller, RSI below [`MEM_TARGET_MIN_PAGES`] or
///   above the domain's `max_pages`); `ENOENT` (no such live domain).
/// - Notes: the control domain has no target of its own (it runs no
///   balloon; its memory is fixed at boot). Setting the same target again
///   raises the virq again.
pub const HC_DOMCTL_MEM_TARGET: u64 = 57;

// Checked at build time: the numbers follow the last ones (55, 5) and the
// floor is 4 MiB; 3-5 are VIRQ_SHUTDOWN, VIRQ_MGMT_RX, VIRQ_CONSOLE_OUT.
const _: () = assert!(HC_MEM_TARGET == crate::HC_PCI_MSI_UNBIND + 1);
const _: () = assert!(HC_DOMCTL_MEM_TARGET == HC_MEM_TARGET + 1);
const _: () = assert!(MEM_TARGET_MIN_PAGES == 1024);
const _: () = assert!(VIRQ_MEM_TARGET < crate::NR_VIRQS);
const _: () = assert!(VIRQ_MEM_TARGET == crate::VIRQ_CONSOLE_OUT + 1);
