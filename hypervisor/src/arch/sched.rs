//! Domains and a round-robin scheduler over every CPU.
//!
//! Each boot module that is an ELF image becomes a domain with one vCPU.
//! Every CPU takes the next runnable domain from one shared table, runs it
//! for a time slice (until its next timer tick) or until it yields, halts or
//! ends, and puts it back. A domain that breaks a rule is killed with one
//! log line; its memory and page-table frames go back to the allocator and
//! every other domain goes on. (The weighted per-CPU scheduler arrives with
//! the control-domain work; this one is enough for isolation and
//! preemption.)

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arrayvec::ArrayString;
use spin::Mutex;

use super::cpu::rdtsc;
use super::guestmem::{CHUNK, DomainMemory, FrameTables};
use super::percpu;
use crate::domain::builder;
use crate::domain::exits::{self, Action, Host};
use crate::mm::gpt::{Ept, GuestPageTable, Npt, Perms};
use crate::virt::Backend;
use crate::virt::svm::SvmVcpu;
use crate::virt::vcpu::Vcpu;
use crate::virt::vmx::VmxVcpu;

static BACKEND: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

/// The backend this machine runs guests with, if any.
pub fn backend() -> Option<Backend> {
    match BACKEND.load(Ordering::Acquire) {
        1 => Some(Backend::Svm),
        2 => Some(Backend::Vmx),
        _ => None,
    }
}

/// Picks the backend from what the CPU offers and sets up what all CPUs
/// share (boot CPU, once). Returns why not, when guests cannot run.
pub fn init_virt(features: &super::cpu::VirtFeatures) -> Result<Backend, &'static str> {
    use super::cpu::VirtFeatures;
    let b = match *features {
        VirtFeatures::Svm {
            locked_off: true, ..
        }
        | VirtFeatures::Vmx {
            locked_off: true, ..
        } => {
            return Err("hardware virtualization is disabled by firmware");
        }
        VirtFeatures::Svm { npt: false, .. } => {
            return Err("AMD-V without nested paging is not supported");
        }
        VirtFeatures::Vmx { ept: false, .. } => return Err("VT-x without EPT is not supported"),
        VirtFeatures::Vmx { invept: false, .. } => {
            return Err("VT-x without INVEPT is not supported");
        }
        VirtFeatures::Svm {
            nrips,
            flush_by_asid,
            asids,
            ..
        } => {
            crate::virt::svm::init_global(nrips, flush_by_asid, asids)
                .ok_or("out of memory for the SVM permission maps")?;
            Backend::Svm
        }
        VirtFeatures::Vmx { vpid, invvpid, .. } => {
            crate::virt::vmx::init_global(vpid && invvpid);
            Backend::Vmx
        }
        VirtFeatures::None => return Err("this CPU offers neither VT-x nor AMD-V"),
    };
    BACKEND.store(if b == Backend::Svm { 1 } else { 2 }, Ordering::Release);
    Ok(b)
}

/// Turns the backend on for this CPU (every CPU, before it runs guests).
pub fn init_virt_this_cpu() -> Result<(), &'static str> {
    match backend() {
        Some(Backend::Svm) => crate::virt::svm::init_this_cpu(percpu::cpu_index())
            .ok_or("out of memory for the SVM host save area"),
        Some(Backend::Vmx) => crate::virt::vmx::init_this_cpu().map_err(|e| match e {
            crate::virt::vmx::VmxError::LockedOff => "VMX is locked off by firmware",
            crate::virt::vmx::VmxError::OutOfMemory => "out of memory for the VMXON region",
            crate::virt::vmx::VmxError::VmxonFailed => "VMXON failed",
        }),
        None => Ok(()),
    }
}

/// Memory given to each boot-module domain.
pub const DOMAIN_MEMORY: u64 = 8 << 20;

enum Gpt {
    Ept(GuestPageTable<Ept>),
    Npt(GuestPageTable<Npt>),
}

/// One guest.
pub struct Domain {
    id: u32,
    name: ArrayString<32>,
    vcpu: Vcpu,
    gpt: Option<Gpt>,
    tables: FrameTables,
    mem: DomainMemory,
    insn: u32,
    line: Vec<u8>,
    exits: u64,
}

enum Slot {
    Ready(Box<Domain>),
    Running,
    Ended,
}

static TABLE: Mutex<Vec<Slot>> = Mutex::new(Vec::new());
static CURSOR: AtomicUsize = AtomicUsize::new(0);
static ALIVE: AtomicUsize = AtomicUsize::new(0);
/// Set once every boot domain was created: only then does "no domain is
/// alive" mean "all have ended".
static STARTED: AtomicBool = AtomicBool::new(false);
static SHUTDOWN_WHEN_DONE: AtomicBool = AtomicBool::new(false);
static ENDED_CLEAN: AtomicUsize = AtomicUsize::new(0);
static ENDED_OTHER: AtomicUsize = AtomicUsize::new(0);
/// Domains running at this moment, and the most ever seen at once: proof
/// that guests on different CPUs really run at the same time.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MAX_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Why a domain could not be created.
#[derive(Debug)]
pub enum CreateError {
    /// Not enough free memory.
    OutOfMemory,
    /// The image could not be placed.
    Build(builder::BuildError),
    /// Nested page tables could not be built.
    Paging(crate::mm::gpt::GptError),
}

