//! AMD-V (SVM) with nested paging.
//!
//! References: AMD64 APM Vol. 2 chapter 15 ("Secure Virtual Machine"),
//! Appendix B (VMCB layout), Appendix C (exit codes). The features QEMU's
//! TCG lacks (NRIPS, decode assists, VMCB clean bits, flush-by-ASID) are
//! used only when CPUID 0x8000000A offers them.

use core::arch::naked_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{GuestRegs, VmExit};
use crate::arch::cpu::{self, rdmsr, wrmsr};
use crate::arch::frames;
use crate::arch::physmem;
use crate::virt::boot::BootState;
use crate::virt::debugregs::GuestDebug;
use crate::virt::msr::GuestMsr;

const MSR_EFER: u32 = 0xc000_0080;
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
const EFER_SVME: u64 = 1 << 12;

// VMCB control area offsets (APM Vol. 2 Appendix B, table B-1).
const C_INTERCEPT_CR: usize = 0x000;
const C_INTERCEPT_EXC: usize = 0x008;
const C_INTERCEPT_MISC1: usize = 0x00c;
const C_INTERCEPT_MISC2: usize = 0x010;
const C_IOPM_BASE: usize = 0x040;
const C_MSRPM_BASE: usize = 0x048;
const C_ASID: usize = 0x058;
const C_TLB_CONTROL: usize = 0x05c;
const C_VINTR: usize = 0x060;
const C_INT_SHADOW: usize = 0x068;
const C_EXITCODE: usize = 0x070;
const C_EXITINFO1: usize = 0x078;
const C_EXITINFO2: usize = 0x080;
const C_EXITINTINFO: usize = 0x088;
const C_NP_ENABLE: usize = 0x090;
const C_EVENTINJ: usize = 0x0a8;
const C_N_CR3: usize = 0x0b0;
const C_NRIP: usize = 0x0c8;

// VMCB state save area offsets (table B-2).
const S_ES: usize = 0x400;
const S_CS: usize = 0x410;
const S_SS: usize = 0x420;
const S_DS: usize = 0x430;
const S_FS: usize = 0x440;
const S_GS: usize = 0x450;
const S_GDTR: usize = 0x460;
const S_LDTR: usize = 0x470;
const S_IDTR: usize = 0x480;
const S_TR: usize = 0x490;
const S_CPL: usize = 0x4cb;
const S_EFER: usize = 0x4d0;
const S_CR4: usize = 0x548;
const S_CR3: usize = 0x550;
const S_CR0: usize = 0x558;
const S_DR7: usize = 0x560;
const S_DR6: usize = 0x568;
const S_RFLAGS: usize = 0x570;
const S_RIP: usize = 0x578;
const S_RSP: usize = 0x5d8;
const S_RAX: usize = 0x5f8;
const S_GPAT: usize = 0x668;
/// MSRs in the state save area that VMLOAD/VMSAVE switch (APM Vol. 2
/// Appendix B, Table B-2; Linux `struct vmcb_save_area`).
const S_STAR: usize = 0x600;
const S_LSTAR: usize = 0x608;
const S_CSTAR: usize = 0x610;
const S_SFMASK: usize = 0x618;
const S_KERNEL_GS_BASE: usize = 0x620;
const S_SYSENTER_CS: usize = 0x628;
const S_SYSENTER_ESP: usize = 0x630;
const S_SYSENTER_EIP: usize = 0x638;
/// A segment's base is 8 bytes into its save-area entry.
const SEG_BASE: usize = 8;

