//! Hypercall numbers (RAX IN) and the constants their arguments use.
//!
//! Each number's documentation is the contract for that hypercall: IN
//! registers, OUT (RAX on success), errors in the order they are checked
//! (the first failing check is the one reported, and nothing has changed
//! then), and notes on ordering and races. "Guest memory" means the pages the
//! domain has present now: inside `0..StartInfo::memory_bytes` and not
//! released with [`HC_MEM_RELEASE`]. Every address is guest-physical (with
//! the initial identity map, equal to the guest-virtual address) and may have
//! any alignment unless stated.
//!
//! # Continued hypercalls (unreleased)
//!
//! No hypercall holds a physical CPU much past a scheduler slice. A
//! hypercall with more work than one exit may do is *continued*, as in
//! Xen: the hypervisor does a bounded piece of it, leaves RIP on the
//! hypercall instruction and every register (RAX included) as the guest
//! set them, and resumes the guest, which executes the instruction again
//! and so carries on where the piece stopped. The progress is kept by the
//! hypervisor for that vCPU, for the very next execution of the same
//! instruction with the same arguments; no event upcall is delivered in
//! between. To the guest a continued hypercall is one that took longer:
//! the same registers on return (RAX the result), the same result.
//! Between two pieces the vCPU may be preempted and other vCPUs of the
//! domain run, so they may see the effects of a part of it (a memory op's
//! first pages, a multicall's first entries), exactly as they could watch
//! a single long hypercall on another CPU.
//!
//! Continued are: [`HC_MULTICALL`] (entries run in pieces whose cost,
//! counted in pages, bytes and mapping changes, is bounded),
//! [`HC_MEM_RELEASE`] and [`HC_MEM_POPULATE`] (8 pages per piece now;
//! guests must not depend on the number) and [`HC_CONSOLE_WRITE`] when
//! the domain's console output queue has no room for the bytes (the vCPU
//! gives up the CPU until the queue drains).
//! A guest that inspects RIP in an interrupt or exception handler may see
//! it on the hypercall instruction, as for any interrupted instruction.

// The op groups kept in their own files, for `HYPERCALLS`.
#[allow(unused_imports)]
use crate::*;

// ---------------------------------------------------------------------------
// console
// ---------------------------------------------------------------------------

/// **console write** (1): writes bytes to the domain's console.
///
/// - IN: RDI = address of the bytes, RSI = length, at most
///   [`CONSOLE_WRITE_MAX`].
/// - OUT: RAX = number of bytes written: all of them (0 for a zero length).
/// - Errors: `E2BIG` when RSI > [`CONSOLE_WRITE_MAX`]; `EFAULT` when any
///   byte of the range lies outside guest memory (nothing is written then).
/// - Notes: the bytes are copied before the hypercall returns; output of
///   different vCPUs is not interleaved within one call. (2.1) They
///   go to the domain's own output queue (4 KiB) and reach the serial
///   console from there a few lines at a time; a write that does not fit
///   the queue now is continued (see the module documentation: the vCPU
///   yields and the write is taken whole once the queue has room), so
///   output is never dropped and a guest printing faster than the serial
///   port waits for it.
pub const HC_CONSOLE_WRITE: u64 = 1;
/// Most bytes one [`HC_CONSOLE_WRITE`] accepts.
pub const CONSOLE_WRITE_MAX: u64 = 4096;

