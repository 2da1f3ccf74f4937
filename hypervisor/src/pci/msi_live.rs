//! Device interrupts as events on the live machine (pvabi
//! `HC_PCI_MSI_BIND` / `HC_PCI_MSI_UNBIND`): binding a message of an owned
//! function to a new port, the run loop's delivery of the vectors that
//! came ([`poll`]), and unbinding — by the hypercall or at the owner's end
//! — which always disables the message at the device first, then frees
//! the vector and the port.
//!
//! Locks, in this order: [`BINDINGS`], the device table, the IOMMU's
//! state (`msi_remap.rs`, taken and released on its own), the config
//! access and the MSI-X table access, then a domain's event table (a
//! leaf). [`poll`] takes [`BINDINGS`] only to read which ports the vectors
//! go to, and raises them with it released.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pvabi::Error;

use super::Bdf;
use super::msi::{self, Binding, Bindings, Hw, Kind, Mmio32, VECTOR_END, VECTOR_FIRST};
use super::table::DEVICES;
use crate::domain::ids::DomainId;
use crate::domain::lifecycle::{DOMAINS, Domain};
use crate::platform::{P, Platform};
use crate::sync::Mutex;

/// Every bound message.
static BINDINGS: Mutex<Bindings> = Mutex::new(Bindings::new(VECTOR_FIRST, VECTOR_END));
/// How the MSI-X tables are reached, registered at boot (`arch/msi.rs`).
static MMIO: Mutex<Option<Box<dyn Mmio32 + Send>>> = Mutex::new(None);
/// Vectors that came with no message bound to them (one in flight when
/// its message was unbound, or a device misbehaving).
static UNBOUND: AtomicU64 = AtomicU64::new(0);
static UNBOUND_LOGGED: AtomicBool = AtomicBool::new(false);
/// Interrupts raised on a bound port so far.
static DELIVERED: AtomicU64 = AtomicU64::new(0);

/// Registers the machine's access to MSI-X tables.
pub fn register_mmio(m: Box<dyn Mmio32 + Send>) {
    *MMIO.lock() = Some(m);
}

/// No MSI-X table access registered: reads all ones, writes nothing.
struct NoMmio;

impl Mmio32 for NoMmio {
    fn read32(&self, _addr: u64) -> u32 {
        u32::MAX
    }
    fn write32(&self, _addr: u64, _value: u32) {}
}