impl core::fmt::Display for CreateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfMemory => write!(f, "not enough free memory"),
            Self::Build(e) => write!(f, "{e}"),
            Self::Paging(e) => write!(f, "nested page tables: {e}"),
        }
    }
}

/// Creates a domain from an ELF image and makes it runnable.
pub fn create(
    backend: Backend,
    name: &str,
    image: &[u8],
    cmdline: &str,
) -> Result<u32, CreateError> {
    let id = {
        let table = TABLE.lock();
        u32::try_from(table.len() + 1).map_err(|_| CreateError::OutOfMemory)?
    };
    let mut mem = DomainMemory::new(DOMAIN_MEMORY).ok_or(CreateError::OutOfMemory)?;
    let insn = match backend {
        Backend::Svm => pvabi::HYPERCALL_VMMCALL,
        Backend::Vmx => pvabi::HYPERCALL_VMCALL,
    };
    let boot = builder::build(&mut mem, image, cmdline, id, insn).map_err(CreateError::Build)?;
    let mut tables = FrameTables::default();
    let (gpt, vcpu) = match backend {
        Backend::Svm => {
            let mut g = GuestPageTable::<Npt>::new(&mut tables).map_err(CreateError::Paging)?;
            for (i, &c) in mem.chunks().iter().enumerate() {
                g.map(i as u64 * CHUNK, c, CHUNK, Perms::ALL, &mut tables)
                    .map_err(CreateError::Paging)?;
            }
            let v = SvmVcpu::new(&boot, g.root(), id).ok_or(CreateError::OutOfMemory)?;
            (Gpt::Npt(g), Vcpu::Svm(v))
        }
        Backend::Vmx => {
            let mut g = GuestPageTable::<Ept>::new(&mut tables).map_err(CreateError::Paging)?;
            for (i, &c) in mem.chunks().iter().enumerate() {
                g.map(i as u64 * CHUNK, c, CHUNK, Perms::ALL, &mut tables)
                    .map_err(CreateError::Paging)?;
            }
            let v = VmxVcpu::new(&boot, g.root(), id as u16).ok_or(CreateError::OutOfMemory)?;
            (Gpt::Ept(g), Vcpu::Vmx(v))
        }
    };
    let mut n = ArrayString::new();
    for c in name.chars() {
        if n.try_push(c).is_err() {
            break;
        }
    }
    let dom = Box::new(Domain {
        id,
        name: n,
        vcpu,
        gpt: Some(gpt),
        tables,
        mem,
        insn,
        line: Vec::new(),
        exits: 0,
    });
    log::info!(
        "domain {id} ({name}): {} MiB, entry {:#x}, {} nested-table frames, started",
        DOMAIN_MEMORY >> 20,
        boot.rip,
        dom.tables.frames
    );
    ALIVE.fetch_add(1, Ordering::AcqRel);
    TABLE.lock().push(Slot::Ready(dom));
    Ok(id)
}

/// Every boot domain exists; `shutdown` says whether to end the hypervisor
/// once they have all ended.
pub fn all_created(shutdown: bool) {
    SHUTDOWN_WHEN_DONE.store(shutdown, Ordering::Release);
    STARTED.store(true, Ordering::Release);
}

fn take_next() -> Option<(usize, Box<Domain>)> {
    let mut table = TABLE.lock();
    let n = table.len();
    let start = CURSOR.fetch_add(1, Ordering::Relaxed);
    for k in 0..n {
        let i = (start + k) % n;
        if matches!(table.get(i), Some(Slot::Ready(_)))
            && let Some(Slot::Ready(d)) = table
                .get_mut(i)
                .map(|s| core::mem::replace(s, Slot::Running))
        {
            let now = RUNNING.fetch_add(1, Ordering::AcqRel) + 1;
            MAX_RUNNING.fetch_max(now, Ordering::AcqRel);
            return Some((i, d));
        }
    }
    None
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

fn console(d: &mut Domain, bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' || d.line.len() >= 200 {
            let text = core::str::from_utf8(&d.line).unwrap_or("<non-UTF-8 output>");
            crate::println!("[dom{} {}] {}", d.id, d.name, text);
            d.line.clear();
            if b == b'\n' {
                continue;
            }
        }
        // Control characters other than tab would let a guest forge log
        // lines or terminal escapes on the operator's console.
        d.line
            .push(if b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80 {
                b
            } else {
                b'?'
            });
    }
}

