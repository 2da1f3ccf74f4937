//! Intel VT-x with extended page tables.
//!
//! References: Intel SDM Vol. 3C chapters 25 (VMCS), 26 (VM entries), 27
//! (VM exits), 29 (EPT, VPID), Vol. 3D Appendix A (capability MSRs) and B
//! (field encodings), Appendix C (exit reasons).
//!
//! A VMCS is active on at most one CPU: a vCPU's VMCS is VMCLEARed whenever
//! the vCPU is switched out ([`VmxVcpu::put`]), so the next run, on any CPU,
//! starts with VMPTRLD + VMLAUNCH, and rewrites the host state when that CPU
//! is not the one it was last written for (it is fixed per CPU once the
//! CPU runs guests, and VMCLEAR keeps every field in the VMCS region).

use core::arch::{asm, naked_asm};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{GuestRegs, VmExit};
use crate::arch::cpu::{rdmsr, wrmsr};
use crate::arch::frames;
use crate::arch::physmem;
use crate::virt::boot::BootState;
use crate::virt::debugregs::{self, GuestDebug};
use crate::virt::msr::GuestMsr;

use super::vmx_fields::*;

#[path = "vmx_upcall.rs"]
mod upcall;
use upcall::{PROC_INTR_WINDOW, WINDOW_OK};
#[path = "vmx_cpustate.rs"]
mod cpustate;
use cpustate::{PROC_CR8_EXITING, PROC_TPR_SHADOW, TPR_SHADOW, VmxCpuState};
#[path = "vmx_msrbitmap.rs"]
mod msrbitmap;

/// VMX-preemption timer: 0 if absent, else 1 + its TSC shift.
static PREEMPT_SHIFT: AtomicU64 = AtomicU64::new(0);
/// The "save VMX-preemption timer value" exit control is on: the timer
/// is armed once per slice and counts down across its entries.
static SAVE_TIMER: AtomicBool = AtomicBool::new(false);

/// VMCS revision identifier (IA32_VMX_BASIC[30:0]).
static REVISION: AtomicU64 = AtomicU64::new(0);
/// Whether VPID is available (tags guest TLB entries).
static HAVE_VPID: AtomicU64 = AtomicU64::new(0);
/// Control values adjusted to what the CPU allows (pin, proc, proc2,
/// exit, entry).
static CONTROLS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// Fits `want` to a capability MSR: low half = bits that must be 1, high
/// half = bits that may be 1 (SDM Vol. 3D A.3).
fn adjust(msr: u32, want: u32) -> u32 {
    // SAFETY: the VMX capability MSRs exist when CPUID reports VMX (checked
    // before `init_global`).
    let cap = unsafe { rdmsr(msr) };
    (want | cap as u32) & (cap >> 32) as u32
}