// Intercept bits, misc vector 1 (offset 0x0c).
const I_INTR: u32 = 1 << 0;
const I_NMI: u32 = 1 << 1;
const I_SMI: u32 = 1 << 2;
const I_INIT: u32 = 1 << 3;
const I_VINTR: u32 = 1 << 4;
const I_RDPMC: u32 = 1 << 15;
const I_CPUID: u32 = 1 << 18;
const I_INVD: u32 = 1 << 22;
const I_HLT: u32 = 1 << 24;
const I_INVLPGA: u32 = 1 << 26;
const I_IOIO: u32 = 1 << 27;
const I_MSR: u32 = 1 << 28;
const I_TASK_SWITCH: u32 = 1 << 29;
const I_SHUTDOWN: u32 = 1 << 31;
// Misc vector 2 (offset 0x10): VMRUN (mandatory) and the other SVM
// instructions, WBINVD, MONITOR, MWAIT.
const I2_ALL_SVM: u32 = 0x7f;
const I2_WBINVD: u32 = 1 << 9;
const I2_MONITOR: u32 = 1 << 10;
const I2_MWAIT: u32 = 1 << 11;
/// XSETBV (APM Vol. 2 15.9, table B-1): XCR0 is the vCPU's own.
const I2_XSETBV: u32 = 1 << 13;
// CR intercept vector (offset 0): writes of CR0 (bit 16) and CR4 (bit 20),
// checked by `virt::cr` (APM Vol. 2 15.9).
const I_CR_WRITES: u32 = (1 << 16) | (1 << 20);
// DR intercept vector (offset 4): reads (bits 0-7) and writes (16-23) of
// DR0-DR7, emulated (`virt::cr::emulate_dr`). Besides letting DR0-DR3 live
// in software, this keeps guests' MOV DR away from QEMU's TCG, whose
// breakpoint bookkeeping a guest's MOV DR7 followed by VMRUN/#VMEXIT's
// direct DR7 loads corrupts (QEMU itself segfaults: issue 12, defect 4).
const C_INTERCEPT_DR: usize = 0x004;
const I_DR_ALL: u32 = 0x00ff_00ff;

/// Whether the CPU saves the next RIP on exits (CPUID 8000_000A EDX[3]).
static NRIPS: AtomicU64 = AtomicU64::new(0);
/// Whether the CPU decodes MOV CR for the hypervisor (CPUID 8000_000A
/// EDX[7], decode assists: EXITINFO1 names the register, APM 15.33.1).
static DECODE_ASSISTS: AtomicU64 = AtomicU64::new(0);
/// TLB_CONTROL value for "flush this guest": 3 (this ASID only) with
/// flush-by-ASID (CPUID 8000_000A EDX[6]), else 1 (everything).
static TLB_FLUSH: AtomicU64 = AtomicU64::new(1);
/// ASIDs the CPU offers (CPUID 8000_000A EBX); ASID 0 is the host's.
static ASIDS: AtomicU64 = AtomicU64::new(2);
/// The I/O and MSR permission maps: every bit set, so every port and MSR
/// access exits and the hypervisor decides. Shared by all vCPUs.
static IOPM: AtomicU64 = AtomicU64::new(0);
static MSRPM: AtomicU64 = AtomicU64::new(0);
/// Per CPU: the host save area and a page for VMSAVE of host state.
static HOST_SAVE: [AtomicU64; crate::arch::percpu::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::arch::percpu::MAX_CPUS];
static HOST_VMCB: [AtomicU64; crate::arch::percpu::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::arch::percpu::MAX_CPUS];

fn alloc_zeroed(pages: u64) -> Option<u64> {
    let base = frames::alloc_frames(pages)?;
    for i in 0..pages {
        // SAFETY: freshly allocated, identity-mapped frames we own.
        unsafe { physmem::zero_frame(base + i * 4096) };
    }
    Some(base)
}

/// Once, on the boot CPU: the optional features and the permission maps.
pub fn init_global(nrips: bool, flush_by_asid: bool, asids: u32) -> Option<()> {
    NRIPS.store(u64::from(nrips), Ordering::Relaxed);
    let decode = cpu::cpuid(0x8000_000a).edx & (1 << 7) != 0;
    DECODE_ASSISTS.store(u64::from(decode), Ordering::Relaxed);
    // RDTSCP runs natively; TSC_AUX is switched per vCPU where it exists.
    crate::virt::debugregs::detect();
    crate::virt::set_rdtscp_offered(crate::virt::debugregs::have_tsc_aux());
    TLB_FLUSH.store(if flush_by_asid { 3 } else { 1 }, Ordering::Relaxed);
    ASIDS.store(u64::from(asids.max(2)), Ordering::Relaxed);
    // IOPM: 12 KiB; MSRPM: 8 KiB (APM 15.10, 15.11). All ones = intercept.
    let iopm = frames::alloc_frames(3)?;
    let msrpm = frames::alloc_frames(2)?;
    // SAFETY: freshly allocated identity-mapped frames we own.
    unsafe {
        core::ptr::write_bytes(iopm as *mut u8, 0xff, 3 * 4096);
        core::ptr::write_bytes(msrpm as *mut u8, 0xff, 2 * 4096);
    }
    IOPM.store(iopm, Ordering::Relaxed);
    MSRPM.store(msrpm, Ordering::Relaxed);
    Some(())
}

