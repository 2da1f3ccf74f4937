//! What the hypervisor does about each guest exit, for either vendor.
//!
//! Every value here comes from a guest and is validated: hypercall numbers,
//! addresses, lengths, reasons. The handler never panics on guest input and
//! never touches memory outside the domain's own (through [`Services`]).
//! It is generic over the vCPU and memory so the host tests drive it with
//! fakes.
#![forbid(unsafe_code)]

use pvabi::Error;
use pvabi::zerocopy::IntoBytes;
use pvabi::{
    CONSOLE_WRITE_MAX, HC_CONSOLE_READ, HC_CONSOLE_WRITE, HC_EVTCHN_SEND_WAIT, HC_MEM_INFO,
    HC_MEM_POPULATE, HC_MEM_RELEASE, HC_MULTICALL, HC_SCHED_BLOCK, HC_SCHED_POLL, HC_SET_TIMER,
    HC_SHUTDOWN, HC_VCPU_INFO, HC_VCPU_UP, HC_YIELD, MEM_OP_MAX_PAGES, MemInfo, PAGE_SIZE,
    SHUTDOWN_CRASH, SHUTDOWN_POWEROFF, VcpuInfo,
};

use crate::domain::OutOfBounds;
use crate::virt::{GuestRegs, VcpuBackend, VmExit};
use continuation::Step;
use group::Group;

pub mod continuation;
pub mod cpuid;
mod group;
mod mgmt;
pub mod msr;
pub mod services;
pub use crate::domain::ctl_ops::{CreateParams, DomctlReply, DomctlReq, validate_create};
pub use crate::evtchn::ops::EvtchnOp;
pub use crate::grant::ops::GrantOp;
pub use mgmt::MgmtReq;

/// Reads the domain's own memory by guest-physical address.
pub trait GuestRead {
    /// Copies `buf.len()` bytes from `gpa`; fails if any byte is outside.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfBounds>;
}