/// Once, on the boot CPU: the controls every VMCS uses.
pub fn init_global(vpid: bool) {
    // SAFETY: VMX exists (caller checked CPUID and the feature control MSR).
    let basic = unsafe { rdmsr(IA32_VMX_BASIC) };
    REVISION.store(basic & 0x7fff_ffff, Ordering::Relaxed);
    let truectl = basic & (1 << 55) != 0;
    let pick = |plain: u32, tru: u32| if truectl { tru } else { plain };
    // Pin: external-interrupt exiting (0), NMI exiting (3), and the
    // VMX-preemption timer (6) where offered: it ends a time slice even when
    // the host's timer interrupt cannot (Bochs 2.7 never delivers it to a
    // guest that started with RFLAGS.IF=0), and costs nothing otherwise.
    let pin = adjust(
        pick(IA32_VMX_PINBASED, IA32_VMX_TRUE_PINBASED),
        (1 << 0) | (1 << 3) | (1 << 6),
    );
    if pin & (1 << 6) != 0 {
        // SAFETY: IA32_VMX_MISC exists under VMX; bits 4:0 give the timer's
        // rate as a power of two of the TSC (SDM Vol. 3C 26.5.1).
        let rate = unsafe { rdmsr(IA32_VMX_MISC) } & 0x1f;
        PREEMPT_SHIFT.store(rate + 1, Ordering::Relaxed);
    }
    // Primary: HLT (7), MWAIT (10), RDPMC (11: refused with #GP, as on
    // AMD-V), unconditional I/O (24), MONITOR (29), secondary controls
    // (31), MSR bitmap (28: `vmx_msrbitmap.rs`; without it every
    // RDMSR/WRMSR exits).
    let mut proc = adjust(
        pick(IA32_VMX_PROCBASED, IA32_VMX_TRUE_PROCBASED),
        (1 << 7)
            | (1 << 10)
            | (1 << 11)
            | (1 << 24)
            | (1 << 29)
            | (1 << 31)
            | PROC_TPR_SHADOW
            | msrbitmap::init(),
    );
    // CR8 is the vCPU's own through the TPR shadow, or exits (`cpustate`).
    if proc & PROC_TPR_SHADOW == 0 {
        proc |= PROC_CR8_EXITING;
    }
    TPR_SHADOW.store(u64::from(proc & PROC_TPR_SHADOW != 0), Ordering::Relaxed);
    // Interrupt-window exiting is switched on per entry when an upcall
    // waits for the guest to enable interrupts: only if it may be 1.
    let window = adjust(
        pick(IA32_VMX_PROCBASED, IA32_VMX_TRUE_PROCBASED),
        PROC_INTR_WINDOW as u32,
    );
    WINDOW_OK.store(
        u64::from(window & PROC_INTR_WINDOW as u32 != 0),
        Ordering::Relaxed,
    );
    // Secondary: EPT (1), enable RDTSCP (3: without it RDTSCP and RDPID
    // raise #UD; TSC_AUX is each vCPU's, `virt::debugregs`), VPID (5)
    // where offered.
    debugregs::detect();
    let rdtscp = if debugregs::have_tsc_aux() { 1 << 3 } else { 0 };
    let proc2 = adjust(
        IA32_VMX_PROCBASED2,
        (1 << 1) | rdtscp | if vpid { 1 << 5 } else { 0 },
    );
    crate::virt::set_rdtscp_offered(proc2 & (1 << 3) != 0);
    // Exit: save debug controls (2: the guest's DR7), 64-bit host (9),
    // save/load PAT (18, 19), save/load EFER (20, 21), and with the
    // preemption timer, save its value (22: SDM Vol. 3C 28.3.4 saves the
    // count left into the timer-value field, from which the next entry
    // starts it again, 27.7.4; only with the timer active, 27.2.1.2).
    let save_timer = if pin & (1 << 6) != 0 { 1 << 22 } else { 0 };
    let exit = adjust(
        pick(IA32_VMX_EXIT, IA32_VMX_TRUE_EXIT),
        (1 << 2) | (1 << 9) | (1 << 18) | (1 << 19) | (1 << 20) | (1 << 21) | save_timer,
    );
    SAVE_TIMER.store(exit & save_timer != 0, Ordering::Relaxed);
    // Entry: load debug controls (2: the guest's DR7 and DEBUGCTL), IA-32e
    // guest (9), load PAT (14), load EFER (15).
    let entry = adjust(
        pick(IA32_VMX_ENTRY, IA32_VMX_TRUE_ENTRY),
        (1 << 2) | (1 << 9) | (1 << 14) | (1 << 15),
    );
    for (slot, v) in CONTROLS.iter().zip([pin, proc, proc2, exit, entry]) {
        slot.store(u64::from(v), Ordering::Relaxed);
    }
    HAVE_VPID.store(u64::from(vpid && proc2 & (1 << 5) != 0), Ordering::Relaxed);
}

fn page_with_revision() -> Option<u64> {
    let page = frames::alloc_frames(1)?;
    // SAFETY: a fresh identity-mapped frame we own.
    unsafe {
        physmem::zero_frame(page);
        core::ptr::write_volatile(page as *mut u32, REVISION.load(Ordering::Relaxed) as u32);
    }
    Some(page)
}

/// Why VMX could not be turned on.
#[derive(Debug, Clone, Copy)]
pub enum VmxError {
    /// Firmware locked IA32_FEATURE_CONTROL with VMX disabled.
    LockedOff,
    /// No memory for the VMXON region.
    OutOfMemory,
    /// VMXON failed (CF or ZF set).
    VmxonFailed,
}

/// On each CPU: CR0/CR4 fixed bits, CR4.VMXE, VMXON (SDM 24.7).
pub fn init_this_cpu() -> Result<(), VmxError> {
    // SAFETY: VMX exists; IA32_FEATURE_CONTROL may be written only while
    // unlocked, which we check; CR0/CR4 get only the bits VMX requires.
    unsafe {
        let fc = rdmsr(IA32_FEATURE_CONTROL);
        if fc & 1 == 0 {
            wrmsr(IA32_FEATURE_CONTROL, fc | 1 | (1 << 2));
        } else if fc & (1 << 2) == 0 {
            return Err(VmxError::LockedOff);
        }
        let cr0: u64;
        let cr4: u64;
        asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
        asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        let cr0 = (cr0 | rdmsr(IA32_VMX_CR0_FIXED0)) & rdmsr(IA32_VMX_CR0_FIXED1);
        let cr4 = (cr4 | CR4_VMXE | rdmsr(IA32_VMX_CR4_FIXED0)) & rdmsr(IA32_VMX_CR4_FIXED1);
        asm!("mov cr0, {}", in(reg) cr0, options(nomem, nostack));
        asm!("mov cr4, {}", in(reg) cr4, options(nomem, nostack));
    }
    let region = page_with_revision().ok_or(VmxError::OutOfMemory)?;
    let ok: u8;
    // SAFETY: `region` is a page-aligned VMXON region with the revision ID;
    // CR0/CR4 satisfy the fixed bits; VMXON reads only that page.
    unsafe {
        asm!("vmxon [{r}]", "setna {ok}", r = in(reg) &region, ok = out(reg_byte) ok, options(nostack));
    }
    if ok != 0 {
        Err(VmxError::VmxonFailed)
    } else {
        debugregs::init_this_cpu();
        Ok(())
    }
}

