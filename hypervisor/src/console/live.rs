//! Once the control domain has called `HC_DOMCTL_CONSOLE_READ` (it then
//! serves consoles), other domains' console output goes to their console
//! rings (`domain::console_ring`) for it to drain; a control domain that
//! never does (the `ctl` test guest) leaves them on the serial console.
//! The control domain's I/O calls (numbers 42-46) run here. The ring
//! table's lock is a leaf: taken with no other lock held, takes none; so
//! is each domain's console input queue (`Domain::console_in`), which
//! unprivileged domains read with `HC_CONSOLE_READ` once a control domain
//! exists.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::sync::Mutex;
use pvabi::Error;

use crate::console::out::{DRAIN_PER_EXIT, Fixed, LINE_MAX, Note, NoteKind, OutQueue};
use crate::console::ring::ConsoleRings;
use crate::domain::lifecycle::Domain;
use crate::hypercall::MgmtReq;
use crate::hypercall::services::Svc;
use crate::platform::{P, Platform};

static CAPTURE: AtomicBool = AtomicBool::new(false);
/// Set once a privileged domain was created (hypervisor option `dom0`):
/// from then on other domains may read their console input queues.
static CONTROL_DOMAIN: AtomicBool = AtomicBool::new(false);

/// A control domain exists (set at its creation, never cleared).
pub(crate) fn note_control_domain() {
    CONTROL_DOMAIN.store(true, Ordering::Release);
}

/// Whether `d` may read console input (`HC_CONSOLE_READ`).
pub(crate) fn readable(d: &Domain) -> bool {
    d.privileged || CONTROL_DOMAIN.load(Ordering::Acquire)
}

/// Takes `d`'s console input into `buf`: the serial console's for the
/// privileged domain, its own queue for the others.
pub(crate) fn read_input(d: &Domain, buf: &mut [u8]) -> usize {
    if d.privileged {
        P::console_input(buf)
    } else {
        d.console_in.lock().read(buf)
    }
}
static RINGS: Mutex<ConsoleRings> = Mutex::new(ConsoleRings::new());

/// Takes `bytes` of domain `d`'s console output into its ring; `false`
/// when output is not captured (no control domain, or `d` is it).
pub(crate) fn capture(d: &Domain, bytes: &[u8]) -> bool {
    if d.privileged || !CAPTURE.load(Ordering::Acquire) {
        return false;
    }
    let filled = RINGS.lock().push(d.id, bytes);
    if filled {
        crate::console::wake::console_out();
    }
    true
}

/// Takes `bytes` of `d`'s console output, whole (`false`: they do not fit
/// its queue now, the write is continued): into its ring when the control
/// domain captures output, else into its output queue.
pub(crate) fn write(d: &Domain, bytes: &[u8]) -> bool {
    capture(d, bytes) || d.console_out.offer(bytes)
}

/// Prints one of domain `id`'s console lines.
fn print_line(id: crate::domain::ids::DomainId, name: &str, line: &[u8]) {
    let text = core::str::from_utf8(line).unwrap_or("<non-UTF-8 output>");
    match crate::console::stamp::stamp(id) {
        Some((ns, exits)) => crate::println!("[dom{} {} +{}ns {}x] {}", id, name, ns, exits, text),
        None => crate::println!("[dom{} {}] {}", id, name, text),
    }
}

/// Prints a note (a hypervisor line about a domain's end).
fn print_note(n: &Note) {
    match n.kind {
        NoteKind::Info => log::info!("{}", n.text),
        NoteKind::Warn => log::warn!("{}", n.text),
        NoteKind::Plain => crate::println!("{}", n.text),
    }
}

/// Room a line needs in the transmit ring: [`LINE_MAX`], the
/// `[domN name] ` prefix (a 32-byte name), CR LF, or a log line's prefix
/// and a note.
const LINE_ROOM: usize = 320;

/// Whether the transmit ring has room for one more guest line (else it
/// waits in its queue: `txbuf.rs`).
fn room() -> bool {
    P::console_guest_room() >= LINE_ROOM.max(LINE_MAX)
}

