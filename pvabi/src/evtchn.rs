//! Event-channel structures in guest memory (1.3): the status report and
//! the shared control area with per-vCPU upcall words and the pending and
//! mask bitmaps.
//!
//! Both are `#[repr(C)]`, only `u32`/`u64` words, so any bytes are a valid
//! value: each side reads integers and checks them.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{EVTCHN_CONTROL_PAGES, PAGE_SIZE};

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

/// vCPU records in an [`EvtchnControl`] (vCPU ids `0..16`).
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
