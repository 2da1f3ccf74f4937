//! A registered event-channel control area ([`pvabi::EvtchnControl`]) as
//! atomic words in the domain's own frames, reached through the platform
//! ([`Platform::phys_word`]): the memory half of [`crate::evtchn::SharedBits`].

use core::sync::atomic::{AtomicU64, Ordering};

use crate::evtchn::{AREA_WORDS, SharedWords};
use crate::platform::{P, Platform};

/// Pages of an area.
pub const AREA_PAGES: usize = pvabi::EVTCHN_CONTROL_PAGES as usize;

/// The host frames behind a registered area, in guest-physical order.
///
/// Invariant (kept by the scheduler): the frames are pinned while the
/// domain lives (`HC_MEM_RELEASE` of them fails, they cannot be granted),
/// and a `GuestArea` lives no longer than the domain's memory (it is held
/// by the domain's event table and the domain itself, which drop before
/// the memory's frames are freed, and are never used after the domain's
/// last vCPU is gone).
#[derive(Clone, Copy, Debug)]
pub struct GuestArea {
    /// Guest-physical address of the first page.
    pub gpa: u64,
    frames: [u64; AREA_PAGES],
}

impl GuestArea {
    /// An area over `frames` (present, identity-mapped frames of the
    /// domain, pinned by the caller) at `gpa`.
    pub fn new(gpa: u64, frames: [u64; AREA_PAGES]) -> Self {
        Self { gpa, frames }
    }

    /// Whether `[gpa, gpa + len)` overlaps the area.
    pub fn overlaps(&self, gpa: u64, len: u64) -> bool {
        let end = self.gpa + pvabi::EVTCHN_CONTROL_PAGES * pvabi::PAGE_SIZE;
        gpa < end && gpa.saturating_add(len) > self.gpa
    }

    fn word(&self, word: usize) -> Option<&AtomicU64> {
        if word >= AREA_WORDS {
            return None;
        }
        let frame = *self.frames.get(word / 512)?;
        if frame == 0 {
            return None;
        }
        // An 8-byte-aligned word inside a frame of the domain that stays
        // allocated while this area exists (type invariant); the guest
        // accesses it concurrently, so only atomically.
        P::phys_word(frame + (word % 512) as u64 * 8)
    }
}

impl SharedWords for GuestArea {
    fn load(&self, word: usize) -> u64 {
        self.word(word).map_or(0, |w| w.load(Ordering::Acquire))
    }
    fn store(&self, word: usize, value: u64) {
        if let Some(w) = self.word(word) {
            w.store(value, Ordering::Release);
        }
    }
    fn fetch_or(&self, word: usize, value: u64) -> u64 {
        self.word(word)
            .map_or(0, |w| w.fetch_or(value, Ordering::SeqCst))
    }
    fn fetch_and(&self, word: usize, value: u64) -> u64 {
        self.word(word)
            .map_or(0, |w| w.fetch_and(value, Ordering::SeqCst))
    }
}