fn vmwrite(field: u64, value: u64) {
    // SAFETY: called only with a current VMCS (after VMPTRLD); an invalid
    // field sets VMfailValid, which the next VM entry reports.
    unsafe { asm!("vmwrite {}, {}", in(reg) field, in(reg) value, options(nostack)) };
}

fn vmread(field: u64) -> u64 {
    let v: u64;
    // SAFETY: as in `vmwrite`.
    unsafe { asm!("vmread {}, {}", out(reg) v, in(reg) field, options(nostack)) };
    v
}

/// A vCPU under VT-x.
pub struct VmxVcpu {
    vmcs: u64,
    launched: bool,
    /// General-purpose registers (RSP/RIP live in the VMCS).
    pub regs: GuestRegs,
    boot: BootState,
    eptp: u64,
    vpid: u16,
    /// The domain it belongs to (IBPB between domains, `arch/spec.rs`).
    domain: u32,
    started: bool,
    /// VMX-preemption timer value written before each entry (0: none,
    /// or armed once per slice: [`SAVE_TIMER`]).
    preempt_ticks: u64,
    /// TSC at which the current time slice ends (0: none): bounds the
    /// preemption timer.
    slice_end_tsc: u64,
    /// Interrupt-window exiting is on in the VMCS.
    window: bool,
    /// The CPU whose host state the VMCS holds (`u32::MAX`: none yet).
    host_cpu: u32,
    /// x87/SSE/AVX/... state and XCR0 (`xstate.rs`).
    xstate: crate::virt::xstate::GuestXState,
    /// CR2, CR8, kernel GS base: state the VMCS does not hold.
    cpu: VmxCpuState,
    /// DR0-DR3, DR6 and TSC_AUX, switched per slice (`virt::debugregs`).
    dbg: GuestDebug,
}

impl VmxVcpu {
    /// A vCPU starting in 64-bit mode per `boot`, with EPT rooted at
    /// `ept_root`, for domain `domain` (its VPID: the low 16 bits, never 0).
    pub fn new(boot: &BootState, ept_root: u64, domain: u32) -> Option<Self> {
        let xstate = crate::virt::xstate::GuestXState::new()?;
        let mut cpu = VmxCpuState::new()?;
        let Some(vmcs) = page_with_revision() else {
            cpu.release();
            return None;
        };
        Some(Self {
            vmcs,
            launched: false,
            regs: GuestRegs {
                rdi: boot.rdi,
                rsi: boot.rsi,
                ..GuestRegs::default()
            },
            boot: *boot,
            // WB (6), 4-level walk (3 << 3).
            eptp: ept_root | 6 | (3 << 3),
            vpid: (domain as u16).max(1),
            domain,
            started: false,
            preempt_ticks: 0,
            slice_end_tsc: 0,
            window: false,
            host_cpu: u32::MAX,
            xstate,
            cpu,
            dbg: GuestDebug::default(),
        })
    }

    /// Makes the VMCS current on CPU `cpu`. The host state (control
    /// registers, selectors, this CPU's GDT, IDT, TSS and GS base, PAT,
    /// EFER, the exit's RIP) is the same for every entry on one CPU once it
    /// runs guests: written only when the VMCS last held another CPU's
    /// (a switch between two vCPUs on one CPU loads no host field).
    fn load(&mut self, cpu: usize) {
        // SAFETY: `vmcs` is a VMCS region with the right revision, not
        // active on any other CPU (we VMCLEAR on every switch-out).
        unsafe { asm!("vmptrld [{}]", in(reg) &self.vmcs, options(nostack)) };
        if !self.started {
            self.write_guest_state();
            self.started = true;
        }
        if self.host_cpu != cpu as u32 {
            self.write_host_state();
            self.host_cpu = cpu as u32;
        }
    }

    /// Switches the vCPU out: flushes the VMCS to memory so any CPU can
    /// load it next.
    pub fn put(&mut self) {
        self.dbg.save(true);
        // SAFETY: VMCLEAR of our own VMCS region.
        unsafe { asm!("vmclear [{}]", in(reg) &self.vmcs, options(nostack)) };
        self.launched = false;
    }

