//! Per-CPU data, reached through the GS base so any code can ask "which CPU
//! am I" with one load.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use x86_64::VirtAddr;
use x86_64::registers::model_specific::GsBase;

/// Most CPUs the hypervisor drives; CPUs beyond this in the MADT are
/// reported and left parked.
pub const MAX_CPUS: usize = 64;

/// State one CPU keeps about itself. `index` is first so `gs:[0]` reads it.
#[repr(C)]
pub struct PerCpu {
    /// Dense CPU number: 0 is the boot CPU.
    pub index: u32,
    /// Local APIC ID.
    pub apic_id: AtomicU32,
    /// Set by the CPU itself once it runs Rust code on its own stacks.
    pub online: AtomicBool,
    /// LAPIC timer interrupts taken.
    pub ticks: AtomicU64,
    /// Set (before a reschedule IPI) when a vCPU was queued here that may
    /// be better than what runs: the CPU asks the scheduler at its next exit.
    pub resched: AtomicBool,
}

impl PerCpu {
    const fn new(index: u32) -> Self {
        Self {
            index,
            apic_id: AtomicU32::new(u32::MAX),
            online: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            resched: AtomicBool::new(false),
        }
    }
}

static CPUS: [PerCpu; MAX_CPUS] = {
    let mut cpus = [const { PerCpu::new(0) }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        cpus[i] = PerCpu::new(i as u32);
        i += 1;
    }
    cpus
};

/// Points this CPU's GS base at its per-CPU block.
pub fn init_this_cpu(index: usize, apic_id: u32) {
    let Some(cpu) = CPUS.get(index) else {
        panic!("CPU index {index} beyond MAX_CPUS");
    };
    cpu.apic_id.store(apic_id, Ordering::Relaxed);
    GsBase::write(VirtAddr::from_ptr(cpu));
    // Host work noted from now on reaches this CPU's attention word.
    crate::hostwork::online(index);
}

/// The per-CPU block of CPU `index`.
#[inline]
pub fn cpu(index: usize) -> Option<&'static PerCpu> {
    CPUS.get(index)
}

/// This CPU's per-CPU block.
pub fn this_cpu() -> &'static PerCpu {
    &CPUS[cpu_index()]
}

/// This CPU's dense index (0 before per-CPU data is set up).
pub fn cpu_index() -> usize {
    let base = GsBase::read().as_u64();
    if base == 0 {
        return 0;
    }
    let index: u32;
    // SAFETY: a non-zero GS base was set by `init_this_cpu` and points at a
    // `PerCpu` in `CPUS` whose first field is the `u32` index.
    unsafe {
        core::arch::asm!("mov {0:e}, gs:[0]", out(reg) index, options(nostack, readonly, preserves_flags));
    }
    (index as usize).min(MAX_CPUS - 1)
}
