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
//! vCPU list, then a vCPU's state, then a domain's inner state.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use arrayvec::ArrayString;
use pvabi::zerocopy::IntoBytes;
use pvabi::{EVENT_TIMER, MemInfo, VcpuInfo};
use spin::Mutex;

use super::cpu::rdtsc;
use super::guestmem::{CHUNK, DomainMemory, FrameTables};
use super::{lapic, percpu, pit};
use crate::arch::idt::VECTOR_SHOOTDOWN;
use crate::domain::builder::{self, BootState};
use crate::domain::exits::{self, Action, GuestRead, Host, Services};
use crate::domain::{GuestMemory, OutOfBounds};
use crate::mm::gpt::{Ept, GuestPageTable, Npt, Perms};
use crate::virt::Backend;
use crate::virt::svm::SvmVcpu;
use crate::virt::vcpu::Vcpu;
use crate::virt::vmx::VmxVcpu;

/// Memory given to each boot-module domain.
pub const DOMAIN_MEMORY: u64 = 8 << 20;
/// vCPUs each boot-module domain may bring up.
pub const DOMAIN_VCPUS: u32 = 4;

// ---------------------------------------------------------------------------
// Backend selection

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

// ---------------------------------------------------------------------------
// System time

static TIME_MUL: AtomicU32 = AtomicU32::new(0);
static TIME_SHIFT: AtomicU32 = AtomicU32::new(0);
static TIME_TSC0: AtomicU64 = AtomicU64::new(0);

/// Sets the hypervisor's clock: nanoseconds since `tsc0`, at `tsc_hz`.
pub fn init_time(tsc0: u64, tsc_hz: u64) {
    let (mul, shift) = pvabi::scale_for(tsc_hz);
    TIME_MUL.store(mul, Ordering::Relaxed);
    TIME_SHIFT.store(shift as u8 as u32, Ordering::Relaxed);
    TIME_TSC0.store(tsc0, Ordering::Release);
}

fn time_info() -> pvabi::TimeInfo {
    let mut t = pvabi::TimeInfo::zeroed();
    t.version = 2;
    t.flags = pvabi::TIME_FLAG_TSC_STABLE;
    t.tsc_timestamp = TIME_TSC0.load(Ordering::Acquire);
    t.system_time_ns = 0;
    t.tsc_to_system_mul = TIME_MUL.load(Ordering::Relaxed);
    t.tsc_shift = TIME_SHIFT.load(Ordering::Relaxed) as u8 as i8;
    t
}

/// System time in nanoseconds since boot: the same clock guests read from
/// their `TimeInfo`.
pub fn now_ns() -> u64 {
    time_info().ns_at(rdtsc())
}

// ---------------------------------------------------------------------------
// Domains and vCPUs

enum Gpt {
    Ept(GuestPageTable<Ept>),
    Npt(GuestPageTable<Npt>),
}

impl Gpt {
    fn map(
        &mut self,
        gpa: u64,
        hpa: u64,
        len: u64,
        t: &mut FrameTables,
    ) -> Result<(), crate::mm::gpt::GptError> {
        match self {
            Self::Ept(g) => g.map(gpa, hpa, len, Perms::ALL, t),
            Self::Npt(g) => g.map(gpa, hpa, len, Perms::ALL, t),
        }
    }
    fn unmap(
        &mut self,
        gpa: u64,
        len: u64,
        t: &mut FrameTables,
    ) -> Result<u64, crate::mm::gpt::GptError> {
        match self {
            Self::Ept(g) => g.unmap(gpa, len, t),
            Self::Npt(g) => g.unmap(gpa, len, t),
        }
    }
    fn root(&self) -> u64 {
        match self {
            Self::Ept(g) => g.root(),
            Self::Npt(g) => g.root(),
        }
    }
    fn destroy(self, t: &mut FrameTables) -> usize {
        match self {
            Self::Ept(g) => g.destroy(t),
            Self::Npt(g) => g.destroy(t),
        }
    }
}

struct Inner {
    mem: DomainMemory,
    gpt: Option<Gpt>,
    tables: FrameTables,
    line: Vec<u8>,
}

/// How a domain ended.
#[derive(Clone, Copy)]
struct End {
    how: &'static str,
    code: i64,
}

