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
///   different vCPUs is not interleaved within one call.
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
/// - IN: RDI = reason ([`SHUTDOWN_POWEROFF`] or [`SHUTDOWN_CRASH`]), RSI =
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
///   of the range through a grant. All or nothing: on an error no page
///   changed.
/// - Notes: the pages are unmapped from the domain and their frames returned
///   to the hypervisor; their contents are gone. When the hypercall returns,
///   no vCPU of the domain can reach them any more (stale translations on
///   every physical CPU are flushed first); an access afterwards kills the
///   domain, like any access outside its memory. The hypervisor does not
///   stop a guest from releasing the pages holding its code, stack, page
///   tables or start-info page (and with it the [`crate::TimeInfo`], which
///   then stops being updated): it will be killed at its next access.
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
///   after it do not run; [`HC_MULTICALL`] and [`HC_SCHED_BLOCK`] are not
///   allowed inside a batch: their `result` is `EINVAL` and the batch goes
///   on; [`HC_YIELD`] takes effect after the whole batch. An unknown op gets
///   `ENOSYS`. If an entry releases the pages holding the array itself, the
///   entries still all run but the write-back fails and the multicall
///   returns `EFAULT`. An entry whose own output lands inside the array is
///   overwritten by the write-back.
pub const HC_MULTICALL: u64 = 13;
/// Most entries one [`HC_MULTICALL`] accepts.
pub const MULTICALL_MAX: u64 = 64;

// ---------------------------------------------------------------------------
// evtchn (1.1)
// ---------------------------------------------------------------------------
//
// An event channel connects a port of one domain to a port of another (or
// the same) domain. Ports are numbers `1..65536` in a per-domain table;
// port 0 is never allocated and means "none". A send makes the peer port
// *pending*; a pending port that is not *masked* raises [`EVENT_CHANNEL`] on
// the vCPU it notifies (vCPU 0 for the ports these ops make), waking it from
// [`HC_SCHED_BLOCK`]. A port already pending is not notified again until it
// is taken with [`HC_EVTCHN_POLL`], so the receiver polls until it gets 0
// after every wake-up. Domain ids are the hypervisor's
// ([`crate::StartInfo::domain_id`]); how a domain learns its peer's id is
// the system's convention (the test guests take `peer=<id>` on their
// command line). Arguments that are port numbers or domain ids must fit in
// 32 bits (`EINVAL` otherwise).

/// **evtchn alloc unbound** (14): allocates a port that domain RDI may
/// connect to with [`HC_EVTCHN_BIND_INTERDOMAIN`].
///
/// - IN: RDI = the remote domain's id (may be the caller's own).
/// - OUT: RAX = the new port, the lowest free number (a domain's first port
///   is 1).
/// - Errors: `EINVAL` when RDI does not fit in 32 bits; `ENOMEM` when the
///   domain has its maximum of ports or the hypervisor is out of memory.
/// - Notes: the remote domain need not exist yet (ids are never reused, so
///   a port offered to a domain that never appears is merely wasted). A
///   send on the port fails with `EBUSY` until the remote has connected.
pub const HC_EVTCHN_ALLOC_UNBOUND: u64 = 14;

/// **evtchn bind interdomain** (15): connects a new local port to port RSI
/// of domain RDI, which that domain allocated unbound for the caller.
///
/// - IN: RDI = the remote domain's id; RSI = the remote port.
/// - OUT: RAX = the new local port (notifies vCPU 0).
/// - Errors: `EINVAL` when RDI or RSI does not fit in 32 bits; `ENOENT`
///   when no live domain has id RDI, or the remote port is not allocated
///   (0, never allocated, closed, or beyond its table); `EBUSY` when the
///   remote port is allocated but not unbound (already connected, or bound
///   to something else); `EPERM` when it is unbound for another domain;
///   `ENOMEM` as for [`HC_EVTCHN_ALLOC_UNBOUND`].
/// - Notes: both ports are connected when the call returns; neither is
///   made pending. Binding to one's own domain (RDI = own id) makes a
///   loopback channel.
pub const HC_EVTCHN_BIND_INTERDOMAIN: u64 = 15;

