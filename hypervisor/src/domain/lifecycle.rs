//! Domains and their vCPUs: creation, start info, and the end of a domain.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::sync::Mutex;
use arrayvec::ArrayString;
use pvabi::zerocopy::IntoBytes;

use crate::domain::GuestMemory;
use crate::domain::budget::{self, ALLOC_SLACK, Budget, Cost};
use crate::domain::builder;
use crate::domain::ids::DomainId;
use crate::domain::memory::{CHUNK, DomainMemory, FrameTables};
use crate::domain::table::DomainTable;
use crate::hypercall::GuestRead;
use crate::sched::clock::time_info;
use crate::sched::live as policy;
use crate::virt::boot::BootState;
use crate::virt::select::{self, Gpt};
use crate::virt::{Backend, VcpuBackend};

/// Memory given to each boot-module domain.
pub const DOMAIN_MEMORY: u64 = 8 << 20;
/// vCPUs each boot-module domain may bring up.
pub const DOMAIN_VCPUS: u32 = 4;

pub(crate) struct Inner {
    pub(crate) mem: DomainMemory,
    pub(crate) gpt: Option<Gpt>,
    pub(crate) tables: FrameTables,
    /// Where granted pages of other domains are mapped (holes in `mem`).
    pub(crate) foreign: alloc::collections::BTreeSet<u64>,
}

/// How a domain ended.
#[derive(Clone, Copy)]
pub(crate) struct End {
    how: &'static str,
    pub(crate) code: i64,
    /// Why the hypervisor killed it (empty otherwise), for the control
    /// domain (`DOMCTL_INFO_REASON`).
    reason: crate::domain::ended::Reason,
}

/// [`Domain::stop`]: paused by the control domain.
pub(crate) const STOP_PAUSED: u8 = 1 << 0;
/// [`Domain::stop`]: ended (`Domain::finish`).
pub(crate) const STOP_ENDING: u8 = 1 << 1;