/// **console read** (4): takes bytes of console input that are waiting.
///
/// - IN: RDI = address of a buffer, RSI = its length, at most
///   [`CONSOLE_READ_MAX`].
/// - OUT: RAX = number of bytes stored at RDI, `0..=RSI`; 0 when no input is
///   waiting. Never blocks.
/// - Errors, in the order checked: `EPERM` in an unprivileged domain when
///   the machine has no control domain (no hypervisor option `dom0`), as
///   before 1.3; `E2BIG` when RSI > [`CONSOLE_READ_MAX`]; `EFAULT` when
///   any byte of the buffer lies outside guest memory, whether or not input
///   is waiting (no input is consumed then).
/// - Where input comes from: the privileged domain
///   ([`crate::START_FLAG_PRIVILEGED`]) reads the hypervisor's serial
///   port, kept in a bounded buffer (bytes that arrive while it is full are
///   dropped). Since 1.3, with a control domain, every other domain reads
///   its own console input queue, which the control domain fills with
///   [`crate::HC_DOMCTL_CONSOLE_WRITE`] (what `hvctl console` types).
/// - Notes: concurrent readers each get distinct bytes, in arrival order.
///   To wait for input without spinning, bind [`VIRQ_CONSOLE`] first, then
///   read until 0 and block: input that arrives after the read raises the
///   virq, so the block returns.
pub const HC_CONSOLE_READ: u64 = 4;
/// Most bytes one [`HC_CONSOLE_READ`] accepts.
pub const CONSOLE_READ_MAX: u64 = 4096;

// ---------------------------------------------------------------------------
// sched
// ---------------------------------------------------------------------------

/// **shutdown** (2): stops the whole domain (every vCPU); does not return on
/// success.
///
/// - IN: RDI = reason ([`SHUTDOWN_POWEROFF`], [`SHUTDOWN_CRASH`] or, since
///   2.1, [`crate::SHUTDOWN_REBOOT`]), RSI =
///   exit code, an `i64` (reported to the control domain and in the log).
/// - OUT: nothing on success.
/// - Errors: `EINVAL` for an unknown reason.
/// - Notes: other vCPUs of the domain stop wherever they are; a hypercall
///   they are in the middle of either completes or has no effect.
pub const HC_SHUTDOWN: u64 = 2;
/// [`HC_SHUTDOWN`] reason: orderly power-off.
pub const SHUTDOWN_POWEROFF: u64 = 0;
/// [`HC_SHUTDOWN`] reason: the guest crashed (panicked).
pub const SHUTDOWN_CRASH: u64 = 1;

/// **yield** (3): gives up the rest of this vCPU's time slice; the vCPU
/// stays runnable.
///
/// - IN: nothing.
/// - OUT: RAX = 0.
/// - Errors: none.
pub const HC_YIELD: u64 = 3;

/// **block** (5): stops this vCPU until an event is pending for it or the
/// deadline passes.
///
/// - IN: RDI = deadline in system time (nanoseconds, see
///   [`crate::TimeInfo`]); 0 means no deadline.
/// - OUT: RAX = the vCPU's pending-event mask ([`EVENT_TIMER`], ...) at
///   wake-up, which is cleared; 0 means the deadline passed with no event.
/// - Errors: none.
/// - Notes: returns at once if an event is already pending, or (with mask 0)
///   if the deadline has already passed. No wake-up is lost: the hypervisor
///   checks the pending mask under the same lock that raises events, so an
///   event raised after the guest's last [`HC_SCHED_POLL`] but before (or
///   during) this call wakes it. The deadline does not raise an event; it
///   only ends the wait. Several bits may be set in the result. Without a
///   deadline or a pending [`HC_SET_TIMER`], a vCPU can block forever (the
///   domain can still be shut down or destroyed).
pub const HC_SCHED_BLOCK: u64 = 5;

/// **poll** (6): takes this vCPU's pending events without blocking.
///
/// - IN: nothing.
/// - OUT: RAX = the vCPU's pending-event mask, which is cleared (0 if
///   none).
/// - Errors: none.
/// - Notes: reading and clearing are one atomic step: an event raised
///   concurrently is either in this result or stays pending.
pub const HC_SCHED_POLL: u64 = 6;

/// **set timer** (7): arms or cancels this vCPU's single-shot timer.
///
/// - IN: RDI = deadline in system time (nanoseconds); 0 cancels.
/// - OUT: RAX = 0.
/// - Errors: none.
/// - Notes: when system time reaches the deadline, the hypervisor raises
///   [`EVENT_TIMER`] on the calling vCPU (waking it if blocked) and disarms
///   the timer. A deadline at or before the current time raises the event
///   before this hypercall returns. Each call replaces the previous deadline;
///   cancelling does not clear an `EVENT_TIMER` that is already pending.
///   Each vCPU has its own timer.
pub const HC_SET_TIMER: u64 = 7;

