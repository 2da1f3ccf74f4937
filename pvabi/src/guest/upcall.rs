//! Upcalls (ABI 1.3): event-channel notifications delivered as an
//! interrupt, with the pending and mask bits in a control area shared with
//! the hypervisor ([`crate::EvtchnControl`]).
//!
//! ```ignore
//! fn on_port(port: u32) { /* runs in the upcall, interrupts off */ }
//!
//! upcall::init(0xf0)?;                 // once per domain
//! upcall::set_handler(port, on_port)?; // any time
//! upcall::enable_this_vcpu(0)?;        // on every vCPU that takes upcalls
//! ```
//!
//! The runtime owns the area (a page-aligned static in `.bss`, 20 KiB),
//! one IDT per vCPU (only the upcall vector is present; vCPU `v` loads
//! IDT `v`, which is also how the handler learns which vCPU it runs on:
//! `SIDT`), an entry stub that saves the caller-saved registers (the
//! target has no SSE or red zone, so nothing else is live), and the
//! dispatcher.
//!
//! Dispatching (interrupts stay off while handlers run): store 0 in this
//! vCPU's `upcall_pending`, swap its selector words to 0, and for every
//! selected pending word take `pending & !mask`, clear each bit with an
//! atomic AND and call the port's handler if the bit was still set (a
//! poll on another vCPU may have taken it). Words are visited round-robin
//! from just after the last port handled, so a port raised again and again
//! cannot starve the others: every port pending when the upcall starts is
//! handled in that upcall. Memory ordering: the hypervisor sets the
//! pending bit, then the selector bit, then `upcall_pending` (release); we
//! clear `upcall_pending` (SeqCst) before swapping the selector, so a
//! raise we miss sets `upcall_pending` again and is injected once we
//! return (the vector stays pending until `iretq` sets IF again).
//!
//! [`mask`] and [`unmask`] change the shared mask bit with no exit;
//! [`unmask`] calls [`crate::HC_EVTCHN_UNMASK`] only when the port is
//! pending, so a send while masked is never lost.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use super::{hypercall6, status};
use crate::{
    EVTCHN_CONTROL_VCPUS, EVTCHN_MASK_OFFSET, EVTCHN_PENDING_OFFSET, EVTCHN_VCPU_SIZE,
    EVTCHN_WORDS, Error, HC_EVTCHN_INIT_CONTROL, HC_EVTCHN_UNMASK, UPCALL_VECTOR_MIN,
};

/// Ports that can have a handler: `1..MAX_HANDLED_PORTS`.
pub const MAX_HANDLED_PORTS: u32 = 1024;

const AREA_WORDS: usize = core::mem::size_of::<crate::EvtchnControl>() / 8;
const PENDING: usize = EVTCHN_PENDING_OFFSET / 8;
const MASK: usize = EVTCHN_MASK_OFFSET / 8;
const VCPU: usize = EVTCHN_VCPU_SIZE / 8;

#[repr(C, align(4096))]
struct Area([AtomicU64; AREA_WORDS]);

/// The control area: only ever accessed with atomics (the hypervisor
/// writes it concurrently).
static AREA: Area = Area([const { AtomicU64::new(0) }; AREA_WORDS]);

#[repr(C, align(4096))]
struct Idt([AtomicU64; 512]);

/// One IDT per vCPU (the CPU reads it; we write it with atomics before
/// loading it, and then never again).
static IDTS: [Idt; EVTCHN_CONTROL_VCPUS] =
    [const { Idt([const { AtomicU64::new(0) }; 512]) }; EVTCHN_CONTROL_VCPUS];

static VECTOR: AtomicU32 = AtomicU32::new(0);

/// Per port, the handler (`fn(u32)` as a pointer), or null.
static HANDLERS: [AtomicPtr<()>; MAX_HANDLED_PORTS as usize] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_HANDLED_PORTS as usize];
/// Per vCPU, where the next round-robin sweep starts (a port number).
static CURSOR: [AtomicU32; EVTCHN_CONTROL_VCPUS] =
    [const { AtomicU32::new(0) }; EVTCHN_CONTROL_VCPUS];
/// Upcalls taken, per vCPU (for tests and statistics).
static UPCALLS: [AtomicU64; EVTCHN_CONTROL_VCPUS] =
    [const { AtomicU64::new(0) }; EVTCHN_CONTROL_VCPUS];

fn word(i: usize) -> Option<&'static AtomicU64> {
    AREA.0.get(i)
}

/// The control area's guest-physical address (identity mapped).
pub fn area_gpa() -> u64 {
    AREA.0.as_ptr() as u64
}