/// One guest.
pub struct Domain {
    pub(crate) id: DomainId,
    pub(crate) name: ArrayString<32>,
    pub(crate) backend: Backend,
    pub(crate) insn: u32,
    /// Guest-physical address of its start-info page (CPUID 0x4000_0002).
    pub(crate) start_info: u64,
    pub(crate) privileged: bool,
    /// vCPUs it may bring up.
    pub(crate) nr_vcpus: u32,
    /// Scheduling weight and cap, as created or last set
    /// (`HC_DOMCTL_SET_SCHED`, `domain/ctl_life.rs`).
    pub(crate) weight: AtomicU32,
    pub(crate) cap: AtomicU32,
    /// The control domain's newest shutdown request
    /// (`pvabi::SHUTDOWN_REQUEST_*`, `domain/ctl_life.rs`).
    pub(crate) shutdown_request: AtomicU64,
    /// Its memory target in pages, 0 until the control domain sets one
    /// (`HC_DOMCTL_MEM_TARGET`, `domain/memtarget.rs`).
    pub(crate) mem_target: AtomicU64,
    /// The scheduler's record of it.
    pub(crate) sdom: crate::sched::SchedDom,
    /// Why its vCPUs must stop: [`STOP_PAUSED`] (domctl pause: no vCPU of
    /// it is scheduled while set) and [`STOP_ENDING`] (set once, with
    /// `end`). One byte, so that the exit path tests both with one load
    /// ([`Domain::stopping`]).
    pub(crate) stop: AtomicU8,
    pub(crate) boot: BootState,
    pub(crate) nested_root: u64,
    pub(crate) inner: Mutex<Inner>,
    /// Bumped whenever a guest-physical page is unmapped: a vCPU that has
    /// not seen the newest value flushes its TLB before running.
    pub(crate) tlb_gen: AtomicU64,
    pub(crate) end: Mutex<Option<End>>,
    pub(crate) exits: AtomicU64,
    /// TSC ticks of its longest exit (from the exit to the decision to
    /// enter again), reported in its `exit-max:` line.
    pub(crate) max_exit_ticks: AtomicU64,
    /// Event-channel ports (lock order: the `evtchn::live` module doc).
    pub(crate) events: Mutex<crate::evtchn::live::Table>,
    /// The registered event-channel control area and upcall vector: set
    /// once, pins the area's pages for the domain's life.
    pub(crate) control: spin::Once<(crate::evtchn::area::GuestArea, u8)>,
    /// Its grants, as granter (lock order: `grants.rs`).
    pub(crate) grants: Mutex<crate::grant::GrantTable>,
    /// Grants of others it maps, as grantee.
    pub(crate) maps: Mutex<crate::grant::MapTrack>,
    /// Console input the control domain queued for it (a leaf lock).
    pub(crate) console_in: Mutex<crate::console::input::InputQueue>,
    /// What its heap allocations are charged to (`domain/budget.rs`).
    pub(crate) budget: Arc<Budget>,
    /// Its console output on the way to the serial port (`console/out.rs`).
    pub(crate) console_out: crate::console::out::OutQueue,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Run {
    Down,
    Runnable,
    Running,
    Blocked { deadline: u64 },
    Dead,
}

pub(crate) struct VState {
    pub(crate) run: Run,
    pub(crate) vcpu: Option<Box<dyn VcpuBackend>>,
    /// `Some(deadline)`: it blocked with this deadline (0: none) and was
    /// woken; when it next runs, RAX gets what the block returns
    /// ([`crate::sched::resume_value`]), or it blocks again.
    pub(crate) resume: Option<u64>,
}

/// One vCPU of a domain: the scheduling unit.
pub struct VcpuEntry {
    pub(crate) domain: Arc<Domain>,
    pub(crate) index: u32,
    /// The scheduler's id of it.
    pub(crate) sid: crate::sched::VcpuId,
    /// Its deadline in the timer lists, 0 if none (`timers.rs`).
    pub(crate) armed: AtomicU64,
    /// The CPU whose timer list holds it, `u32::MAX` if none (`timers.rs`).
    pub(crate) armed_on: AtomicU32,
    pub(crate) st: Mutex<VState>,
    pub(crate) pending: AtomicU64,
    pub(crate) timer: AtomicU64,
    pub(crate) cpu_time_ns: AtomicU64,
    pub(crate) last_cpu: AtomicU32,
    /// CPU running it now, or `u32::MAX`.
    pub(crate) running_on: AtomicU32,
    /// In guest mode (or about to enter it): a shoot-down must wait for it.
    pub(crate) in_guest: AtomicBool,
    pub(crate) seen_gen: AtomicU64,
    /// When an idle CPU first saw this vCPU look stranded (0: not seen);
    /// see `rescue_lost_wakeups`.
    pub(crate) stuck_since: AtomicU64,
    /// The port it waits for in `HC_EVTCHN_SEND_WAIT` while blocked there
    /// (0: a plain block); read and cleared when it runs again.
    pub(crate) wait_port: AtomicU32,
    /// A send woke it and left its wake to the sender's switch, which
    /// has not yet handed it to the scheduler (`sched/live/handoff.rs`).
    pub(crate) handoff_open: AtomicBool,
    /// Whether it is blocked in HLT, and what woke it (`sched/halt.rs`).
    pub(crate) halted: crate::sched::halt::HaltState,
    /// Where a continued hypercall stopped (`hypercall/continuation.rs`).
    pub(crate) cont: crate::hypercall::continuation::Slot,
}

/// Every domain that still has vCPUs, with their entries (lock order:
/// `domain::table`).
pub(crate) static DOMAINS: Mutex<DomainTable<Arc<Domain>, Arc<VcpuEntry>>> =
    Mutex::new(DomainTable::new());
static NEXT_ID: AtomicU32 = AtomicU32::new(1);
pub(crate) static ALIVE: AtomicUsize = AtomicUsize::new(0);
pub(crate) static CREATED: AtomicUsize = AtomicUsize::new(0);
/// Set once every boot domain was created: only then does "no domain is
/// alive" mean "all have ended".
pub(crate) static STARTED: AtomicBool = AtomicBool::new(false);
pub(crate) static SHUTDOWN_WHEN_DONE: AtomicBool = AtomicBool::new(false);
pub(crate) static ENDED_CLEAN: AtomicUsize = AtomicUsize::new(0);
pub(crate) static ENDED_OTHER: AtomicUsize = AtomicUsize::new(0);
/// vCPUs running at this moment, and the most ever seen at once: proof
/// that guests on different CPUs really run at the same time.
pub(crate) static RUNNING: AtomicUsize = AtomicUsize::new(0);
pub(crate) static MAX_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Why a domain could not be created.
#[derive(Debug)]
pub enum CreateError {
    /// Not enough free memory.
    OutOfMemory,
    /// The image could not be placed.
    Build(builder::BuildError),
    /// Nested page tables could not be built.
    Paging(crate::mm::gpt::GptError),
    /// The scheduler refused the weight or cap, or has no room.
    Sched,
    /// Its own records do not fit its heap budget of this many bytes, or
    /// the hypervisor heap is down to its reserve.
    Budget(u64),
}

impl core::fmt::Display for CreateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfMemory => write!(f, "not enough free memory"),
            Self::Build(e) => write!(f, "{e}"),
            Self::Paging(e) => write!(f, "nested page tables: {e}"),
            Self::Sched => write!(f, "the scheduler refused its weight or cap"),
            Self::Budget(b) => write!(
                f,
                "its records need more heap than its budget of {b} bytes allows, or the hypervisor heap is down to its reserve"
            ),
        }
    }
}

