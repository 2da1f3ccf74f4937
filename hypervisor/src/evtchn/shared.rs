//! Pending and mask bits in the guest's [`pvabi::EvtchnControl`] area,
//! and the switch from hypervisor bitmaps to it.
//!
//! The area is the guest's memory: it may change any word at any time. So
//! every access is one atomic operation on one `u64` word
//! ([`SharedWords`], implemented over the domain's pinned frames in
//! `arch/`), nothing read there is trusted beyond being bits, and indices
//! come from the hypervisor (ports below the table's limit, vCPU ids below
//! the domain's count), never from the area itself.

use pvabi::{
    EVTCHN_CONTROL_PORTS, EVTCHN_CONTROL_VCPUS, EVTCHN_MASK_OFFSET, EVTCHN_PENDING_OFFSET,
};
use pvabi::{EVTCHN_VCPU_SIZE, EVTCHN_WORDS, Error};

use alloc::vec::Vec;

use super::bits::bit;
use super::{BitmapEvents, EventBits, EventTable, Notify};

/// Atomic access to the `u64` words of a registered control area, by word
/// index (`byte offset / 8`, below [`AREA_WORDS`]); an index outside reads
/// 0 and writes nothing.
pub trait SharedWords {
    /// Atomic load (acquire).
    fn load(&self, word: usize) -> u64;
    /// Atomic store (release).
    fn store(&self, word: usize, value: u64);
    /// Atomic OR; returns the old value (sequentially consistent).
    fn fetch_or(&self, word: usize, value: u64) -> u64;
    /// Atomic AND; returns the old value (sequentially consistent).
    fn fetch_and(&self, word: usize, value: u64) -> u64;
}

/// Words in a control area.
pub const AREA_WORDS: usize = core::mem::size_of::<pvabi::EvtchnControl>() / 8;

const PENDING: usize = EVTCHN_PENDING_OFFSET / 8;
const MASK: usize = EVTCHN_MASK_OFFSET / 8;
const VCPU_WORDS: usize = EVTCHN_VCPU_SIZE / 8;
/// Word of the selector inside a vCPU record.
const SELECTOR: usize = 16;

/// [`EventBits`] kept in a guest's control area.
#[derive(Debug)]
pub struct SharedBits<W> {
    words: W,
}

#[cfg(test)]
impl<W: SharedWords> SharedBits<W> {
    pub(super) fn default_for_test() -> Self
    where
        W: TestNew,
    {
        Self {
            words: W::test_new(),
        }
    }
}

#[cfg(test)]
pub(super) trait TestNew {
    fn test_new() -> Self;
}

impl<W: SharedWords> SharedBits<W> {
    fn vcpu_word(vcpu: u32, word: usize) -> Option<usize> {
        ((vcpu as usize) < EVTCHN_CONTROL_VCPUS).then_some(vcpu as usize * VCPU_WORDS + word)
    }

    #[inline(always)]
    fn update(&self, base: usize, port: u32, set: bool) -> bool {
        let w = port as usize / 64;
        if w >= EVTCHN_WORDS {
            return false;
        }
        let old = if set {
            self.words.fetch_or(base + w, bit(port))
        } else {
            self.words.fetch_and(base + w, !bit(port))
        };
        old & bit(port) != 0
    }
}

impl<W: SharedWords> EventBits for SharedBits<W> {
    fn ports(&self) -> u32 {
        EVTCHN_CONTROL_PORTS as u32
    }

    fn grow(&mut self, ports: u32) -> Result<(), Error> {
        if ports as usize <= EVTCHN_CONTROL_PORTS {
            Ok(())
        } else {
            Err(Error::NoMem)
        }
    }

    fn test_and_set_pending(&mut self, port: u32) -> bool {
        self.update(PENDING, port, true)
    }

    #[inline(always)]
    fn test_and_clear_pending(&mut self, port: u32) -> bool {
        self.update(PENDING, port, false)
    }

    fn set_masked(&mut self, port: u32, masked: bool) -> bool {
        self.update(MASK, port, masked)
    }

    #[inline(always)]
    fn pending_word(&self, word: usize) -> u64 {
        if word < EVTCHN_WORDS {
            self.words.load(PENDING + word)
        } else {
            0
        }
    }

    #[inline(always)]
    fn mask_word(&self, word: usize) -> u64 {
        if word < EVTCHN_WORDS {
            self.words.load(MASK + word)
        } else {
            0
        }
    }

    /// Selector bit first, then `upcall_pending` (release): a guest that
    /// sees `upcall_pending` finds the selector and the pending bit.
    fn notify(&mut self, vcpu: u32, port: u32) {
        let w = port as usize / 64;
        if let Some(sel) = Self::vcpu_word(vcpu, SELECTOR + w / 64)
            && w < EVTCHN_WORDS
        {
            self.words.fetch_or(sel, 1 << (w % 64));
        }
        if let Some(up) = Self::vcpu_word(vcpu, 0) {
            self.words.store(up, 1);
        }
    }

    fn guest_owned(&self) -> bool {
        true
    }

    fn upcall_ready(&self, vcpu: u32) -> bool {
        upcall_ready(&self.words, vcpu)
    }
}