/// What the hypercalls need from the domain and the scheduler: its memory
/// and the operations that change shared state. Implemented over the real
/// domain on bare metal and over fakes in the host tests. Errors are
/// [`pvabi::Error`]s; only this module turns one into the status code in
/// RAX ([`status`]).
pub trait Services {
    /// Copies from the domain's memory.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfBounds>;
    /// Copies into the domain's memory.
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfBounds>;
    /// Whether the domain is privileged (the control domain).
    fn privileged(&self) -> bool;
    /// Whether the domain may read console input: the privileged domain
    /// always (the serial console), others only when a control domain
    /// exists to queue input for them.
    fn console_readable(&self) -> bool;
    /// Reads console input into `buf` (only when [`Services::console_readable`]):
    /// the serial console's for the privileged domain, the domain's own
    /// input queue otherwise.
    fn console_read(&mut self, buf: &mut [u8]) -> Result<usize, Error>;
    /// Blocks this vCPU until an event or `deadline` (0: none). Returns the
    /// pending mask (cleared) if an event is already pending, else `None`:
    /// the vCPU is now blocked and gets the mask in RAX when it wakes.
    fn block(&mut self, deadline: u64) -> Option<u64>;
    /// HLT with interrupts on: `true` when the vCPU must block until an
    /// interrupt (upcall) or its timer (`sched/halt.rs`), `false` when one
    /// is ready and it runs on. Consumes nothing, sets no register.
    fn halt(&mut self) -> bool;
    /// This vCPU's pending-event mask, cleared.
    fn poll(&mut self) -> u64;
    /// Sets (0: cancels) this vCPU's single-shot timer.
    fn set_timer(&mut self, deadline: u64);
    /// Starts vCPU `id` at `rip` with `rsp` and `arg` in RDI; on the
    /// initial page tables, or with `cr3` on the caller's own
    /// ([`pvabi::VCPU_UP_CR3`]).
    fn vcpu_up(
        &mut self,
        id: u64,
        rip: u64,
        rsp: u64,
        arg: u64,
        cr3: Option<u64>,
    ) -> Result<(), Error>;
    /// State of vCPU `id`.
    fn vcpu_info(&mut self, id: u64) -> Result<VcpuInfo, Error>;
    /// The domain's memory reservation.
    fn mem_info(&mut self) -> MemInfo;
    /// Guest-physical space size in bytes (populate/release stay below it).
    fn phys_size(&self) -> u64;
    /// Releases `pages` pages at `gpa` (validated: aligned, in range).
    fn mem_release(&mut self, gpa: u64, pages: u64) -> Result<u64, Error>;
    /// Populates `pages` fresh zeroed pages at `gpa` (validated).
    fn mem_populate(&mut self, gpa: u64, pages: u64) -> Result<u64, Error>;
    /// Runs an event-channel op (arguments decoded, not yet checked
    /// against the tables): the value for RAX.
    fn evtchn(&mut self, op: EvtchnOp) -> Result<u64, Error>;
    /// `HC_EVTCHN_SEND_WAIT` (arguments decoded): checks `wait`
    /// (`ENOENT`, `EINVAL`), sends on `send` unless 0 (its errors), then
    /// `Some(value for RAX)` when the wait ends now (the port taken, or 0),
    /// `None` when the vCPU is now blocked (RAX is set when it wakes).
    fn send_wait(&mut self, send: u32, wait: u32, deadline: u64) -> Result<Option<u64>, Error>;
    /// Runs one grant op: the value for RAX or the error.
    fn grant(&mut self, op: GrantOp) -> Result<u64, Error>;
    /// Runs one domctl request (called for privileged domains
    /// only, with every argument validated).
    fn domctl(&mut self, req: DomctlReq<'_>) -> Result<DomctlReply, Error>;
    /// Runs one control-domain I/O request (numbers 42-46; privileged
    /// callers only, buffers checked): the value for RAX (a byte count).
    fn mgmt(&mut self, req: MgmtReq<'_>) -> Result<u64, Error>;
    /// Checks a whole memory op before its first piece runs, in the
    /// order the op itself checks (range already valid): releasing,
    /// `EBUSY` (granted or pinned pages) then `ENOENT` (a page absent);
    /// populating, `EEXIST` (foreign or present pages) then `ENOMEM` (over
    /// the reservation).
    fn mem_check(&mut self, populate: bool, gpa: u64, pages: u64) -> Result<(), Error>;
    /// This vCPU's continuation record (`continuation.rs`).
    fn continuation(&self) -> &continuation::Slot;
    /// What the control domain asked of this domain
    /// (`HC_SHUTDOWN_REQUESTED`, `domain/ctl_life.rs`): a
    /// `SHUTDOWN_REQUEST_*` word.
    fn shutdown_request(&self) -> u64 {
        pvabi::SHUTDOWN_REQUEST_NONE
    }
    /// This domain's memory target in pages (`HC_MEM_TARGET`,
    /// `domain/memtarget.rs`): its quota until the control domain sets one.
    fn mem_target(&mut self) -> u64 {
        self.mem_info().max_pages
    }
    /// Runs one PCI op (`pci/config.rs`, decoded): the value for RAX.
    /// Hosts without PCI (the host tests' fakes) have no such hypercall.
    fn pci(&mut self, op: crate::pci::config::PciOp) -> Result<u64, Error> {
        let _ = op;
        Err(Error::NoSys)
    }
    /// What this vCPU's CPUID depends on (`cpuid.rs`): its index and the
    /// domain's start-info address.
    fn vcpu_facts(&self) -> cpuid::VcpuFacts;
}

/// What the host needs from the machine to answer CPUID and RDMSR.
pub trait Host {
    /// Host CPUID for `leaf`/`subleaf`: EAX, EBX, ECX, EDX.
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4];
    /// The TSC (RDMSR 0x10 is allowed).
    fn tsc(&self) -> u64;
}

/// Why a domain was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// Touched guest-physical memory it does not own.
    OutsideMemory {
        gpa: u64,
        write: bool,
        fetch: bool,
        rip: u64,
    },
    /// Triple fault.
    TripleFault { rip: u64 },
    /// Ran an instruction guests may never run.
    Forbidden { what: &'static str, rip: u64 },
    /// VM entry refused the guest state.
    InvalidState { detail: u64 },
    /// An exit the hypervisor does not understand.
    Unhandled { code: u64, rip: u64 },
}

impl core::fmt::Display for KillReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::OutsideMemory {
                gpa,
                write,
                fetch,
                rip,
            } => {
                let how = if fetch {
                    "executed"
                } else if write {
                    "wrote"
                } else {
                    "read"
                };
                write!(
                    f,
                    "{how} guest-physical {gpa:#x}, outside its memory or its access rights, at RIP {rip:#x}"
                )
            }
            Self::TripleFault { rip } => write!(f, "triple fault at RIP {rip:#x}"),
            Self::Forbidden { what, rip } => {
                write!(f, "executed {what}, which guests may not, at RIP {rip:#x}")
            }
            Self::InvalidState { detail } => write!(f, "VM entry failed (detail {detail:#x})"),
            Self::Unhandled { code, rip } => write!(f, "unhandled exit {code:#x} at RIP {rip:#x}"),
        }
    }
}

