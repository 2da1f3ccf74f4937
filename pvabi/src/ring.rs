//! I/O rings: single-producer/single-consumer request/response rings in
//! memory two domains share (granted pages).
//!
//! One side, the **front** (a device's user, e.g. a guest's block driver),
//! produces requests and consumes responses; the other, the **back** (the
//! device's server, e.g. dom0's block backend), consumes requests and
//! produces responses. A response goes into the slot of the request it
//! answers, so the ring never holds more than [`RingGeometry::slots`]
//! unanswered requests.
//!
//! # Layout
//!
//! The shared region starts with a [`RingHeader`] ([`RING_HEADER_SIZE`] =
//! 128 bytes), followed by `slots` slots of `slot_bytes` bytes each (a
//! multiple of 4). `slots` is a power of two, agreed by both sides from the
//! region's size and the slot size ([`RingGeometry::for_region`]) or handed
//! over in the device's config page. The header keeps what each side writes
//! on its own cache line:
//!
//! | offset | field | written by | meaning |
//! |--------|-------|------------|---------|
//! | 0   | `req_prod`  | front | requests `..req_prod` are in their slots |
//! | 4   | `rsp_event` | front | "notify me when `rsp_prod` passes this" |
//! | 64  | `rsp_prod`  | back  | responses `..rsp_prod` are in their slots |
//! | 68  | `req_event` | back  | "notify me when `req_prod` passes this" |
//!
//! Indices are free-running `u32`s that wrap at `u32::MAX`; index `i` lives
//! in slot `i & (slots - 1)`. Only differences of indices mean anything, so
//! the wrap is harmless as long as no difference exceeds `slots`, which
//! each side checks.
//!
//! # Event suppression
//!
//! A consumer that runs out of work and wants to sleep says when it wants to
//! be woken: it writes `*_event = cons + 1` ("notify me as soon as the next
//! item is published"), then **checks again** for work before it sleeps
//! ([`FrontRing::final_check_for_responses`],
//! [`BackRing::final_check_for_requests`]). A producer that publishes
//! indices `old..new` sends a notification (an event-channel send) only if
//! the event index lies in `(old, new]`
//! ([`FrontRing::publish_requests`] returns whether to notify). Many items
//! pushed and published at once cost at most one notification (batching);
//! a consumer that is busy never lowers its event index, so a busy consumer
//! receives no notifications at all.
//!
//! # Memory ordering
//!
//! - Slot contents are written and read with `Relaxed` atomic word
//!   accesses (memory shared with another domain is never accessed through
//!   plain references, so a hostile peer writing concurrently is a torn
//!   value, not undefined behaviour).
//! - Publishing (`*_prod`) is a `Release` store, reading the peer's
//!   `*_prod` an `Acquire` load: a consumer that sees index `p` sees every
//!   slot written before `p` was published. The same pair orders slot reuse:
//!   the back reads a request before it publishes the response written over
//!   it, and the front writes a new request into that slot only after it has
//!   read (`Acquire`) the response, so the back's read never sees the new
//!   request.
//! - Sleeping and notifying is the store-buffering pattern: the producer
//!   stores `*_prod` then loads `*_event`; the consumer stores `*_event` then
//!   loads `*_prod`. A `SeqCst` fence between the store and the load on both
//!   sides (an `MFENCE` on x86; without it each load may pass the earlier
//!   store) guarantees that at least one side sees the other's store: either
//!   the producer sees the new event index and notifies, or the consumer sees
//!   the new items and does not sleep. No wake-up is lost.
//!
//! # A hostile peer
//!
//! The peer can write any value into any header field or slot at any time.
//! Neither side ever reads its own indices back from shared memory (each
//! keeps private copies), slot numbers are always masked, and a peer index
//! that would put more than `slots` items in flight is reported as
//! [`RingError::Overrun`] (the caller should then stop using the ring and
//! tear the connection down). A peer's event index can only make a
//! notification be sent or not. Slot contents are copied out before the
//! caller sees them, so a value is validated once and cannot change after
//! validation; any bytes are a valid value of a slot type
//! ([`zerocopy::FromBytes`]).
//!
//! # Setting up
//!
//! The front zeroes the region, calls [`FrontRing::init`], grants the pages
//! to the back and tells it (config page) where they are and which event
//! channel belongs to the ring; the back maps them and calls
//! [`BackRing::attach`]. The region is seen here as a slice of
//! [`AtomicU32`]: the code that maps shared memory makes that slice (the
//! only place that needs `unsafe`); host tests use a `Vec<AtomicU32>`.
#![forbid(unsafe_code)]