/// What a new domain is made of.
pub struct DomainSpec<'a> {
    /// Shown in its console lines (cut at 32 bytes).
    pub name: &'a str,
    /// Its ELF image (a pvabi guest, or a `vmlinux` when `kind` says so).
    pub image: &'a [u8],
    /// How `image` is entered.
    pub kind: ImageKind<'a>,
    /// Its command line.
    pub cmdline: &'a str,
    /// Memory in bytes, a multiple of 2 MiB.
    pub memory: u64,
    /// vCPUs it may bring up.
    pub nr_vcpus: u32,
    /// Scheduling weight and cap (recorded and reported).
    pub weight: u32,
    /// CPU cap in percent, 0 for none.
    pub cap: u32,
    /// The control domain.
    pub privileged: bool,
    /// Created paused: no vCPU runs until unpaused.
    pub paused: bool,
    /// Its heap budget in bytes; 0: [`budget::default_limit`].
    pub budget: u64,
}

impl<'a> DomainSpec<'a> {
    /// A boot-module domain: fixed size, running at once.
    pub fn boot_module(name: &'a str, image: &'a [u8], cmdline: &'a str) -> Self {
        Self {
            name,
            image,
            kind: ImageKind::Pvabi,
            cmdline,
            memory: DOMAIN_MEMORY,
            nr_vcpus: DOMAIN_VCPUS,
            weight: pvabi::DOMCTL_DEFAULT_WEIGHT,
            cap: 0,
            privileged: false,
            paused: false,
            budget: 0,
        }
    }
}

/// How a domain's image is loaded and entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind<'a> {
    /// A pvabi ELF guest (`domain/builder.rs`): RDI = its start info.
    Pvabi,
    /// A Linux `vmlinux` through the 64-bit boot protocol
    /// (`domain/linux.rs`), with its initramfs (empty for none).
    Linux {
        /// The initramfs.
        initrd: &'a [u8],
    },
}