/// One guest.
pub struct Domain {
    id: u32,
    name: ArrayString<32>,
    backend: Backend,
    insn: u32,
    privileged: bool,
    boot: BootState,
    nested_root: u64,
    inner: Mutex<Inner>,
    /// Bumped whenever a guest-physical page is unmapped: a vCPU that has
    /// not seen the newest value flushes its TLB before running.
    tlb_gen: AtomicU64,
    end: Mutex<Option<End>>,
    exits: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    Down,
    Runnable,
    Running,
    Blocked { deadline: u64 },
    Dead,
}

struct VState {
    run: Run,
    vcpu: Option<Box<Vcpu>>,
    /// RAX must get the event mask when the vCPU next runs (it blocked).
    deliver_events: bool,
}

/// One vCPU of a domain: the scheduling unit.
pub struct VcpuEntry {
    domain: Arc<Domain>,
    index: u32,
    st: Mutex<VState>,
    pending: AtomicU64,
    timer: AtomicU64,
    cpu_time_ns: AtomicU64,
    last_cpu: AtomicU32,
    /// CPU running it now, or `u32::MAX`.
    running_on: AtomicU32,
    /// In guest mode (or about to enter it): a shoot-down must wait for it.
    in_guest: AtomicBool,
    seen_gen: AtomicU64,
}

static VCPUS: Mutex<Vec<Arc<VcpuEntry>>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU32 = AtomicU32::new(1);
static CURSOR: AtomicUsize = AtomicUsize::new(0);
static ALIVE: AtomicUsize = AtomicUsize::new(0);
static CREATED: AtomicUsize = AtomicUsize::new(0);
/// Set once every boot domain was created: only then does "no domain is
/// alive" mean "all have ended".
static STARTED: AtomicBool = AtomicBool::new(false);
static SHUTDOWN_WHEN_DONE: AtomicBool = AtomicBool::new(false);
static ENDED_CLEAN: AtomicUsize = AtomicUsize::new(0);
static ENDED_OTHER: AtomicUsize = AtomicUsize::new(0);
/// vCPUs running at this moment, and the most ever seen at once: proof
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

fn new_vcpu(backend: Backend, boot: &BootState, root: u64, domain_id: u32) -> Option<Box<Vcpu>> {
    Some(Box::new(match backend {
        Backend::Svm => Vcpu::Svm(SvmVcpu::new(boot, root, domain_id)?),
        Backend::Vmx => Vcpu::Vmx(VmxVcpu::new(boot, root, domain_id as u16)?),
    }))
}

/// Creates a domain from an ELF image and makes vCPU 0 runnable.
pub fn create(
    backend: Backend,
    name: &str,
    image: &[u8],
    cmdline: &str,
) -> Result<u32, CreateError> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut mem = DomainMemory::new(DOMAIN_MEMORY).ok_or(CreateError::OutOfMemory)?;
    let insn = match backend {
        Backend::Svm => pvabi::HYPERCALL_VMMCALL,
        Backend::Vmx => pvabi::HYPERCALL_VMCALL,
    };
    let boot = builder::build(&mut mem, image, cmdline, id, insn).map_err(CreateError::Build)?;
    finish_start_info(&mut mem, &boot)?;
    let mut tables = FrameTables::default();
    let mut gpt = match backend {
        Backend::Svm => {
            Gpt::Npt(GuestPageTable::<Npt>::new(&mut tables).map_err(CreateError::Paging)?)
        }
        Backend::Vmx => {
            Gpt::Ept(GuestPageTable::<Ept>::new(&mut tables).map_err(CreateError::Paging)?)
        }
    };
    for (i, &c) in mem.chunks().iter().enumerate() {
        gpt.map(i as u64 * CHUNK, c, CHUNK, &mut tables)
            .map_err(CreateError::Paging)?;
    }
    let root = gpt.root();
    let vcpu0 = new_vcpu(backend, &boot, root, id).ok_or(CreateError::OutOfMemory)?;
    let mut n = ArrayString::new();
    for c in name.chars() {
        if n.try_push(c).is_err() {
            break;
        }
    }
    let frames = tables.frames;
    let domain = Arc::new(Domain {
        id,
        name: n,
        backend,
        insn,
        privileged: false,
        boot,
        nested_root: root,
        inner: Mutex::new(Inner {
            mem,
            gpt: Some(gpt),
            tables,
            line: Vec::new(),
        }),
        tlb_gen: AtomicU64::new(0),
        end: Mutex::new(None),
        exits: AtomicU64::new(0),
    });
    log::info!(
        "domain {id} ({name}): {} MiB, {DOMAIN_VCPUS} vCPUs, entry {:#x}, {frames} nested-table frames, started",
        DOMAIN_MEMORY >> 20,
        boot.rip,
    );
    ALIVE.fetch_add(1, Ordering::AcqRel);
    CREATED.fetch_add(1, Ordering::AcqRel);
    let mut list = VCPUS.lock();
    let mut vcpu0 = Some(vcpu0);
    for index in 0..DOMAIN_VCPUS {
        let v = vcpu0.take();
        let run = if v.is_some() {
            Run::Runnable
        } else {
            Run::Down
        };
        list.push(Arc::new(VcpuEntry {
            domain: domain.clone(),
            index,
            st: Mutex::new(VState {
                run,
                vcpu: v,
                deliver_events: false,
            }),
            pending: AtomicU64::new(0),
            timer: AtomicU64::new(0),
            cpu_time_ns: AtomicU64::new(0),
            last_cpu: AtomicU32::new(0),
            running_on: AtomicU32::new(u32::MAX),
            in_guest: AtomicBool::new(false),
            seen_gen: AtomicU64::new(0),
        }));
    }
    Ok(id)
}