/// On each CPU: EFER.SVME and the host save area (APM 15.4, 15.30.4).
pub fn init_this_cpu(cpu_index: usize) -> Option<()> {
    let hsave = alloc_zeroed(1)?;
    let host_vmcb = alloc_zeroed(1)?;
    HOST_SAVE.get(cpu_index)?.store(hsave, Ordering::Relaxed);
    HOST_VMCB
        .get(cpu_index)?
        .store(host_vmcb, Ordering::Relaxed);
    // SAFETY: CPUID says SVM exists and VM_CR.SVMDIS is clear (checked by
    // the caller), so setting EFER.SVME is allowed; VM_HSAVE_PA takes a
    // page-aligned physical address we own.
    unsafe {
        wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SVME);
        wrmsr(MSR_VM_HSAVE_PA, hsave);
    }
    crate::virt::debugregs::init_this_cpu();
    Some(())
}

/// A vCPU under AMD-V: its VMCB and saved registers.
pub struct SvmVcpu {
    vmcb: u64,
    /// General-purpose registers (RAX lives in the VMCB).
    pub regs: GuestRegs,
    /// The host state page of the CPU this vCPU was last loaded on
    /// ([`SvmVcpu::enter`]): looked up once per slice, by the run loop's
    /// CPU index, not per VMRUN.
    host_vmcb: u64,
    /// The domain it belongs to (IBPB between domains, `arch/spec.rs`).
    domain: u32,
    /// x87/SSE/AVX/... state and XCR0 (`xstate.rs`); CR2, CR8 (V_TPR),
    /// FS/GS/kernel GS bases are in the VMCB.
    xstate: crate::virt::xstate::GuestXState,
    /// DR0-DR3 and TSC_AUX, switched per slice (`virt::debugregs`).
    dbg: GuestDebug,
    /// EVENTINJ as the last VMRUN saw it and the exit code before the
    /// last one: what [`describe`](super::VcpuBackend::describe) reports
    /// when a guest dies of a triple fault.
    injected: u64,
    prev_exit: u64,
    /// Whether the last `set_upcall` asked for a virtual-interrupt window:
    /// a VINTR exit without it is QEMU's stale bit (see `set_upcall`).
    window: bool,
}

impl SvmVcpu {
    fn w64(&mut self, off: usize, v: u64) {
        // SAFETY: `vmcb` is a page we own; every offset is a field inside
        // it; the CPU does not touch it while we run here (not in VMRUN).
        unsafe { core::ptr::write_volatile((self.vmcb + off as u64) as *mut u64, v) }
    }
    fn w32(&mut self, off: usize, v: u32) {
        // SAFETY: as in `w64`.
        unsafe { core::ptr::write_volatile((self.vmcb + off as u64) as *mut u32, v) }
    }
    fn w16(&mut self, off: usize, v: u16) {
        // SAFETY: as in `w64`.
        unsafe { core::ptr::write_volatile((self.vmcb + off as u64) as *mut u16, v) }
    }
    fn w8(&mut self, off: usize, v: u8) {
        // SAFETY: as in `w64`.
        unsafe { core::ptr::write_volatile((self.vmcb + off as u64) as *mut u8, v) }
    }
    fn r8(&self, off: usize) -> u8 {
        // SAFETY: as in `w64`.
        unsafe { core::ptr::read_volatile((self.vmcb + off as u64) as *const u8) }
    }
    fn r32(&self, off: usize) -> u32 {
        // SAFETY: as in `w64`.
        unsafe { core::ptr::read_volatile((self.vmcb + off as u64) as *const u32) }
    }
    fn r64(&self, off: usize) -> u64 {
        // SAFETY: as in `w64`.
        unsafe { core::ptr::read_volatile((self.vmcb + off as u64) as *const u64) }
    }

    fn segment(&mut self, off: usize, selector: u16, attrib: u16, limit: u32, base: u64) {
        self.w16(off, selector);
        self.w16(off + 2, attrib);
        self.w32(off + 4, limit);
        self.w64(off + 8, base);
    }