/// What creating a domain with `nr_vcpus` vCPUs allocates on the heap,
/// charged to it before anything is made: its budget, the domain, an
/// entry per vCPU (with its share of the timer list and of the
/// scheduler's records), vCPU 0's backend, the virq table, the vCPU list
/// of its port table (`evtchn/live/table.rs`), the console output queue
/// (`console/out.rs`) and its slot in the domain table.
pub(crate) const fn creation_cost(nr_vcpus: u32) -> u64 {
    let n = nr_vcpus as u64;
    let arc = 2 * size_of::<usize>() as u64 + ALLOC_SLACK;
    let per_vcpu = size_of::<VcpuEntry>() as u64
        + arc
        + Cost::btree_entry::<(u64, usize), usize>()
        + Cost::vec_elem::<usize>() * 2
        + SCHED_RECORD_BYTES
        + (pvabi::NR_VIRQS as u64) * 4;
    size_of::<Budget>() as u64
        + arc
        + size_of::<Domain>() as u64
        + arc
        + n * per_vcpu
        + select::VCPU_HEAP_BYTES
        + ALLOC_SLACK
        + crate::evtchn::live::vcpu_list_cost(nr_vcpus)
        + crate::console::out::CONSOLE_OUT_BYTES as u64
        + ALLOC_SLACK
        + Cost::btree_entry::<DomainId, [usize; 4]>()
        + 4 * ALLOC_SLACK
}

/// What a domain of `memory` bytes' page list takes on the heap
/// (`DomainMemory`: a `u64` per 4 KiB page and per 2 MiB chunk, reserved
/// exactly): 2 KiB per MiB, charged at creation with its records.
pub(crate) const fn page_list_cost(memory: u64) -> u64 {
    (memory / 4096) * 8 + (memory / CHUNK) * 8 + 2 * ALLOC_SLACK
}

// The smallest budget a domain may ask for holds its own records.
const _: () = assert!(creation_cost(1) <= budget::BUDGET_MIN);

/// The scheduler's records of one vCPU and its share of its domain's
/// (`sched/credit.rs`, `sched/live.rs`: `Vec`s that grow by doubling),
/// rounded up.
const SCHED_RECORD_BYTES: u64 = 128;

