//! Choosing the virtualization backend, and the system clock guests share.

#[allow(unused_imports)]
use super::*;

pub(super) static BACKEND: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

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
pub fn init_virt(features: &crate::arch::cpu::VirtFeatures) -> Result<Backend, &'static str> {
    use crate::arch::cpu::VirtFeatures;
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

pub(super) static TIME_MUL: AtomicU32 = AtomicU32::new(0);
pub(super) static TIME_SHIFT: AtomicU32 = AtomicU32::new(0);
pub(super) static TIME_TSC0: AtomicU64 = AtomicU64::new(0);

/// Sets the hypervisor's clock: nanoseconds since `tsc0`, at `tsc_hz`.
pub fn init_time(tsc0: u64, tsc_hz: u64) {
    let (mul, shift) = pvabi::scale_for(tsc_hz);
    TIME_MUL.store(mul, Ordering::Relaxed);
    TIME_SHIFT.store(shift as u8 as u32, Ordering::Relaxed);
    TIME_TSC0.store(tsc0, Ordering::Release);
}

pub(super) fn time_info() -> pvabi::TimeInfo {
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