/// What the scheduler does next with the vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run the guest again.
    Resume,
    /// The host must take an interrupt; then resume or switch.
    Interrupt,
    /// The guest gave up the CPU (yield or HLT).
    Yield,
    /// The vCPU blocked until an event or its deadline.
    Block,
    /// The guest asked to shut down (`reboot`: with `SHUTDOWN_REBOOT`,
    /// so the control domain applies its `on_reboot` policy).
    Shutdown {
        crashed: bool,
        code: i64,
        reboot: bool,
    },
    /// The guest broke a rule and dies.
    Kill(KillReason),
}

/// CPUID leaf with the hypervisor signature.
pub const CPUID_SIGNATURE_LEAF: u32 = 0x4000_0000;
/// `KestrelHyper` in EBX, ECX, EDX.
pub const CPUID_SIGNATURE: [u8; 12] = *b"KestrelHyper";

fn sig(i: usize) -> u32 {
    let b = &CPUID_SIGNATURE;
    u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]])
}

/// The CPUID a guest sees: the host's, with virtualization, MONITOR, x2APIC
/// and the APIC hidden (a PV guest has none of them), the hypervisor bit
/// set, leaves 0x40000000-1 carrying our signature and ABI version, and
/// the XSAVE leaves agreeing with the XCR0 values XSETBV accepts
/// (`virt/xstate.rs`).
pub fn filter_cpuid(leaf: u32, subleaf: u32, host: &impl Host, hypercall_insn: u32) -> [u32; 4] {
    let out = filter_base(leaf, subleaf, host, hypercall_insn);
    crate::virt::xstate::filter_xsave_leaves(leaf, subleaf, out, |l, s| host.cpuid(l, s))
}

fn filter_base(leaf: u32, subleaf: u32, host: &impl Host, hypercall_insn: u32) -> [u32; 4] {
    match leaf {
        CPUID_SIGNATURE_LEAF => [CPUID_SIGNATURE_LEAF + 1, sig(0), sig(1), sig(2)],
        0x4000_0001 => [pvabi::PVABI_VERSION, hypercall_insn, 0, 0],
        0x4000_0002..=0x4fff_ffff => [0; 4],
        1 => {
            let [a, b, c, d] = host.cpuid(1, 0);
            // ECX: MONITOR 3, VMX 5, SMX 6, x2APIC 21, TSC-deadline 24
            // cleared; hypervisor 31 set (XSAVE 26 and OSXSAVE 27: see
            // `filter_cpuid`). EDX: APIC 9.
            let c = (c & !((1 << 3) | (1 << 5) | (1 << 6) | (1 << 21) | (1 << 24))) | (1 << 31);
            [a, b, c, d & !(1 << 9)]
        }
        0x8000_0001 => {
            let [a, b, c, d] = host.cpuid(leaf, subleaf);
            // ECX: SVM 2, extended APIC 3, SKINIT 12. EDX: RDTSCP 27 unless
            // it works in guests (`virt::rdtscp_offered`).
            let d = if crate::virt::rdtscp_offered() {
                d
            } else {
                d & !(1 << 27)
            };
            [a, b, c & !((1 << 2) | (1 << 3) | (1 << 12)), d]
        }
        7 if subleaf == 0 => {
            let [a, b, c, d] = host.cpuid(leaf, subleaf);
            // ECX: RDPID 22 reads TSC_AUX too.
            let c = if crate::virt::rdtscp_offered() {
                c
            } else {
                c & !(1 << 22)
            };
            [a, b, c, d]
        }
        0x8000_000a => [0; 4],
        _ => host.cpuid(leaf, subleaf),
    }
}