/// Completes the start info the builder wrote: the PV clock page and the
/// memory quota, and the vCPU count.
fn finish_start_info(mem: &mut DomainMemory, boot: &BootState) -> Result<(), CreateError> {
    let at = boot.layout.start_info;
    let mut page = [0u8; core::mem::size_of::<pvabi::StartInfo>()];
    mem.read(at, &mut page)
        .map_err(|_| CreateError::OutOfMemory)?;
    let mut si = pvabi::StartInfo::from_page(&page).ok_or(CreateError::OutOfMemory)?;
    let time_gpa = at + 2048;
    si.time_info_gpa = time_gpa;
    si.max_pages = mem.max_pages();
    si.nr_vcpus = DOMAIN_VCPUS;
    mem.write(at, si.as_bytes())
        .map_err(|_| CreateError::OutOfMemory)?;
    mem.write(time_gpa, time_info().as_bytes())
        .map_err(|_| CreateError::OutOfMemory)?;
    Ok(())
}

/// Every boot domain exists; `shutdown` says whether to end the hypervisor
/// once they have all ended.
pub fn all_created(shutdown: bool) {
    SHUTDOWN_WHEN_DONE.store(shutdown, Ordering::Release);
    STARTED.store(true, Ordering::Release);
}

impl Domain {
    /// Records how the domain ended (the first reason wins) and logs it.
    fn finish(&self, how: &'static str, code: i64, reason: Option<&str>) {
        let mut end = self.end.lock();
        if end.is_some() {
            return;
        }
        *end = Some(End { how, code });
        match reason {
            Some(r) => log::warn!("domain {} ({}) killed: {r}", self.id, self.name),
            None => log::info!("domain {} ({}) {how} with code {code}", self.id, self.name),
        }
    }

    fn dying(&self) -> bool {
        self.end.lock().is_some()
    }
}

impl Drop for Domain {
    /// The last vCPU is gone: return every frame and report.
    fn drop(&mut self) {
        let inner = self.inner.get_mut();
        if !inner.line.is_empty() {
            crate::println!(
                "[dom{} {}] {}",
                self.id,
                self.name,
                core::str::from_utf8(&inner.line).unwrap_or("?")
            );
        }
        let freed_tables = inner.gpt.take().map_or(0, |g| g.destroy(&mut inner.tables));
        let end = self.end.get_mut().unwrap_or(End {
            how: "killed",
            code: -1,
        });
        crate::println!(
            "domain-end: id={} name={} result={} code={} exits={} freed_table_frames={freed_tables}",
            self.id,
            self.name,
            end.how,
            end.code,
            self.exits.load(Ordering::Relaxed)
        );
        if end.how == "exited" && end.code == 0 {
            ENDED_CLEAN.fetch_add(1, Ordering::Relaxed);
        } else {
            ENDED_OTHER.fetch_add(1, Ordering::Relaxed);
        }
        ALIVE.fetch_sub(1, Ordering::AcqRel);
        // `inner.mem` is dropped after this, freeing the domain's pages.
    }
}