/// **evtchn send** (16): notifies the peer of port RDI.
///
/// - IN: RDI = a local port.
/// - OUT: RAX = 0.
/// - Errors: `EINVAL` when RDI does not fit in 32 bits; `ENOENT` when the
///   port is not allocated; `EBUSY` when it is unbound (no peer has
///   connected yet, or the peer closed its end or died).
/// - Notes: sets the peer port pending; if it was not pending and is not
///   masked, raises [`EVENT_CHANNEL`] on the vCPU it notifies and wakes that
///   vCPU if blocked. Everything the sender wrote to shared memory before
///   the send is visible to the receiver once it sees the port pending.
///   Sends to a port already pending coalesce (one pending bit).
pub const HC_EVTCHN_SEND: u64 = 16;

/// **evtchn close** (17): frees port RDI.
///
/// - IN: RDI = a local port.
/// - OUT: RAX = 0.
/// - Errors: `EINVAL` when RDI does not fit in 32 bits; `ENOENT` when the
///   port is not allocated (so a second close of the same port fails).
/// - Notes: a connected peer's port goes back to unbound (for this domain)
///   and is made pending, so the peer notices; its sends then fail with
///   `EBUSY`. When a domain ends, all its ports are closed this way. The
///   number may be handed out again by a later allocation.
pub const HC_EVTCHN_CLOSE: u64 = 17;

/// **evtchn unmask** (18): lets port RDI notify again.
///
/// - IN: RDI = a local port.
/// - OUT: RAX = 0.
/// - Errors: `EINVAL` when RDI does not fit in 32 bits; `ENOENT` when the
///   port is not allocated.
/// - Notes: if the port was masked and is pending, [`EVENT_CHANNEL`] is
///   raised now (a send while masked is never lost).
pub const HC_EVTCHN_UNMASK: u64 = 18;

/// **evtchn mask** (19): holds back notifications of port RDI; sends still
/// make it pending.
///
/// - IN: RDI = a local port.
/// - OUT: RAX = 0.
/// - Errors: `EINVAL` when RDI does not fit in 32 bits; `ENOENT` when the
///   port is not allocated.
/// - Notes: a masked port is not returned by [`HC_EVTCHN_POLL`].
pub const HC_EVTCHN_MASK: u64 = 19;

/// **evtchn poll** (20): takes the next pending, unmasked port of this
/// domain, clearing its pending bit.
///
/// - IN: nothing.
/// - OUT: RAX = the port, or 0 when none is pending.
/// - Errors: none.
/// - Notes: round-robin: the search starts just after the port returned
///   last, so no port can starve the others. Poll until 0 after each
///   [`EVENT_CHANNEL`]: a port raised while it was still pending was not
///   notified again.
pub const HC_EVTCHN_POLL: u64 = 20;

// evtchn (1.3): virqs, ipis, status, vCPU binding and upcalls. The shared
// structures these use ([`crate::EvtchnStatus`], [`crate::EvtchnControl`])
// are in `evtchn.rs`.

/// Virq (1.3): this vCPU's [`HC_SET_TIMER`] deadline passed (raised
/// together with [`EVENT_TIMER`]).
pub const VIRQ_TIMER: u32 = 0;
/// Virq (1.3): console input is waiting. Raised on every vCPU of an
/// unprivileged domain that bound it when the control domain queues input
/// for it ([`crate::HC_DOMCTL_CONSOLE_WRITE`]); the domain takes the bytes
/// with [`HC_CONSOLE_READ`]. The hypervisor does not raise it in the
/// privileged domain (which polls the serial console).
pub const VIRQ_CONSOLE: u32 = 1;
/// Virq (1.3): some domain ended; raised on every privileged domain
/// ([`crate::START_FLAG_PRIVILEGED`]) that bound it, on the vCPU it bound.
pub const VIRQ_DOM_EXC: u32 = 2;
/// Virq numbers are `0..NR_VIRQS`; the ones not named above are reserved
/// (binding them succeeds, nothing raises them yet).
pub const NR_VIRQS: u32 = 16;

/// **evtchn bind virq** (25): a new port the hypervisor raises when virq
/// RDI happens on vCPU RSI.
///
/// - IN: RDI = virq number ([`VIRQ_TIMER`], ...), RSI = vCPU id.
/// - OUT: RAX = the new port (notifies vCPU RSI).
/// - Errors, in the order checked: `EINVAL` (RDI or RSI does not fit in
///   32 bits, RDI `>= `[`NR_VIRQS`], or RSI `>= StartInfo::nr_vcpus`);
///   `EEXIST` (that virq is already bound on that vCPU); `ENOMEM`.
/// - Notes: a send on a virq port fails with `EINVAL` (only the
///   hypervisor raises it). Closing the port unbinds the virq, which may
///   then be bound again. Virqs raised before the bind are not remembered.
pub const HC_EVTCHN_BIND_VIRQ: u64 = 25;