/// Up to [`DRAIN_PER_EXIT`] bytes of `q` (at most one line or note) into
/// the transmit ring, if it has room.
fn drain_queue<B: AsRef<[u8]> + AsMut<[u8]>>(
    q: &OutQueue<B>,
    id: crate::domain::ids::DomainId,
    name: &str,
) {
    if q.busy() && room() {
        q.drain(
            DRAIN_PER_EXIT,
            &mut |l: &[u8]| print_line(id, name, l),
            &mut print_note,
        );
    }
}

/// After each of `d`'s exits: up to [`DRAIN_PER_EXIT`] bytes of its
/// queued output into the transmit ring. One flag test, inlined into the
/// exit path, when nothing is queued. The ring's push to the UART and the
/// leftovers are [`drain_shared`]'s, at the exits that ask for it.
#[inline]
pub(crate) fn drain(d: &Domain) {
    if d.console_out.busy() {
        drain_queue(&d.console_out, d.id, &d.name);
    }
}

/// At an exit that found `hostwork::ATTN_CONSOLE` in its CPU's word: one
/// step of the leftovers into the transmit ring, then one push of the ring
/// to the UART (never waiting). Returns whether output still waits (the
/// CPU then asks itself again, for its next exit).
pub(crate) fn drain_shared() -> bool {
    drain_leftovers();
    P::console_push();
    leftovers_pending() || P::console_waiting()
}

/// Records how many leftover slots are in use (under `LEFTOVERS`'s lock).
/// When output starts to wait there, every CPU is asked to drain at its
/// next exit (`hostwork::ATTN_CONSOLE`).
fn set_leftovers(n: usize) {
    if LEFTOVER_COUNT.swap(n, Ordering::AcqRel) == 0 && n != 0 {
        crate::hostwork::raise_all(crate::hostwork::ATTN_CONSOLE);
    }
}

/// `d` has ended: `args` (its `domain N ... exited` line) is printed after
/// its queued output, or now if none is queued.
pub(crate) fn end_note(d: &Domain, kind: NoteKind, args: core::fmt::Arguments<'_>) {
    if let Some(n) = d.console_out.close(Note::new(kind, args)) {
        print_note(&n);
    }
}

/// A slot for a domain whose output is still queued when it is freed:
/// its queue is moved here (fixed storage, not the heap), so the domain's
/// heap, its 4 KiB ring included, is freed with it at once.
struct Leftover {
    id: crate::domain::ids::DomainId,
    name: arrayvec::ArrayString<32>,
    q: OutQueue<Fixed>,
}

/// The leftover slots and the order their domains were freed in.
struct Leftovers {
    slots: [Leftover; MAX_LEFTOVERS],
    order: arrayvec::ArrayVec<u8, MAX_LEFTOVERS>,
}

/// Domains freed with output left, drained in the order they were freed
/// like live domains' queues (`drain`, `drain_idle`). Static: nothing is
/// allocated when a domain ends (16 × 4 KiB of the hypervisor's image).
static LEFTOVERS: Mutex<Leftovers> = Mutex::new(Leftovers {
    slots: [const {
        Leftover {
            id: crate::domain::ids::DomainId(0),
            name: arrayvec::ArrayString::new_const(),
            q: OutQueue::fixed(),
        }
    }; MAX_LEFTOVERS],
    order: arrayvec::ArrayVec::new_const(),
});
/// How many slots are in use (read without the lock).
static LEFTOVER_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Leftover slots: 16 domains ending within the ~5 s the UART needs for
/// their 4 KiB queues. Past that, one is printed in the exit that frees
/// it (the old behaviour, waiting if the ring is full), so nothing is
/// ever lost.
const MAX_LEFTOVERS: usize = 16;