enum Outcome {
    Again,
    Ended,
}

/// Runs `d` for one time slice on this CPU.
fn run_slice(d: &mut Domain) -> Outcome {
    let slice_start = percpu::this_cpu().ticks.load(Ordering::Relaxed);
    d.vcpu.enter();
    let outcome = loop {
        let exit = d.vcpu.run();
        // VT-x returns with interrupts off; AMD-V's STGI already let them in.
        // Either way a pending host interrupt (the timer) is taken here.
        x86_64::instructions::interrupts::enable();
        d.exits += 1;
        let Domain {
            vcpu, mem, insn, ..
        } = d;
        let mut out: Vec<u8> = Vec::new();
        let action = exits::handle(exit, vcpu, mem, &MachineHost, *insn, &mut |b: &[u8]| {
            out.extend_from_slice(b)
        });
        if !out.is_empty() {
            console(d, &out);
        }
        match action {
            Action::Resume | Action::Interrupt => {}
            Action::Yield => break Outcome::Again,
            Action::Shutdown { crashed, code } => {
                end(d, if crashed { "crashed" } else { "exited" }, code, None);
                break Outcome::Ended;
            }
            Action::Kill(why) => {
                let mut reason = ArrayString::<160>::new();
                let _ = core::fmt::write(&mut reason, format_args!("{why}"));
                end(d, "killed", -1, Some(&reason));
                break Outcome::Ended;
            }
        }
        if percpu::this_cpu().ticks.load(Ordering::Relaxed) != slice_start {
            break Outcome::Again;
        }
    };
    d.vcpu.put();
    outcome
}

fn end(d: &mut Domain, how: &str, code: i64, reason: Option<&str>) {
    if !d.line.is_empty() {
        console(d, b"\n");
    }
    let freed_tables = match d.gpt.take() {
        Some(Gpt::Ept(g)) => g.destroy(&mut d.tables),
        Some(Gpt::Npt(g)) => g.destroy(&mut d.tables),
        None => 0,
    };
    match reason {
        Some(r) => log::warn!("domain {} ({}) killed: {r}", d.id, d.name),
        None => log::info!("domain {} ({}) {how} with code {code}", d.id, d.name),
    }
    crate::println!(
        "domain-end: id={} name={} result={how} code={code} exits={} freed_table_frames={freed_tables}",
        d.id,
        d.name,
        d.exits
    );
    if how == "exited" && code == 0 {
        ENDED_CLEAN.fetch_add(1, Ordering::Relaxed);
    } else {
        ENDED_OTHER.fetch_add(1, Ordering::Relaxed);
    }
}

/// This CPU's scheduler loop: never returns. The boot CPU ends the
/// hypervisor once every domain has ended, if asked to.
pub fn run_cpu() -> ! {
    let cpu = percpu::cpu_index();
    loop {
        match take_next() {
            Some((slot, mut d)) => {
                let outcome = run_slice(&mut d);
                RUNNING.fetch_sub(1, Ordering::AcqRel);
                let mut table = TABLE.lock();
                let Some(s) = table.get_mut(slot) else {
                    continue;
                };
                match outcome {
                    Outcome::Again => *s = Slot::Ready(d),
                    Outcome::Ended => {
                        *s = Slot::Ended;
                        drop(table);
                        // Dropping the domain returns its memory and vCPU page.
                        drop(d);
                        ALIVE.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            }
            None => {
                if cpu == 0 && STARTED.load(Ordering::Acquire) && ALIVE.load(Ordering::Acquire) == 0
                {
                    all_ended();
                }
                // Nothing to run: sleep until the next interrupt.
                x86_64::instructions::interrupts::enable_and_hlt();
            }
        }
    }
}

static REPORTED: AtomicBool = AtomicBool::new(false);

fn all_ended() {
    if REPORTED.swap(true, Ordering::AcqRel) {
        return;
    }
    let n = TABLE.lock().len();
    crate::println!(
        "domains: all {n} ended ({} exited cleanly, {} did not); max_concurrent={} free_bytes={}",
        ENDED_CLEAN.load(Ordering::Relaxed),
        ENDED_OTHER.load(Ordering::Relaxed),
        MAX_RUNNING.load(Ordering::Relaxed),
        super::start::free_frame_count() * 4096
    );
    if SHUTDOWN_WHEN_DONE.load(Ordering::Acquire) {
        log::info!("shutdown requested on the command line");
        super::exit::exit(true);
    }
}

/// Releases what a vCPU holds beyond the domain's memory.
impl Drop for Domain {
    fn drop(&mut self) {
        if let Some(g) = self.gpt.take() {
            match g {
                Gpt::Ept(g) => {
                    g.destroy(&mut self.tables);
                }
                Gpt::Npt(g) => {
                    g.destroy(&mut self.tables);
                }
            }
        }
        self.vcpu.release();
    }
}
