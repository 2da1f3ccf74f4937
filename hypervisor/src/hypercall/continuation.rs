//! Hypercall continuations: no exit holds a CPU much past a slice
//! (issue 12, defect 5).
//!
//! A multicall used to run all of its up to 64 entries in one exit: 64
//! memory ops of 512 pages each moved 32,768 pages, 64 console writes
//! printed 256 KiB, in a single exit. Now each exit runs one *piece*: the
//! entries whose [`cost`] fits [`PIECE_BUDGET`] (the first entry of a piece
//! always runs, so every piece makes progress). When entries remain, the
//! hypercall is *continued*, as Xen does: the results of the piece are
//! written back, RIP is left on the hypercall instruction and the vCPU
//! resumes (the scheduler may preempt it between pieces, like after any
//! exit), so the guest executes the same instruction again, with the same
//! registers, and the hypervisor carries on where the piece stopped.
//!
//! Where the progress lives: Xen rewrites the argument registers, but
//! this ABI promises a guest every register but RAX unchanged across a
//! hypercall (the guest runtime's `asm!` relies on it), so the progress is
//! kept in the vCPU's own [`Slot`] instead, keyed by the hypercall's RIP,
//! array address and count. Only the very next `HC_MULTICALL` from that RIP
//! with those arguments resumes it; any other hypercall forgets it. Between
//! pieces no upcall is injected (the run loop asks [`Slot::pending`]), so
//! the next thing the guest does is re-execute the hypercall: no handler
//! can slip in a multicall of its own. A guest sees a continued multicall
//! exactly as one that took longer; the contract is in `pvabi`'s
//! `HC_MULTICALL` documentation.
//!
//! A console write that finds its domain's output queue full is continued
//! too (re-executed later, whole), and the vCPU yields meanwhile: see
//! `console/out.rs`.
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicBool, Ordering};

use pvabi::zerocopy::{FromBytes, IntoBytes};
use pvabi::{
    CONSOLE_WRITE_MAX, Error, HC_CONSOLE_WRITE, HC_DOMCTL_CREATE, HC_EVTCHN_SEND_WAIT,
    HC_GRANT_COPY, HC_GRANT_MAP, HC_GRANT_REVOKE, HC_GRANT_UNMAP, HC_MEM_POPULATE, HC_MEM_RELEASE,
    HC_MULTICALL, HC_SCHED_BLOCK, MULTICALL_MAX, MulticallEntry,
};

use super::{Action, Services, hypercall, mem_range, status};
use crate::sync::Mutex;

/// Work one exit may do, in the units of [`cost`]: one unit is about 400
/// instructions (a cheap op, copying 64 bytes of console output; a page
/// of a memory op is [`PAGE_COST`]). Sized for the slowest machines the
/// suite runs on, QEMU at 128 ns and Bochs at 100 ns per instruction,
/// where a piece takes a few milliseconds, well under a 10 ms slice (on
/// hardware, tens of microseconds); 64 trivial ops or 64 short console
/// lines still fit one piece, so the batches the suite measures cost one
/// exit each.
pub const PIECE_BUDGET: u64 = 64;

/// Pages one exit releases or populates: a memory op of more (up to
/// `MEM_OP_MAX_PAGES`, alone or inside a multicall) is continued.
/// Measured (`cargo xtask bench --only bounded`): about 3,400 instructions
/// a page (zeroing, allocating, mapping; a release's TLB shoot-down), so
/// 32 pages made a 14 ms exit under QEMU `-icount shift=7`; 8 make 3.5.
pub const MEM_PIECE_PAGES: u64 = 8;

/// Units a page of a memory op costs inside a multicall.
pub const PAGE_COST: u64 = PIECE_BUDGET / MEM_PIECE_PAGES;

/// What running entry `op` with `args` costs, in [`PIECE_BUDGET`] units,
/// from its arguments alone (before it runs: a guest-chosen size is capped
/// at what the op accepts, so a bogus size costs no more than a real one).
/// Memory ops are charged per piece of pages as they run ([`mem_piece`]).
pub fn cost(op: u64, args: &[u64; 6]) -> u64 {
    1 + match op {
        HC_CONSOLE_WRITE => args[1].min(CONSOLE_WRITE_MAX) / 64,
        HC_GRANT_COPY => args[4].min(pvabi::GRANT_COPY_MAX) / 64,
        // A mapping change may wait for a TLB shoot-down on other CPUs.
        HC_GRANT_MAP | HC_GRANT_UNMAP | HC_GRANT_REVOKE => 4,
        // Building a domain copies its image and fills its memory: alone.
        HC_DOMCTL_CREATE => PIECE_BUDGET,
        _ => 0,
    }
}

