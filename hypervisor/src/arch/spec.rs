//! Speculative-execution mitigations on the hardware: reads what the CPU
//! reports, keeps the plan `boot/spec.rs` chose from it, and runs the
//! barriers at the points the vendor backends call — [`switch_in`] when a
//! vCPU is switched in on a CPU (IBPB between domains), [`before_entry`]
//! right before VMRUN / VMLAUNCH / VMRESUME (L1D flush or VERW), and
//! [`rsb_fill_asm!`] inside the exit stubs before their first RET.
//!
//! The plan is chosen once on the boot CPU before any other CPU starts and
//! read with relaxed loads afterwards (one flag per barrier).

use core::arch::asm;
use core::arch::x86_64::__cpuid_count;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

use super::cpu::{self, rdmsr, wrmsr};
use super::percpu::MAX_CPUS;
use crate::boot::spec::{self, CpuSpec, SpecOpts, leaf7};

/// IA32_PRED_CMD: writing bit 0 is an IBPB (Intel SDM Vol. 4 table 2-2).
const IA32_PRED_CMD: u32 = 0x49;
/// IA32_ARCH_CAPABILITIES (read-only).
const IA32_ARCH_CAPABILITIES: u32 = 0x10a;
/// IA32_FLUSH_CMD: writing bit 0 writes back and invalidates the L1D.
const IA32_FLUSH_CMD: u32 = 0x10b;
/// The hypervisor's data segment (`gdt.rs`: null, code 0x08, data 0x10):
/// VERW's operand.
const KERNEL_DS: u16 = 0x10;

static IBPB: AtomicBool = AtomicBool::new(false);
/// What [`before_entry`] runs: nothing, [`ENTRY_VERW`] or [`ENTRY_L1D_FLUSH`]
/// (one byte, so an entry with neither tests one flag).
static ENTRY_CLEAR: AtomicU8 = AtomicU8::new(0);
const ENTRY_VERW: u8 = 1;
const ENTRY_L1D_FLUSH: u8 = 2;
/// Nonzero: the exit stubs fill the RSB ([`rsb_fill_asm!`] reads it by
/// symbol, so it is a byte, not a `bool`).
pub static RSB_FILL: AtomicU8 = AtomicU8::new(0);

/// The domain whose vCPU each CPU ran last (0: none yet; domain ids start
/// at 1 and are never reused, `domain/lifecycle.rs`).
static LAST_DOMAIN: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// What this CPU reports about speculation (CPUID leaf 7, Fn8000_0008 and,
/// where leaf 7 says it exists, IA32_ARCH_CAPABILITIES).
pub fn read_cpu(intel: bool) -> CpuSpec {
    let max = cpu::cpuid(0).eax;
    let (leaf7_ebx, leaf7_edx) = if max >= 7 {
        let r = __cpuid_count(7, 0);
        (r.ebx, r.edx)
    } else {
        (0, 0)
    };
    let ext8_ebx = if cpu::cpuid(0x8000_0000).eax >= 0x8000_0008 {
        cpu::cpuid(0x8000_0008).ebx
    } else {
        0
    };
    let arch_caps = if leaf7_edx & leaf7::ARCH_CAPABILITIES != 0 {
        // SAFETY: CPUID.(EAX=7,ECX=0):EDX[29] enumerates the MSR.
        unsafe { rdmsr(IA32_ARCH_CAPABILITIES) }
    } else {
        0
    };
    CpuSpec {
        intel,
        leaf7_ebx,
        leaf7_edx,
        ext8_ebx,
        arch_caps,
    }
}

/// Chooses the mitigations (boot CPU, once, before other CPUs start or any
/// guest runs) and logs one line for each.
pub fn init(intel: bool, opts: &SpecOpts) {
    let c = read_cpu(intel);
    let p = spec::plan(&c, opts);
    IBPB.store(p.ibpb.on, Ordering::Relaxed);
    // The flush makes VERW unneeded (`before_entry`).
    let clear = if p.l1d_flush.on {
        ENTRY_L1D_FLUSH
    } else if p.verw.on {
        ENTRY_VERW
    } else {
        0
    };
    ENTRY_CLEAR.store(clear, Ordering::Relaxed);
    RSB_FILL.store(u8::from(p.rsb.on), Ordering::Relaxed);
    p.describe(&c, &mut |a| log::info!("spec-ctrl: {a}"));
}

