//! The evtchn op group: its hypercall numbers (1.1, 1.3) and the
//! structures it keeps in guest memory (1.3): the status report and the
//! shared control area with per-vCPU upcall words and the pending and mask
//! bitmaps.
//!
//! Both structures are `#[repr(C)]`, only `u32`/`u64` words, so any bytes
//! are a valid value: each side reads integers and checks them.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

// For the documentation's links to other op groups.
#[allow(unused_imports)]
use crate::*;

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

/// **evtchn send and wait** (47, ABI 1.4): sends on port RDI, then blocks
/// until port RSI is pending, takes it (clears its pending bit) and returns
/// it. One exit for a round trip's "notify the peer, then sleep until it
/// answers" (seL4's Call / ReplyRecv).
///
/// - IN: RDI = a local port to send on as [`HC_EVTCHN_SEND`] does, or 0 to
///   send nothing; RSI = a local port to wait for (any allocated port, bound
///   or not yet); RDX = deadline in system time ns ([`crate::TimeInfo`]), 0
///   for none. A deadline already passed is not an error: the op sends and
///   looks at the port without waiting for an event (a "send, then poll
///   this port"; as at any hypercall, other vCPUs may run before it
///   returns).
/// - OUT: RAX = RSI when the wait port was pending (its pending bit is now
///   clear, as [`HC_EVTCHN_POLL`] would leave it); 0 when the deadline
///   passed or another event woke the vCPU first (another port pending, the
///   timer, ...): then take ports with [`HC_EVTCHN_POLL`] and the event mask
///   with [`crate::HC_SCHED_POLL`], as after [`crate::HC_SCHED_BLOCK`].
/// - Errors, in this order (nothing is sent on any of them): `EINVAL` when
///   RDI or RSI does not fit in 32 bits or RSI is 0; `ENOENT` when the wait
///   port is not allocated; `EINVAL` when it is a masked port (it could
///   never end the wait); then the send's own errors for RDI (`ENOENT`,
///   `EBUSY`, `EINVAL`), with which nothing waits.
/// - Notes: the op consumes this vCPU's [`EVENT_CHANNEL`] bit (the ports
///   are the truth); if a port other than RSI is pending and unmasked when
///   the op would block, or when it returns, the bit is set again and, on
///   the first, the op returns 0 at once, so no port is stranded. A masked
///   wait port (masked after the call) ends the wait only by the deadline.
///   With a control area registered (upcalls) the bits it takes are the
///   area's; the upcall for the wait port may still be delivered when the
///   vCPU resumes and then finds the port already taken (harmless: the
///   handler sees nothing pending). When the woken peer can run on this
///   CPU the hypervisor switches to it directly.
pub const HC_EVTCHN_SEND_WAIT: u64 = 47;

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
///   32 bits, RDI `>= `[`NR_VIRQS`], or RSI `>= StartInfo::nr_vcpus` or
///   `>= `[`EVTCHN_CONTROL_VCPUS`]);
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
///   or is `>= nr_vcpus` or `>= `[`EVTCHN_CONTROL_VCPUS`]); `ENOMEM`.
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
///   bits); `ENOENT` (port not allocated); `EINVAL` (RSI `>= nr_vcpus` or `>= `[`EVTCHN_CONTROL_VCPUS`], or
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

// ---------------------------------------------------------------------------
// Structures in guest memory (1.3)
// ---------------------------------------------------------------------------

/// What [`crate::HC_EVTCHN_STATUS`] fills in (all OUT).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct EvtchnStatus {
    /// OUT: [`crate::EVTCHN_STATE_FREE`], `_UNBOUND`, `_INTERDOMAIN`,
    /// `_VIRQ` or `_IPI`.
    pub state: u32,
    /// OUT: the vCPU the port notifies.
    pub vcpu: u32,
    /// OUT: unbound: the domain that may connect; interdomain: the peer
    /// domain; otherwise 0.
    pub remote_domain: u32,
    /// OUT: interdomain: the peer's port; otherwise 0.
    pub remote_port: u32,
    /// OUT: virq: the virq number; otherwise 0.
    pub virq: u32,
    /// OUT: 1 if the port is pending, else 0.
    pub pending: u32,
    /// OUT: 1 if the port is masked, else 0.
    pub masked: u32,
    /// Reserved, 0.
    pub _pad: u32,
}

/// Size of [`EvtchnStatus`] in bytes.
pub const EVTCHN_STATUS_SIZE: usize = 32;
const _: () = assert!(core::mem::size_of::<EvtchnStatus>() == EVTCHN_STATUS_SIZE);
const _: () = assert!(core::mem::offset_of!(EvtchnStatus, state) == 0);
const _: () = assert!(core::mem::offset_of!(EvtchnStatus, vcpu) == 4);
const _: () = assert!(core::mem::offset_of!(EvtchnStatus, remote_domain) == 8);
const _: () = assert!(core::mem::offset_of!(EvtchnStatus, remote_port) == 12);
const _: () = assert!(core::mem::offset_of!(EvtchnStatus, virq) == 16);
const _: () = assert!(core::mem::offset_of!(EvtchnStatus, pending) == 20);
const _: () = assert!(core::mem::offset_of!(EvtchnStatus, masked) == 24);