fn is_mem(op: u64) -> bool {
    op == HC_MEM_RELEASE || op == HC_MEM_POPULATE
}

/// Runs up to `max` (>= 1) pages of memory op `op` over `pages` pages at
/// `gpa`, from page `from`: the pages done so far, or the op's error. The
/// whole range is checked before its first piece (`Services::mem_check`),
/// so an op that fails there changes nothing, as a single op always did;
/// a later piece fails only if another vCPU of the domain changed the same
/// pages meanwhile (or the host ran out of frames), and then the op ends
/// there, partly done.
fn mem_piece(
    svc: &mut impl Services,
    op: u64,
    gpa: u64,
    pages: u64,
    from: u64,
    max: u64,
) -> Result<u64, Error> {
    // The range is checked again on every piece: another vCPU may have
    // rewritten a multicall entry between two pieces.
    mem_range(svc, gpa, pages)?;
    if from == 0 {
        svc.mem_check(op == HC_MEM_POPULATE, gpa, pages)?;
    }
    let n = pages.saturating_sub(from).min(max).min(MEM_PIECE_PAGES);
    let at = gpa + from * pvabi::PAGE_SIZE;
    if op == HC_MEM_POPULATE {
        svc.mem_populate(at, n)?;
    } else {
        svc.mem_release(at, n)?;
    }
    Ok(from + n)
}

/// `HC_MEM_RELEASE` / `HC_MEM_POPULATE` called alone: [`MEM_PIECE_PAGES`]
/// pages per exit, continued until done; RAX gets the page count (or the
/// error) at the end, as before.
pub(super) fn mem_op(svc: &mut impl Services, rip: u64, op: u64, gpa: u64, pages: u64) -> Step {
    let key = Cont {
        rip,
        nr: op,
        gpa,
        count: pages,
        done: 0,
        sub: 0,
    };
    let from = match svc.continuation().take() {
        Some(c)
            if c == (Cont {
                done: c.done,
                ..key
            }) =>
        {
            c.done
        }
        _ => 0,
    };
    match mem_piece(svc, op, gpa, pages, from, MEM_PIECE_PAGES) {
        Err(e) => Step::Done(status(e), Action::Resume),
        Ok(done) if done >= pages => Step::Done(pages, Action::Resume),
        Ok(done) => {
            svc.continuation().put(Cont { done, ..key });
            Step::Again(Action::Resume)
        }
    }
}

/// Where a continued hypercall `nr`, called from `rip` with `gpa` and
/// `count`, stopped. A multicall (`count` entries at `gpa`): its next piece
/// starts at entry `done`, `sub` pages into it when that is a memory op. A
/// memory op (`count` pages at `gpa`): `done` pages are done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cont {
    pub rip: u64,
    pub nr: u64,
    pub gpa: u64,
    pub count: u64,
    pub done: u64,
    pub sub: u64,
}

/// A vCPU's continuation record (at most one: a continued hypercall is
/// re-executed before the guest does anything else).
pub struct Slot {
    rec: Mutex<Option<Cont>>,
    pending: AtomicBool,
}

impl Slot {
    /// No continuation.
    pub const fn new() -> Self {
        Self {
            rec: Mutex::new(None),
            pending: AtomicBool::new(false),
        }
    }

    /// Whether a continued hypercall waits to be re-executed: the run
    /// loop injects no upcall then.
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Takes the record (it is consumed by every multicall).
    pub fn take(&self) -> Option<Cont> {
        if !self.pending() {
            return None;
        }
        self.pending.store(false, Ordering::Release);
        self.rec.lock().take()
    }

    /// Records where a multicall stopped.
    pub fn put(&self, c: Cont) {
        *self.rec.lock() = Some(c);
        self.pending.store(true, Ordering::Release);
    }

    /// Forgets any record (a hypercall other than the continued one came).
    pub fn clear(&self) {
        if self.pending() {
            let _ = self.take();
        }
    }
}

impl Default for Slot {
    fn default() -> Self {
        Self::new()
    }
}

/// What one exit of a hypercall did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Finished: RAX gets the value, RIP moves past the instruction.
    Done(u64, Action),
    /// Not finished: RIP stays on the instruction and RAX keeps the
    /// hypercall number, so the guest executes it again.
    Again(Action),
}