/// Registers the control area with upcall vector `vector`
/// (`32..=255`). Every vCPU's `upcall_mask` is set first: a vCPU gets
/// upcalls only after [`enable_this_vcpu`]. Errors as for
/// [`crate::HC_EVTCHN_INIT_CONTROL`] (`Exists` the second time).
pub fn init(vector: u8) -> Result<(), Error> {
    for v in 0..EVTCHN_CONTROL_VCPUS {
        if let Some(w) = word(v * VCPU + 1) {
            w.store(1, Ordering::SeqCst);
        }
    }
    status(hypercall6(
        HC_EVTCHN_INIT_CONTROL,
        [area_gpa(), vector.into(), 0, 0, 0, 0],
    ))?;
    VECTOR.store(vector.into(), Ordering::Release);
    Ok(())
}

/// Sets (replaces) the handler of `port`; `TooBig` for ports at or above
/// [`MAX_HANDLED_PORTS`]. Pending ports with no handler are cleared and
/// dropped by the dispatcher.
pub fn set_handler(port: u32, handler: fn(u32)) -> Result<(), Error> {
    let slot = HANDLERS.get(port as usize).ok_or(Error::TooBig)?;
    slot.store(handler as *mut (), Ordering::Release);
    Ok(())
}

/// Upcalls taken so far on vCPU `vcpu`.
pub fn count(vcpu: u32) -> u64 {
    UPCALLS
        .get(vcpu as usize)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

/// Starts taking upcalls on this vCPU, whose id is `vcpu`: loads IDT
/// `vcpu` (with the upcall gate), clears its `upcall_mask` and enables
/// interrupts. `Invalid` before [`init`] or for an id beyond the area.
pub fn enable_this_vcpu(vcpu: u32) -> Result<(), Error> {
    let vector = VECTOR.load(Ordering::Acquire);
    let idt = IDTS.get(vcpu as usize).ok_or(Error::Invalid)?;
    if u64::from(vector) < UPCALL_VECTOR_MIN {
        return Err(Error::Invalid);
    }
    let handler = upcall_entry as *const () as u64;
    let cs: u16;
    // SAFETY: reads the CS selector; no memory, no flags.
    unsafe {
        core::arch::asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags))
    };
    // 64-bit interrupt gate (type 0xE, present, DPL 0): Intel SDM Vol. 3A
    // 6.14.1, Figure 6-8.
    let lo = (handler & 0xffff)
        | (u64::from(cs) << 16)
        | (0x8e << 40)
        | ((handler >> 16) & 0xffff) << 48;
    let hi = handler >> 32;
    let v = vector as usize;
    if let (Some(a), Some(b)) = (idt.0.get(2 * v), idt.0.get(2 * v + 1)) {
        a.store(lo, Ordering::Release);
        b.store(hi, Ordering::Release);
    }
    let desc: [u16; 5] = {
        let base = idt.0.as_ptr() as u64;
        [
            4095,
            base as u16,
            (base >> 16) as u16,
            (base >> 32) as u16,
            (base >> 48) as u16,
        ]
    };
    // SAFETY: `desc` is a valid 10-byte IDTR image naming a static,
    // 4 KiB IDT that lives forever; its only present gate points at
    // `upcall_entry`, which preserves every register and returns with
    // IRETQ. LIDT reads `desc` only.
    unsafe {
        core::arch::asm!("lidt [{}]", in(reg) desc.as_ptr(), options(readonly, nostack, preserves_flags))
    };
    if let Some(m) = word(vcpu as usize * VCPU + 1) {
        m.store(0, Ordering::SeqCst);
    }
    // SAFETY: enables interrupts; the only one the hypervisor delivers is
    // the upcall vector, whose gate was just installed.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
    Ok(())
}

/// Waits for an upcall as an idle kernel does: `sti; hlt` (STI's
/// interrupt shadow covers the HLT, so an upcall cannot slip in between
/// and be missed). The hypervisor blocks the vCPU until an upcall is
/// pending and unmasked for it or its timer fires (a timer that fired
/// since the last HLT, with no `VIRQ_TIMER` bound, ends it at once); the
/// upcall handler runs before this returns (unless the wake was for a
/// timer with no `VIRQ_TIMER` bound, or a masked port). Call it after
/// [`enable_this_vcpu`]; nothing is consumed, no register changes.
pub fn halt() {
    // SAFETY: STI then HLT; interrupts were enabled by
    // `enable_this_vcpu` (the only one delivered is the upcall, whose gate
    // is installed); HLT touches no memory.
    unsafe { core::arch::asm!("sti", "hlt", options(nomem, nostack)) };
}

/// Masks `port` in the shared area (no exit): it still becomes pending,
/// but raises no upcall.
pub fn mask(port: u32) {
    if let Some(w) = word(MASK + port as usize / 64) {
        w.fetch_or(1 << (port % 64), Ordering::SeqCst);
    }
}