mod back;
mod config;
mod front;

pub use back::BackRing;
pub use config::{
    CheckedConfig, ConfigError, DEVICE_KIND_BULK, RING_CONFIG_GREF, RING_CONFIG_MAGIC,
    RING_CONFIG_MAX_DATA, RING_CONFIG_SIZE, RING_CONFIG_VERSION, RingConfig,
};
pub use front::FrontRing;

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering, fence};

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// The ring header at the start of the shared region. Documents the layout;
/// the ring code accesses these words atomically through [`SharedRing`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct RingHeader {
    /// Written by the front: requests `..req_prod` are published.
    pub req_prod: u32,
    /// Written by the front: notify the front when `rsp_prod` passes this.
    pub rsp_event: u32,
    /// Padding to the back's cache line; zero.
    pub _pad0: [u32; 14],
    /// Written by the back: responses `..rsp_prod` are published.
    pub rsp_prod: u32,
    /// Written by the back: notify the back when `req_prod` passes this.
    pub req_event: u32,
    /// Padding to the first slot; zero.
    pub _pad1: [u32; 14],
}

/// Size of [`RingHeader`] in bytes; slot 0 starts here.
pub const RING_HEADER_SIZE: usize = 128;
/// Most slots a ring may have (differences of indices must stay far below
/// 2^31 for the wrap-around arithmetic).
pub const RING_MAX_SLOTS: u32 = 1 << 16;
/// Largest slot in bytes.
pub const RING_MAX_SLOT_BYTES: usize = 4096;

const HEADER_WORDS: usize = RING_HEADER_SIZE / 4;
const W_REQ_PROD: usize = 0;
const W_RSP_EVENT: usize = 1;
const W_RSP_PROD: usize = 16;
const W_REQ_EVENT: usize = 17;

const _: () = assert!(core::mem::size_of::<RingHeader>() == RING_HEADER_SIZE);
const _: () = assert!(core::mem::align_of::<RingHeader>() == 4);
const _: () = assert!(core::mem::offset_of!(RingHeader, req_prod) == W_REQ_PROD * 4);
const _: () = assert!(core::mem::offset_of!(RingHeader, rsp_event) == W_RSP_EVENT * 4);
const _: () = assert!(core::mem::offset_of!(RingHeader, _pad0) == 8);
const _: () = assert!(core::mem::offset_of!(RingHeader, rsp_prod) == W_RSP_PROD * 4);
const _: () = assert!(core::mem::offset_of!(RingHeader, req_event) == W_REQ_EVENT * 4);
const _: () = assert!(core::mem::offset_of!(RingHeader, _pad1) == 72);

/// What went wrong with a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// Slot count not a power of two in `1..=`[`RING_MAX_SLOTS`], or slot
    /// size zero, not a multiple of 4, or over [`RING_MAX_SLOT_BYTES`].
    BadGeometry,
    /// The region is smaller than the geometry needs.
    TooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        have: usize,
    },
    /// A request or response type is larger than a slot.
    SlotTooSmall,
    /// No slot to push into: (front) every slot holds a request whose
    /// response has not been consumed; (back) every consumed request has
    /// been answered.
    Full,
    /// The peer published an index that is impossible (behind what was
    /// consumed, or more than `slots` ahead): the peer is broken or hostile.
    Overrun {
        /// The peer's producer index as read.
        prod: u32,
        /// Our consumer index.
        cons: u32,
    },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadGeometry => write!(f, "bad ring geometry"),
            Self::TooSmall { need, have } => {
                write!(f, "ring region of {have} bytes is smaller than {need}")
            }
            Self::SlotTooSmall => write!(f, "ring item larger than a slot"),
            Self::Full => write!(f, "ring full"),
            Self::Overrun { prod, cons } => {
                write!(f, "peer index {prod} impossible at consumer index {cons}")
            }
        }
    }
}

