//! Per-vCPU debug registers and TSC_AUX, switched in software.
//!
//! DR7 (and DR6 on AMD-V) live in the VMCB/VMCS and are switched by the
//! CPU on every entry and exit; DR0-DR3 (and DR6 on VT-x) are not (AMD APM
//! Vol. 2 15.5.1 and Appendix B; Intel SDM Vol. 3C 26.3.2.1, 27.5.1).
//!
//! - VT-x: MOV DR is not intercepted, so a guest's DR0-DR3 and DR6 are in
//!   the hardware from its first VM entry of a slice to its last exit.
//!   They are switched **eagerly, once per slice**: loaded when the vCPU
//!   is switched in (`enter`), saved when it is switched out (`put`): ten
//!   register moves per slice (a scheduler tick, 10 ms), not per exit.
//! - AMD-V: every MOV DR is intercepted and emulated
//!   (`virt::cr::emulate_dr`): DR0-DR3 live here ([`GuestDebug::set`]
//!   also writes the hardware) and are loaded at switch-in; nothing needs
//!   saving. The intercept is what keeps QEMU's TCG alive: a guest's own
//!   MOV DR7 makes TCG insert breakpoints that VMRUN and #VMEXIT, which
//!   load DR7 directly, leave stale, and QEMU then segfaults (issue 12).
//!   KVM intercepts lazily (until the first access) to spare guests that
//!   never touch the registers; here each MOV DR costs one exit, which
//!   is cheap for guests that set breakpoints rarely (not measured).
//!
//! The hypervisor never runs with a guest's breakpoints armed: a VM exit
//! sets DR7 to 0x400 on VT-x (SDM Vol. 3C 27.5.1) and restores the host's
//! DR7 on AMD-V (APM Vol. 2 15.5.1), and the host's is 0x400 on every CPU
//! ([`init_this_cpu`]); so the guest's DR0-DR3 values that stay in the
//! hardware while the hypervisor runs between exits match nothing.
//!
//! TSC_AUX (what RDTSCP and RDPID return in ECX) is each vCPU's id, as
//! Linux's getcpu expects. The hypervisor never reads it, so it is written
//! only when the vCPU switched in wants another value than the CPU holds
//! (one WRMSR per switch between vCPUs with different ids, none otherwise).

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::arch::cpu::{cpuid, wrmsr};
use crate::arch::percpu::{MAX_CPUS, cpu_index};

/// IA32_TSC_AUX (SDM Vol. 4, Table 2-2; APM Vol. 2 13.2.4).
const MSR_TSC_AUX: u32 = 0xc000_0103;
/// DR7 with every breakpoint disabled (bit 10 reads as 1).
pub const DR7_OFF: u64 = 0x400;
/// DR6's value at reset (SDM Vol. 3A 18.2.3).
pub const DR6_INIT: u64 = 0xffff_0ff0;

/// Whether the CPU has TSC_AUX (CPUID 8000_0001 EDX[27] RDTSCP, or
/// 7.0 ECX[22] RDPID); without it, guests never see it and nothing is
/// switched.
static HAVE_TSC_AUX: AtomicBool = AtomicBool::new(false);
/// The TSC_AUX each CPU holds now (`u64::MAX`: unknown).
static CPU_TSC_AUX: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];

/// On each CPU before its first guest: no host breakpoint armed (firmware
/// or the boot loader may have left DR7 set), and whether TSC_AUX exists.
pub fn init_this_cpu() {
    // SAFETY: writing DR7 with every enable bit clear disarms breakpoints;
    // the hypervisor uses none.
    unsafe { asm!("mov dr7, {}", in(reg) DR7_OFF, options(nomem, nostack)) };
    detect();
}

/// Finds out once whether the CPU has TSC_AUX (before the backends pick
/// their controls).
pub fn detect() {
    let ext = cpuid(0x8000_0000).eax >= 0x8000_0001 && cpuid(0x8000_0001).edx & (1 << 27) != 0;
    let rdpid = cpuid(0).eax >= 7 && cpuid(7).ecx & (1 << 22) != 0;
    if ext || rdpid {
        HAVE_TSC_AUX.store(true, Ordering::Relaxed);
    }
}

/// Whether TSC_AUX exists (so RDTSCP may be offered to guests).
pub fn have_tsc_aux() -> bool {
    HAVE_TSC_AUX.load(Ordering::Relaxed)
}

/// The debug registers the CPU does not switch, and TSC_AUX, of one vCPU.
#[derive(Debug, Clone, Copy)]
pub struct GuestDebug {
    dr: [u64; 4],
    /// DR6, for VT-x only (the VMCB holds AMD-V's).
    dr6: u64,
    tsc_aux: u32,
}