    /// A vCPU that starts in 64-bit mode in the state `boot` describes,
    /// translating guest-physical addresses through the NPT at `npt_root`.
    pub fn new(boot: &BootState, npt_root: u64, domain_id: u32) -> Option<Self> {
        // ASIDs may be shared by several domains: every switch-in flushes
        // the guest's TLB entries (`enter`), so sharing is safe.
        let asid = 1 + domain_id.saturating_sub(1) % (ASIDS.load(Ordering::Relaxed) as u32 - 1);
        let xstate = crate::virt::xstate::GuestXState::new()?;
        let mut v = Self {
            vmcb: alloc_zeroed(1)?,
            regs: GuestRegs::default(),
            host_vmcb: 0,
            domain: domain_id,
            xstate,
            dbg: GuestDebug::default(),
            injected: 0,
            prev_exit: 0,
            window: false,
        };
        v.w32(C_INTERCEPT_CR, I_CR_WRITES);
        v.w32(C_INTERCEPT_DR, I_DR_ALL);
        v.w32(C_INTERCEPT_EXC, 0);
        v.w32(
            C_INTERCEPT_MISC1,
            I_INTR
                | I_NMI
                | I_SMI
                | I_INIT
                | I_CPUID
                | I_RDPMC
                | I_INVD
                | I_HLT
                | I_INVLPGA
                | I_IOIO
                | I_MSR
                | I_TASK_SWITCH
                | I_SHUTDOWN
                | I_VINTR,
        );
        v.w32(
            C_INTERCEPT_MISC2,
            I2_ALL_SVM | I2_WBINVD | I2_MONITOR | I2_MWAIT | I2_XSETBV,
        );
        v.w64(C_IOPM_BASE, IOPM.load(Ordering::Relaxed));
        v.w64(C_MSRPM_BASE, MSRPM.load(Ordering::Relaxed));
        v.w32(C_ASID, asid);
        // V_INTR_MASKING: host interrupts are never masked by the guest's IF.
        v.w64(C_VINTR, 1 << 24);
        v.w64(C_NP_ENABLE, 1);
        v.w64(C_N_CR3, npt_root);

        // Attributes: descriptor bits 40-47 in 0-7, bits 52-55 in 8-11.
        let code = 0x9b | (1 << 9) | (1 << 11); // P, S, exec/read, L, G
        let data = 0x93 | (1 << 10) | (1 << 11); // P, S, read/write, D/B, G
        v.segment(S_CS, boot.cs, code, 0xffff_ffff, 0);
        for off in [S_ES, S_SS, S_DS, S_FS, S_GS] {
            v.segment(off, boot.ds, data, 0xffff_ffff, 0);
        }
        v.segment(S_GDTR, 0, 0, u32::from(boot.gdt_limit), boot.gdt_base);
        v.segment(S_IDTR, 0, 0, 0, 0);
        v.segment(S_LDTR, 0, 0x82, 0, 0);
        v.segment(S_TR, 0, 0x8b, 0x67, 0);
        v.w8(S_CPL, 0);
        v.w64(S_EFER, boot.efer | EFER_SVME);
        v.w64(S_CR0, boot.cr0);
        v.w64(S_CR3, boot.cr3);
        v.w64(S_CR4, boot.cr4);
        v.w64(S_DR6, 0xffff_0ff0);
        v.w64(S_DR7, 0x400);
        v.w64(S_RFLAGS, boot.rflags);
        v.w64(S_RIP, boot.rip);
        v.w64(S_RSP, boot.rsp);
        v.w64(S_RAX, 0);
        v.w64(S_GPAT, 0x0007_0406_0007_0406);
        v.regs.rdi = boot.rdi;
        v.regs.rsi = boot.rsi;
        Some(v)
    }

    /// Switches the vCPU in on this CPU. Its ASID may have stale entries
    /// here (another domain used it, or this vCPU ran here before with
    /// other mappings), so the next run flushes them: by ASID where the CPU
    /// can, else the whole TLB (APM 15.16.1).
    pub fn enter(&mut self, cpu: usize) {
        self.flush_tlb();
        self.host_vmcb = HOST_VMCB.get(cpu).map_or(0, |h| h.load(Ordering::Relaxed));
        // The host's state that VMLOAD restores after each exit (FS, GS,
        // TR, LDTR, the SYSCALL and SYSENTER MSRs, KernelGsBase) is saved
        // once per slice, as KVM does per vCPU load: the hypervisor changes
        // none of it between exits (its GS base is set once per CPU at
        // boot; it executes no SWAPGS, SYSCALL or LTR after that).
        if self.host_vmcb != 0 {
            // SAFETY: `host_vmcb` is this CPU's host state page (a page we
            // own, `init_this_cpu`); VMSAVE writes only that page.
            unsafe {
                core::arch::asm!(
                    ".byte 0x0f, 0x01, 0xdb", // vmsave rax
                    in("rax") self.host_vmcb,
                    options(nostack, preserves_flags),
                );
            }
        }
        crate::arch::spec::switch_in(self.domain, cpu);
        // DR6/DR7 are in the VMCB; DR0-DR3 and TSC_AUX are not.
        self.dbg.load(false, cpu);
    }

