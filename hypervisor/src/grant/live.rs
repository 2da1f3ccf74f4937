//! Shared pages between live domains (grant, map, copy, query, set-max):
//! the `HC_GRANT_*` services
//! over each domain's [`GrantTable`] (as granter) and [`MapTrack`] (as
//! grantee), the nested-paging edits that install and remove a granted
//! frame, and what a dying domain's grants and mappings become.
//!
//! Locks, in order: a granter's `grants`, a grantee's `maps`, a domain's
//! `inner`, the domain table (TLB shoot-down). Two `grants` or two `maps`
//! locks are never held together.
//!
//! Invariants that keep a granted frame from being freed while a grantee
//! can still reach it:
//! - A granted page (until revoked and unmapped) cannot be released by its
//!   granter (`EBUSY`, checked under `grants`), so its frame stays in the
//!   granter's memory.
//! - A mapping leaves a [`MapTrack`] only together with its nested-paging
//!   unmap and the grantee's TLB shoot-down, all under the grantee's `maps`
//!   lock (unmap, the grantee's death, the granter's death).
//! - A dying granter (`end_grants`, before its frames can be freed by its
//!   `Drop`) revokes every grant and takes each grantee's `maps` lock to
//!   swap a zeroed scratch frame (owned by the mapping, freed when it is
//!   unmapped) in under each live mapping, or unmap it, so it waits for
//!   any unmap in flight; its own frames are unreachable when it returns.

use alloc::sync::Arc;
use alloc::vec::Vec;

use pvabi::Error;
use pvabi::zerocopy::IntoBytes;
use pvabi::{GRANT_COPY_MAX, GRANT_MAX_CEILING, GRANT_REVOKE_DEFERRED, GrantLimits, PAGE_SIZE};

use crate::domain::GuestMemory;
use crate::domain::ids::DomainId;
use crate::domain::lifecycle::{DOMAINS, Domain, Inner};
use crate::grant::{Access, GrantTable, MapTrack, Mapping, Revoke, RevokeDone, check_set_max};
use crate::hypercall::services::{Svc, shoot_down_domain};
use crate::hypercall::{GrantOp, GuestRead};
use crate::mm::gpt::Perms;
use crate::platform::{P, Platform};

/// The domain with id `id`, dying or not (it is still in the table).
fn domain_any(id: DomainId) -> Option<Arc<Domain>> {
    DOMAINS.lock().get(id).cloned()
}

/// The live domain with id `id`.
fn domain_live(id: DomainId) -> Option<Arc<Domain>> {
    domain_any(id).filter(|d| !d.dying())
}

fn perms(a: Access) -> Perms {
    match a {
        Access::ReadOnly => Perms::READ,
        Access::ReadWrite => Perms::READ_WRITE,
    }
}

/// Removes mappings `ms` from `grantee`'s nested page tables and flushes
/// its vCPUs (but `skip`). Called under `grantee.maps`.
fn unmap_in(grantee: &Domain, ms: &[Mapping], skip: Option<u32>) {
    if ms.is_empty() {
        return;
    }
    {
        let mut guard = grantee.inner.lock();
        let inner = &mut *guard;
        for m in ms {
            inner.foreign.remove(&m.at_gpa);
            if let Some(g) = inner.gpt.as_mut() {
                // A 4 KiB leaf we installed: removing it needs no new table.
                let _ = g.unmap(m.at_gpa, PAGE_SIZE, &mut inner.tables);
            }
        }
    }
    if !shoot_down_domain(grantee, skip) {
        log::error!(
            "domain {}: granted pages unmapped without a complete TLB shoot-down",
            grantee.id
        );
    }
}

/// Tells the granter that a deferred revoke completed. Its event table is
/// let go before the upcall: the table is a leaf (`evtchn/live.rs`), and
/// the upcall takes the domain table and the target's state lock, which
/// an interdomain send and a firing timer hold while they take an event
/// table (held across the `if let`'s body, the guard made those orders
/// cross).
fn revoke_done(granter: &Domain, done: Option<RevokeDone>) {
    let Some(RevokeDone { port, .. }) = done else {
        return;
    };
    if port == 0 {
        return;
    }
    let n = granter.events.lock().raise(port);
    if let Some(n) = n {
        crate::evtchn::live::notify_any(n);
    }
}

/// A zeroed frame (a scratch page in place of a dead granter's).
fn alloc_zeroed_frame() -> Option<u64> {
    let f = P::alloc_frame()?;
    P::fill_phys(f, PAGE_SIZE, 0);
    Some(f)
}