// ---------------------------------------------------------------------------
// The hypercall services over a real domain

struct Svc<'a> {
    me: &'a VcpuEntry,
    /// Set by `block` when the vCPU must block: the deadline.
    blocked: Option<u64>,
}

impl Svc<'_> {
    fn d(&self) -> &Domain {
        &self.me.domain
    }

    fn sibling(&self, id: u64) -> Option<Arc<VcpuEntry>> {
        let id = u32::try_from(id).ok()?;
        VCPUS
            .lock()
            .iter()
            .find(|v| Arc::ptr_eq(&v.domain, &self.me.domain) && v.index == id)
            .cloned()
    }
}

impl Services for Svc<'_> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        self.d().inner.lock().mem.read(gpa, buf)
    }

    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfBounds> {
        self.d().inner.lock().mem.write(gpa, bytes)
    }

    fn privileged(&self) -> bool {
        self.d().privileged
    }

    fn console_read(&mut self, buf: &mut [u8]) -> Result<usize, i64> {
        Ok(super::serial::read_available(buf))
    }

    fn block(&mut self, deadline: u64) -> Option<u64> {
        let mask = self.me.pending.swap(0, Ordering::AcqRel);
        if mask != 0 {
            return Some(mask);
        }
        if deadline != 0 && now_ns() >= deadline {
            return Some(0);
        }
        self.blocked = Some(deadline);
        None
    }

    fn poll(&mut self) -> u64 {
        self.me.pending.swap(0, Ordering::AcqRel)
    }

    fn set_timer(&mut self, deadline: u64) {
        if deadline != 0 && deadline <= now_ns() {
            self.me.timer.store(0, Ordering::Release);
            self.me.pending.fetch_or(EVENT_TIMER, Ordering::AcqRel);
        } else {
            self.me.timer.store(deadline, Ordering::Release);
        }
    }

    fn vcpu_up(&mut self, id: u64, rip: u64, rsp: u64, arg: u64) -> Result<(), i64> {
        if id == 0 || id >= u64::from(DOMAIN_VCPUS) {
            return Err(pvabi::EINVAL);
        }
        let target = self.sibling(id).ok_or(pvabi::EINVAL)?;
        let size = self.phys_size();
        let mut st = target.st.lock();
        if st.run != Run::Down {
            return Err(pvabi::EBUSY);
        }
        if rip >= size || rsp < 8 || rsp > size {
            return Err(pvabi::EFAULT);
        }
        let d = self.d();
        let boot = BootState {
            rip,
            rsp,
            rdi: arg,
            ..d.boot
        };
        let v = new_vcpu(d.backend, &boot, d.nested_root, d.id).ok_or(pvabi::ENOMEM)?;
        st.vcpu = Some(v);
        st.run = Run::Runnable;
        Ok(())
    }

    fn vcpu_info(&mut self, id: u64) -> Result<VcpuInfo, i64> {
        let target = self.sibling(id).ok_or(pvabi::EINVAL)?;
        let mut info = VcpuInfo::zeroed();
        info.state = match target.st.lock().run {
            Run::Down | Run::Dead => pvabi::VCPU_DOWN,
            Run::Runnable => pvabi::VCPU_RUNNABLE,
            Run::Running => pvabi::VCPU_RUNNING,
            Run::Blocked { .. } => pvabi::VCPU_BLOCKED,
        };
        info.last_cpu = target.last_cpu.load(Ordering::Relaxed);
        info.cpu_time_ns = target.cpu_time_ns.load(Ordering::Relaxed);
        info.pending_events = target.pending.load(Ordering::Relaxed);
        Ok(info)
    }

    fn mem_info(&mut self) -> MemInfo {
        let inner = self.d().inner.lock();
        let mut info = MemInfo::zeroed();
        info.current_pages = inner.mem.present_pages();
        info.max_pages = inner.mem.max_pages();
        info.page_size = pvabi::PAGE_SIZE;
        info
    }

    fn phys_size(&self) -> u64 {
        self.d().inner.lock().mem.phys_size()
    }

    fn mem_release(&mut self, gpa: u64, pages: u64) -> Result<u64, i64> {
        let d = self.d();
        let frames = {
            let mut guard = d.inner.lock();
            let inner = &mut *guard;
            let frames = inner.mem.release(gpa, pages)?;
            if let Some(g) = inner.gpt.as_mut()
                && g.unmap(gpa, pages * 4096, &mut inner.tables).is_err()
            {
                // Splitting a 2 MiB mapping needs a table frame: give
                // the pages back rather than leave them half-released.
                for (i, &f) in frames.iter().enumerate() {
                    let _ = inner.mem.restore(gpa + i as u64 * 4096, f);
                }
                return Err(pvabi::ENOMEM);
            }
            frames
        };
        if shoot_down(&self.me.domain, self.me) {
            for f in frames {
                super::start::free_frames(f, 1);
            }
        }
        Ok(pages)
    }

    fn mem_populate(&mut self, gpa: u64, pages: u64) -> Result<u64, i64> {
        let mut guard = self.d().inner.lock();
        let inner = &mut *guard;
        let frames = inner.mem.populate(gpa, pages)?;
        if let Some(g) = inner.gpt.as_mut() {
            for (i, &f) in frames.iter().enumerate() {
                if g.map(gpa + i as u64 * 4096, f, 4096, &mut inner.tables)
                    .is_err()
                {
                    // Undo: unmap what was mapped, take the pages back.
                    let _ = g.unmap(gpa, i as u64 * 4096, &mut inner.tables);
                    if let Ok(back) = inner.mem.release(gpa, pages) {
                        for f in back {
                            super::start::free_frames(f, 1);
                        }
                    }
                    return Err(pvabi::ENOMEM);
                }
            }
        }
        Ok(pages)
    }
}