    fn write_guest_state(&mut self) {
        let b = self.boot;
        let c = |i: usize| CONTROLS.get(i).map_or(0, |v| v.load(Ordering::Relaxed));
        vmwrite(PIN_CONTROLS, c(0));
        vmwrite(PROC_CONTROLS, c(1));
        vmwrite(PROC_CONTROLS2, c(2));
        vmwrite(EXIT_CONTROLS, c(3));
        vmwrite(ENTRY_CONTROLS, c(4));
        vmwrite(EXCEPTION_BITMAP, 0);
        self.cpu.write_controls();
        msrbitmap::write_controls(c(1));
        vmwrite(EPT_POINTER, self.eptp);
        if HAVE_VPID.load(Ordering::Relaxed) != 0 {
            vmwrite(VPID, u64::from(self.vpid));
        }
        vmwrite(VMCS_LINK_POINTER, u64::MAX);
        // The guest sees its CR0/CR4 as built; VMX's required bits (CR0.NE,
        // CR4.VMXE) are forced and hidden behind the read shadows. Every
        // bit is the host's (masks of all ones), so every change exits and
        // is checked (`virt::cr`, `set_control_reg`).
        // SAFETY: the fixed-bit MSRs exist under VMX.
        let (f0, f4) = unsafe { (rdmsr(IA32_VMX_CR0_FIXED0), rdmsr(IA32_VMX_CR4_FIXED0)) };
        vmwrite(GUEST_CR0, b.cr0 | f0);
        vmwrite(CR0_MASK, u64::MAX);
        vmwrite(CR0_SHADOW, b.cr0);
        vmwrite(GUEST_CR4, b.cr4 | f4 | CR4_VMXE);
        vmwrite(CR4_MASK, u64::MAX);
        vmwrite(CR4_SHADOW, b.cr4);
        vmwrite(GUEST_CR3, b.cr3);
        vmwrite(GUEST_EFER, b.efer);
        vmwrite(GUEST_PAT, 0x0007_0406_0007_0406);
        vmwrite(GUEST_DR7, debugregs::DR7_OFF);
        vmwrite(GUEST_DEBUGCTL, 0);
        vmwrite(GUEST_RSP, b.rsp);
        vmwrite(GUEST_RIP, b.rip);
        vmwrite(GUEST_RFLAGS, b.rflags);
        vmwrite(GUEST_INTERRUPTIBILITY, 0);
        vmwrite(GUEST_ACTIVITY, 0);
        // Access rights: type, S, DPL, P in 0-7; L 13, D/B 14, G 15;
        // unusable 16 (SDM Vol. 3C 25.4.1).
        for seg in 0..8u64 {
            let (sel, ar, limit) = match seg {
                SEG_CS => (b.cs, 0xa09b, 0xffff_ffff),
                SEG_LDTR => (0, 1 << 16, 0),
                SEG_TR => (0, 0x8b, 0x67),
                _ => (b.ds, 0xc093, 0xffff_ffff),
            };
            vmwrite(GUEST_ES_SEL + seg * 2, u64::from(sel));
            vmwrite(GUEST_ES_AR + seg * 2, ar);
            vmwrite(GUEST_ES_LIMIT + seg * 2, limit);
            vmwrite(GUEST_ES_BASE + seg * 2, 0);
        }
        let _ = SEG_ES;
        vmwrite(GUEST_GDTR_BASE, b.gdt_base);
        vmwrite(GUEST_GDTR_LIMIT, u64::from(b.gdt_limit));
        vmwrite(GUEST_IDTR_BASE, 0);
        vmwrite(GUEST_IDTR_LIMIT, 0);
    }