/// **evtchn bind ipi** (26): a new port for signalling between vCPUs of
/// this domain: a send on it (from any vCPU of the domain) makes it
/// pending and notifies vCPU RDI.
///
/// - IN: RDI = the vCPU to notify.
/// - OUT: RAX = the new port.
/// - Errors, in the order checked: `EINVAL` (RDI does not fit in 32 bits
///   or is `>= nr_vcpus`); `ENOMEM`.
pub const HC_EVTCHN_BIND_IPI: u64 = 26;

/// **evtchn status** (27): describes port RDI.
///
/// - IN: RDI = a local port, RSI = address of a [`crate::EvtchnStatus`]
///   (32 bytes) to fill.
/// - OUT: RAX = 0; the `EvtchnStatus` is filled in.
/// - Errors, in the order checked: `EINVAL` (RDI does not fit in 32
///   bits); `ENOENT` (RDI is 0 or beyond every port the domain ever
///   allocated); `EFAULT` (any byte of the `EvtchnStatus` outside guest
///   memory).
/// - Notes: a snapshot. A port that was allocated once and is free now
///   reports [`EVTCHN_STATE_FREE`].
pub const HC_EVTCHN_STATUS: u64 = 27;

/// [`crate::EvtchnStatus::state`]: not allocated.
pub const EVTCHN_STATE_FREE: u32 = 0;
/// [`crate::EvtchnStatus::state`]: allocated for `remote_domain` to
/// connect to.
pub const EVTCHN_STATE_UNBOUND: u32 = 1;
/// [`crate::EvtchnStatus::state`]: connected to `remote_port` of
/// `remote_domain`.
pub const EVTCHN_STATE_INTERDOMAIN: u32 = 2;
/// [`crate::EvtchnStatus::state`]: bound to virq `virq`.
pub const EVTCHN_STATE_VIRQ: u32 = 3;
/// [`crate::EvtchnStatus::state`]: an ipi port.
pub const EVTCHN_STATE_IPI: u32 = 4;

/// **evtchn bind vcpu** (28): makes port RDI notify vCPU RSI.
///
/// - IN: RDI = a local port, RSI = vCPU id.
/// - OUT: RAX = 0.
/// - Errors, in the order checked: `EINVAL` (RDI or RSI does not fit in 32
///   bits); `ENOENT` (port not allocated); `EINVAL` (RSI `>= nr_vcpus`, or
///   a virq or ipi port: those keep the vCPU they were bound to).
/// - Notes: applies to later notifications; one already made stays with
///   the old vCPU.
pub const HC_EVTCHN_BIND_VCPU: u64 = 28;

/// **evtchn init control** (29): moves this domain's pending and mask bits
/// into a [`crate::EvtchnControl`] area in its own memory and turns on
/// upcalls: a port notifying vCPU `v` then sets `v`'s `upcall_pending` and
/// selector bit and injects interrupt vector RSI into `v` (see
/// [`crate::EvtchnControl`] for when).
///
/// - IN: RDI = guest-physical address of the area,
///   [`EVTCHN_CONTROL_PAGES`] contiguous pages; RSI = vector,
///   `32..=255`.
/// - OUT: RAX = 0.
/// - Errors, in the order checked: `EINVAL` (RSI outside `32..=255`);
///   `EINVAL` (RDI not page aligned); `EFAULT` (any page of the area
///   outside the domain or not present: released, or a mapped grant);
///   `EBUSY` (a page of the area is granted to another domain);
///   `EEXIST` (an area is registered already: once per domain).
/// - Notes: the hypervisor copies the current pending and mask bits into
///   the area (OR-ed into what the guest wrote there) and does not touch
///   the per-vCPU `upcall_mask` words: set them to 1 before this call on
///   every vCPU that has no handler for the vector yet. While registered
///   (the domain's life) the pages are pinned: [`HC_MEM_RELEASE`] of one
///   fails with `EBUSY`, [`HC_GRANT_ACCESS`] of one with `EBUSY`. What the
///   guest writes there can only confuse its own event delivery. Guests
///   that never call this keep the 1.1 behaviour ([`EVENT_CHANNEL`] and
///   [`HC_EVTCHN_POLL`]), which also keeps working after it.
pub const HC_EVTCHN_INIT_CONTROL: u64 = 29;
/// Pages of a [`crate::EvtchnControl`] area (20 KiB).
pub const EVTCHN_CONTROL_PAGES: u64 = 5;
/// Lowest upcall vector [`HC_EVTCHN_INIT_CONTROL`] accepts (0..32 are
/// exceptions).
pub const UPCALL_VECTOR_MIN: u64 = 32;