/// Whether `vcpu`'s record in the area `words` asks for an upcall:
/// `upcall_pending` set and `upcall_mask` clear.
pub fn upcall_ready<W: SharedWords>(words: &W, vcpu: u32) -> bool {
    match (
        SharedBits::<W>::vcpu_word(vcpu, 0),
        SharedBits::<W>::vcpu_word(vcpu, 1),
    ) {
        (Some(up), Some(mask)) => words.load(up) != 0 && words.load(mask) == 0,
        _ => false,
    }
}

/// A domain's bits: in the hypervisor until the guest registers a control
/// area, then there.
#[derive(Debug)]
pub enum DomainBits<W> {
    /// Hypervisor bitmaps (no control area registered).
    Local(BitmapEvents),
    /// The guest's control area.
    Shared(SharedBits<W>),
}

impl<W> Default for DomainBits<W> {
    fn default() -> Self {
        Self::Local(BitmapEvents::new())
    }
}

impl<W: SharedWords> DomainBits<W> {
    /// Moves the bits into `words`: every pending and mask bit set now is
    /// OR-ed into the area, and the vCPUs of pending unmasked ports get
    /// their selector and `upcall_pending` (`notify_vcpu(port)` names each
    /// port's vCPU). `Exists` when an area is registered already.
    pub fn share(&mut self, words: W, notify_vcpu: impl Fn(u32) -> u32) -> Result<(), Error> {
        let Self::Local(local) = self else {
            return Err(Error::Exists);
        };
        let mut shared = SharedBits { words };
        for w in 0..EVTCHN_WORDS.min(local.ports() as usize / 64) {
            let (p, m) = (local.pending_word(w), local.mask_word(w));
            if m != 0 {
                shared.words.fetch_or(MASK + w, m);
            }
            if p != 0 {
                shared.words.fetch_or(PENDING + w, p);
                let mut ready = p & !m;
                while ready != 0 {
                    let port = (w * 64) as u32 + ready.trailing_zeros();
                    shared.notify(notify_vcpu(port), port);
                    ready &= ready - 1;
                }
            }
        }
        *self = Self::Shared(shared);
        Ok(())
    }
}

macro_rules! both {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            DomainBits::Local($b) => $e,
            DomainBits::Shared($b) => $e,
        }
    };
}

impl<W: SharedWords> EventBits for DomainBits<W> {
    fn ports(&self) -> u32 {
        both!(self, b => b.ports())
    }
    fn grow(&mut self, ports: u32) -> Result<(), Error> {
        both!(self, b => b.grow(ports))
    }
    fn test_and_set_pending(&mut self, port: u32) -> bool {
        both!(self, b => b.test_and_set_pending(port))
    }
    #[inline(always)]
    fn test_and_clear_pending(&mut self, port: u32) -> bool {
        both!(self, b => b.test_and_clear_pending(port))
    }
    fn set_masked(&mut self, port: u32, masked: bool) -> bool {
        both!(self, b => b.set_masked(port, masked))
    }
    #[inline(always)]
    fn pending_word(&self, word: usize) -> u64 {
        both!(self, b => b.pending_word(word))
    }
    #[inline(always)]
    fn mask_word(&self, word: usize) -> u64 {
        both!(self, b => b.mask_word(word))
    }
    #[inline(always)]
    fn ready_word(&self, word: usize) -> u64 {
        both!(self, b => b.ready_word(word))
    }
    fn notify(&mut self, vcpu: u32, port: u32) {
        both!(self, b => b.notify(vcpu, port))
    }
    #[inline(always)]
    fn pending_and_masked(&self, port: u32) -> (bool, bool) {
        both!(self, b => b.pending_and_masked(port))
    }
    #[inline(always)]
    fn take_then_ready(&mut self, port: u32, word: usize) -> (bool, u64) {
        both!(self, b => b.take_then_ready(port, word))
    }
    fn guest_owned(&self) -> bool {
        both!(self, b => b.guest_owned())
    }
    fn upcall_ready(&self, vcpu: u32) -> bool {
        both!(self, b => b.upcall_ready(vcpu))
    }
}

impl<W: SharedWords> EventTable<DomainBits<W>> {
    /// **init control**: keeps the bits in the guest's area `words` from
    /// now on (see [`DomainBits::share`]). `Exists` the second time.
    pub fn share_bits(&mut self, words: W) -> Result<(), Error> {
        let vcpus: Vec<u32> = (0..self.high_water)
            .map(|p| self.slot(p).map_or(0, |s| s.vcpu))
            .collect();
        self.bits
            .share(words, |p| vcpus.get(p as usize).copied().unwrap_or(0))
    }
}

impl<B: EventBits> EventTable<B> {
    /// Whether `vcpu` should get an upcall at its next entry.
    pub fn upcall_ready(&self, vcpu: u32) -> bool {
        self.bits.upcall_ready(vcpu)
    }

    /// Raises virq `virq` on every vCPU that bound it (e.g.
    /// [`pvabi::VIRQ_DOM_EXC`]); returns the upcalls to make.
    pub fn raise_virq_all(&mut self, virq: u32) -> Vec<Notify> {
        (0..self.nr_vcpus)
            .filter_map(|v| self.raise_virq(v, virq))
            .collect()
    }
}