/// Decides what to do about one exit. `console` takes the bytes of a
/// valid console write, whole, or returns `false` when they do not fit
/// now: the write is then continued (re-executed later).
pub fn handle(
    exit: VmExit,
    vcpu: &mut (impl VcpuBackend + ?Sized),
    svc: &mut impl Services,
    host: &impl Host,
    hypercall_insn: u32,
    console: &mut dyn FnMut(&[u8]) -> bool,
) -> Action {
    match exit {
        VmExit::Hypercall { len } => {
            // Only the guest's kernel may make hypercalls (issue 12 defect
            // 3; Xen refuses them from HVM user mode alike): from CPL > 0
            // nothing is done and RAX gets EPERM.
            // One backend call for CPL, RAX and the registers, one to
            // complete (inlined from the hardware backends, `run.rs`).
            let Some((nr, r)) = vcpu.hypercall_regs() else {
                vcpu.complete(len, Some(status(Error::Perm)));
                return Action::Resume;
            };
            // The continued ops (11, 12, 13) with one compare.
            const _: () = assert!(
                HC_MEM_POPULATE == HC_MEM_RELEASE + 1 && HC_MULTICALL == HC_MEM_RELEASE + 2
            );
            let step = if nr.wrapping_sub(HC_MEM_RELEASE) > 2 {
                // The common case, completed here (no `Step` in between).
                svc.continuation().clear();
                return match hypercall(svc, nr, &*r, console) {
                    Some((ret, action)) => {
                        complete_as(vcpu, len, ret, &action);
                        action
                    }
                    // The console queue is full: yield, then write again
                    // (RIP and every register stay).
                    None => Action::Yield,
                };
            } else if nr == HC_MULTICALL {
                let (a0, a1) = (r.rdi, r.rsi);
                // RIP is read only here: it keys the continuation.
                continuation::multicall(svc, vcpu.rip(), a0, a1, console)
            } else {
                let (a0, a1) = (r.rdi, r.rsi);
                continuation::mem_op(svc, vcpu.rip(), nr, a0, a1)
            };
            match step {
                Step::Done(ret, action) => {
                    complete_as(vcpu, len, ret, &action);
                    action
                }
                // RIP and every register stay: the guest runs it again.
                Step::Again(action) => action,
            }
        }
        VmExit::Cpuid { len } => {
            let leaf = vcpu.rax() as u32;
            let subleaf = vcpu.regs().rcx as u32;
            let out = filter_cpuid(leaf, subleaf, host, hypercall_insn);
            let out = cpuid::per_vcpu(leaf, subleaf, out, svc.vcpu_facts());
            let out = crate::boot::spec::guest_cpuid(leaf, subleaf, out);
            let out = crate::virt::xstate::os_bits(leaf, subleaf, out, vcpu.guest_cr4());
            vcpu.set_rax(u64::from(out[0]));
            let regs = vcpu.regs();
            regs.rbx = u64::from(out[1]);
            regs.rcx = u64::from(out[2]);
            regs.rdx = u64::from(out[3]);
            vcpu.skip(len);
            Action::Resume
        }
        VmExit::Msr { write, len } => {
            msr::handle(vcpu, host, write, len);
            Action::Resume
        }
        // No port is granted to any guest yet: a real CPU raises #GP for an
        // I/O instruction the TSS bitmap denies, and so do we.
        VmExit::Io { .. } => {
            vcpu.inject_gp();
            Action::Resume
        }
        // HLT waits for an interrupt (SDM Vol. 2A, APM Vol. 3 "HLT"): with
        // RFLAGS.IF = 1 the vCPU blocks until an upcall or its timer
        // (`sched/halt.rs`); RAX and every other register stay as they
        // are. With IF = 0 nothing could wake it: the guest's bug, still
        // answered with a yield rather than a vCPU stopped for good.
        VmExit::Hlt { len } => {
            vcpu.skip(len);
            if !vcpu.interrupts_enabled() {
                Action::Yield
            } else if svc.halt() {
                Action::Block
            } else {
                Action::Resume
            }
        }
        // XCR0 is the vCPU's own, checked in `virt/xstate.rs`; a refused
        // value gets #GP, as the CPU would raise.
        VmExit::Xsetbv { len } => {
            let xcr = vcpu.regs().rcx as u32;
            let value = ((vcpu.regs().rdx & 0xffff_ffff) << 32) | (vcpu.rax() & 0xffff_ffff);
            if vcpu.set_xcr(xcr, value) {
                vcpu.skip(len);
            } else {
                vcpu.inject_gp();
            }
            Action::Resume
        }
        VmExit::ExternalInterrupt => Action::Interrupt,
        // The next entry injects the upcall it was requested for.
        VmExit::InterruptWindow => Action::Resume,
        // RIP is read only here, for the kill's log line: one call less
        // on every hypercall.
        VmExit::NestedPageFault { gpa, write, fetch } => Action::Kill(KillReason::OutsideMemory {
            gpa,
            write,
            fetch,
            rip: vcpu.rip(),
        }),
        VmExit::Shutdown => Action::Kill(KillReason::TripleFault { rip: vcpu.rip() }),
        VmExit::Forbidden { what } => Action::Kill(KillReason::Forbidden {
            what,
            rip: vcpu.rip(),
        }),
        VmExit::InvalidState { detail } => Action::Kill(KillReason::InvalidState { detail }),
        VmExit::Refuse { ud, .. } => {
            if ud {
                vcpu.inject_ud();
            } else {
                vcpu.inject_gp();
            }
            Action::Resume
        }
        VmExit::DrAccess {
            dr,
            write,
            gpr,
            len,
        } => {
            crate::virt::cr::emulate_dr(vcpu, dr, write, gpr, len, |gpa, buf| {
                svc.read(gpa, buf).is_ok()
            });
            Action::Resume
        }
        VmExit::CrWrite { cr, source, len } => {
            crate::virt::cr::emulate(
                vcpu,
                cr,
                source,
                len,
                |gpa, buf| svc.read(gpa, buf).is_ok(),
                |leaf, sub| filter_cpuid(leaf, sub, host, hypercall_insn),
            );
            Action::Resume
        }
        VmExit::Unknown { code, .. } => Action::Kill(KillReason::Unhandled {
            code,
            rip: vcpu.rip(),
        }),
    }
}