// grant (1.2)

/// Flag of [`HC_GRANT_ACCESS`] and [`HC_GRANT_MAP`] (1.2): read-only. The
/// only flag defined; any other bit set is `EINVAL`.
pub const GRANT_READONLY: u64 = 1;

/// Status of [`HC_GRANT_REVOKE`] (1.2) when the grant is still mapped: the
/// revoke took effect (no new mappings) but the page stays shared until
/// the grantee unmaps it; then the grant's reference is free again and
/// the port named in the revoke (if not 0) is made pending.
pub const GRANT_REVOKE_DEFERRED: u64 = 1;

/// **grant access** (21): lets domain RSI map this domain's page at RDI.
///
/// - IN: RDI = guest-physical address of a page of the caller's, RSI =
///   the grantee's domain id, RDX = flags ([`GRANT_READONLY`] or 0).
/// - OUT: RAX = a grant reference (a small number, to pass to the grantee).
/// - Errors, in the order checked: `EINVAL` (RSI does not fit in 32 bits,
///   or RDX has an undefined bit); `EINVAL` (RDI not page aligned);
///   `EFAULT` (RDI outside the domain, or the page is not present:
///   released, or itself a mapped grant); `EINVAL` (the grantee is the
///   caller); `ENOMEM` (the domain's grant limit, 1024, is reached).
/// - Notes: the grantee need not exist yet. While any grantee maps the
///   page, the granter's [`HC_MEM_RELEASE`] of it fails with `EBUSY`.
pub const HC_GRANT_ACCESS: u64 = 21;

/// **grant revoke** (22): ends grant RDI.
///
/// - IN: RDI = a grant reference of the caller's, RSI = a local
///   event-channel port to make pending when a deferred revoke completes
///   (0: none).
/// - OUT: RAX = 0 (done: the reference is free and the page private) or
///   [`GRANT_REVOKE_DEFERRED`] (still mapped: see there).
/// - Errors, in the order checked: `EINVAL` (RDI or RSI does not fit in 32
///   bits, or RDI is beyond the grant limit); `ENOENT` (not granted);
///   `EBUSY` (already being revoked).
pub const HC_GRANT_REVOKE: u64 = 22;

/// **grant map** (23): maps grant RSI of domain RDI at the caller's
/// guest-physical address RDX.
///
/// - IN: RDI = the granter's domain id, RSI = its grant reference, RDX =
///   where to map it: a page-aligned address inside the caller's
///   guest-physical space where the caller has no page (a hole it made
///   with [`HC_MEM_RELEASE`]), R10 = flags ([`GRANT_READONLY`] or 0).
/// - OUT: RAX = a map handle, for [`HC_GRANT_UNMAP`].
/// - Errors, in the order checked: `EINVAL` (RDI or RSI does not fit in 32
///   bits, R10 has an undefined bit, RDX is not page aligned, or RDI is
///   the caller); `EFAULT` (RDX outside the domain); `EEXIST` (a page or
///   another mapping is at RDX); `ENOENT` (no such live granter);
///   `EINVAL` (RSI beyond the granter's limit); `ENOENT` (RSI never
///   granted, or revoked); `EPERM` (granted to another domain, or
///   read-only and R10 asks read-write); `ENOMEM` (the caller's map limit,
///   1024, is reached, or no memory for a page-table frame).
/// - Notes: a write to a read-only mapping is a nested-paging violation:
///   the writer is killed. The mapped page is not the caller's own memory:
///   hypercall buffers there get `EFAULT`, and it is not counted in
///   `current_pages`. When the granter dies (1.3) the mapping stays but
///   its page is swapped for a zeroed page of the grantee's own (writable
///   if the mapping was), so a grantee in the middle of using it does not
///   fault; the granter's frame is freed at once. The grantee learns of
///   the death through its event channel (the port goes unbound) and
///   unmaps as usual, which frees the zeroed page. (1.2 removed the
///   mapping, so touching the page killed the grantee.)
pub const HC_GRANT_MAP: u64 = 23;