/// A vCPU of `domain` is switched in on this CPU (`cpu`, the caller's
/// index): an IBPB if this CPU last
/// ran another domain's vCPU, so that domain's branch-predictor training
/// cannot steer this one's indirect branches (Spectre v2 across domains;
/// Intel, "Speculative Execution Side Channel Mitigations": IBPB when
/// switching between VMs). Within a domain no IBPB: its vCPUs trust each
/// other as threads of one OS do.
#[inline]
pub fn switch_in(domain: u32, cpu: usize) {
    if !IBPB.load(Ordering::Relaxed) {
        return;
    }
    let Some(last) = LAST_DOMAIN.get(cpu) else {
        return;
    };
    if last.swap(domain, Ordering::Relaxed) != domain {
        // SAFETY: the plan turns IBPB on only where CPUID enumerates
        // IA32_PRED_CMD; writing bit 0 has no effect but the barrier.
        unsafe { wrmsr(IA32_PRED_CMD, 1) };
    }
}

/// Right before a VM entry: an L1D flush where L1TF applies, else VERW
/// where MDS/TAA apply. An entry that flushes the L1D needs no VERW: on
/// CPUs with MD_CLEAR the L1D_FLUSH command also overwrites the buffers
/// VERW clears (Intel, "Deep Dive: Intel Analysis of Microarchitectural
/// Data Sampling", VMM mitigations; KVM skips VERW after the flush too).
/// What runs between this and the entry touches only the guest's own
/// registers and control block.
#[inline]
pub fn before_entry() {
    // SAFETY: `ENTRY_CLEAR` is written only by `init`, on the boot CPU
    // before any other CPU starts or any guest runs, and read only after:
    // this plain read races with no write. Unlike an atomic load, it is
    // folded into the compare (one instruction per entry).
    if unsafe { core::ptr::read_volatile(ENTRY_CLEAR.as_ptr()) } != 0 {
        entry_clear();
    }
}

/// [`before_entry`]'s work when a barrier is on. Out of line, so that an
/// entry with none costs one compare and one branch (the compiler
/// otherwise tests for the flush first).
#[cold]
#[inline(never)]
fn entry_clear() {
    let clear = ENTRY_CLEAR.load(Ordering::Relaxed);
    if clear == ENTRY_L1D_FLUSH {
        // SAFETY: on only where CPUID enumerates IA32_FLUSH_CMD; bit 0
        // writes back and invalidates the L1D, nothing else.
        unsafe { wrmsr(IA32_FLUSH_CMD, 1) };
    } else {
        let ds = KERNEL_DS;
        // SAFETY: VERW only sets ZF (and, with MD_CLEAR, clears buffers);
        // the memory-operand form is the one documented to clear them, and
        // `ds` is a live stack slot holding a valid data selector.
        unsafe { asm!("verw word ptr [{}]", in(reg) &ds, options(nostack, readonly)) };
    }
}

/// Assembly for the VM-exit stubs (`virt/svm.rs`, `virt/vmx.rs`): when
/// [`RSB_FILL`] is set, fills the return stack buffer with 32 entries that
/// point at a speculation trap (INT3), before the stub's first RET, so
/// return predictions the guest left behind never steer the hypervisor
/// (Intel, "Speculative Execution Side Channel Mitigations": RSB stuffing
/// after VM exit; the loop is Linux's `__FILL_RETURN_BUFFER`).
/// 16 rounds of two CALLs, each round dropping its two return addresses;
/// LFENCE stops speculation past a mispredicted loop end. Clobbers RCX
/// and the flags; needs the operand `rsb_fill = sym
/// crate::arch::spec::RSB_FILL` and must run with interrupts held off
/// (GIF = 0 or RFLAGS.IF = 0) so no handler returns before it.
#[macro_export]
macro_rules! rsb_fill_asm {
    () => {
        concat!(
            "cmp byte ptr [rip + {rsb_fill}], 0\n",
            "je 89f\n",
            "mov ecx, 16\n",
            "86:\n",
            "call 87f\n",
            "int3\n",
            "87:\n",
            "call 88f\n",
            "int3\n",
            "88:\n",
            "add rsp, 16\n",
            "dec ecx\n",
            "jnz 86b\n",
            "lfence\n",
            "89:\n",
        )
    };
}
