//! Stages (pvabi `stage.rs`, issue 14): images the control domain hands
//! the hypervisor in bounded pieces (`HC_DOMCTL_STAGE_BEGIN/WRITE/ABORT`)
//! and builds domains from (`DOMCTL_CREATE_STAGED`). Decoding is
//! `stage_ops.rs`; this file is the table and its live effect.
//!
//! Why frames the hypervisor owns, contiguous: the loaders want one
//! slice (as `staged.rs`), and the control domain must not be able to
//! change the bytes while a loader parses them. Why a fixed table of
//! [`SLOTS`] and no heap: a stage's record costs nothing of the
//! hypervisor's heap, and its frames are bounded per domain
//! (`DOMCTL_STAGE_MAX_HANDLES`, `DOMCTL_STAGE_TOTAL_MAX`) and come from
//! the free frames, so a control domain can take no more than it could
//! by creating domains.
//!
//! Bounded work per hypercall (the bounded-exit rule, docs/threat-model.md):
//! begin allocates, a write copies at most `DOMCTL_STAGE_WRITE_MAX` bytes,
//! abort and a domain's end free frames. No call zeroes the frames: a
//! create refuses a stage until every byte of it was written, so stale
//! contents of a frame never reach a domain.
//!
//! A stage being built from is taken out of its slot, which stays
//! [`Slot::Busy`] (writes and aborts: `EBUSY`); the create puts it back
//! on failure or frees it on success. When its domain ends meanwhile
//! (another vCPU killed it) the slot is freed and the stage is freed when
//! the create returns it, never while a loader reads it.
//!
//! Locks: the caller's memory (a domain's inner state), then [`STAGES`],
//! then the frame allocator. `Domain::finish` takes [`STAGES`] alone.
#![forbid(unsafe_code)]

use pvabi::{DOMCTL_IMAGE_MAX, DOMCTL_STAGE_MAX_HANDLES, DOMCTL_STAGE_TOTAL_MAX, Error};

use crate::domain::ids::DomainId;
use crate::domain::lifecycle::Domain;
use crate::hypercall::CreateParams;
use crate::hypercall::GuestRead;
use crate::platform::{P, Platform};
use crate::sync::Mutex;

const PAGE: u64 = 4096;
/// Stages of all domains together (only the control domain may stage, so
/// this is `DOMCTL_STAGE_MAX_HANDLES` with room for a second privileged
/// domain).
pub const SLOTS: usize = 2 * DOMCTL_STAGE_MAX_HANDLES;

/// A staged image: `pages` frames at `base`, `filled` of `size` bytes
/// written (no gap: bytes `0..filled`). Freed when dropped.
#[derive(Debug)]
pub struct Stage {
    owner: DomainId,
    handle: u64,
    base: u64,
    pages: u64,
    size: u64,
    filled: u64,
}

impl Stage {
    /// The staged bytes; `None` on a platform without plain physical
    /// memory (host tests).
    pub fn bytes(&self) -> Option<&[u8]> {
        P::phys_bytes(self.base, usize::try_from(self.size).ok()?)
    }

    /// Its handle.
    pub fn handle(&self) -> u64 {
        self.handle
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        P::free_frames(self.base, self.pages);
    }
}

/// One slot of the table.
#[derive(Debug)]
enum Slot {
    Free,
    Ready(Stage),
    /// Taken by a create: what the stage's record said.
    Busy {
        owner: DomainId,
        handle: u64,
        size: u64,
    },
}

impl Slot {
    fn owner(&self) -> Option<(DomainId, u64, u64)> {
        match self {
            Slot::Free => None,
            Slot::Ready(s) => Some((s.owner, s.handle, s.size)),
            Slot::Busy {
                owner,
                handle,
                size,
            } => Some((*owner, *handle, *size)),
        }
    }
}

/// The stages of all domains.
pub struct Stages {
    slots: [Slot; SLOTS],
    /// Makes every handle new: its low byte is the slot + 1, the rest
    /// counts up, so a stale handle never names a later stage.
    next: u64,
}

/// The one table.
pub static STAGES: Mutex<Stages> = Mutex::new(Stages::new());

impl Default for Stages {
    fn default() -> Self {
        Self::new()
    }
}

impl Stages {
    /// No stages.
    pub const fn new() -> Self {
        Self {
            slots: [const { Slot::Free }; SLOTS],
            next: 0,
        }
    }

    fn slot_of(handle: u64) -> Option<usize> {
        usize::try_from(handle & 0xff)
            .ok()
            .and_then(|s| s.checked_sub(1))
            .filter(|&s| s < SLOTS)
    }