/// Creates a domain from an ELF image and makes vCPU 0 runnable (it runs
/// once the domain is not paused).
pub fn create(backend: Backend, spec: &DomainSpec<'_>) -> Result<DomainId, CreateError> {
    let DomainSpec {
        name,
        image,
        cmdline,
        ..
    } = *spec;
    let t0 = crate::console::stamp::begin();
    let id = DomainId(NEXT_ID.fetch_add(1, Ordering::Relaxed));
    // Charged before anything is allocated: a budget too small for the
    // domain's own records, or a heap near its reserve, refuses it here.
    let limit = match spec.budget {
        0 => budget::default_limit(spec.memory, spec.nr_vcpus),
        b => b,
    };
    let charge = Budget::new(limit);
    charge
        .charge(creation_cost(spec.nr_vcpus) + page_list_cost(spec.memory))
        .map_err(|_| CreateError::Budget(limit))?;
    let budget = Arc::new(charge);
    let console_out = crate::console::out::OutQueue::new().ok_or(CreateError::OutOfMemory)?;
    let mut mem = DomainMemory::new(spec.memory).ok_or(CreateError::OutOfMemory)?;
    let insn = select::hypercall_insn(backend);
    let built = match spec.kind {
        ImageKind::Pvabi => builder::build(&mut mem, image, cmdline, id.0, insn),
        ImageKind::Linux { initrd } => {
            let img = super::linux::LinuxImage {
                kernel: image,
                initrd,
                cmdline,
            };
            super::linux::build(&mut mem, &img, id.0, insn).map(|(b, _)| b)
        }
    }
    .map_err(CreateError::Build)?;
    finish_start_info(&mut mem, &built.layout, spec.nr_vcpus)?;
    let boot = built.boot;
    let mut tables = FrameTables::default();
    let mut gpt = Gpt::new(backend, &mut tables).map_err(CreateError::Paging)?;
    for (i, &c) in mem.chunks().iter().enumerate() {
        gpt.map(i as u64 * CHUNK, c, CHUNK, &mut tables)
            .map_err(CreateError::Paging)?;
    }
    let root = gpt.root();
    let vcpu0 = select::new_vcpu(backend, &boot, root, id.0).ok_or(CreateError::OutOfMemory)?;
    let mut n = ArrayString::new();
    for c in name.chars() {
        if n.try_push(c).is_err() {
            break;
        }
    }
    let frames = tables.frames;
    let Some((sdom, sids)) = policy::add_domain(spec.weight, spec.cap, spec.nr_vcpus) else {
        let mut vcpu0 = vcpu0;
        vcpu0.release();
        gpt.destroy(&mut tables);
        return Err(CreateError::Sched);
    };
    let domain = Arc::new(Domain {
        id,
        name: n,
        backend,
        insn,
        privileged: spec.privileged,
        nr_vcpus: spec.nr_vcpus,
        weight: AtomicU32::new(spec.weight),
        cap: AtomicU32::new(spec.cap),
        shutdown_request: AtomicU64::new(pvabi::SHUTDOWN_REQUEST_NONE),
        mem_target: AtomicU64::new(0),
        sdom,
        stop: AtomicU8::new(if spec.paused { STOP_PAUSED } else { 0 }),
        boot,
        start_info: built.layout.start_info,
        nested_root: root,
        inner: Mutex::new(Inner {
            mem,
            gpt: Some(gpt),
            tables,
            foreign: alloc::collections::BTreeSet::new(),
        }),
        tlb_gen: AtomicU64::new(0),
        end: Mutex::new(None),
        exits: AtomicU64::new(0),
        max_exit_ticks: AtomicU64::new(0),
        events: crate::evtchn::live::new_table(id, spec.nr_vcpus, budget.clone()),
        control: spin::Once::new(),
        grants: Mutex::new(crate::grant::GrantTable::new(id).charge_to(budget.clone())),
        maps: Mutex::new(crate::grant::MapTrack::new().charge_to(budget.clone())),
        console_in: Mutex::new(crate::console::input::InputQueue::new()),
        budget,
        console_out,
    });
    crate::console::stamp::created(&domain, t0);
    if spec.privileged {
        crate::console::live::note_control_domain();
        // Its devices, before its first vCPU can run and look for them.
        crate::pci::table::assign_boot(Some(&domain));
    }
    let mut vcpu0 = Some(vcpu0);
    let entries: Vec<Arc<VcpuEntry>> = sids
        .into_iter()
        .zip(0..)
        .map(|(sid, index)| {
            let v = vcpu0.take();
            let run = if v.is_some() {
                Run::Runnable
            } else {
                Run::Down
            };
            Arc::new(VcpuEntry {
                domain: domain.clone(),
                index,
                sid,
                armed: AtomicU64::new(0),
                armed_on: AtomicU32::new(u32::MAX),
                st: Mutex::new(VState {
                    run,
                    vcpu: v,
                    resume: None,
                }),
                pending: AtomicU64::new(0),
                timer: AtomicU64::new(0),
                cpu_time_ns: AtomicU64::new(0),
                last_cpu: AtomicU32::new(pvabi::LAST_CPU_NONE),
                running_on: AtomicU32::new(u32::MAX),
                in_guest: AtomicBool::new(false),
                seen_gen: AtomicU64::new(0),
                stuck_since: AtomicU64::new(0),
                wait_port: AtomicU32::new(0),
                handoff_open: AtomicBool::new(false),
                halted: crate::sched::halt::HaltState::new(),
                cont: crate::hypercall::continuation::Slot::new(),
            })
        })
        .collect();
    ALIVE.fetch_add(1, Ordering::AcqRel);
    CREATED.fetch_add(1, Ordering::AcqRel);
    log::info!(
        "domain {id} ({name}): {} MiB, {} vCPUs, weight {}, cap {}, heap budget {} bytes, entry {:#x}, {frames} nested-table frames, {}",
        spec.memory >> 20,
        spec.nr_vcpus,
        spec.weight,
        spec.cap,
        limit,
        boot.rip,
        if spec.paused { "paused" } else { "started" },
    );
    // Before it is in the domain table: no port can be bound to it yet.
    domain.events.lock().set_vcpus(&entries);
    // A domain with no vCPU (refused by domctl's decoder) never enters it.
    let _ = DOMAINS.lock().insert(id, domain.clone(), entries.clone());
    policy::register(&entries);
    if let Some(e) = entries.first() {
        let mut st = e.st.lock();
        policy::make_runnable(e, &mut st);
    }
    Ok(id)
}