    fn write_host_state(&mut self) {
        let (cr0, cr3, cr4): (u64, u64, u64);
        // SAFETY: reading control registers has no side effects.
        unsafe {
            asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
            asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack));
            asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        }
        vmwrite(HOST_CR0, cr0);
        vmwrite(HOST_CR3, cr3);
        vmwrite(HOST_CR4, cr4);
        vmwrite(HOST_ES_SEL, 0x10);
        vmwrite(HOST_CS_SEL, 0x08);
        vmwrite(HOST_SS_SEL, 0x10);
        vmwrite(HOST_DS_SEL, 0x10);
        vmwrite(HOST_FS_SEL, 0);
        vmwrite(HOST_GS_SEL, 0);
        vmwrite(HOST_TR_SEL, 0x18);
        let gdt = x86_64::instructions::tables::sgdt();
        let idt = x86_64::instructions::tables::sidt();
        vmwrite(HOST_GDTR_BASE, gdt.base.as_u64());
        vmwrite(HOST_IDTR_BASE, idt.base.as_u64());
        vmwrite(
            HOST_TR_BASE,
            crate::arch::gdt::tss_base(crate::arch::percpu::cpu_index()),
        );
        vmwrite(HOST_FS_BASE, 0);
        // SAFETY: architectural MSRs present on every x86_64 CPU.
        unsafe {
            vmwrite(HOST_GS_BASE, rdmsr(IA32_GS_BASE));
            vmwrite(HOST_PAT, rdmsr(IA32_PAT));
            vmwrite(HOST_EFER, rdmsr(IA32_EFER));
        }
        vmwrite(HOST_SYSENTER_CS, 0);
        vmwrite(HOST_SYSENTER_ESP, 0);
        vmwrite(HOST_SYSENTER_EIP, 0);
        // Where every exit lands (`vmx_run`): the same for every entry, so
        // written with the rest of the host state, once per load.
        let exit: u64;
        // SAFETY: only takes the address of a label in `vmx_run`.
        unsafe {
            asm!("lea {}, [rip + kestrel_vmx_exit]", out(reg) exit, options(nomem, nostack));
        }
        vmwrite(HOST_RIP, exit);
    }

    /// Returns the VMCS page (after [`Self::put`]); the vCPU must never run
    /// again.
    pub fn release(&mut self) {
        if self.vmcs != 0 {
            frames::free_frames(self.vmcs, 1);
            self.vmcs = 0;
        }
        self.cpu.release();
    }

    /// Guest RIP.
    pub fn rip(&self) -> u64 {
        vmread(GUEST_RIP)
    }

    /// Guest RAX.
    pub fn rax(&self) -> u64 {
        self.regs.rax
    }

    /// Sets guest RAX.
    pub fn set_rax(&mut self, v: u64) {
        self.regs.rax = v;
    }

    /// Moves RIP past the instruction that exited.
    pub fn skip(&mut self, len: u64) {
        vmwrite(GUEST_RIP, vmread(GUEST_RIP).wrapping_add(len));
    }

    /// Injects #GP(0) on the next entry (SDM Vol. 3C 26.6).
    pub fn inject_gp(&mut self) {
        vmwrite(ENTRY_INTR_INFO, 13 | (3 << 8) | (1 << 11) | (1 << 31));
        vmwrite(ENTRY_EXC_ERRCODE, 0);
    }

    /// Makes this vCPU's VMCS current on this CPU (call before `run` and the
    /// register accessors after a switch-in).
    pub fn enter(&mut self, cpu: usize) {
        self.load(cpu);
        // DR7 is in the VMCS; DR0-DR3, DR6 and TSC_AUX are not.
        self.dbg.load(true, cpu);
        let shift = PREEMPT_SHIFT.load(Ordering::Relaxed);
        if shift != 0 {
            // One scheduler tick (10 ms) of guest time at most per entry,
            // or per slice where the exits save the timer (then armed
            // here and narrowed to the slice by `set_slice_end`).
            let ticks =
                ((crate::arch::pit::tsc_hz() / 100) >> (shift - 1)).clamp(1, u64::from(u32::MAX));
            if SAVE_TIMER.load(Ordering::Relaxed) {
                vmwrite(GUEST_PREEMPT_TIMER, ticks);
                self.preempt_ticks = 0;
            } else {
                self.preempt_ticks = ticks;
            }
        }
        // The VMCS was cleared at the last switch-out, so this is a fresh
        // launch: drop any stale guest translations this CPU may hold for
        // this EPT or VPID (another CPU may have changed them, or a dead
        // domain used the same VPID).
        invalidate(self.eptp);
        if HAVE_VPID.load(Ordering::Relaxed) != 0 {
            invalidate_vpid(self.vpid);
        }
        crate::arch::spec::switch_in(self.domain, cpu);
    }

    /// Ends the time slice at TSC `tsc`: the VMX-preemption timer is armed
    /// for what is left of it (at least one timer tick, at most one
    /// scheduler tick), here once where the exits save the timer's count
    /// (it then counts the slice's guest time: the run loop ends the
    /// slice at the first exit past `tsc`, and a guest that runs on with
    /// interrupts off is stopped at most the slice's time in exits late),
    /// else before each entry.
    pub fn set_slice_end(&mut self, tsc: u64) {
        self.slice_end_tsc = tsc;
        if SAVE_TIMER.load(Ordering::Relaxed) {
            rearm_timer(tsc);
        }
    }

    /// INVEPT for this vCPU's EPT on this CPU (VMCS current).
    pub fn flush_tlb(&mut self) {
        invalidate(self.eptp);
    }

    /// Runs the guest until the next exit. [`Self::enter`] must have run on
    /// this CPU since the last [`Self::put`]. Inlined into the run loop
    /// (its one caller per exit, `run.rs`), as is the exit's decode.
    #[inline(always)]
    pub fn run(&mut self) -> VmExit {
        if self.preempt_ticks != 0 {
            self.arm_entry_timer();
        }
        // Interrupts off from the buffer clearing to the entry, so no host
        // handler refills them (a pending one exits the guest at once:
        // external-interrupt exiting); the exit leaves them off until the
        // exit is decoded (below).
        x86_64::instructions::interrupts::disable();
        // Last before the entry: the buffer clearing (VERW / L1D flush).
        crate::arch::spec::before_entry();
        // SAFETY: the VMCS is current on this CPU with complete guest and
        // host state; `regs` lives across the call.
        let failed = unsafe { vmx_run(&raw mut self.regs, u64::from(self.launched)) };
        let exit = if failed != 0 {
            VmExit::InvalidState {
                detail: vmread(VM_INSTRUCTION_ERROR),
            }
        } else {
            self.launched = true;
            self.reinject();
            self.decode()
        };
        // A pending host interrupt (timer, kick, shoot-down) is taken now
        // (`exits_with_interrupts_on`).
        x86_64::instructions::interrupts::enable();
        exit
    }

    /// Without the timer's save control: each entry arms the VMX-preemption
    /// timer for what is left of the slice. Out of line: the hypercall's
    /// path makes one compare where the exits save the timer.
    #[inline(never)]
    fn arm_entry_timer(&self) {
        let mut ticks = self.preempt_ticks;
        let shift = PREEMPT_SHIFT.load(Ordering::Relaxed);
        if self.slice_end_tsc != 0 && shift != 0 {
            let left = self.slice_end_tsc.saturating_sub(crate::arch::cpu::rdtsc());
            ticks = ticks.min(left >> (shift - 1)).max(1);
        }
        vmwrite(GUEST_PREEMPT_TIMER, ticks);
    }

    #[inline(always)]
    fn decode(&self) -> VmExit {
        let reason = vmread(EXIT_REASON);
        // VMCALL, the hot exit, needs only its length: two VMREADs fewer,
        // and the other exits' tests below are not made for it.
        if reason == super::decode::VMX_VMCALL {
            return super::decode::vmx_hypercall(vmread(EXIT_INSTR_LEN));
        }
        self.decode_other(reason)
    }

    /// Every exit but VMCALL: out of line, so that the hypercall's path
    /// makes none of these tests.
    #[inline(never)]
    fn decode_other(&self, reason: u64) -> VmExit {
        // An NMI that arrived while the guest ran was consumed by the exit
        // (pin-based NMI exiting): hand it to the host's handler, which
        // stops this CPU if the machine is going down.
        if reason & 0xffff == 0 && (vmread(EXIT_INTR_INFO) >> 8) & 7 == 2 {
            // SAFETY: vector 2 is the host's NMI handler, on its IST stack.
            unsafe { asm!("int 2", options(nomem, nostack)) };
        }
        // The preemption timer ran out, its saved count is 0: armed again
        // for what is left of the slice (if anything, the timer's unit
        // rounded it down) in case the run loop enters again.
        if reason == 52 && SAVE_TIMER.load(Ordering::Relaxed) {
            rearm_timer(self.slice_end_tsc);
        }
        super::decode::vmx(super::decode::VmxExitInfo {
            reason,
            qualification: vmread(EXIT_QUALIFICATION),
            instruction_len: vmread(EXIT_INSTR_LEN),
            guest_physical: vmread(GUEST_PHYS_ADDR),
        })
    }
}