/// Runs `f` on the machine's config space and MSI-X tables (`None`: no
/// config access was registered, so no device exists).
fn with_hw<R>(f: impl FnOnce(&Hw<'_>) -> R) -> Option<R> {
    let mmio = MMIO.lock();
    let none = NoMmio;
    let mmio: &dyn Mmio32 = match mmio.as_deref() {
        Some(m) => m,
        None => &none,
    };
    super::live::with_config(|cfg| f(&Hw { cfg, mmio }))
}

fn kind_name(k: Kind) -> alloc::string::String {
    match k {
        Kind::Msi => "msi".into(),
        Kind::Msix(e) => alloc::format!("msix entry {e}"),
    }
}

/// `HC_PCI_MSI_BIND` for `d` (arguments decoded): checks in the ABI's
/// order, then a vector, a port, and the message written into the device.
pub fn bind(d: &Domain, bdf: Bdf, kind: Kind) -> Result<u32, Error> {
    let mut t = BINDINGS.lock();
    let f = {
        let devs = DEVICES.lock();
        super::live::owned(&devs, d.id, bdf)?.f.clone()
    };
    kind.check(&f)?;
    t.check(d.id, bdf, kind)?;
    let dest = P::msi_dest().ok_or(Error::NoMem)?;
    // A domain marked dying has had (or is having) its bindings released
    // under this lock: nothing new may be bound to it.
    if d.dying() {
        return Err(Error::NoEntry);
    }
    let vector = t.alloc_vector()?;
    let message =
        super::msi_remap::message(bdf, dest, vector).inspect_err(|_| t.free_vector(vector))?;
    let port = match d.events.lock().bind_msi() {
        Ok(p) => p,
        Err(e) => {
            if super::msi_remap::release(bdf, vector) {
                t.free_vector(vector);
            }
            return Err(e);
        }
    };
    let b = Binding {
        dom: d.id,
        port,
        bdf,
        kind,
        vector,
    };
    t.insert(b);
    let done = with_hw(|hw| msi::program(hw, &f, kind, message));
    if done != Some(Ok(())) {
        log::warn!(
            "pci: {bdf}: {} not bound for domain {}: {done:?}",
            kind_name(kind),
            d.id
        );
        t.remove_port(d.id, port);
        release(&mut t, d, b);
        return Err(Error::Invalid);
    }
    log::info!(
        "pci: {bdf} {} -> vector {vector:#x} on APIC {dest}: domain {} port {port}",
        kind_name(kind),
        d.id
    );
    Ok(port)
}

/// `HC_PCI_MSI_UNBIND` for `d`: `ENOENT` unless `port` is one of its
/// bound messages.
pub fn unbind(d: &Domain, port: u32) -> Result<(), Error> {
    let mut t = BINDINGS.lock();
    let b = t.remove_port(d.id, port).ok_or(Error::NoEntry)?;
    release(&mut t, d, b);
    log::info!(
        "pci: {} {} unbound by domain {} (port {port})",
        b.bdf,
        kind_name(b.kind),
        d.id
    );
    Ok(())
}

/// Undoes `b` (already out of the list): the message disabled at the
/// device first, then the vector given back, then the port freed.
fn release(t: &mut Bindings, d: &Domain, b: Binding) {
    let f = DEVICES
        .lock()
        .iter()
        .find(|x| x.f.bdf == b.bdf)
        .map(|x| x.f.clone());
    if let Some(f) = f {
        let last = !t.msix_bound(b.bdf);
        with_hw(|hw| msi::disable(hw, &f, b.kind, last));
    }
    if super::msi_remap::release(b.bdf, b.vector) {
        t.free_vector(b.vector);
    }
    let _ = d.events.lock().close_msi(b.port);
}

/// `d` is ending (`Domain::finish`, and again before its devices are
/// detached in `Drop for Domain`): every message it bound is disabled at
/// its device, then its vector and port freed.
pub fn release_domain(d: &Domain) {
    let mut t = BINDINGS.lock();
    for b in t.take_domain(d.id) {
        release(&mut t, d, b);
        log::info!(
            "pci: {} {} unbound: domain {} ended",
            b.bdf,
            kind_name(b.kind),
            d.id
        );
    }
}

/// Runs `f` under the bindings' lock, told whether any message of `bdf`
/// is bound: nothing can be bound to it meanwhile (`pci/reassign.rs`).
pub fn with_bindings<R>(bdf: Bdf, f: impl FnOnce(bool) -> R) -> R {
    let t = BINDINGS.lock();
    f(t.bound_any(bdf))
}

/// How many messages `dom` has bound (tests, `hvctl`-style reports).
pub fn bound(dom: DomainId) -> usize {
    BINDINGS.lock().count(dom)
}

/// Interrupts delivered to bound ports, and vectors that came unbound.
pub fn counts() -> (u64, u64) {
    (
        DELIVERED.load(Ordering::Relaxed),
        UNBOUND.load(Ordering::Relaxed),
    )
}

/// Raises the port of every vector that came since the last look. Called
/// by the run loop after every exit and before every scheduling decision
/// (as `console::wake::poll`); the interrupt itself ended a halt or made
/// the guest exit.
///
/// The test is one load, inlined (the exit path runs it on every exit;
/// `cargo xtask bench --only hypercall` measured 88 more hypervisor
/// instructions per round trip when it was a call returning the four
/// words); the work is out of line.
#[inline(always)]
pub fn poll() {
    if P::msi_any() {
        deliver();
    }
}

#[cold]
#[inline(never)]
fn deliver() {
    let fired = P::take_msi();
    let mut to: Vec<(DomainId, u32)> = Vec::new();
    {
        let t = BINDINGS.lock();
        for v in 0..=255u8 {
            if fired[usize::from(v / 64)] & 1 << (v % 64) == 0 {
                continue;
            }
            match t.by_vector(v) {
                Some(b) => to.push((b.dom, b.port)),
                None => {
                    UNBOUND.fetch_add(1, Ordering::Relaxed);
                    if !UNBOUND_LOGGED.swap(true, Ordering::Relaxed) {
                        log::warn!(
                            "pci: interrupt on vector {v:#x} with no message bound to it (counted; logged once)"
                        );
                    }
                }
            }
        }
    }
    for (dom, port) in to {
        let Some(d) = DOMAINS.lock().get(dom).filter(|d| !d.dying()).cloned() else {
            continue;
        };
        let n = {
            let mut ev = d.events.lock();
            // Unbound and the number reused since the look: not ours.
            if !ev.is_msi(port) {
                continue;
            }
            ev.raise(port)
        };
        DELIVERED.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = n {
            let _ = crate::evtchn::live::notify_any(n);
        }
    }
}