/// Runs the next piece of the multicall of `count` entries at `gpa`
/// called from `rip`: from the vCPU's continuation if it names this call,
/// else from entry 0. The entries of the piece are copied in, run in
/// order, and their results written back before the next piece starts
/// (`EFAULT` and the end of the batch if that fails, e.g. an entry
/// released the array's own pages). Blocking (`HC_SCHED_BLOCK`,
/// `HC_EVTCHN_SEND_WAIT`) and nested multicalls are refused per entry
/// (`EINVAL`); a shutdown or kill ends the batch; a yield takes effect
/// after the piece it is in.
pub(super) fn multicall(
    svc: &mut impl Services,
    rip: u64,
    gpa: u64,
    count: u64,
    console: &mut dyn FnMut(&[u8]) -> bool,
) -> Step {
    const ENTRY: usize = core::mem::size_of::<MulticallEntry>();
    let key = Cont {
        rip,
        nr: HC_MULTICALL,
        gpa,
        count,
        done: 0,
        sub: 0,
    };
    let (start, mut sub) = match svc.continuation().take() {
        Some(c)
            if c == (Cont {
                done: c.done,
                sub: c.sub,
                ..key
            }) =>
        {
            (c.done, c.sub)
        }
        _ => (0, 0),
    };
    if count == 0 {
        return Step::Done(status(Error::Invalid), Action::Resume);
    }
    if count > MULTICALL_MAX {
        return Step::Done(status(Error::TooBig), Action::Resume);
    }
    let mut raw = [0u8; ENTRY * MULTICALL_MAX as usize];
    let Some(bytes) = raw.get_mut(ENTRY * start as usize..ENTRY * count as usize) else {
        return Step::Done(status(Error::TooBig), Action::Resume);
    };
    let base = gpa.wrapping_add(start * ENTRY as u64);
    if svc.read(base, bytes).is_err() {
        return Step::Done(status(Error::Fault), Action::Resume);
    }
    let mut after = Action::Resume;
    let mut spent = 0;
    let mut ran = 0usize;
    let mut stalled = false;
    for chunk in bytes.chunks_exact_mut(ENTRY) {
        let Ok(e) = MulticallEntry::mut_from_bytes(chunk) else {
            return Step::Done(status(Error::Fault), Action::Resume);
        };
        let left = PIECE_BUDGET.saturating_sub(spent);
        if is_mem(e.op) {
            // Charged by the page as it runs; the piece's first entry
            // always gets a piece of pages.
            let max = if spent == 0 {
                MEM_PIECE_PAGES
            } else {
                left.saturating_sub(1) / PAGE_COST
            };
            if max == 0 {
                break;
            }
            let [gpa, pages, ..] = e.args;
            match mem_piece(svc, e.op, gpa, pages, sub, max) {
                Ok(done) if done < pages => {
                    // Part of it ran: this entry goes on in the next piece.
                    sub = done;
                    break;
                }
                Ok(done) => {
                    spent += 1 + (done - sub) * PAGE_COST;
                    e.result = pages;
                }
                Err(err) => {
                    spent += 1;
                    e.result = status(err);
                }
            }
            sub = 0;
            ran += 1;
            continue;
        }
        sub = 0;
        let c = cost(e.op, &e.args);
        if spent > 0 && c > left {
            break;
        }
        spent += c;
        let r = match e.op {
            HC_MULTICALL | HC_SCHED_BLOCK | HC_EVTCHN_SEND_WAIT => {
                Some((status(Error::Invalid), Action::Resume))
            }
            op => hypercall(svc, op, e.args, console),
        };
        let Some((ret, action)) = r else {
            // Its console queue is full: this entry runs again later.
            stalled = true;
            break;
        };
        e.result = ret;
        ran += 1;
        match action {
            // The domain is over: nothing is written back.
            Action::Shutdown { .. } | Action::Kill(_) => return Step::Done(count, action),
            Action::Yield => after = Action::Yield,
            _ => {}
        }
    }
    let Some(done) = bytes.get(..ran * ENTRY) else {
        return Step::Done(status(Error::Fault), after);
    };
    if svc.write(base, done.as_bytes()).is_err() {
        return Step::Done(status(Error::Fault), after);
    }
    let next = start + ran as u64;
    if next >= count {
        return Step::Done(count, after);
    }
    svc.continuation().put(Cont {
        done: next,
        sub,
        ..key
    });
    Step::Again(if stalled { Action::Yield } else { after })
}
