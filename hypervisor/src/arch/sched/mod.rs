//! Domains, their vCPUs, and a round-robin scheduler over every CPU.
//!
//! Each boot module that is an ELF image becomes a domain with up to
//! [`DOMAIN_VCPUS`] vCPUs (vCPU 0 runs at once; the guest starts the others
//! with `HC_VCPU_UP`). The scheduling unit is the vCPU: every CPU takes the
//! next runnable vCPU from one shared list, runs it for a time slice (until
//! its next timer tick) or until it yields, blocks or its domain ends, and
//! puts it back. Timers and blocked vCPUs are checked on every pass, so a
//! timer fires within one tick (10 ms) of its deadline.
//!
//! A domain that breaks a rule is killed with one log line. Its vCPUs leave
//! the list as they stop; when the last one is gone the domain's memory and
//! page-table frames go back to the allocator (`Drop for Domain`), so no
//! frame is freed while any CPU may still run the guest. Lock order: the
//! vCPU list, then a vCPU's state, then a domain's inner state. A domain's
//! event-channel table (`Domain::events`) is taken with none of those held
//! and takes none of them; two tables are taken in ascending domain id
//! (`events.rs`). Grants (`grants.rs`): a granter's `grants`, then a
//! grantee's `maps`, then a domain's inner state; the vCPU list may be
//! taken under `grants` and `maps` (TLB shoot-down), never the other way.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use arrayvec::ArrayString;
use pvabi::zerocopy::IntoBytes;
use pvabi::{EVENT_TIMER, MemInfo, VcpuInfo};
use spin::Mutex;

mod backend;
mod consoles;
mod domain;
mod domctl;
mod events;
mod grants;
mod services;

use backend::time_info;
pub use backend::{backend, init_time, init_virt, init_virt_this_cpu, now_ns};
pub use domain::{CreateError, DomainSpec, all_created, create};

use super::guestmem::{CHUNK, DomainMemory, FrameTables};
use super::{lapic, percpu, pit};
use crate::arch::cpu::rdtsc;
use crate::arch::idt::VECTOR_SHOOTDOWN;
use crate::domain::builder::{self, BootState};
use crate::domain::exits::{self, Action, GuestRead, Host, Services};
use crate::domain::{GuestMemory, OutOfBounds};
use crate::mm::gpt::{Ept, GuestPageTable, Npt, Perms};
use crate::virt::Backend;
use crate::virt::svm::SvmVcpu;
use crate::virt::vcpu::Vcpu;
use crate::virt::vmx::VmxVcpu;
use domain::*;
use services::*;

/// Memory given to each boot-module domain.
pub const DOMAIN_MEMORY: u64 = 8 << 20;
/// vCPUs each boot-module domain may bring up.
pub const DOMAIN_VCPUS: u32 = 4;

// ---------------------------------------------------------------------------
// The scheduler

/// Finds the next vCPU to run, firing due timers and waking blocked vCPUs
/// on the way; drops vCPUs of ended domains.
fn take_next() -> Option<(Arc<VcpuEntry>, Box<Vcpu>)> {
    let now = now_ns();
    let mut list = VCPUS.lock();
    // vCPUs of ended domains that are not running leave the list.
    list.retain(|v| {
        let mut st = v.st.lock();
        if st.run != Run::Running && v.domain.dying() {
            st.run = Run::Dead;
            if let Some(mut vc) = st.vcpu.take() {
                vc.release();
            }
        }
        st.run != Run::Dead
    });
    let n = list.len();
    if n == 0 {
        return None;
    }
    let start = CURSOR.fetch_add(1, Ordering::Relaxed);
    let mut found = None;
    for k in 0..n {
        let Some(v) = list.get((start + k) % n) else {
            continue;
        };
        let t = v.timer.load(Ordering::Acquire);
        if t != 0
            && now >= t
            && v.timer
                .compare_exchange(t, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            v.pending.fetch_or(EVENT_TIMER, Ordering::AcqRel);
            events::raise_timer_virq(v);
        }
        let mut st = v.st.lock();
        if let Run::Blocked { deadline } = st.run
            && (v.pending.load(Ordering::Acquire) != 0 || (deadline != 0 && now >= deadline))
        {
            st.run = Run::Runnable;
            st.deliver_events = true;
        }
        if found.is_none()
            && st.run == Run::Runnable
            && !v.domain.paused.load(Ordering::Acquire)
            && let Some(vc) = st.vcpu.take()
        {
            st.run = Run::Running;
            found = Some((v.clone(), vc));
        }
    }
    if found.is_some() {
        let now_running = RUNNING.fetch_add(1, Ordering::AcqRel) + 1;
        MAX_RUNNING.fetch_max(now_running, Ordering::AcqRel);
    }
    found
}

struct MachineHost;

impl Host for MachineHost {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
        [r.eax, r.ebx, r.ecx, r.edx]
    }
    fn tsc(&self) -> u64 {
        rdtsc()
    }
}

fn console(d: &Domain, bytes: &[u8]) {
    if consoles::capture(d, bytes) {
        return;
    }
    let mut inner = d.inner.lock();
    for &b in bytes {
        if b == b'\n' || inner.line.len() >= 200 {
            let text = core::str::from_utf8(&inner.line).unwrap_or("<non-UTF-8 output>");
            crate::println!("[dom{} {}] {}", d.id, d.name, text);
            inner.line.clear();
            if b == b'\n' {
                continue;
            }
        }
        // Control characters other than tab would let a guest forge log
        // lines or terminal escapes on the operator's console.
        inner
            .line
            .push(if b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80 {
                b
            } else {
                b'?'
            });
    }
}

enum Outcome {
    Again,
    Blocked(u64),
    Ended,
}