/// Domain `id` is being freed: its queue's content (moved out of `q`) and
/// its `domain-end:` line (`args`) go to a leftover slot, printed after
/// its last output without waiting here; or at once when nothing is
/// queued.
pub(crate) fn ended(
    id: crate::domain::ids::DomainId,
    name: &arrayvec::ArrayString<32>,
    q: &OutQueue,
    args: core::fmt::Arguments<'_>,
) {
    if let Some(n) = q.close(Note::new(NoteKind::Plain, args)) {
        print_note(&n);
        return;
    }
    {
        let mut list = LEFTOVERS.lock();
        let Leftovers { slots, order } = &mut *list;
        let free = (0..MAX_LEFTOVERS).find(|i| !order.contains(&(*i as u8)));
        if let Some(i) = free
            && let Some(slot) = slots.get_mut(i)
            && q.move_into(&slot.q)
        {
            slot.id = id;
            slot.name = *name;
            order.push(i as u8);
            set_leftovers(order.len());
            return;
        }
    }
    q.flush(&mut |l: &[u8]| print_line(id, name, l), &mut print_note);
}

/// One step of the oldest leftover (a line or a note); its slot is free
/// again once it has printed everything.
fn drain_leftovers() {
    if LEFTOVER_COUNT.load(Ordering::Acquire) == 0 {
        return;
    }
    let mut list = LEFTOVERS.lock();
    let Leftovers { slots, order } = &mut *list;
    let Some(slot) = order.first().and_then(|&i| slots.get(usize::from(i))) else {
        return;
    };
    drain_queue(&slot.q, slot.id, &slot.name);
    if !slot.q.busy() {
        order.remove(0);
    }
    set_leftovers(order.len());
}

/// Whether freed domains still have output to print (the hypervisor does
/// not report all domains ended, nor shut down, before it is out).
#[inline]
pub(crate) fn leftovers_pending() -> bool {
    LEFTOVER_COUNT.load(Ordering::Acquire) != 0
}

/// An idle CPU's share: up to [`DRAIN_PER_EXIT`] bytes of every domain
/// with queued output (those that print and then block are heard without
/// running again). The domains are collected first so that no serial
/// output happens under the domain table's lock. Returns whether any
/// output was waiting (the CPU then looks again soon rather than a tick
/// later).
pub(crate) fn drain_idle() -> bool {
    let mut waiting: arrayvec::ArrayVec<alloc::sync::Arc<Domain>, 8> = arrayvec::ArrayVec::new();
    {
        let table = crate::domain::lifecycle::DOMAINS.lock();
        for (_, d) in table.domains() {
            if d.console_out.busy() && waiting.try_push(d.clone()).is_err() {
                break;
            }
        }
    }
    for d in &waiting {
        drain_queue(&d.console_out, d.id, &d.name);
    }
    drain_leftovers();
    P::console_push();
    !waiting.is_empty() || leftovers_pending() || P::console_pending() != 0
}

impl Svc<'_> {
    /// One control-domain I/O request (privileged caller, buffer checked).
    pub(crate) fn mgmt_req(&mut self, req: MgmtReq<'_>) -> Result<u64, Error> {
        match req {
            MgmtReq::Write(b) => {
                if P::mgmt_write(b) {
                    Ok(b.len() as u64)
                } else {
                    Err(Error::NoEntry)
                }
            }
            MgmtReq::Read(buf) => P::mgmt_read(buf).map(|n| n as u64).ok_or(Error::NoEntry),
            MgmtReq::HostWrite(b) => {
                P::console_raw(b);
                Ok(b.len() as u64)
            }
            MgmtReq::ConsoleWrite { id, bytes } => {
                let d = crate::domain::ctl::live_other(&self.me.domain, id)?;
                let n = {
                    let mut q = d.console_in.lock();
                    q.make_room(&d.budget)?;
                    q.push(bytes)
                };
                if n > 0 {
                    crate::evtchn::live::raise_console_virq(&d);
                }
                Ok(n as u64)
            }
            MgmtReq::ConsoleRead { id, buf } => {
                CAPTURE.store(true, Ordering::Release);
                // Whether it exists is decided before the ring is read: a
                // domain ending in between leaves its bytes for next time.
                let alive = crate::domain::ctl::exists(id);
                RINGS
                    .lock()
                    .read(id, buf, alive)
                    .map(|n| n as u64)
                    .ok_or(Error::NoEntry)
            }
        }
    }
}