    /// The slot of `owner`'s stage `handle`, ready or busy: `ENOENT`
    /// when there is none.
    fn find(&self, owner: DomainId, handle: u64) -> Result<usize, Error> {
        let i = Self::slot_of(handle).ok_or(Error::NoEntry)?;
        match self.slots.get(i).and_then(Slot::owner) {
            Some((o, h, _)) if o == owner && h == handle => Ok(i),
            _ => Err(Error::NoEntry),
        }
    }

    /// `owner`'s ready stage `handle`: `ENOENT` when there is none,
    /// `EBUSY` when a create is building from it.
    fn ready(&mut self, owner: DomainId, handle: u64) -> Result<(usize, &mut Stage), Error> {
        let i = self.find(owner, handle)?;
        match self.slots.get_mut(i) {
            Some(Slot::Ready(s)) => Ok((i, s)),
            Some(Slot::Busy { .. }) => Err(Error::Busy),
            _ => Err(Error::NoEntry),
        }
    }

    /// How many stages `owner` has and their bytes together.
    pub fn usage(&self, owner: DomainId) -> (usize, u64) {
        self.slots
            .iter()
            .filter_map(Slot::owner)
            .filter(|(o, _, _)| *o == owner)
            .fold((0, 0), |(n, b), (_, _, s)| (n + 1, b + s))
    }

    /// Takes frames for a stage of `size` bytes for `owner`: its handle.
    pub fn begin(&mut self, owner: DomainId, size: u64) -> Result<u64, Error> {
        if !(1..=DOMCTL_IMAGE_MAX).contains(&size) {
            return Err(Error::Invalid);
        }
        let (n, bytes) = self.usage(owner);
        if n >= DOMCTL_STAGE_MAX_HANDLES || bytes.saturating_add(size) > DOMCTL_STAGE_TOTAL_MAX {
            return Err(Error::Busy);
        }
        let i = self
            .slots
            .iter()
            .position(|s| matches!(s, Slot::Free))
            .ok_or(Error::Busy)?;
        let pages = size.div_ceil(PAGE);
        let base = P::alloc_aligned(pages, PAGE).ok_or(Error::NoMem)?;
        self.next = self.next.wrapping_add(1);
        let handle = (self.next << 8) | (i as u64 + 1);
        let slot = self.slots.get_mut(i).ok_or(Error::Busy)?;
        *slot = Slot::Ready(Stage {
            owner,
            handle,
            base,
            pages,
            size,
            filled: 0,
        });
        Ok(handle)
    }

    /// Copies `len` bytes at `gpa` of `src` (the owner's memory) to
    /// `offset` of the stage: the bytes filled after it. `len` is at most
    /// `DOMCTL_STAGE_WRITE_MAX` (checked by the decoder; the copy goes a
    /// page at a time).
    pub fn write(
        &mut self,
        owner: DomainId,
        handle: u64,
        offset: u64,
        src: &impl GuestRead,
        gpa: u64,
        len: u64,
    ) -> Result<u64, Error> {
        let (_, s) = self.ready(owner, handle)?;
        let end = offset.checked_add(len).ok_or(Error::Invalid)?;
        if len == 0 || offset > s.filled || end > s.size {
            return Err(Error::Invalid);
        }
        // Small: the hypervisor's stacks are (`staged.rs` uses 512).
        let mut buf = [0u8; 1024];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64);
            let piece = buf.get_mut(..n as usize).ok_or(Error::Invalid)?;
            let from = gpa.checked_add(done).ok_or(Error::Fault)?;
            src.read(from, piece).map_err(|_| Error::Fault)?;
            P::write_phys(s.base + offset + done, piece);
            done += n;
        }
        s.filled = s.filled.max(end);
        Ok(s.filled)
    }

    /// Removes `owner`'s stage `handle` (dropped by the caller, outside
    /// the lock: that frees its frames).
    pub fn abort(&mut self, owner: DomainId, handle: u64) -> Result<Stage, Error> {
        let (i, _) = self.ready(owner, handle)?;
        match self
            .slots
            .get_mut(i)
            .map(|s| core::mem::replace(s, Slot::Free))
        {
            Some(Slot::Ready(s)) => Ok(s),
            _ => Err(Error::NoEntry),
        }
    }

    /// Takes `owner`'s stage `handle` for a create: it must be filled to
    /// its size (`EINVAL` otherwise). Its slot stays busy until
    /// [`Stages::put_back`] or [`Stages::used`].
    pub fn take(&mut self, owner: DomainId, handle: u64) -> Result<Stage, Error> {
        let (i, s) = self.ready(owner, handle)?;
        if s.filled != s.size {
            return Err(Error::Invalid);
        }
        let busy = Slot::Busy {
            owner,
            handle,
            size: s.size,
        };
        match self.slots.get_mut(i).map(|s| core::mem::replace(s, busy)) {
            Some(Slot::Ready(s)) => Ok(s),
            _ => Err(Error::NoEntry),
        }
    }

    /// Returns a taken stage to its slot; `Some(stage)` (to drop outside
    /// the lock) when its owner ended meanwhile.
    pub fn put_back(&mut self, stage: Stage) -> Option<Stage> {
        let i = Self::slot_of(stage.handle)?;
        match self.slots.get_mut(i) {
            Some(slot @ Slot::Busy { .. })
                if slot.owner().map(|(_, h, _)| h) == Some(stage.handle) =>
            {
                *slot = Slot::Ready(stage);
                None
            }
            _ => Some(stage),
        }
    }

    /// A create built from a taken stage: its slot is free again (the
    /// caller drops the stage).
    pub fn used(&mut self, stage: &Stage) {
        if let Some(i) = Self::slot_of(stage.handle)
            && let Some(slot) = self.slots.get_mut(i)
            && slot.owner().map(|(_, h, _)| h) == Some(stage.handle)
        {
            *slot = Slot::Free;
        }
    }

    /// Removes every stage of `owner` (its domain ended): the ready ones
    /// are handed back to be dropped outside the lock; busy ones are
    /// freed when their create returns them.
    pub fn release(&mut self, owner: DomainId) -> arrayvec::ArrayVec<Stage, SLOTS> {
        let mut out = arrayvec::ArrayVec::new();
        for slot in &mut self.slots {
            if slot.owner().is_some_and(|(o, _, _)| o == owner)
                && let Slot::Ready(s) = core::mem::replace(slot, Slot::Free)
            {
                out.push(s);
            }
        }
        out
    }
}