impl Svc<'_> {
    /// One grant op of this vCPU's domain.
    pub(crate) fn grant_op(&mut self, op: GrantOp) -> Result<u64, Error> {
        let d = &self.me.domain;
        match op {
            GrantOp::Access {
                gpa,
                grantee,
                access,
            } => {
                if !gpa.is_multiple_of(PAGE_SIZE) {
                    return Err(Error::Invalid);
                }
                let mut table = d.grants.lock();
                if d.inner.lock().mem.frame(gpa).is_none() {
                    return Err(Error::Fault);
                }
                // A pinned event-channel control page is never shared.
                if d.control_pinned(gpa, PAGE_SIZE) {
                    return Err(Error::Busy);
                }
                table.grant(grantee, gpa, access).map(u64::from)
            }
            GrantOp::Revoke { gref, port } => match d.grants.lock().revoke(gref, port) {
                Ok(Revoke::Done) => Ok(0),
                Ok(Revoke::Deferred { .. }) => Ok(GRANT_REVOKE_DEFERRED),
                Err(e) => Err(e),
            },
            GrantOp::Map {
                granter,
                gref,
                at,
                access,
            } => self.map(granter, gref, at, access),
            GrantOp::Unmap(handle) => {
                let m = d.maps.lock().get(handle)?;
                if m.scratch != 0 {
                    // Its granter died: only our scratch frame is there.
                    let m = d.maps.lock().remove_orphan(handle)?;
                    unmap_in(d, &[m], Some(self.me.index));
                    P::free_frames(m.scratch, 1);
                    return Ok(0);
                }
                let granter = m.granter;
                let g = domain_any(granter).ok_or(Error::NoEntry)?;
                let mut table = g.grants.lock();
                let mut track = d.maps.lock();
                let (m, done) = table.unmap(&mut track, handle)?;
                // Under both locks: the granter cannot reuse the frame
                // before no vCPU of ours can reach it.
                unmap_in(d, &[m], Some(self.me.index));
                drop(track);
                drop(table);
                revoke_done(&g, done);
                Ok(0)
            }
            GrantOp::Copy {
                granter,
                gref,
                offset,
                local,
                len,
                to_grant,
            } => self.copy(granter, gref, offset, local, len, to_grant),
            GrantOp::Query { gpa } => {
                let (grants, maps) = (d.grants.lock().limits(), d.maps.lock().limits());
                let out = GrantLimits {
                    grants_in_use: grants.in_use,
                    grants_max: grants.max,
                    maps_in_use: maps.in_use,
                    maps_max: maps.max,
                    ceiling: GRANT_MAX_CEILING as u32,
                    _pad: 0,
                };
                d.inner
                    .lock()
                    .mem
                    .write(gpa, out.as_bytes())
                    .map_err(|_| Error::Fault)?;
                Ok(0)
            }
            GrantOp::SetMax { grants, maps } => {
                let mut table = d.grants.lock();
                let mut track = d.maps.lock();
                check_set_max(&table, &track, grants, maps)?;
                // Checked: neither can fail now.
                table.set_max(grants)?;
                track.set_max(maps)?;
                Ok(0)
            }
        }
    }

    /// `HC_GRANT_COPY`, its checks in the ABI's order. The granted end is
    /// read or written under the granter's table lock, so a revoke cannot
    /// come between the check and the copy.
    fn copy(
        &mut self,
        granter: DomainId,
        gref: u32,
        offset: u64,
        local: u64,
        len: u64,
        to_grant: bool,
    ) -> Result<u64, Error> {
        let d = &self.me.domain;
        let me = d.id;
        if len == 0 {
            return Err(Error::Invalid);
        }
        if len > GRANT_COPY_MAX {
            return Err(Error::TooBig);
        }
        match offset.checked_add(len) {
            Some(end) if end <= PAGE_SIZE => {}
            _ => return Err(Error::Invalid),
        }
        if granter == me {
            return Err(Error::Invalid);
        }
        let mut page = [0u8; GRANT_COPY_MAX as usize];
        let buf = page.get_mut(..len as usize).ok_or(Error::TooBig)?;
        // The caller's buffer, validated like any hypercall buffer (its
        // own present pages only); for a copy to the grant, the data.
        d.inner
            .lock()
            .mem
            .read(local, buf)
            .map_err(|_| Error::Fault)?;
        let g = domain_live(granter).ok_or(Error::NoEntry)?;
        let table = g.grants.lock();
        if g.dying() {
            return Err(Error::NoEntry);
        }
        // `offset + len <= PAGE_SIZE` was checked: both fit in 32 bits.
        let at = table.check_copy(me, gref, offset as u32, len as u32, !to_grant)?;
        {
            let mut inner = g.inner.lock();
            // Granted pages cannot be released: present, so no fault.
            let r = if to_grant {
                inner.mem.write(at.gpa, buf)
            } else {
                inner.mem.read(at.gpa, buf)
            };
            r.map_err(|_| Error::Fault)?;
        }
        drop(table);
        if !to_grant {
            d.inner
                .lock()
                .mem
                .write(local, buf)
                .map_err(|_| Error::Fault)?;
        }
        Ok(len)
    }

    fn map(&mut self, granter: DomainId, gref: u32, at: u64, access: Access) -> Result<u64, Error> {
        let d = &self.me.domain;
        let me = d.id;
        if granter == me || !at.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Invalid);
        }
        let hole = |inner: &Inner| -> Result<(), Error> {
            if at >= inner.mem.phys_size() {
                return Err(Error::Fault);
            }
            if inner.mem.frame(at).is_some() || inner.foreign.contains(&at) {
                return Err(Error::Exists);
            }
            Ok(())
        };
        hole(&d.inner.lock())?;
        let g = domain_live(granter).ok_or(Error::NoEntry)?;
        let mut table = g.grants.lock();
        // Under the table's lock: a granter marked dying after this point
        // runs `end_grants`, which waits for this lock and undoes the map.
        if g.dying() {
            return Err(Error::NoEntry);
        }
        let mut track = d.maps.lock();
        // A dying grantee's `end_grants` may have emptied its track already.
        if d.dying() {
            return Err(Error::NoEntry);
        }
        let (handle, gpa) = table.map(&mut track, me, gref, access, at)?;
        let undo = |table: &mut GrantTable, track: &mut MapTrack, e: Error| {
            let _ = table.unmap(track, handle);
            Err(e)
        };
        // Granted pages cannot be released: the frame is there.
        let Some(frame) = g.inner.lock().mem.frame(gpa) else {
            return undo(&mut table, &mut track, Error::Fault);
        };
        let mut guard = d.inner.lock();
        let inner = &mut *guard;
        if let Err(e) = hole(inner) {
            // Another vCPU populated the hole meanwhile.
            drop(guard);
            return undo(&mut table, &mut track, e);
        }
        let mapped = match inner.gpt.as_mut() {
            Some(gpt) => gpt.map_perms(at, frame, perms(access), &mut inner.tables),
            None => Ok(()),
        };
        if mapped.is_err() {
            drop(guard);
            return undo(&mut table, &mut track, Error::NoMem);
        }
        inner.foreign.insert(at);
        Ok(u64::from(handle))
    }
}