/// Event bit: this vCPU's [`HC_SET_TIMER`] deadline has passed.
pub const EVENT_TIMER: u64 = 1 << 0;
/// Event bit (1.1): an event-channel port of this domain that notifies this
/// vCPU became pending while unmasked (see [`HC_EVTCHN_SEND`]); take the
/// ports with [`HC_EVTCHN_POLL`].
pub const EVENT_CHANNEL: u64 = 1 << 1;
/// Every event bit this ABI version defines. The other bits are reserved:
/// the hypervisor never sets them, and a guest ignores bits it does not
/// know.
pub const EVENTS_DEFINED: u64 = EVENT_TIMER | EVENT_CHANNEL;

// ---------------------------------------------------------------------------
// vcpu
// ---------------------------------------------------------------------------

/// **vCPU up** (8): starts another vCPU of this domain.
///
/// - IN: RDI = vCPU id, `1..StartInfo::nr_vcpus`; RSI = RIP to start at;
///   RDX = RSP to start with; R10 = a value placed in the new vCPU's RDI
///   (the first argument of an `extern "sysv64" fn(u64) -> !`).
/// - OUT: RAX = 0.
/// - Errors: `EINVAL` when the id is 0 or `>= nr_vcpus`; `EBUSY` when that
///   vCPU is already up; `EFAULT` when RIP or `RSP - 8` is outside guest
///   memory (or `RSP < 8`).
/// - Notes: the new vCPU starts in the state vCPU 0 had at entry: 64-bit
///   long mode, CR3 = [`crate::StartInfo::page_tables_gpa`], the same GDT
///   and segments, interrupts disabled (RFLAGS = 0x2), every other
///   general-purpose register 0. It may start running before this hypercall
///   returns; everything the caller wrote to memory before the hypercall is
///   visible to it. RSP should be 16-byte aligned minus 8, as just after a
///   `call` (not checked). A vCPU, once up, stays up until the domain ends:
///   there is no "vCPU down" in 1.0 (a vCPU with nothing to do blocks).
pub const HC_VCPU_UP: u64 = 8;

/// Bit of [`HC_VCPU_UP`]'s RDI (2.1, issue 13): the new vCPU starts
/// on the caller's own page tables, CR3 = R8, instead of the initial ones,
/// and RIP and RSP are addresses under those tables (so not checked
/// against guest memory; a bad one faults the new vCPU as any guest fault
/// does). R8 must be 4 KiB aligned (`EINVAL`) and inside guest memory
/// (`EFAULT`). Before, RDI over 32 bits was `EINVAL` (no such vCPU), so no
/// older caller sets it. For a Linux AP started in the kernel's own
/// tables at `secondary_startup_64`.
pub const VCPU_UP_CR3: u64 = 1 << 32;

/// **vCPU info** (9): reports a vCPU's state.
///
/// - IN: RDI = vCPU id, `0..nr_vcpus`; RSI = address of a
///   [`crate::VcpuInfo`] (24 bytes) to fill.
/// - OUT: RAX = 0; the `VcpuInfo` is filled in.
/// - Errors: `EINVAL` when the id is `>= nr_vcpus`; `EFAULT` when any byte
///   of the `VcpuInfo` lies outside guest memory.
/// - Notes: a snapshot; the vCPU may change state right after. Does not
///   clear the pending events it reports.
pub const HC_VCPU_INFO: u64 = 9;

/// [`crate::VcpuInfo::state`]: not started (or not yet running its first
/// instruction).
pub const VCPU_DOWN: u32 = 0;
/// [`crate::VcpuInfo::state`]: up and waiting for a physical CPU.
pub const VCPU_RUNNABLE: u32 = 1;
/// [`crate::VcpuInfo::state`]: running on a physical CPU (always the case
/// for the calling vCPU).
pub const VCPU_RUNNING: u32 = 2;
/// [`crate::VcpuInfo::state`]: blocked in [`HC_SCHED_BLOCK`].
pub const VCPU_BLOCKED: u32 = 3;
/// [`crate::VcpuInfo::last_cpu`] of a vCPU that has never run.
pub const LAST_CPU_NONE: u32 = u32::MAX;