/// Runs one vCPU for one time slice on this CPU.
fn run_slice(me: &VcpuEntry, vcpu: &mut Vcpu, deliver_events: bool) -> Outcome {
    use crate::domain::exits::VcpuOps;
    let d = &me.domain;
    let this_cpu = percpu::this_cpu();
    let slice_start = this_cpu.ticks.load(Ordering::Relaxed);
    me.running_on.store(this_cpu.index, Ordering::Release);
    me.last_cpu.store(this_cpu.index, Ordering::Relaxed);
    let t0 = rdtsc();
    vcpu.enter();
    me.seen_gen
        .store(d.tlb_gen.load(Ordering::Acquire), Ordering::Release);
    if deliver_events {
        vcpu.set_rax(me.pending.swap(0, Ordering::AcqRel));
    }
    let outcome = loop {
        if d.dying() {
            break Outcome::Ended;
        }
        // Paused: back to the list, where `take_next` passes it over.
        if d.paused.load(Ordering::Acquire) {
            break Outcome::Again;
        }
        me.in_guest.store(true, Ordering::SeqCst);
        let generation = d.tlb_gen.load(Ordering::SeqCst);
        if me.seen_gen.load(Ordering::SeqCst) < generation {
            vcpu.flush_tlb();
            me.seen_gen.store(generation, Ordering::SeqCst);
        }
        events::prepare_upcall(me, vcpu);
        let exit = vcpu.run();
        me.in_guest.store(false, Ordering::SeqCst);
        // VT-x returns with interrupts off; AMD-V's STGI already let them in.
        // Either way a pending host interrupt (timer, shoot-down) is taken.
        x86_64::instructions::interrupts::enable();
        d.exits.fetch_add(1, Ordering::Relaxed);
        let mut svc = Svc { me, blocked: None };
        let mut out: Vec<u8> = Vec::new();
        let action = exits::handle(
            exit,
            vcpu,
            &mut svc,
            &MachineHost,
            d.insn,
            &mut |b: &[u8]| out.extend_from_slice(b),
        );
        if !out.is_empty() {
            console(d, &out);
        }
        match action {
            Action::Resume | Action::Interrupt => {}
            Action::Yield => break Outcome::Again,
            Action::Block => break Outcome::Blocked(svc.blocked.unwrap_or(0)),
            Action::Shutdown { crashed, code } => {
                d.finish(if crashed { "crashed" } else { "exited" }, code, None);
                break Outcome::Ended;
            }
            Action::Kill(why) => {
                let mut reason = ArrayString::<160>::new();
                let _ = core::fmt::write(&mut reason, format_args!("{why}"));
                d.finish("killed", -1, Some(&reason));
                break Outcome::Ended;
            }
        }
        if this_cpu.ticks.load(Ordering::Relaxed) != slice_start {
            break Outcome::Again;
        }
    };
    vcpu.put();
    me.running_on.store(u32::MAX, Ordering::Release);
    let hz = pit::tsc_hz();
    let ns = (u128::from(rdtsc().wrapping_sub(t0)) * 1_000_000_000 / u128::from(hz)) as u64;
    me.cpu_time_ns.fetch_add(ns, Ordering::Relaxed);
    outcome
}

/// This CPU's scheduler loop: never returns. The boot CPU ends the
/// hypervisor once every domain has ended, if asked to.
pub fn run_cpu() -> ! {
    let cpu = percpu::cpu_index();
    loop {
        match take_next() {
            Some((entry, mut vcpu)) => {
                let deliver = core::mem::take(&mut entry.st.lock().deliver_events);
                let outcome = run_slice(&entry, &mut vcpu, deliver);
                RUNNING.fetch_sub(1, Ordering::AcqRel);
                let mut st = entry.st.lock();
                st.vcpu = Some(vcpu);
                st.run = match outcome {
                    Outcome::Again => Run::Runnable,
                    // An event that arrived while we were still running is
                    // not lost: check the mask under the lock.
                    Outcome::Blocked(deadline) => {
                        if entry.pending.load(Ordering::Acquire) != 0 {
                            st.deliver_events = true;
                            Run::Runnable
                        } else {
                            Run::Blocked { deadline }
                        }
                    }
                    Outcome::Ended => {
                        if let Some(mut vc) = st.vcpu.take() {
                            vc.release();
                        }
                        Run::Dead
                    }
                };
            }
            None => {
                if cpu == 0 && STARTED.load(Ordering::Acquire) && ALIVE.load(Ordering::Acquire) == 0
                {
                    all_ended();
                }
                // Nothing to run: sleep until the next interrupt (a tick,
                // or a kick from a CPU that raised an event).
                let bit = 1u64 << (cpu % 64);
                events::IDLE.fetch_or(bit, Ordering::SeqCst);
                x86_64::instructions::interrupts::enable_and_hlt();
                events::IDLE.fetch_and(!bit, Ordering::SeqCst);
            }
        }
    }
}

static REPORTED: AtomicBool = AtomicBool::new(false);

fn all_ended() {
    if REPORTED.swap(true, Ordering::AcqRel) {
        return;
    }
    crate::println!(
        "domains: all {} ended ({} exited cleanly, {} did not); max_concurrent={} free_bytes={}",
        CREATED.load(Ordering::Relaxed),
        ENDED_CLEAN.load(Ordering::Relaxed),
        ENDED_OTHER.load(Ordering::Relaxed),
        MAX_RUNNING.load(Ordering::Relaxed),
        crate::arch::start::free_frame_count() * 4096
    );
    if SHUTDOWN_WHEN_DONE.load(Ordering::Acquire) {
        log::info!("shutdown requested on the command line");
        crate::arch::exit::exit(true);
    }
}