    /// Flushes this guest's TLB entries at the next VMRUN.
    fn flush_tlb(&mut self) {
        self.w8(C_TLB_CONTROL, TLB_FLUSH.load(Ordering::Relaxed) as u8);
    }

    /// Injects #UD on the next entry (type 3, no error code, APM 15.20).
    pub fn inject_ud(&mut self) {
        self.w64(C_EVENTINJ, 6 | (3 << 8) | (1 << 31));
    }

    /// Returns the VMCB page; the vCPU must never run again.
    pub fn release(&mut self) {
        if self.vmcb != 0 {
            frames::free_frames(self.vmcb, 1);
            self.vmcb = 0;
        }
    }

    /// Guest RIP.
    pub fn rip(&self) -> u64 {
        self.r64(S_RIP)
    }

    /// Guest RAX.
    pub fn rax(&self) -> u64 {
        self.r64(S_RAX)
    }

    /// Sets guest RAX.
    pub fn set_rax(&mut self, v: u64) {
        self.w64(S_RAX, v);
    }

    /// Moves RIP past the instruction that exited.
    pub fn skip(&mut self, len: u64) {
        let rip = self.r64(S_RIP);
        self.w64(S_RIP, rip.wrapping_add(len));
    }

    /// Injects #GP(0) on the next entry (APM 15.20).
    pub fn inject_gp(&mut self) {
        self.w64(C_EVENTINJ, 13 | (3 << 8) | (1 << 11) | (1 << 31));
    }

    /// Asks for external interrupt `vector` as a virtual interrupt: V_IRQ
    /// with V_INTR_VECTOR = `vector`, V_IGN_TPR and the highest priority,
    /// which the CPU delivers by itself as soon as the guest can take it
    /// (RFLAGS.IF = 1, no interrupt shadow; APM Vol. 2 15.21.4 "Virtual
    /// Interrupt Queuing"), with no exit.
    ///
    /// Not EVENTINJ: QEMU's TCG (7.2 here, and upstream's `helper_vmrun`
    /// still) delivers an injected INTR inside VMRUN but also leaves
    /// `exception_index` set to its vector; the next time the vCPU's
    /// execution loop stops without an exception of its own (the icount
    /// budget of a round-robin turn running out, a kick from another
    /// thread) it delivers that vector a second time, ignoring RFLAGS.IF.
    /// Seen under `-icount shift=7,align=off,sleep=off` with a 2-vCPU Linux
    /// domain: the timer upcall entered again inside `__schedule` (IF = 0,
    /// runqueue lock held) or inside the timer upcall itself, and both
    /// vCPUs spun for good on a lock their own interrupted context held
    /// (issue 13). A virtual interrupt goes through QEMU's interrupt path,
    /// which honours IF and clears `exception_index`.
    ///
    /// The VINTR intercept is on only while no virtual interrupt is
    /// requested: it then turns one we did not ask for into an exit instead
    /// of a delivery (QEMU's TCG, up to 10.0, updates its pending-interrupt
    /// word without atomics when it enters and leaves the guest, so an IPI
    /// from another host CPU can write back a stale "virtual interrupt
    /// pending" bit; without the intercept the guest took V_INTR_VECTOR 0
    /// through a missing IDT gate and died of a triple fault, the
    /// `stress_*_upcall` flake). While one is requested, a stale bit
    /// delivers `vector` again: a spurious upcall, which finds nothing
    /// pending.
    pub fn set_upcall(&mut self, vector: Option<u8>) {
        const V_IRQ: u64 = 1 << 8;
        const V_IGN_TPR: u64 = 1 << 20;
        const V_PRIO: u64 = 0xf << 16;
        const V_VECTOR: u64 = 0xff << 32;
        let mut vintr = self.r64(C_VINTR) & !(V_IRQ | V_IGN_TPR | V_PRIO | V_VECTOR);
        let misc1 = self.r32(C_INTERCEPT_MISC1);
        self.window = vector.is_some();
        match vector {
            Some(v) => {
                vintr |= V_IRQ | V_IGN_TPR | V_PRIO | (u64::from(v) << 32);
                self.w32(C_INTERCEPT_MISC1, misc1 & !I_VINTR);
            }
            None => self.w32(C_INTERCEPT_MISC1, misc1 | I_VINTR),
        }
        self.w64(C_VINTR, vintr);
    }