// ---------------------------------------------------------------------------
// memory
// ---------------------------------------------------------------------------

/// The page size of every memory operation: 4 KiB.
pub const PAGE_SIZE: u64 = 4096;
/// Most pages one [`HC_MEM_RELEASE`] or [`HC_MEM_POPULATE`] handles
/// (2 MiB).
pub const MEM_OP_MAX_PAGES: u64 = 512;

/// **memory info** (10): reports the domain's memory reservation.
///
/// - IN: RDI = address of a [`crate::MemInfo`] (24 bytes) to fill.
/// - OUT: RAX = 0; the `MemInfo` is filled in.
/// - Errors: `EFAULT` when any byte of the `MemInfo` lies outside guest
///   memory.
/// - Notes: a snapshot; another vCPU of the domain may release or populate
///   pages right after.
pub const HC_MEM_INFO: u64 = 10;

/// **memory release** (11): gives guest pages back to the hypervisor (the
/// balloon's inflate).
///
/// - IN: RDI = guest-physical address, page aligned; RSI = number of pages,
///   `1..=`[`MEM_OP_MAX_PAGES`].
/// - OUT: RAX = number of pages released (= RSI).
/// - Errors: `EINVAL` when RDI is not page aligned or RSI is 0 or over
///   [`MEM_OP_MAX_PAGES`]; `EFAULT` when the range is not inside the
///   guest-physical space `0..memory_bytes`; `ENOENT` when any page of the
///   range is already released (or is a mapped grant: unmap those with
///   [`HC_GRANT_UNMAP`]); `EBUSY` (1.2) when another domain maps any page
///   of the range through a grant, and (2.1) while any PCI device
///   is attached to the domain through the IOMMU (its DMA may reach every
///   page the domain had when it was attached). All or nothing: on an
///   error no page changed.
/// - Notes: the pages are unmapped from the domain and their frames returned
///   to the hypervisor; their contents are gone. When the hypercall returns,
///   no vCPU of the domain can reach them any more (stale translations on
///   every physical CPU are flushed first); an access afterwards kills the
///   domain, like any access outside its memory. The hypervisor does not
///   stop a guest from releasing the pages holding its code, stack, page
///   tables or start-info page (and with it the [`crate::TimeInfo`], which
///   then stops being updated): it will be killed at its next access.
///   (2.1) Continued every few pages (module documentation); the
///   checks above are made for the whole range before the first page
///   changes. Only if another vCPU of the domain releases or populates
///   pages of the same range while this one is continued can it fail
///   part-way, with those pages' error and the earlier pages released.
pub const HC_MEM_RELEASE: u64 = 11;

/// **memory populate** (12): asks for fresh pages at guest-physical
/// addresses that have none (the balloon's deflate).
///
/// - IN: RDI = guest-physical address, page aligned; RSI = number of pages,
///   `1..=`[`MEM_OP_MAX_PAGES`].
/// - OUT: RAX = number of pages populated (= RSI). The pages are zeroed.
/// - Errors: `EINVAL` when RDI is not page aligned or RSI is 0 or over
///   [`MEM_OP_MAX_PAGES`]; `EFAULT` when the range is not inside the
///   guest-physical space `0..memory_bytes`; `EEXIST` when any page of the
///   range is present (or a mapped grant, 1.2); `ENOMEM` when the domain would have more than
///   [`crate::MemInfo::max_pages`] pages present, or the host has no free
///   memory. All or nothing: on an error no page changed.
/// - Notes: the pages are usable by every vCPU of the domain when the
///   hypercall returns. Populating never grows the guest-physical space.
///   (2.1) Continued every few pages, like [`HC_MEM_RELEASE`]: the
///   checks are made for the whole range first; a concurrent change of the
///   same range by another vCPU, or the host running out of frames, can
///   end it part-way.
pub const HC_MEM_POPULATE: u64 = 12;