/// Frees every stage of domain `id` (it ended): called by
/// `Domain::finish` with no lock held.
pub(crate) fn release_domain(id: DomainId) {
    let freed = STAGES.lock().release(id);
    if !freed.is_empty() {
        log::info!("domain {id}: {} staged images freed", freed.len());
    }
    drop(freed);
}

/// `HC_DOMCTL_STAGE_BEGIN` for domain `me`.
pub(crate) fn live_begin(me: &Domain, size: u64) -> Result<u64, Error> {
    let h = STAGES.lock().begin(me.id, size)?;
    log::debug!("domain {}: stage {h:#x} of {size} bytes", me.id);
    Ok(h)
}

/// `HC_DOMCTL_STAGE_WRITE` for domain `me`, from its memory.
pub(crate) fn live_write(
    me: &Domain,
    handle: u64,
    offset: u64,
    gpa: u64,
    len: u64,
) -> Result<u64, Error> {
    let inner = me.inner.lock();
    STAGES
        .lock()
        .write(me.id, handle, offset, &inner.mem, gpa, len)
}

/// `HC_DOMCTL_STAGE_ABORT` for domain `me`.
pub(crate) fn live_abort(me: &Domain, handle: u64) -> Result<u64, Error> {
    let s = STAGES.lock().abort(me.id, handle)?;
    drop(s);
    Ok(0)
}

/// `HC_DOMCTL_CREATE` with `DOMCTL_CREATE_STAGED` for domain `me`:
/// builds from stage `image` (and `initrd`, 0 for none), freeing them on
/// success and putting them back on failure.
pub(crate) fn live_create(
    me: &Domain,
    p: &CreateParams,
    image: u64,
    initrd: u64,
) -> Result<u64, Error> {
    let (img, ird) = {
        let mut t = STAGES.lock();
        let img = t.take(me.id, image)?;
        let ird = if initrd == 0 {
            None
        } else {
            match t.take(me.id, initrd) {
                Ok(s) => Some(s),
                Err(e) => {
                    let back = t.put_back(img);
                    drop(t);
                    drop(back);
                    return Err(e);
                }
            }
        };
        (img, ird)
    };
    let built = (|| {
        let bytes = img.bytes().ok_or(Error::NoSys)?;
        let initrd: &[u8] = match &ird {
            Some(s) => s.bytes().ok_or(Error::NoSys)?,
            None => &[],
        };
        crate::domain::ctl::build_with(me, p, bytes, initrd, "a staged image")
    })();
    let mut t = STAGES.lock();
    let mut gone = arrayvec::ArrayVec::<Stage, 2>::new();
    for s in core::iter::once(img).chain(ird) {
        if built.is_ok() {
            t.used(&s);
            gone.push(s);
        } else if let Some(s) = t.put_back(s) {
            gone.push(s);
        }
    }
    drop(t);
    drop(gone);
    built
}

#[cfg(test)]
mod tests;