    /// Runs the guest until the next exit. Inlined into the run loop (its
    /// one caller per exit, `run.rs`), as is the exit's decode.
    #[inline(always)]
    pub fn run(&mut self) -> VmExit {
        crate::arch::spec::before_entry();
        self.injected = self.r64(C_EVENTINJ);
        self.prev_exit = self.r64(C_EXITCODE);
        // SAFETY: `vmcb` is a valid VMCB (set up in `new`), `host_vmcb` this
        // CPU's host state page (the run loop calls `enter` on the CPU
        // that runs the vCPU before its first `run` there, and a vCPU
        // never moves between CPUs within a slice), `regs` lives across
        // the call; SVM was enabled on this CPU by `init_this_cpu`.
        unsafe { svm_run(self.vmcb, &raw mut self.regs, self.host_vmcb) };
        // After a #VMEXIT the TLB need not be flushed again.
        self.w8(C_TLB_CONTROL, 0);
        // An event whose delivery the exit interrupted is delivered again
        // (EXITINTINFO has EVENTINJ's format, APM Vol. 2 15.7.2).
        // External interrupts are not: the only one is the upcall, which
        // stays pending in the guest's control area until its handler
        // runs, so `set_upcall` asks for it again. QEMU labels an
        // interrupted delivery of one as an exception (type 3), which
        // VMRUN refuses for vectors above 31.
        // The valid bit is tested first: most exits interrupted nothing.
        let pending = self.r64(C_EXITINTINFO);
        if pending & (1 << 31) != 0 {
            reinject(self, pending);
        }
        // Read once: each VMCB read is a volatile load.
        let code = self.r64(C_EXITCODE);
        if code == 0x64 {
            vintr_exit(self.window);
        }
        self.decode(code)
    }

    #[inline(always)]
    fn decode(&self, code: u64) -> VmExit {
        let rip = self.r64(S_RIP);
        // SAFETY: `NRIPS` is written only by `init_global`, on the boot CPU
        // before any other CPU starts or any guest runs, and read only
        // after: this plain read races with no write. Unlike an atomic
        // load, it is folded into the compare (one instruction per exit).
        let nrips = unsafe { core::ptr::read_volatile(NRIPS.as_ptr()) } != 0;
        let next_rip_len = nrips.then(|| self.r64(C_NRIP).wrapping_sub(rip));
        // The hypercall needs no EXITINFO: not read for it (the hot exit).
        if code == super::decode::SVM_VMMCALL {
            return super::decode::svm_hypercall(next_rip_len);
        }
        super::decode::svm(super::decode::SvmExitInfo {
            code,
            info1: self.r64(C_EXITINFO1),
            info2: self.r64(C_EXITINFO2),
            next_rip_len,
            decode_assists: DECODE_ASSISTS.load(Ordering::Relaxed) != 0,
        })
    }
}

/// Delivers again the event whose delivery an exit interrupted
/// (`pending`: a valid EXITINTINFO), unless it is an external interrupt
/// (see [`SvmVcpu::run`]). Out of line: few exits interrupt a delivery.
#[cold]
fn reinject(v: &mut SvmVcpu, pending: u64) {
    let kind = (pending >> 8) & 7;
    let external = kind == 0 || (kind == 3 && pending & 0xff > 31);
    if !external {
        v.w64(C_EVENTINJ, pending);
    }
}

/// Virtual-interrupt exits nobody asked for (see [`SvmVcpu::set_upcall`]).
static SPURIOUS_WINDOWS: AtomicU64 = AtomicU64::new(0);

/// A VINTR exit: with no window requested (`window` false) it is counted;
/// the first is logged, so a run shows that the emulator raised a stale
/// virtual interrupt (absorbed: the exit changes nothing, the guest
/// resumes where it was). Out of line: the exit path tests only the code.
#[cold]
fn vintr_exit(window: bool) {
    if !window && SPURIOUS_WINDOWS.fetch_add(1, Ordering::Relaxed) == 0 {
        log::info!(
            "svm: a virtual interrupt nobody requested exited through the VINTR intercept (emulator's stale V_IRQ; absorbed)"
        );
    }
}