// ---------------------------------------------------------------------------
// multicall
// ---------------------------------------------------------------------------

/// **multicall** (13): runs several hypercalls for the cost of one exit.
///
/// - IN: RDI = address of an array of [`crate::MulticallEntry`] (64 bytes
///   each); RSI = number of entries, `1..=`[`MULTICALL_MAX`].
/// - OUT: RAX = number of entries executed (= RSI). Each entry's `result`
///   holds what RAX would have held had its op been called alone: a value
///   `>= 0` or a negative status code.
/// - Errors: `EINVAL` when RSI is 0; `E2BIG` when RSI > [`MULTICALL_MAX`];
///   `EFAULT` when any byte of the array lies outside guest memory (no entry
///   runs then), or when the results cannot be written back (see below).
/// - Notes: the hypervisor copies the whole array in before running the
///   first entry, runs the entries in order (each sees the effects of the
///   ones before it), then writes every `result` back. Special ops:
///   [`HC_SHUTDOWN`] with a valid reason ends the domain and the entries
///   after it do not run; [`HC_MULTICALL`], [`HC_SCHED_BLOCK`] and (1.4)
///   [`HC_EVTCHN_SEND_WAIT`] are not
///   allowed inside a batch: their `result` is `EINVAL` and the batch goes
///   on; [`HC_YIELD`] takes effect after the whole batch. An unknown op gets
///   `ENOSYS`. If an entry releases the pages holding the array itself, the
///   entries still all run but the write-back fails and the multicall
///   returns `EFAULT`. An entry whose own output lands inside the array is
///   overwritten by the write-back.
/// - (2.1) Continued: a batch whose entries cost more than one exit
///   may do (each entry costs 1, a console write 1 more per 64 bytes, a
///   memory op 8 per page, a grant map, unmap or revoke 4, a grant copy 1
///   per 64 bytes; one exit does 64) runs in pieces (module
///   documentation). Each piece copies in the entries still to run, runs
///   what fits, and writes those entries back (with their `result`) before
///   the next piece; a memory op entry may itself span pieces. So: entries
///   are read piece by piece (a later entry is read after the earlier ones
///   ran; `EFAULT` for an array outside guest memory is still reported
///   before any entry runs), a write-back that fails ends the batch with
///   `EFAULT` at that piece, and [`HC_YIELD`] takes effect after the piece
///   it is in. 64 entries that cost 1 each (polls, short console lines)
///   still run in one exit.
pub const HC_MULTICALL: u64 = 13;
/// Most entries one [`HC_MULTICALL`] accepts.
pub const MULTICALL_MAX: u64 = 64;