/// The one place a status code is made: an op group's error becomes the
/// negative errno value RAX holds (`pvabi::Error::code`, the status codes
/// of the ABI crate's documentation). Successes are the op's own value.
fn status(e: Error) -> u64 {
    e.to_rax()
}

/// Runs one hypercall (not a multicall): the value for RAX and what next,
/// or `None` when it must be executed again later (a console write that
/// does not fit its domain's queue now). Inlined into [`handle`] (one call less per hypercall; the release
/// build optimizes for size and would keep it out of line).
#[inline(always)]
fn hypercall(
    svc: &mut impl Services,
    nr: u64,
    a: impl Args,
    console: &mut dyn FnMut(&[u8]) -> bool,
) -> Option<(u64, Action)> {
    let done = |r: Result<u64, Error>| (r.unwrap_or_else(status), Action::Resume);
    Some(match nr {
        HC_CONSOLE_WRITE => done(match console_write(svc, a.arg(0), a.arg(1), console) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => return None,
            Err(e) => Err(e),
        }),
        HC_SHUTDOWN => match a.arg(0) {
            SHUTDOWN_POWEROFF | SHUTDOWN_CRASH | pvabi::SHUTDOWN_REBOOT => (
                0,
                Action::Shutdown {
                    crashed: a.arg(0) == SHUTDOWN_CRASH,
                    code: a.arg(1) as i64,
                    reboot: a.arg(0) == pvabi::SHUTDOWN_REBOOT,
                },
            ),
            _ => (status(Error::Invalid), Action::Resume),
        },
        HC_YIELD => (0, Action::Yield),
        pvabi::HC_SHUTDOWN_REQUESTED => (svc.shutdown_request(), Action::Resume),
        pvabi::HC_MEM_TARGET => (svc.mem_target(), Action::Resume),
        HC_CONSOLE_READ => done(console_read(svc, a.arg(0), a.arg(1))),
        HC_SCHED_BLOCK => match svc.block(a.arg(0)) {
            Some(mask) => (mask, Action::Resume),
            None => (0, Action::Block),
        },
        HC_SCHED_POLL => (svc.poll(), Action::Resume),
        HC_SET_TIMER => {
            svc.set_timer(a.arg(0));
            (0, Action::Resume)
        }
        HC_VCPU_UP => {
            let cr3 = (a.arg(0) & pvabi::VCPU_UP_CR3 != 0).then_some(a.arg(4));
            let id = a.arg(0) & !pvabi::VCPU_UP_CR3;
            done(
                svc.vcpu_up(id, a.arg(1), a.arg(2), a.arg(3), cr3)
                    .map(|()| 0),
            )
        }
        HC_VCPU_INFO => done(
            svc.vcpu_info(a.arg(0))
                .and_then(|info| put(svc, a.arg(1), info.as_bytes())),
        ),
        HC_MEM_INFO => {
            let info = svc.mem_info();
            done(put(svc, a.arg(0), info.as_bytes()))
        }
        // The event round trip's op (it may block), decoded from its three
        // arguments alone (the event-channel group's decoder reads six).
        HC_EVTCHN_SEND_WAIT => {
            match crate::evtchn::ops::decode_send_wait(a.arg(0), a.arg(1), a.arg(2)) {
                Ok((send, wait, deadline)) => match svc.send_wait(send, wait, deadline) {
                    Ok(Some(v)) => (v, Action::Resume),
                    Ok(None) => (0, Action::Block),
                    Err(e) => (status(e), Action::Resume),
                },
                Err(e) => (status(e), Action::Resume),
            }
        }
        // The op groups with typed decoders: the number picks the group
        // (`group.rs`), whose decoder alone runs.
        _ => match group::of(nr) {
            Group::Evtchn => match EvtchnOp::decode(nr, a.all()) {
                Some(op) => done(op.and_then(|op| svc.evtchn(op))),
                None => (status(Error::NoSys), Action::Resume),
            },
            Group::Grant => done(
                GrantOp::decode(nr, a.all())
                    .unwrap_or(Err(Error::NoSys))
                    .and_then(|op| svc.grant(op)),
            ),
            Group::Domctl => {
                done(crate::domain::ctl_ops::run(svc, nr, a.all()).unwrap_or(Err(Error::NoSys)))
            }
            Group::Mgmt => done(mgmt::run(svc, nr, a.all()).unwrap_or(Err(Error::NoSys))),
            Group::Pci => done(
                crate::pci::config::PciOp::decode(nr, a.all())
                    .unwrap_or(Err(Error::NoSys))
                    .and_then(|op| svc.pci(op)),
            ),
            Group::None => (status(Error::NoSys), Action::Resume),
        },
    })
}