/// Completes the start info the builder wrote: the PV clock page and the
/// memory quota, and the vCPU count.
fn finish_start_info(
    mem: &mut DomainMemory,
    layout: &builder::Layout,
    nr_vcpus: u32,
) -> Result<(), CreateError> {
    let at = layout.start_info;
    let mut page = [0u8; core::mem::size_of::<pvabi::StartInfo>()];
    mem.read(at, &mut page)
        .map_err(|_| CreateError::OutOfMemory)?;
    let mut si = pvabi::StartInfo::from_page(&page).ok_or(CreateError::OutOfMemory)?;
    let time_gpa = at + 2048;
    si.time_info_gpa = time_gpa;
    si.max_pages = mem.max_pages();
    si.nr_vcpus = nr_vcpus;
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
    /// Then tears down its grants and mappings, and closes its event
    /// channels, telling the peers.
    pub(crate) fn finish(&self, how: &'static str, code: i64, reason: Option<&str>) {
        {
            let mut end = self.end.lock();
            if end.is_some() {
                return;
            }
            *end = Some(End {
                how,
                code,
                reason: crate::domain::ended::reason_text(reason),
            });
            self.stop.fetch_or(STOP_ENDING, Ordering::AcqRel);
        }
        // Its queued console lines come before the line saying it ended
        // (printed after them, not waited for here: `console/out.rs`).
        use crate::console::out::NoteKind;
        match reason {
            Some(r) => crate::console::live::end_note(
                self,
                NoteKind::Warn,
                format_args!("domain {} ({}) killed: {r}", self.id, self.name),
            ),
            None => crate::console::live::end_note(
                self,
                NoteKind::Info,
                format_args!("domain {} ({}) {how} with code {code}", self.id, self.name),
            ),
        }
        // Grants first: a peer told through a closed port must find the
        // mappings already gone.
        crate::grant::live::end_grants(self);
        // Its devices' messages stop at the devices before their ports go.
        crate::pci::msi_live::release_domain(self);
        // Its staged images (a control domain's) go back to the free frames.
        crate::domain::stage::release_domain(self.id);
        crate::evtchn::live::close_all(self);
        crate::evtchn::live::raise_dom_exc(self.id);
        // Its vCPUs that do not run now leave the scheduler at once.
        policy::reap(self);
    }

    /// Whether `[gpa, gpa + len)` overlaps the pinned control area.
    pub(crate) fn control_pinned(&self, gpa: u64, len: u64) -> bool {
        self.control
            .get()
            .is_some_and(|(a, _)| a.overlaps(gpa, len))
    }

    /// Whether the domain has ended (its vCPUs stop at their next exit).
    /// A flag rather than the `end` lock: the exit path reads it.
    pub(crate) fn dying(&self) -> bool {
        self.stop.load(Ordering::Acquire) & STOP_ENDING != 0
    }

    /// Whether it is paused (domctl pause).
    pub(crate) fn paused(&self) -> bool {
        self.stop.load(Ordering::Acquire) & STOP_PAUSED != 0
    }

    /// Pauses (`true`) or unpauses it (`sched::live::pause`, `unpause`).
    pub(crate) fn set_paused(&self, on: bool) {
        if on {
            self.stop.fetch_or(STOP_PAUSED, Ordering::AcqRel);
        } else {
            self.stop.fetch_and(!STOP_PAUSED, Ordering::AcqRel);
        }
    }

    /// Whether it is paused or has ended: one load, after every exit (the
    /// run loop then tells which).
    #[inline(always)]
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire) != 0
    }
}