/// VMLOAD guest state, load guest GPRs, VMRUN, and the reverse (the host's
/// state was saved by VMSAVE at the slice's start, [`SvmVcpu::enter`]).
/// RAX is the guest VMCB's physical address throughout (VMRUN restores the
/// host RAX on #VMEXIT, APM 15.5.1). GIF is cleared around the
/// switch so no host interrupt lands between VMLOAD and VMRUN; `stgi` at the
/// end lets the interrupt that caused an INTR exit be taken.
///
/// # Safety
/// `vmcb` and `host_vmcb` are valid, owned, page-aligned physical pages;
/// `regs` points to a live `GuestRegs`; SVM is enabled on this CPU.
#[unsafe(naked)]
unsafe extern "C" fn svm_run(vmcb: u64, regs: *mut GuestRegs, host_vmcb: u64) {
    naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "push rdx",               // [rsp+8] after the next push: host VMCB
        "push rsi",               // [rsp]: regs
        ".byte 0x0f, 0x01, 0xdd", // clgi
        "mov rax, rdi",
        ".byte 0x0f, 0x01, 0xda", // vmload rax (guest)
        "mov rbx, [rsi + 8]",
        "mov rcx, [rsi + 16]",
        "mov rdx, [rsi + 24]",
        "mov rdi, [rsi + 40]",
        "mov rbp, [rsi + 48]",
        "mov r8, [rsi + 56]",
        "mov r9, [rsi + 64]",
        "mov r10, [rsi + 72]",
        "mov r11, [rsi + 80]",
        "mov r12, [rsi + 88]",
        "mov r13, [rsi + 96]",
        "mov r14, [rsi + 104]",
        "mov r15, [rsi + 112]",
        "mov rsi, [rsi + 32]",
        ".byte 0x0f, 0x01, 0xd8", // vmrun rax
        "push rsi",               // guest RSI; [rsp+8] = regs
        "mov rsi, [rsp + 8]",
        "mov [rsi + 8], rbx",
        "mov [rsi + 16], rcx",
        "mov [rsi + 24], rdx",
        "mov [rsi + 40], rdi",
        "mov [rsi + 48], rbp",
        "mov [rsi + 56], r8",
        "mov [rsi + 64], r9",
        "mov [rsi + 72], r10",
        "mov [rsi + 80], r11",
        "mov [rsi + 88], r12",
        "mov [rsi + 96], r13",
        "mov [rsi + 104], r14",
        "mov [rsi + 112], r15",
        "pop qword ptr [rsi + 32]",
        ".byte 0x0f, 0x01, 0xdb", // vmsave rax (guest)
        "mov rax, [rsp + 8]",
        ".byte 0x0f, 0x01, 0xda", // vmload rax (host)
        "add rsp, 16",
        crate::rsb_fill_asm!(), // GIF = 0 still: before any RET
        ".byte 0x0f, 0x01, 0xdc", // stgi
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

/// Whether this CPU can run SVM guests (nested paging required).
pub fn usable(features: &cpu::VirtFeatures) -> bool {
    matches!(
        features,
        cpu::VirtFeatures::Svm {
            locked_off: false,
            npt: true,
            ..
        }
    )
}

/// What the rest of the hypervisor sees of an AMD-V vCPU.
/// Where the VMCB keeps a guest-owned MSR; `None` for EFER (SVME hidden)
/// and TSC_AUX (switched by `debugregs.rs`).
fn svm_msr_offset(m: GuestMsr) -> Option<usize> {
    Some(match m {
        GuestMsr::SysenterCs => S_SYSENTER_CS,
        GuestMsr::SysenterEsp => S_SYSENTER_ESP,
        GuestMsr::SysenterEip => S_SYSENTER_EIP,
        GuestMsr::Pat => S_GPAT,
        GuestMsr::Star => S_STAR,
        GuestMsr::Lstar => S_LSTAR,
        GuestMsr::Cstar => S_CSTAR,
        GuestMsr::Sfmask => S_SFMASK,
        GuestMsr::FsBase => S_FS + SEG_BASE,
        GuestMsr::GsBase => S_GS + SEG_BASE,
        GuestMsr::KernelGsBase => S_KERNEL_GS_BASE,
        GuestMsr::Efer | GuestMsr::TscAux => return None,
    })
}

impl super::VcpuBackend for SvmVcpu {
    fn concrete(&mut self) -> super::Concrete<'_> {
        super::Concrete::Svm(self)
    }
    fn enter(&mut self, cpu: usize) {
        Self::enter(self, cpu);
        self.xstate.load();
    }
    /// By ASID or whole, at the next VMRUN.
    fn flush_tlb(&mut self) {
        Self::flush_tlb(self);
    }
    #[inline(always)]
    fn run(&mut self) -> VmExit {
        Self::run(self)
    }
    /// VMRUN keeps the host's RFLAGS.IF (on in the run loop) and `svm_run`
    /// sets GIF again after the exit.
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
    /// AMD-V needs no bound of its own: the LAPIC timer's interrupt always
    /// exits the guest (the external-interrupt intercept).
    fn set_slice_end(&mut self, _tsc: u64) {}
    /// Nothing to flush: the VMCB is plain memory any CPU can VMRUN, and
    /// DR0-DR3 change only through `set_debug_reg` (MOV DR is intercepted).
    /// The XSAVE state is saved (the registers are the guest's until now).
    fn put(&mut self) {
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
    fn guest_cr4(&self) -> u64 {
        self.r64(S_CR4)
    }
    fn set_xcr(&mut self, xcr: u32, value: u64) -> bool {
        self.xstate.xsetbv(xcr, value).is_ok()
    }
    fn inject_ud(&mut self) {
        Self::inject_ud(self);
    }
    fn cpl(&self) -> u8 {
        self.r8(S_CPL)
    }
    fn rsp(&self) -> u64 {
        self.r64(S_RSP)
    }
    fn interrupts_enabled(&self) -> bool {
        self.r64(S_RFLAGS) & (1 << 9) != 0
    }
    fn control_reg(&self, n: u8) -> u64 {
        match n {
            0 => self.r64(S_CR0),
            3 => self.r64(S_CR3),
            _ => self.r64(S_CR4),
        }
    }
    /// The VMCB holds the guest's CR0/CR4 as they are (no shadows).
    fn set_control_reg(&mut self, n: u8, value: u64) -> bool {
        match n {
            0 => self.w64(S_CR0, value),
            4 => self.w64(S_CR4, value),
            _ => return false,
        }
        Self::flush_tlb(self);
        true
    }
    fn set_tsc_aux(&mut self, aux: u32) {
        self.dbg.set_tsc_aux(aux);
    }
    fn msr(&self, m: GuestMsr) -> u64 {
        match svm_msr_offset(m) {
            Some(off) => self.r64(off),
            None if m == GuestMsr::Efer => self.r64(S_EFER) & !EFER_SVME,
            None => u64::from(self.dbg.tsc_aux()),
        }
    }
    fn set_msr(&mut self, m: GuestMsr, value: u64) {
        match svm_msr_offset(m) {
            Some(off) => self.w64(off, value),
            // SVM requires EFER.SVME in the guest's VMCB (APM 15.5.1).
            None if m == GuestMsr::Efer => self.w64(S_EFER, value | EFER_SVME),
            None => self.dbg.write_tsc_aux(value as u32),
        }
    }
    fn debug_reg(&self, n: u8) -> u64 {
        match n {
            6 => self.r64(S_DR6),
            7 => self.r64(S_DR7),
            n => self.dbg.get(n),
        }
    }
    fn set_debug_reg(&mut self, n: u8, value: u64) -> bool {
        match n {
            0..=3 => self.dbg.set(n, value),
            6 => self.w64(S_DR6, value),
            7 => self.w64(S_DR7, value),
            _ => return false,
        }
        true
    }
    fn describe(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        write!(
            out,
            "exitintinfo={:#x} injected={:#x} prev_exit={:#x} rsp={:#x} rflags={:#x} \
             shadow={} vintr={:#x} cs={:#x} idtr={:#x}/{:#x} cr0={:#x} cr4={:#x} \
             efer={:#x} dr7={:#x} dr6={:#x}",
            self.r64(C_EXITINTINFO),
            self.injected,
            self.prev_exit,
            self.r64(S_RSP),
            self.r64(S_RFLAGS),
            self.r64(C_INT_SHADOW) & 1,
            self.r64(C_VINTR),
            self.r64(S_CS) & 0xffff,
            self.r64(S_IDTR + 8),
            self.r64(S_IDTR) >> 32,
            self.r64(S_CR0),
            self.r64(S_CR4),
            self.r64(S_EFER),
            self.r64(S_DR7),
            self.r64(S_DR6),
        )
    }
}