/// Arms the VMX-preemption timer of the current VMCS for the TSC ticks
/// left until `end` (0: one scheduler tick), at least one timer unit, at
/// most one scheduler tick.
fn rearm_timer(end: u64) {
    let shift = PREEMPT_SHIFT.load(Ordering::Relaxed);
    if shift == 0 {
        return;
    }
    let tick = ((crate::arch::pit::tsc_hz() / 100) >> (shift - 1)).clamp(1, u64::from(u32::MAX));
    let ticks = if end == 0 {
        tick
    } else {
        let left = end.saturating_sub(crate::arch::cpu::rdtsc());
        tick.min(left >> (shift - 1)).max(1)
    };
    vmwrite(GUEST_PREEMPT_TIMER, ticks);
}

/// INVEPT single context (type 1) for `eptp` (SDM Vol. 3C 29.4.3.1).
fn invalidate(eptp: u64) {
    let desc: [u64; 2] = [eptp, 0];
    // SAFETY: a well-formed INVEPT descriptor on the stack; VMX is on.
    unsafe { asm!("invept {}, [{}]", in(reg) 1u64, in(reg) &desc, options(nostack)) };
}

/// INVVPID single context (type 1) for `vpid` (SDM Vol. 3C 29.4.3.3).
fn invalidate_vpid(vpid: u16) {
    let desc: [u64; 2] = [u64::from(vpid), 0];
    // SAFETY: a well-formed INVVPID descriptor; VMX is on and VPID enabled.
    unsafe { asm!("invvpid {}, [{}]", in(reg) 1u64, in(reg) &desc, options(nostack)) };
}