impl core::error::Error for RingError {}

/// How many slots a ring has and how large each is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingGeometry {
    slots: u32,
    slot_words: u32,
}

impl RingGeometry {
    /// A geometry of `slots` slots (a power of two) of `slot_bytes` bytes (a
    /// multiple of 4).
    pub const fn new(slots: u32, slot_bytes: usize) -> Result<Self, RingError> {
        if !slots.is_power_of_two()
            || slots > RING_MAX_SLOTS
            || slot_bytes == 0
            || !slot_bytes.is_multiple_of(4)
            || slot_bytes > RING_MAX_SLOT_BYTES
        {
            return Err(RingError::BadGeometry);
        }
        Ok(Self {
            slots,
            slot_words: (slot_bytes / 4) as u32,
        })
    }

    /// The most slots of `slot_bytes` that fit in `region_bytes` after the
    /// header (rounded down to a power of two): what both sides compute from
    /// the region's size.
    pub const fn for_region(region_bytes: usize, slot_bytes: usize) -> Result<Self, RingError> {
        if slot_bytes == 0 {
            return Err(RingError::BadGeometry);
        }
        let need = RING_HEADER_SIZE + slot_bytes;
        if region_bytes < need {
            return Err(RingError::TooSmall {
                need,
                have: region_bytes,
            });
        }
        let fit = (region_bytes - RING_HEADER_SIZE) / slot_bytes;
        let max = RING_MAX_SLOTS as usize;
        let fit = if fit > max { max } else { fit };
        // `fit >= 1`, so the highest set bit is a power of two <= fit.
        let slots = 1u32 << (usize::BITS - 1 - fit.leading_zeros());
        Self::new(slots, slot_bytes)
    }

    /// The slot size for a ring of `Req` and `Rsp`: the larger, rounded up
    /// to a multiple of 4.
    pub const fn slot_bytes_for<Req, Rsp>() -> usize {
        let (a, b) = (core::mem::size_of::<Req>(), core::mem::size_of::<Rsp>());
        let max = if a > b { a } else { b };
        if max == 0 { 4 } else { max.div_ceil(4) * 4 }
    }

    /// Number of slots (a power of two).
    pub const fn slots(&self) -> u32 {
        self.slots
    }

    /// Size of a slot in bytes.
    pub const fn slot_bytes(&self) -> usize {
        self.slot_words as usize * 4
    }

    /// Bytes of shared memory the ring uses: header and slots.
    pub const fn region_bytes(&self) -> usize {
        RING_HEADER_SIZE + self.slots as usize * self.slot_bytes()
    }
}

/// The shared region, seen as 32-bit words: header, then slots.
#[derive(Clone, Copy)]
pub struct SharedRing<'a> {
    words: &'a [AtomicU32],
    geo: RingGeometry,
}

impl fmt::Debug for SharedRing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRing")
            .field("geo", &self.geo)
            .finish()
    }
}

impl<'a> SharedRing<'a> {
    /// The ring of geometry `geo` at the start of `words`.
    pub fn new(words: &'a [AtomicU32], geo: RingGeometry) -> Result<Self, RingError> {
        let have = words.len().saturating_mul(4);
        if have < geo.region_bytes() {
            return Err(RingError::TooSmall {
                need: geo.region_bytes(),
                have,
            });
        }
        Ok(Self { words, geo })
    }