impl Default for GuestDebug {
    fn default() -> Self {
        Self {
            dr: [0; 4],
            dr6: DR6_INIT,
            tsc_aux: 0,
        }
    }
}

impl GuestDebug {
    /// Sets the vCPU's TSC_AUX (its id).
    pub fn set_tsc_aux(&mut self, aux: u32) {
        self.tsc_aux = aux;
    }

    /// The vCPU's TSC_AUX.
    pub fn tsc_aux(&self) -> u32 {
        self.tsc_aux
    }

    /// The guest's WRMSR TSC_AUX while it is switched in on this CPU: kept
    /// and loaded now (`load` does it again at each switch-in).
    pub fn write_tsc_aux(&mut self, aux: u32) {
        self.tsc_aux = aux;
        if have_tsc_aux()
            && let Some(cur) = CPU_TSC_AUX.get(cpu_index())
        {
            // SAFETY: as in `load`: TSC_AUX exists, bits 63:32 written 0.
            unsafe { wrmsr(MSR_TSC_AUX, u64::from(aux)) };
            cur.store(u64::from(aux), Ordering::Relaxed);
        }
    }

    /// The guest's DR0-DR3 (`n` < 4) as last loaded or written.
    pub fn get(&self, n: u8) -> u64 {
        self.dr.get(usize::from(n)).copied().unwrap_or(0)
    }

    /// Sets the guest's DR`n` (`n` < 4) here and in the hardware (the vCPU
    /// runs on this CPU; host DR7 is off, so nothing is armed meanwhile).
    pub fn set(&mut self, n: u8, v: u64) {
        if let Some(slot) = self.dr.get_mut(usize::from(n)) {
            *slot = v;
        }
        // SAFETY: as in `load`.
        unsafe {
            match n {
                0 => asm!("mov dr0, {}", in(reg) v, options(nomem, nostack)),
                1 => asm!("mov dr1, {}", in(reg) v, options(nomem, nostack)),
                2 => asm!("mov dr2, {}", in(reg) v, options(nomem, nostack)),
                3 => asm!("mov dr3, {}", in(reg) v, options(nomem, nostack)),
                _ => {}
            }
        }
    }

    /// Switch-in on CPU `cpu`: loads DR0-DR3 (and DR6 when `with_dr6`) and
    /// TSC_AUX.
    /// Host DR7 has every breakpoint off here, so nothing fires.
    pub fn load(&self, with_dr6: bool, cpu: usize) {
        let [d0, d1, d2, d3] = self.dr;
        // SAFETY: DR0-DR3 and DR6 take any value at CPL 0 in 64-bit mode
        // (DR6 bits 63:32 must be 0: the guest could only have set what the
        // CPU accepted, and `DR6_INIT` fits); DR7 is off, so the addresses
        // arm nothing while the hypervisor runs.
        unsafe {
            asm!("mov dr0, {}", in(reg) d0, options(nomem, nostack));
            asm!("mov dr1, {}", in(reg) d1, options(nomem, nostack));
            asm!("mov dr2, {}", in(reg) d2, options(nomem, nostack));
            asm!("mov dr3, {}", in(reg) d3, options(nomem, nostack));
            if with_dr6 {
                asm!("mov dr6, {}", in(reg) self.dr6 & 0xffff_ffff, options(nomem, nostack));
            }
        }
        if have_tsc_aux()
            && let Some(cur) = CPU_TSC_AUX.get(cpu)
            && cur.load(Ordering::Relaxed) != u64::from(self.tsc_aux)
        {
            // SAFETY: TSC_AUX exists (CPUID checked in `init_this_cpu`);
            // bits 63:32 are reserved and written 0.
            unsafe { wrmsr(MSR_TSC_AUX, u64::from(self.tsc_aux)) };
            cur.store(u64::from(self.tsc_aux), Ordering::Relaxed);
        }
    }

    /// Switch-out: saves the guest's DR0-DR3 (and DR6 when `with_dr6`).
    pub fn save(&mut self, with_dr6: bool) {
        let (d0, d1, d2, d3): (u64, u64, u64, u64);
        // SAFETY: reading debug registers at CPL 0 has no side effects.
        unsafe {
            asm!("mov {}, dr0", out(reg) d0, options(nomem, nostack));
            asm!("mov {}, dr1", out(reg) d1, options(nomem, nostack));
            asm!("mov {}, dr2", out(reg) d2, options(nomem, nostack));
            asm!("mov {}, dr3", out(reg) d3, options(nomem, nostack));
            if with_dr6 {
                asm!("mov {}, dr6", out(reg) self.dr6, options(nomem, nostack));
            }
        }
        self.dr = [d0, d1, d2, d3];
    }
}