/// Loads guest GPRs, VMLAUNCH/VMRESUME, and on exit saves them. HOST_RSP
/// is written right here so the exit lands on this frame; HOST_RIP, the
/// label `kestrel_vmx_exit`, once per load (`write_host_state`).
/// Returns 0 after a VM exit, 1 if the entry instruction itself failed.
///
/// # Safety
/// A VMCS with complete state is current; `regs` points to live registers.
#[unsafe(naked)]
unsafe extern "C" fn vmx_run(regs: *mut GuestRegs, launched: u64) -> u64 {
    naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "push rdi",        // [rsp]: regs
        "mov rax, 0x6c14", // HOST_RSP
        "vmwrite rax, rsp",
        "cmp rsi, 0",
        "mov rax, [rdi]",
        "mov rbx, [rdi + 8]",
        "mov rcx, [rdi + 16]",
        "mov rdx, [rdi + 24]",
        "mov rsi, [rdi + 32]",
        "mov rbp, [rdi + 48]",
        "mov r8, [rdi + 56]",
        "mov r9, [rdi + 64]",
        "mov r10, [rdi + 72]",
        "mov r11, [rdi + 80]",
        "mov r12, [rdi + 88]",
        "mov r13, [rdi + 96]",
        "mov r14, [rdi + 104]",
        "mov r15, [rdi + 112]",
        "mov rdi, [rdi + 40]",
        "jne 3f",
        "vmlaunch",
        "jmp 4f",
        "3:",
        "vmresume",
        "4:",
        // Entry failed: still on the host stack with guest values loaded.
        "add rsp, 8",
        "mov eax, 1",
        "jmp 5f",
        ".globl kestrel_vmx_exit",
        "kestrel_vmx_exit:",
        // VM exit: RSP = HOST_RSP, [rsp] = regs.
        "xchg rdi, [rsp]",
        "mov [rdi], rax",
        "mov [rdi + 8], rbx",
        "mov [rdi + 16], rcx",
        "mov [rdi + 24], rdx",
        "mov [rdi + 32], rsi",
        "mov [rdi + 48], rbp",
        "mov [rdi + 56], r8",
        "mov [rdi + 64], r9",
        "mov [rdi + 72], r10",
        "mov [rdi + 80], r11",
        "mov [rdi + 88], r12",
        "mov [rdi + 96], r13",
        "mov [rdi + 104], r14",
        "mov [rdi + 112], r15",
        "pop qword ptr [rdi + 40]",
        crate::rsb_fill_asm!(), // RFLAGS.IF = 0 after the exit: before any RET
        "xor eax, eax",
        "5:",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
        rsb_fill = sym crate::arch::spec::RSB_FILL,
    )
}

/// What the rest of the hypervisor sees of a VT-x vCPU.
/// Where VT-x keeps a guest-owned MSR (SDM Vol. 3C 25.4.1, 27.3.1.1).
enum VmxMsrHome {
    /// A VMCS guest-state field.
    Field(u64),
    /// STAR/LSTAR/CSTAR/FMASK (index in `cpustate`'s list).
    Syscall(usize),
    KernelGs,
    TscAux,
}

fn vmx_msr_home(m: GuestMsr) -> VmxMsrHome {
    match m {
        GuestMsr::SysenterCs => VmxMsrHome::Field(GUEST_SYSENTER_CS),
        GuestMsr::SysenterEsp => VmxMsrHome::Field(GUEST_SYSENTER_ESP),
        GuestMsr::SysenterEip => VmxMsrHome::Field(GUEST_SYSENTER_EIP),
        // "Load IA32_PAT"/"load IA32_EFER" entry controls and their save
        // exit controls are on: the fields are the guest's (26.3.2.1).
        GuestMsr::Pat => VmxMsrHome::Field(GUEST_PAT),
        GuestMsr::Efer => VmxMsrHome::Field(GUEST_EFER),
        GuestMsr::FsBase => VmxMsrHome::Field(GUEST_FS_BASE),
        GuestMsr::GsBase => VmxMsrHome::Field(GUEST_GS_BASE),
        GuestMsr::Star => VmxMsrHome::Syscall(0),
        GuestMsr::Lstar => VmxMsrHome::Syscall(1),
        GuestMsr::Cstar => VmxMsrHome::Syscall(2),
        GuestMsr::Sfmask => VmxMsrHome::Syscall(3),
        GuestMsr::KernelGsBase => VmxMsrHome::KernelGs,
        GuestMsr::TscAux => VmxMsrHome::TscAux,
    }
}

