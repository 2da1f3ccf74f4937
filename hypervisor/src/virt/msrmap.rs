//! Which guest MSR accesses run without a VM exit on VT-x, and the MSR
//! bitmap that says so (issue 13 left every RDMSR/WRMSR exiting; issue 11
//! takes the hot ones off the exit path).
//!
//! Passed through, reads and writes: the FS, GS and kernel GS bases. A
//! 64-bit kernel writes the FS base on context switches between threads
//! (Linux `x86_fsgsbase_load` without FSGSBASE) and its user space sets it
//! per thread (`arch_prctl(ARCH_SET_FS)`), so these are the MSR exits a
//! busy Linux domain takes most. They are safe to hand over because the
//! hardware keeps the guest's value where the hypervisor already looks for
//! it: the guest FS/GS bases are in the VMCS guest-state area, saved on
//! every VM exit and loaded on every entry (SDM Vol. 3C 28.3.2, 27.3.2.2),
//! the host's come back from the host-state area (28.5.2);
//! IA32_KERNEL_GS_BASE is not in the VMCS and is the vCPU's own in the
//! hardware from switch-in to switch-out (`vmx_cpustate.rs` swaps it and
//! reads it back live), so a WRMSR by the guest lands where
//! `VmxCpuState::kernel_gs_base` and `put` read it.
//!
//! The one difference from the exiting path: the CPU, not
//! `hypercall::msr`, checks that the value is canonical (WRMSR raises #GP
//! for a non-canonical base, SDM Vol. 2B WRMSR). It checks against its own
//! linear-address width, so on a 5-level-paging CPU a guest may keep a
//! 57-bit canonical base that the model's 48-bit test would refuse. Only
//! that guest uses it: the hypervisor has its own bases (loaded on every
//! exit) and never executes SWAPGS, and writing the kernel GS base back at
//! switch-in runs on a CPU that accepted it.
//!
//! **AMD-V passes nothing through** (its permission map, `svm.rs`, is all
//! ones) although the VMCB would hold the same three values safely
//! (VMLOAD/VMSAVE around every VMRUN, APM Vol. 2 15.5.2): QEMU 7.2's TCG,
//! the only AMD-V the tests run on, does not raise #GP for a non-canonical
//! FS or kernel GS base written by WRMSR (the `msrpass` guest saw the write
//! succeed with the bases passed through there), so the refusal could not
//! be tested on that backend. It keeps the model's check until an AMD-V
//! that implements it is in the test matrix.
//!
//! Everything else still exits and goes through the MSR model (SYSCALL's
//! MSRs are loaded at switch-in from the model's copy, so their writes
//! must keep exiting; EFER, PAT, SYSENTER and TSC_AUX are checked values),
//! and every MSR the model does not know still raises #GP.

use super::msr::GuestMsr;

/// The MSRs whose reads and writes do not exit.
pub const PASS_THROUGH: [GuestMsr; 3] =
    [GuestMsr::FsBase, GuestMsr::GsBase, GuestMsr::KernelGsBase];

/// Bytes of the VT-x MSR bitmap (SDM Vol. 3C 25.6.9: one 4-KiB page).
pub const VMX_BYTES: usize = 4096;
/// VT-x (SDM Vol. 3C 25.6.9): four 1-KiB bit arrays, one bit per MSR:
/// reads of 0..=0x1FFF at byte 0, reads of 0xC000_0000..=0xC000_1FFF at
/// 1024, writes of the low range at 2048, of the high range at 3072. A
/// set bit makes the access exit; an MSR outside both ranges always exits.
/// Returns the (byte, bit) of the read bit; the write bit is 2048 bytes on.
pub fn vmx_read_bit(msr: u32) -> Option<(usize, u8)> {
    let (base, off) = match msr {
        0..=0x1fff => (0usize, msr),
        0xc000_0000..=0xc000_1fff => (1024, msr - 0xc000_0000),
        _ => return None,
    };
    Some((base + (off / 8) as usize, (off % 8) as u8))
}

/// Fills a VT-x MSR bitmap: every access exits but [`PASS_THROUGH`]'s.
pub fn fill_vmx(map: &mut [u8; VMX_BYTES]) {
    map.fill(0xff);
    for m in PASS_THROUGH {
        if let Some((byte, bit)) = vmx_read_bit(m.index()) {
            for b in [byte, byte + 2048] {
                if let Some(v) = map.get_mut(b) {
                    *v &= !(1 << bit);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
