//! Once the control domain has called `HC_DOMCTL_CONSOLE_READ` (it then
//! serves consoles), other domains' console output goes to their console
//! rings (`domain::console_ring`) for it to drain; a control domain that
//! never does (the `ctl` test guest) leaves them on the serial console.
//! The control domain's I/O calls (numbers 42-46) run here. The ring
//! table's lock is a leaf: taken with no other lock held, takes none; so
//! is each domain's console input queue (`Domain::console_in`), which
//! unprivileged domains read with `HC_CONSOLE_READ` once a control domain
//! exists.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::sync::Mutex;
use pvabi::Error;

use crate::console::out::DRAIN_PER_EXIT;
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
    RINGS.lock().push(d.id, bytes);
    true
}

/// Takes `bytes` of `d`'s console output, whole (`false`: they do not fit
/// its queue now, the write is continued): into its ring when the control
/// domain captures output, else into its output queue.
pub(crate) fn write(d: &Domain, bytes: &[u8]) -> bool {
    capture(d, bytes) || d.console_out.offer(bytes)
}

/// Prints one of `d`'s console lines.
fn print_line(d: &Domain, line: &[u8]) {
    let text = core::str::from_utf8(line).unwrap_or("<non-UTF-8 output>");
    crate::println!("[dom{} {}] {}", d.id, d.name, text);
}

/// Prints up to [`DRAIN_PER_EXIT`] bytes of `d`'s queued output (after
/// each of its exits; nearly free when nothing is queued).
pub(crate) fn drain(d: &Domain) {
    if d.console_out.queued() != 0 {
        d.console_out
            .drain(DRAIN_PER_EXIT, &mut |l: &[u8]| print_line(d, l));
    }
}

/// Prints the rest of `d`'s output (it has ended).
pub(crate) fn flush(d: &Domain) {
    d.console_out.flush(&mut |l: &[u8]| print_line(d, l));
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
            if d.console_out.queued() != 0 && waiting.try_push(d.clone()).is_err() {
                break;
            }
        }
    }
    for d in &waiting {
        drain(d);
    }
    !waiting.is_empty()
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
