//! Once the control domain has called `HC_DOMCTL_CONSOLE_READ` (it then
//! serves consoles), other domains' console output goes to their console
//! rings (`domain::console_ring`) for it to drain; a control domain that
//! never does (the `ctl` test guest) leaves them on the serial console.
//! The control domain's I/O calls (ABI 1.3, 42-45) run here. The ring
//! table's lock is a leaf: taken with no other lock held, takes none.

#[allow(unused_imports)]
use super::*;

use crate::domain::console_ring::ConsoleRings;
use crate::domain::exits::MgmtReq;

static CAPTURE: AtomicBool = AtomicBool::new(false);
static RINGS: Mutex<ConsoleRings> = Mutex::new(ConsoleRings::new());

/// Takes `bytes` of domain `d`'s console output into its ring; `false`
/// when output is not captured (no control domain, or `d` is it).
pub(super) fn capture(d: &Domain, bytes: &[u8]) -> bool {
    if d.privileged || !CAPTURE.load(Ordering::Acquire) {
        return false;
    }
    RINGS.lock().push(d.id, bytes);
    true
}

impl Svc<'_> {
    /// One control-domain I/O request (privileged caller, buffer checked).
    pub(super) fn mgmt_req(&mut self, req: MgmtReq<'_>) -> Result<u64, i64> {
        match req {
            MgmtReq::Write(b) => {
                if crate::arch::serial::mgmt_write(b) {
                    Ok(b.len() as u64)
                } else {
                    Err(pvabi::ENOENT)
                }
            }
            MgmtReq::Read(buf) => crate::arch::serial::mgmt_read(buf)
                .map(|n| n as u64)
                .ok_or(pvabi::ENOENT),
            MgmtReq::HostWrite(b) => {
                crate::arch::serial::write_raw(b);
                Ok(b.len() as u64)
            }
            MgmtReq::ConsoleRead { id, buf } => {
                CAPTURE.store(true, Ordering::Release);
                // Whether it exists is decided before the ring is read: a
                // domain ending in between leaves its bytes for next time.
                let alive = super::domctl::exists(id);
                RINGS
                    .lock()
                    .read(id, buf, alive)
                    .map(|n| n as u64)
                    .ok_or(pvabi::ENOENT)
            }
        }
    }
}