/// Completes a hypercall that returned `ret` and `action`: RIP past it,
/// and RAX = `ret` unless it blocked (it gets its RAX when it wakes).
#[inline(always)]
fn complete_as(vcpu: &mut (impl VcpuBackend + ?Sized), len: u64, ret: u64, action: &Action) {
    vcpu.complete(len, (*action != Action::Block).then_some(ret));
}

/// A hypercall's six arguments (pvabi: RDI, RSI, RDX, R10, R8, R9). From
/// an exit they stay in the saved registers and are read where used (the
/// numbers that take none or one copy nothing out); a multicall entry's
/// are an array. The typed decoders take [`Args::all`].
trait Args: Copy {
    /// Argument `i` (0 to 5).
    fn arg(self, i: usize) -> u64;
    /// All six, in order.
    fn all(self) -> [u64; 6];
}

impl Args for [u64; 6] {
    #[inline(always)]
    fn arg(self, i: usize) -> u64 {
        self[i]
    }
    #[inline(always)]
    fn all(self) -> [u64; 6] {
        self
    }
}

impl Args for &GuestRegs {
    #[inline(always)]
    fn arg(self, i: usize) -> u64 {
        match i {
            0 => self.rdi,
            1 => self.rsi,
            2 => self.rdx,
            3 => self.r10,
            4 => self.r8,
            _ => self.r9,
        }
    }
    #[inline(always)]
    fn all(self) -> [u64; 6] {
        [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9]
    }
}