    /// The ring's geometry.
    pub fn geometry(&self) -> RingGeometry {
        self.geo
    }

    /// A snapshot of the header, for diagnostics (every field is read
    /// `Relaxed`; the fields may change while being read).
    pub fn header(&self) -> RingHeader {
        let mut h = RingHeader::new_zeroed();
        for (dst, src) in h.as_mut_bytes().chunks_exact_mut(4).zip(self.words) {
            dst.copy_from_slice(&src.load(Ordering::Relaxed).to_le_bytes());
        }
        h
    }

    // Header words are constants below HEADER_WORDS, and `new` checked that
    // `words` covers the header and every slot: indexing cannot fail.
    fn word(&self, w: usize) -> &AtomicU32 {
        &self.words[w]
    }

    /// The words of the slot that holds index `idx` (masked: a peer's index
    /// can never reach outside the ring).
    fn slot(&self, idx: u32) -> &[AtomicU32] {
        let n = (idx & (self.geo.slots - 1)) as usize;
        let len = self.geo.slot_words as usize;
        let start = HEADER_WORDS + n * len;
        &self.words[start..start + len]
    }

    fn read_slot<T: FromBytes + IntoBytes>(&self, idx: u32) -> T {
        let mut v = T::new_zeroed();
        for (dst, src) in v.as_mut_bytes().chunks_mut(4).zip(self.slot(idx)) {
            let bytes = src.load(Ordering::Relaxed).to_le_bytes();
            dst.copy_from_slice(&bytes[..dst.len()]);
        }
        v
    }

    fn write_slot<T: IntoBytes + Immutable>(&self, idx: u32, v: &T) {
        for (src, dst) in v.as_bytes().chunks(4).zip(self.slot(idx)) {
            let mut bytes = [0u8; 4];
            bytes[..src.len()].copy_from_slice(src);
            dst.store(u32::from_le_bytes(bytes), Ordering::Relaxed);
        }
    }

    /// Producer step 1: makes the slots before `new` visible (`Release`:
    /// the slot writes happen before the index store).
    fn publish(&self, prod_w: usize, new: u32) {
        self.word(prod_w).store(new, Ordering::Release);
    }

    /// Producer step 2: whether the consumer asked to be notified for an
    /// index in `(old, new]`. The `SeqCst` fence orders the preceding
    /// `publish` before this load (store-buffering, see the module docs).
    fn notify_wanted(&self, event_w: usize, old: u32, new: u32) -> bool {
        fence(Ordering::SeqCst);
        let event = self.word(event_w).load(Ordering::Relaxed);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// Consumer: asks for a notification when the producer publishes index
    /// `cons + 1`. The `SeqCst` fence orders this store before the re-check
    /// of the producer index that must follow.
    fn arm(&self, event_w: usize, cons: u32) {
        self.word(event_w)
            .store(cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Consumer: the peer's producer index (`Acquire`: pairs with `publish`).
    fn peer_prod(&self, prod_w: usize) -> u32 {
        self.word(prod_w).load(Ordering::Acquire)
    }
}

fn check_slot_size<Req, Rsp>(ring: &SharedRing<'_>) -> Result<(), RingError> {
    if RingGeometry::slot_bytes_for::<Req, Rsp>() > ring.geo.slot_bytes() {
        Err(RingError::SlotTooSmall)
    } else {
        Ok(())
    }
}

/// Items the peer has published and we have not consumed, checked: with
/// `base` our oldest index whose slot is still in use and `cons` our
/// consumer index (`base <= cons`), the peer's `prod` must lie in
/// `cons..=base + limit`.
fn available(prod: u32, base: u32, cons: u32, limit: u32) -> Result<u32, RingError> {
    let in_flight = prod.wrapping_sub(base);
    let consumed = cons.wrapping_sub(base);
    if in_flight > limit || in_flight < consumed {
        return Err(RingError::Overrun { prod, cons });
    }
    Ok(in_flight - consumed)
}

#[cfg(test)]
mod bounded_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