/// After an unmap: every other vCPU of `d` that may be in guest mode on
/// another CPU is forced out (the IPI's interrupt exits it) and flushes
/// before it enters again. Returns only when no CPU can still hold a stale
/// translation, so the released frames can be reused; `false` if a vCPU did
/// not respond within 5 s (the caller then keeps the frames out of use).
///
/// Ordering (both sides sequentially consistent): a vCPU sets `in_guest`
/// and then reads `tlb_gen`; we bump `tlb_gen` and then read `in_guest`.
/// Either it sees the new generation and flushes, or we see it in the guest
/// and wait for its acknowledgement.
fn shoot_down(d: &Arc<Domain>, me: &VcpuEntry) -> bool {
    let generation = d.tlb_gen.fetch_add(1, Ordering::SeqCst) + 1;
    let others: Vec<Arc<VcpuEntry>> = VCPUS
        .lock()
        .iter()
        .filter(|v| Arc::ptr_eq(&v.domain, d) && v.index != me.index)
        .cloned()
        .collect();
    let mut ok = true;
    for v in &others {
        let done = || {
            !v.in_guest.load(Ordering::SeqCst) || v.seen_gen.load(Ordering::SeqCst) >= generation
        };
        if done() {
            continue;
        }
        let cpu = v.running_on.load(Ordering::SeqCst);
        if let Some(apic) = percpu::cpu(cpu as usize).map(|c| c.apic_id.load(Ordering::Relaxed)) {
            lapic::send_fixed(apic, VECTOR_SHOOTDOWN);
        }
        let mut waited = 0;
        while !done() {
            if waited > 5_000_000 {
                log::error!(
                    "domain {}: vCPU {} did not acknowledge a TLB shoot-down",
                    d.id,
                    v.index
                );
                ok = false;
                break;
            }
            pit::delay_us(1);
            waited += 1;
        }
    }
    ok
}

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
        me.in_guest.store(true, Ordering::SeqCst);
        let generation = d.tlb_gen.load(Ordering::SeqCst);
        if me.seen_gen.load(Ordering::SeqCst) < generation {
            vcpu.flush_tlb();
            me.seen_gen.store(generation, Ordering::SeqCst);
        }
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
    crate::println!(
        "domains: all {} ended ({} exited cleanly, {} did not); max_concurrent={} free_bytes={}",
        CREATED.load(Ordering::Relaxed),
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