/// Unmasks `port`; if it is pending, asks the hypervisor to raise the
/// upcall (one exit only then). Errors as for [`crate::HC_EVTCHN_UNMASK`].
pub fn unmask(port: u32) -> Result<(), Error> {
    let bit = 1u64 << (port % 64);
    let i = port as usize / 64;
    if let Some(w) = word(MASK + i) {
        w.fetch_and(!bit, Ordering::SeqCst);
    }
    // SeqCst on both sides: either we see the pending bit a masked send
    // set, or the sender's hypervisor saw the mask clear and notified.
    if word(PENDING + i).is_some_and(|w| w.load(Ordering::SeqCst) & bit != 0) {
        status(hypercall6(HC_EVTCHN_UNMASK, [port.into(), 0, 0, 0, 0, 0]))?;
    }
    Ok(())
}

/// Whether `port` is pending (shared bit).
pub fn is_pending(port: u32) -> bool {
    word(PENDING + port as usize / 64)
        .is_some_and(|w| w.load(Ordering::SeqCst) & (1 << (port % 64)) != 0)
}

/// The id of the vCPU running this: which IDT it loaded.
fn this_vcpu() -> usize {
    let mut desc = [0u16; 5];
    // SAFETY: SIDT stores 10 bytes into `desc`, which has exactly 10.
    unsafe {
        core::arch::asm!("sidt [{}]", in(reg) desc.as_mut_ptr(), options(nostack, preserves_flags))
    };
    let base = desc
        .iter()
        .skip(1)
        .rev()
        .fold(0u64, |acc, &w| (acc << 16) | u64::from(w));
    let first = IDTS.as_ptr() as u64;
    (base.wrapping_sub(first) / core::mem::size_of::<Idt>() as u64) as usize
}

fn call_handler(port: u32) {
    let h = HANDLERS
        .get(port as usize)
        .map_or(core::ptr::null_mut(), |h| h.load(Ordering::Acquire));
    if !h.is_null() {
        // SAFETY: the only non-null values ever stored are `fn(u32)`
        // pointers (`set_handler`), and function pointers round-trip
        // through `*mut ()`.
        let f: fn(u32) = unsafe { core::mem::transmute::<*mut (), fn(u32)>(h) };
        f(port);
    }
}

/// The Rust half of the upcall (interrupts off).
extern "sysv64" fn dispatch() {
    let v = this_vcpu();
    if v >= EVTCHN_CONTROL_VCPUS {
        return;
    }
    if let Some(c) = UPCALLS.get(v) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(up) = word(v * VCPU) {
        up.store(0, Ordering::SeqCst);
    }
    let mut sel = [0u64; EVTCHN_WORDS / 64];
    for (j, s) in sel.iter_mut().enumerate() {
        *s = word(v * VCPU + 16 + j).map_or(0, |w| w.swap(0, Ordering::SeqCst));
    }
    let cursor = CURSOR.get(v).map_or(0, |c| c.load(Ordering::Relaxed)) as usize;
    let start = (cursor / 64) % EVTCHN_WORDS;
    // One sweep over the words, from the cursor's word round to it again
    // (that word is visited twice: bits at and after the cursor first,
    // those before it last).
    for k in 0..=EVTCHN_WORDS {
        let w = (start + k) % EVTCHN_WORDS;
        if sel.get(w / 64).is_none_or(|s| s & (1 << (w % 64)) == 0) {
            continue;
        }
        let part = if k == 0 {
            !0u64 << (cursor % 64)
        } else if k == EVTCHN_WORDS {
            !(!0u64 << (cursor % 64))
        } else {
            !0
        };
        let (Some(p), Some(m)) = (word(PENDING + w), word(MASK + w)) else {
            continue;
        };
        let mut ready = p.load(Ordering::SeqCst) & !m.load(Ordering::SeqCst) & part;
        while ready != 0 {
            let b = ready.trailing_zeros();
            ready &= ready - 1;
            let bit = 1u64 << b;
            if p.fetch_and(!bit, Ordering::SeqCst) & bit != 0 {
                let port = (w * 64) as u32 + b;
                if let Some(c) = CURSOR.get(v) {
                    c.store(port + 1, Ordering::Relaxed);
                }
                call_handler(port);
            }
        }
    }
}

/// The upcall's entry: saves the caller-saved registers (the 64-bit
/// interrupt frame leaves RSP 16-byte aligned plus 8; nine pushes realign
/// it for the call), calls [`dispatch`], restores, IRETQ.
#[unsafe(naked)]
extern "sysv64" fn upcall_entry() {
    core::arch::naked_asm!(
        "push rax",
        "push rcx",
        "push rdx",
        "push rsi",
        "push rdi",
        "push r8",
        "push r9",
        "push r10",
        "push r11",
        "cld",
        "call {dispatch}",
        "pop r11",
        "pop r10",
        "pop r9",
        "pop r8",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop rcx",
        "pop rax",
        "iretq",
        dispatch = sym dispatch,
    )
}