/// The domain is ending (called once by `Domain::finish`, after it is
/// marked dying, with no lock held): its own mappings go, then its grants
/// are revoked and every grantee's mapping of its pages is removed, so no
/// frame of it is reachable from another domain when its `Drop` frees them.
pub(crate) fn end_grants(d: &Domain) {
    // As grantee.
    let mine = {
        let mut track = d.maps.lock();
        let ms = track.take_all();
        unmap_in(d, &ms, None);
        ms
    };
    for m in mine {
        if m.scratch != 0 {
            P::free_frames(m.scratch, 1);
        } else if let Some(g) = domain_any(m.granter) {
            let done = g.grants.lock().drop_map(m.gref);
            revoke_done(&g, done);
        }
    }
    // As granter.
    let mut table = d.grants.lock();
    let mut grantees: Vec<DomainId> = table.revoke_all().into_iter().map(|(g, _)| g).collect();
    grantees.sort_unstable();
    grantees.dedup();
    for id in grantees {
        let Some(grantee) = domain_any(id) else {
            continue;
        };
        let mut track = grantee.maps.lock();
        let dropped = orphan_in(&grantee, &mut track, d.id);
        drop(track);
        for gref in dropped {
            let _ = table.drop_map(gref);
        }
    }
}

/// `granter` is dying: a live grantee's mappings of its pages get zeroed
/// scratch frames in their place (so a grantee in the middle of using the
/// page neither faults nor sees it change under it again), which it frees
/// by unmapping; a dying grantee's, or any that cannot get a frame, are
/// unmapped. Either way no mapping reaches the granter's frames any more
/// once this returns (TLB shoot-down included), so they can be freed. The
/// grant references to drop from the granter's table. Called under
/// `grantee.maps`.
fn orphan_in(grantee: &Domain, track: &mut MapTrack, granter: DomainId) -> Vec<u32> {
    let live = !grantee.dying();
    let (kept, mut gone) = track.orphan_granter(granter, || live.then(alloc_zeroed_frame)?);
    let mut drop_refs: Vec<u32> = gone.iter().map(|m| m.gref).collect();
    {
        let mut guard = grantee.inner.lock();
        let inner = &mut *guard;
        for (handle, m) in &kept {
            drop_refs.push(m.gref);
            // One entry write: the grantee's other vCPUs, running on, read
            // the old page or the zeroed one, never a hole (an unmap then
            // a map left one, and a vCPU reading the page in it was killed
            // for touching memory it does not own).
            let swapped = inner.gpt.as_mut().is_some_and(|g| {
                g.replace(m.at_gpa, m.scratch, perms(m.access), &mut inner.tables)
                    .is_ok()
            });
            if !swapped && let Ok(m) = track.remove_orphan(*handle) {
                inner.foreign.remove(&m.at_gpa);
                P::free_frames(m.scratch, 1);
                gone.push(m);
            }
        }
    }
    // Flushes the swapped mappings too; `gone` ones are unmapped here.
    unmap_in(grantee, &gone, None);
    if gone.is_empty() && !kept.is_empty() && !shoot_down_domain(grantee, None) {
        log::error!(
            "domain {}: granted pages swapped without a complete TLB shoot-down",
            grantee.id
        );
    }
    drop_refs
}

#[cfg(test)]
mod tests;