impl Drop for Domain {
    /// The last vCPU is gone: return every frame and report.
    fn drop(&mut self) {
        // Its devices' messages (none left after `finish`) stop first;
        // their DMA is cut off before any frame of it is freed.
        crate::pci::msi_live::release_domain(self);
        let devices = crate::pci::table::release_domain(self.id);
        let inner = self.inner.get_mut();
        let freed_tables = inner.gpt.take().map_or(0, |g| g.destroy(&mut inner.tables));
        let end = self.end.get_mut().unwrap_or(End {
            how: "killed",
            code: -1,
            reason: crate::domain::ended::reason_text(Some("ended without a recorded reason")),
        });
        // How deep the hypervisor's stacks have been (creating a domain is
        // the deepest path): boot tests check the margin (issue 13). Before
        // the `domain-end:` line, so a run stopped at that line has it.
        <crate::platform::P as crate::platform::Platform>::report_stacks();
        // Its last console lines come before its `domain-end:` line: both
        // go to the console's leftovers, printed later (`console/out.rs`).
        crate::console::live::ended(
            self.id,
            &self.name,
            &self.console_out,
            format_args!(
                "domain-end: id={} name={} result={} code={} exits={} freed_table_frames={freed_tables} max_exit_ticks={}",
                self.id,
                self.name,
                end.how,
                end.code,
                self.exits.load(Ordering::Relaxed),
                // Its longest exit (`cargo xtask bench`: bounded exits).
                self.max_exit_ticks.load(Ordering::Relaxed)
            ),
        );
        crate::domain::ended::record(
            pvabi::DomainInfo {
                id: self.id.0,
                flags: crate::domain::ended::how_flag(end.how),
                nr_vcpus: self.nr_vcpus,
                weight: self.weight.load(Ordering::Relaxed),
                cap: self.cap.load(Ordering::Relaxed),
                exit_code: i32::try_from(end.code).unwrap_or(-1),
                max_pages: inner.mem.max_pages(),
                exits: self.exits.load(Ordering::Relaxed),
                name: {
                    let mut n = [0u8; 32];
                    for (d, s) in n.iter_mut().take(31).zip(self.name.bytes()) {
                        *d = s;
                    }
                    n
                },
                ..Default::default()
            },
            end.reason,
        );
        // dom0 records the end from that report: wake it again (the
        // `VIRQ_DOM_EXC` of `finish` may have come before the report).
        crate::console::wake::note_end_recorded();
        // A reboot (`SHUTDOWN_REBOOT`) is as orderly an end as a power-off.
        if matches!(end.how, "exited" | "rebooted") && end.code == 0 {
            ENDED_CLEAN.fetch_add(1, Ordering::Relaxed);
        } else {
            ENDED_OTHER.fetch_add(1, Ordering::Relaxed);
        }
        // Every frame goes back before the domain stops counting as alive:
        // the boot CPU reports free memory once none is (`all_ended`), and
        // the last drop may happen on another CPU with no lock held.
        // No device may still reach them (`domain/dma.rs`).
        super::dma::cut_off(self.id);
        let frames = inner.mem.present_pages();
        inner.mem.free_all();
        if devices > 0 {
            // A driver domain's end (docs/pci.md): this line comes after
            // each device's `DMA cut off` line.
            log::info!(
                "domain {} ({}): {frames} frames freed after the DMA of its {devices} PCI device(s) was cut off; {} bytes free",
                self.id,
                self.name,
                <crate::platform::P as crate::platform::Platform>::free_frame_count() * 4096
            );
        }
        ALIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod budget_tests;
#[cfg(test)]
mod tests;