/// Every hypercall number this ABI version defines, in order.
pub const HYPERCALLS: &[u64] = &[
    HC_CONSOLE_WRITE,
    HC_SHUTDOWN,
    HC_YIELD,
    HC_CONSOLE_READ,
    HC_SCHED_BLOCK,
    HC_SCHED_POLL,
    HC_SET_TIMER,
    HC_VCPU_UP,
    HC_VCPU_INFO,
    HC_MEM_INFO,
    HC_MEM_RELEASE,
    HC_MEM_POPULATE,
    HC_MULTICALL,
    HC_EVTCHN_ALLOC_UNBOUND,
    HC_EVTCHN_BIND_INTERDOMAIN,
    HC_EVTCHN_SEND,
    HC_EVTCHN_CLOSE,
    HC_EVTCHN_UNMASK,
    HC_EVTCHN_MASK,
    HC_EVTCHN_POLL,
    HC_GRANT_ACCESS,
    HC_GRANT_REVOKE,
    HC_GRANT_MAP,
    HC_GRANT_UNMAP,
    HC_EVTCHN_BIND_VIRQ,
    HC_EVTCHN_BIND_IPI,
    HC_EVTCHN_STATUS,
    HC_EVTCHN_BIND_VCPU,
    HC_EVTCHN_INIT_CONTROL,
    // 1.3, grant group (30-32).
    HC_GRANT_COPY,
    HC_GRANT_QUERY,
    HC_GRANT_SET_MAX,
    // 1.3, domctl group (33-41, `crate::domctl`).
    crate::HC_DOMCTL_CREATE,
    crate::HC_DOMCTL_UNPAUSE,
    crate::HC_DOMCTL_PAUSE,
    crate::HC_DOMCTL_DESTROY,
    crate::HC_DOMCTL_INFO,
    crate::HC_DOMCTL_LIST,
    crate::HC_DOMCTL_MODULE_INFO,
    crate::HC_DOMCTL_MODULE_READ,
    crate::HC_DOMCTL_HOST_INFO,
    // 1.3, management line and consoles (42-45, `crate::mgmt`).
    crate::HC_MGMT_WRITE,
    crate::HC_MGMT_READ,
    crate::HC_DOMCTL_CONSOLE_READ,
    crate::HC_HOST_CONSOLE_WRITE,
    crate::HC_DOMCTL_CONSOLE_WRITE,
    // 1.4, the combined event-channel round trip (47).
    HC_EVTCHN_SEND_WAIT,
    // 2.1, lifecycle control (48-50, `crate::lifecycle`).
    crate::HC_SHUTDOWN_REQUESTED,
    crate::HC_DOMCTL_SHUTDOWN_REQUEST,
    crate::HC_DOMCTL_SET_SCHED,
    // 2.1, PCI devices (51-53, `crate::pci`).
    crate::HC_PCI_LIST,
    crate::HC_PCI_CONFIG_READ,
    crate::HC_PCI_CONFIG_WRITE,
    // Unreleased, device interrupts as events (54-55, `crate::msi`).
    crate::HC_PCI_MSI_BIND,
    crate::HC_PCI_MSI_UNBIND,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypercall_numbers() {
        for (i, &nr) in HYPERCALLS.iter().enumerate() {
            assert_eq!(
                nr,
                i as u64 + 1,
                "numbers are dense, in order, and never reused"
            );
        }
        assert_eq!(
            [HC_GRANT_COPY, HC_GRANT_QUERY, HC_GRANT_SET_MAX],
            [30, 31, 32]
        );
        assert_eq!(crate::HC_DOMCTL_CONSOLE_WRITE, 46);
        assert_eq!(HYPERCALLS.last(), Some(&crate::HC_PCI_MSI_UNBIND));
        assert_eq!(HC_EVTCHN_SEND_WAIT, 47);
        assert_eq!(GRANT_COPY_MAX, PAGE_SIZE);
        const { assert!(GRANT_DEFAULT_LIMIT <= GRANT_MAX_CEILING) };
        assert_ne!(SHUTDOWN_POWEROFF, SHUTDOWN_CRASH);
        assert_eq!(EVENT_TIMER, 1);
        assert_eq!(EVENT_CHANNEL, 2);
        assert_eq!(EVENTS_DEFINED & !(EVENT_TIMER | EVENT_CHANNEL), 0);
        assert_eq!(
            [VCPU_DOWN, VCPU_RUNNABLE, VCPU_RUNNING, VCPU_BLOCKED],
            [0, 1, 2, 3]
        );
        assert_eq!(PAGE_SIZE, 4096);
        assert_eq!(MEM_OP_MAX_PAGES, 512);
        assert_eq!(MULTICALL_MAX, 64);
        assert_eq!(CONSOLE_WRITE_MAX, 4096);
        assert_eq!(CONSOLE_READ_MAX, 4096);
        assert_eq!(
            [VIRQ_TIMER, VIRQ_CONSOLE, VIRQ_DOM_EXC, NR_VIRQS],
            [0, 1, 2, 16]
        );
        assert_eq!(
            [
                EVTCHN_STATE_FREE,
                EVTCHN_STATE_UNBOUND,
                EVTCHN_STATE_INTERDOMAIN,
                EVTCHN_STATE_VIRQ,
                EVTCHN_STATE_IPI
            ],
            [0, 1, 2, 3, 4]
        );
        assert_eq!(EVTCHN_CONTROL_PAGES * PAGE_SIZE, 20480);
    }
}