/// vCPU records in an [`EvtchnControl`] (vCPU ids `0..16`): the vCPUs a
/// port can notify. A domain may have more vCPUs (up to
/// [`crate::DOMCTL_MAX_VCPUS`]); binding a port to one of those is
/// `EINVAL` (1.4).
pub const EVTCHN_CONTROL_VCPUS: usize = 16;
/// Ports an [`EvtchnControl`] covers (`0..65536`).
pub const EVTCHN_CONTROL_PORTS: usize = 65536;
/// `u64` words of each bitmap.
pub const EVTCHN_WORDS: usize = EVTCHN_CONTROL_PORTS / 64;

/// One vCPU's upcall words in an [`EvtchnControl`] (256 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct EvtchnVcpu {
    /// IN/OUT: set to 1 by the hypervisor when a port notifies this vCPU;
    /// the guest's upcall handler sets it to 0 first thing (before looking
    /// at `selector`).
    pub upcall_pending: u64,
    /// IN: nonzero: no upcall is injected into this vCPU (notifications
    /// still set `upcall_pending` and wake it). The hypervisor never writes
    /// it.
    pub upcall_mask: u64,
    /// Reserved.
    pub _reserved: [u64; 14],
    /// IN/OUT: bit `w % 64` of `selector[w / 64]` set: pending word `w`
    /// may be nonzero (set by the hypervisor before `upcall_pending`; the
    /// guest takes the whole word with an atomic swap to 0).
    pub selector: [u64; EVTCHN_WORDS / 64],
}

/// The shared event-channel control area a guest registers with
/// [`crate::HC_EVTCHN_INIT_CONTROL`]: [`crate::EVTCHN_CONTROL_PAGES`]
/// page-aligned, contiguous pages of its own memory.
///
/// | offset | size | what |
/// |---|---|---|
/// | 0 | 16 × 256 | [`EvtchnVcpu`] per vCPU id |
/// | 4096 | 8192 | `pending`: port `p` is bit `p % 64` of word `p / 64` |
/// | 12288 | 8192 | `mask`, the same layout |
///
/// Protocol and memory ordering (all accesses to shared words are atomic):
/// - **Raise** (hypervisor, when a send or virq makes port `p` pending):
///   `fetch_or` the pending bit; if it was clear and the mask bit is clear,
///   `fetch_or` bit `p / 64` into the selector of the vCPU `p` notifies,
///   then store 1 in its `upcall_pending` (release ordering: a guest that
///   sees `upcall_pending` sees the selector and pending bits), raise
///   [`crate::EVENT_CHANNEL`] (waking a blocked vCPU) and, at the vCPU's
///   next entry, inject the vector if `upcall_mask` is 0, the guest's
///   RFLAGS.IF is 1, it is not in an interrupt shadow and no other event
///   is being injected (else at the first entry where all that holds).
/// - **Upcall** (guest): store 0 in `upcall_pending` (SeqCst), swap the
///   selector words to 0, and for each word take `pending & !mask`,
///   clearing each bit it handles with `fetch_and` before calling the
///   handler. A raise racing with this either set its bits before the swap
///   (handled now) or sets `upcall_pending` again (handled by the next
///   upcall): nothing is lost.
/// - **Mask** (guest): `fetch_or` the mask bit; no hypercall.
/// - **Unmask** (guest): `fetch_and` the mask bit off, then, if the port is
///   pending, call [`crate::HC_EVTCHN_UNMASK`] so the hypervisor sets the
///   selector and `upcall_pending` again (a send while masked set only the
///   pending bit).
/// - [`crate::HC_EVTCHN_POLL`], [`crate::HC_EVTCHN_MASK`] and
///   [`crate::HC_EVTCHN_STATUS`] read and write these same bits.
///
/// The hypervisor validates nothing it reads here beyond using it as bits:
/// a guest that scribbles on its area only misdirects its own upcalls.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct EvtchnControl {
    /// Per-vCPU upcall words.
    pub vcpus: [EvtchnVcpu; EVTCHN_CONTROL_VCPUS],
    /// Pending bits.
    pub pending: [u64; EVTCHN_WORDS],
    /// Mask bits.
    pub mask: [u64; EVTCHN_WORDS],
}

/// Byte offset of [`EvtchnControl::pending`].
pub const EVTCHN_PENDING_OFFSET: usize = 4096;
/// Byte offset of [`EvtchnControl::mask`].
pub const EVTCHN_MASK_OFFSET: usize = 12288;
/// Size of one [`EvtchnVcpu`].
pub const EVTCHN_VCPU_SIZE: usize = 256;

const _: () = assert!(core::mem::size_of::<EvtchnVcpu>() == EVTCHN_VCPU_SIZE);
const _: () = assert!(core::mem::offset_of!(EvtchnVcpu, upcall_pending) == 0);
const _: () = assert!(core::mem::offset_of!(EvtchnVcpu, upcall_mask) == 8);
const _: () = assert!(core::mem::offset_of!(EvtchnVcpu, selector) == 128);
const _: () = assert!(core::mem::offset_of!(EvtchnControl, pending) == EVTCHN_PENDING_OFFSET);
const _: () = assert!(core::mem::offset_of!(EvtchnControl, mask) == EVTCHN_MASK_OFFSET);
const _: () =
    assert!(core::mem::size_of::<EvtchnControl>() == (EVTCHN_CONTROL_PAGES * PAGE_SIZE) as usize);
const _: () = assert!(core::mem::align_of::<EvtchnControl>() == 8);