/// **grant unmap** (24): removes mapping RDI.
///
/// - IN: RDI = a map handle from [`HC_GRANT_MAP`].
/// - OUT: RAX = 0; the address is a hole again.
/// - Errors: `EINVAL` (RDI does not fit in 32 bits); `ENOENT` (no such
///   mapping, e.g. already unmapped).
/// - Notes: returns once no vCPU of the caller can still reach the page
///   (TLB shoot-down). If it was the last mapping of a revoked grant, the
///   granter's revoke completes.
pub const HC_GRANT_UNMAP: u64 = 24;

// ---------------------------------------------------------------------------
// grant, completed (1.3): copy, limits (numbers 30-32)
// ---------------------------------------------------------------------------

/// Flag of [`HC_GRANT_COPY`] (1.3): copy *into* the granted page (needs a
/// read-write grant). Without it the copy goes from the granted page into
/// the caller's buffer. The only flag defined; any other bit is `EINVAL`.
pub const GRANT_COPY_TO_GRANT: u64 = 1;
/// Most bytes one [`HC_GRANT_COPY`] moves: one page.
pub const GRANT_COPY_MAX: u64 = 4096;

/// **grant copy** (30): copies bytes between the caller's own memory and a
/// page another domain granted to it, without mapping the page.
///
/// - IN: RDI = the granter's domain id, RSI = its grant reference, RDX =
///   offset in the granted page, R10 = guest-physical address of the
///   caller's buffer, R8 = length in bytes, R9 = flags
///   ([`GRANT_COPY_TO_GRANT`] or 0).
/// - OUT: RAX = the number of bytes copied (= R8).
/// - Errors, in the order checked: `EINVAL` (RDI or RSI does not fit in 32
///   bits, or R9 has an undefined bit); `EINVAL` (R8 is 0); `E2BIG` (R8 >
///   [`GRANT_COPY_MAX`]); `EINVAL` (RDX + R8 > 4096: the range would cross
///   the granted page's end); `EINVAL` (RDI is the caller); `EFAULT` (a
///   byte of the caller's buffer lies outside its memory: released, beyond
///   the domain, or a mapped grant, like any hypercall buffer); `ENOENT`
///   (no such live granter); `EINVAL` (RSI beyond the granter's limit);
///   `ENOENT` (RSI never granted, or revoked); `EPERM` (granted to another
///   domain, or read-only and R9 has [`GRANT_COPY_TO_GRANT`]).
/// - Notes: the copy is done under the granter's grant-table lock, so a
///   revoke either happens before (the copy fails with `ENOENT`) or after
///   it. A read-only grant allows copies from it only. Nothing is copied
///   on an error. Mapped or not, a grant can be copied to and from.
pub const HC_GRANT_COPY: u64 = 30;

/// Highest grant and map limit a domain may raise itself to with
/// [`HC_GRANT_SET_MAX`] (1.3): 2^20. Both limits start at 1024.
pub const GRANT_MAX_CEILING: u64 = 1 << 20;
/// The grant and map limits a domain starts with.
pub const GRANT_DEFAULT_LIMIT: u64 = 1024;

/// **grant query** (31): reports the caller's grant and map limits and
/// their use.
///
/// - IN: RDI = address of a [`crate::GrantLimits`] (24 bytes) to fill.
/// - OUT: RAX = 0; the `GrantLimits` is filled in.
/// - Errors: `EFAULT` when any byte of it lies outside the caller's memory.
/// - Notes: a snapshot; other vCPUs (and, for `maps_in_use`, dying
///   granters) may change the counts right after.
pub const HC_GRANT_QUERY: u64 = 31;

/// **grant set max** (32): raises the caller's own grant limit (references
/// it may hand out) and map limit (grants of others it may map at once).
///
/// - IN: RDI = the new grant limit, RSI = the new map limit.
/// - OUT: RAX = 0.
/// - Errors, in the order checked: `EINVAL` (RDI or RSI does not fit in 32
///   bits); `EINVAL` (either is lower than the current limit: limits never
///   shrink); `E2BIG` (either is over [`GRANT_MAX_CEILING`]). Both or
///   neither change.
/// - Notes: a limit equal to the current one is accepted (no change). The
///   memory for the larger tables is taken only as entries are used;
///   `ENOMEM` from [`HC_GRANT_ACCESS`] or [`HC_GRANT_MAP`] then means the
///   host is out of memory.
pub const HC_GRANT_SET_MAX: u64 = 32;

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
        assert_eq!(HYPERCALLS.last(), Some(&crate::HC_DOMCTL_CONSOLE_WRITE));
        assert_eq!(crate::HC_DOMCTL_CONSOLE_WRITE, 46);
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