/// Writes an OUT structure to guest memory.
pub(crate) fn put(svc: &mut impl Services, gpa: u64, bytes: &[u8]) -> Result<u64, Error> {
    svc.write(gpa, bytes).map(|()| 0).map_err(|_| Error::Fault)
}

/// Checks a memory op's range: page aligned, 1..=MEM_OP_MAX_PAGES pages,
/// inside the guest-physical space.
fn mem_range(svc: &impl Services, gpa: u64, pages: u64) -> Result<(), Error> {
    if pages == 0 || pages > MEM_OP_MAX_PAGES || !gpa.is_multiple_of(PAGE_SIZE) {
        return Err(Error::Invalid);
    }
    let end = pages
        .checked_mul(PAGE_SIZE)
        .and_then(|len| gpa.checked_add(len))
        .ok_or(Error::Fault)?;
    if end > svc.phys_size() {
        return Err(Error::Fault);
    }
    Ok(())
}

/// A console write: `Ok(None)` when the bytes do not fit the queue now.
fn console_write(
    svc: &impl Services,
    gpa: u64,
    len: u64,
    console: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<Option<u64>, Error> {
    if len > CONSOLE_WRITE_MAX {
        return Err(Error::TooBig);
    }
    if len == 0 {
        // No byte to fault on: nothing is read, whatever the address.
        return Ok(Some(0));
    }
    let mut buf = [0u8; CONSOLE_WRITE_MAX as usize];
    let dst = buf.get_mut(..len as usize).ok_or(Error::TooBig)?;
    svc.read(gpa, dst).map_err(|_| Error::Fault)?;
    Ok(console(dst).then_some(len))
}

fn console_read(svc: &mut impl Services, gpa: u64, len: u64) -> Result<u64, Error> {
    // Without a control domain only the privileged domain reads.
    if !svc.console_readable() {
        return Err(Error::Perm);
    }
    if len > CONSOLE_WRITE_MAX {
        return Err(Error::TooBig);
    }
    let mut buf = [0u8; CONSOLE_WRITE_MAX as usize];
    let dst = buf.get_mut(..len as usize).ok_or(Error::TooBig)?;
    // The whole destination must be present before any input is taken, so
    // no byte is consumed and then lost.
    svc.read(gpa, dst).map_err(|_| Error::Fault)?;
    let n = svc.console_read(dst)?;
    let got = dst.get(..n).ok_or(Error::Invalid)?;
    svc.write(gpa, got).map_err(|_| Error::Fault)?;
    Ok(n as u64)
}

#[cfg(test)]
mod tests;