impl super::VcpuBackend for VmxVcpu {
    fn concrete(&mut self) -> super::Concrete<'_> {
        super::Concrete::Vmx(self)
    }
    fn msr(&self, m: GuestMsr) -> u64 {
        match vmx_msr_home(m) {
            VmxMsrHome::Field(f) => vmread(f),
            VmxMsrHome::Syscall(i) => self.cpu.syscall_msr(i),
            VmxMsrHome::KernelGs => self.cpu.kernel_gs_base(),
            VmxMsrHome::TscAux => u64::from(self.dbg.tsc_aux()),
        }
    }
    fn set_msr(&mut self, m: GuestMsr, value: u64) {
        match vmx_msr_home(m) {
            VmxMsrHome::Field(f) => vmwrite(f, value),
            VmxMsrHome::Syscall(i) => self.cpu.set_syscall_msr(i, value),
            VmxMsrHome::KernelGs => self.cpu.set_kernel_gs_base(value),
            VmxMsrHome::TscAux => self.dbg.write_tsc_aux(value as u32),
        }
    }
    fn enter(&mut self, cpu: usize) {
        Self::enter(self, cpu);
        self.xstate.load();
        self.cpu.enter();
    }
    fn flush_tlb(&mut self) {
        Self::flush_tlb(self);
    }
    #[inline(always)]
    fn run(&mut self) -> VmExit {
        Self::run(self)
    }
    /// `run` enables them after the exit's decode.
    #[inline(always)]
    fn exits_with_interrupts_on(&self) -> bool {
        true
    }
    fn release(&mut self) {
        Self::release(self);
    }
    fn set_upcall(&mut self, vector: Option<u8>) {
        Self::set_upcall(self, vector);
    }
    fn set_slice_end(&mut self, tsc: u64) {
        Self::set_slice_end(self, tsc);
    }
    fn put(&mut self) {
        Self::put(self);
        self.cpu.put();
        self.xstate.store();
    }
    fn regs(&mut self) -> &mut GuestRegs {
        &mut self.regs
    }
    fn rax(&self) -> u64 {
        Self::rax(self)
    }
    fn set_rax(&mut self, value: u64) {
        Self::set_rax(self, value);
    }
    fn rip(&self) -> u64 {
        Self::rip(self)
    }
    fn skip(&mut self, len: u64) {
        Self::skip(self, len);
    }
    fn inject_gp(&mut self) {
        Self::inject_gp(self);
    }
    /// CR4 as the guest reads it: the read shadow for the bits the host
    /// owns (SDM Vol. 3C 25.6.6).
    fn guest_cr4(&self) -> u64 {
        let mask = vmread(CR4_MASK);
        (vmread(GUEST_CR4) & !mask) | (vmread(CR4_SHADOW) & mask)
    }
    fn set_xcr(&mut self, xcr: u32, value: u64) -> bool {
        self.xstate.xsetbv(xcr, value).is_ok()
    }
    /// #UD: type 3 (hardware exception), no error code (SDM Vol. 3C 26.6).
    fn inject_ud(&mut self) {
        vmwrite(ENTRY_INTR_INFO, 6 | (3 << 8) | (1 << 31));
    }
    /// SS.DPL (access rights bits 6:5) is the CPL (SDM Vol. 3C 26.3.1.2).
    fn cpl(&self) -> u8 {
        ((vmread(GUEST_SS_AR) >> 5) & 3) as u8
    }
    fn rsp(&self) -> u64 {
        vmread(GUEST_RSP)
    }
    fn interrupts_enabled(&self) -> bool {
        vmread(GUEST_RFLAGS) & (1 << 9) != 0
    }
    fn control_reg(&self, n: u8) -> u64 {
        match n {
            0 => vmread(CR0_SHADOW),
            3 => vmread(GUEST_CR3),
            _ => vmread(CR4_SHADOW),
        }
    }
    /// The guest's value goes to the read shadow, with VMX's fixed bits to
    /// the real register; refused if VMX cannot hold it (the fixed-1 MSRs,
    /// SDM Vol. 3D A.7, A.8).
    fn set_control_reg(&mut self, n: u8, value: u64) -> bool {
        let (fixed0, fixed1, real, shadow) = match n {
            0 => (
                IA32_VMX_CR0_FIXED0,
                IA32_VMX_CR0_FIXED1,
                GUEST_CR0,
                CR0_SHADOW,
            ),
            4 => (
                IA32_VMX_CR4_FIXED0,
                IA32_VMX_CR4_FIXED1,
                GUEST_CR4,
                CR4_SHADOW,
            ),
            _ => return false,
        };
        // SAFETY: the fixed-bit MSRs exist under VMX.
        let (f0, f1) = unsafe { (rdmsr(fixed0), rdmsr(fixed1)) };
        let hw = value | f0 | if n == 4 { CR4_VMXE } else { 0 };
        if hw & !f1 != 0 {
            return false;
        }
        vmwrite(real, hw);
        vmwrite(shadow, value);
        // INVEPT drops the guest-linear (combined) mappings of this EPT
        // too, every VPID's (SDM Vol. 3C 29.4.3.1).
        Self::flush_tlb(self);
        true
    }
    fn set_tsc_aux(&mut self, aux: u32) {
        self.dbg.set_tsc_aux(aux);
    }
    fn describe(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        write!(
            out,
            "idt_vectoring={:#x} entry_intr={:#x} rsp={:#x} rflags={:#x} \
             interruptibility={:#x} idtr={:#x}/{:#x} cr0={:#x} cr4={:#x} efer={:#x} dr7={:#x}",
            vmread(IDT_VECTORING_INFO),
            vmread(ENTRY_INTR_INFO),
            vmread(GUEST_RSP),
            vmread(GUEST_RFLAGS),
            vmread(GUEST_INTERRUPTIBILITY),
            vmread(GUEST_IDTR_BASE),
            vmread(GUEST_IDTR_LIMIT),
            vmread(GUEST_CR0),
            vmread(GUEST_CR4),
            vmread(GUEST_EFER),
            vmread(GUEST_DR7),
        )
    }
}
