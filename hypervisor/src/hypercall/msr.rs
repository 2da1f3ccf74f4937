//! The MSR model (issue 13): what RDMSR and WRMSR do in a guest.
//!
//! Both backends intercept every MSR access (AMD-V: an all-ones MSR
//! permission map, APM Vol. 2 15.11; VT-x: no MSR bitmap, so every RDMSR
//! and WRMSR exits, SDM Vol. 3C 26.1.3), and this module decides:
//!
//! - **IA32_TSC** reads the host TSC (writes #GP).
//! - **EFER**: reads the guest's view (AMD-V's SVME hidden); writes may
//!   change SCE (0) and NXE (11) only; LME (8) and LMA (10) must stay as
//!   they are (a guest runs in long mode from its first instruction and
//!   cannot leave it here); any other bit, or a change of LME/LMA, is #GP
//!   (SDM Vol. 4 2.1, "IA32_EFER": reserved bits #GP).
//! - **FS/GS/KERNEL_GS base, LSTAR, CSTAR, SYSENTER_ESP/EIP**: any canonical
//!   address; a non-canonical one is #GP (SDM Vol. 2B WRMSR: "#GP if the
//!   source register contains a non-canonical address" for these). The
//!   hypervisor itself loads KERNEL_GS_BASE (and on VT-x STAR/LSTAR/...)
//!   with WRMSR at switch-in, where a non-canonical value would fault in
//!   the host: the check here is what keeps that safe.
//! - **STAR**: any value. **FMASK**: bits 63:32 reserved (#GP).
//!   **SYSENTER_CS**: bits 63:32 ignored-as-zero are refused (#GP), as
//!   they cannot be held by the 32-bit VMCS field.
//! - **PAT**: eight memory types, each 0, 1, 4, 5, 6 or 7 (SDM Vol. 3A
//!   12.12.2: other encodings #GP).
//! - **TSC_AUX**: only where RDTSCP or RDPID is offered
//!   (`virt::rdtscp_offered`); bits 63:32 reserved.
//! - **IA32_MISC_ENABLE** (0x1a0) reads BTS and PEBS unavailable (bits 11,
//!   12), as KVM gives its guests: Linux's `verify_cpu` (head_64.S) reads
//!   it with a plain RDMSR on every Intel family-6 CPU before it has an
//!   IDT, so a #GP there is a triple fault; `early_init_intel` reads it
//!   unchecked too. **MSR_K8_INT_PENDING_MSG** (0xc0010055) reads 0 (no
//!   C1E): Linux reads it unchecked on AMD CPUs with erratum 400, which
//!   QEMU's `qemu64` model claims (`arch_post_acpi_subsys_init`). Both
//!   are read-only here (writes #GP); Linux writes neither when it reads
//!   these values. **IA32_BIOS_SIGN_ID** (0x8b, the microcode revision):
//!   Linux's `intel_get_microcode_revision` writes 0 and reads it back,
//!   both unchecked; writes are accepted and ignored, reads give revision
//!   1 in bits 63:32 (KVM's guest default), so no microcode is loaded or
//!   needed.
//! - Everything else: #GP, as a CPU without the MSR does. Linux survives
//!   that for the MSRs it probes (`rdmsrl_safe`), and CPUID hides the
//!   features whose MSRs it would otherwise touch (`cpuid.rs`).
#![forbid(unsafe_code)]

use crate::virt::VcpuBackend;
use crate::virt::msr::GuestMsr;

use super::Host;

/// IA32_TSC (0x10).
pub const IA32_TSC: u32 = 0x10;
/// IA32_MISC_ENABLE (0x1a0).
pub const IA32_MISC_ENABLE: u32 = 0x1a0;
/// What IA32_MISC_ENABLE reads: BTS unavailable (11), PEBS unavailable
/// (12); fast strings, XD disable and the rest clear (SDM Vol. 4 2.1).
pub const MISC_ENABLE_VALUE: u64 = (1 << 11) | (1 << 12);
/// MSR_K8_INT_PENDING_MSG (0xc0010055, AMD family 0Fh/10h).
pub const K8_INT_PENDING_MSG: u32 = 0xc001_0055;
/// IA32_BIOS_SIGN_ID (0x8b): the microcode revision in bits 63:32.
pub const IA32_BIOS_SIGN_ID: u32 = 0x8b;

/// The read-only MSRs Linux reads unchecked, and their fixed values.
pub fn read_only_constant(index: u32) -> Option<u64> {
    match index {
        IA32_MISC_ENABLE => Some(MISC_ENABLE_VALUE),
        K8_INT_PENDING_MSG => Some(0),
        IA32_BIOS_SIGN_ID => Some(1 << 32),
        _ => None,
    }
}

/// The MSRs whose writes are accepted and have no effect.
pub fn write_ignored(index: u32) -> bool {
    index == IA32_BIOS_SIGN_ID
}

/// EFER bits a guest may change: SCE 0, NXE 11.
const EFER_WRITABLE: u64 = (1 << 0) | (1 << 11);
/// EFER bits a guest must leave as they are: LME 8, LMA 10.
const EFER_FIXED: u64 = (1 << 8) | (1 << 10);

/// Whether `v` is canonical for 48-bit linear addresses (LA57 is not
/// offered: `hypercall/cpuid.rs` leaves leaf 7 ECX 16 as the host has it,
/// but CR4.LA57 cannot be set in long mode, so 48 bits is the guest's
/// width).
pub fn canonical(v: u64) -> bool {
    let top = (v as i64) >> 47;
    top == 0 || top == -1
}

/// Whether `pat` holds eight valid memory types.
pub fn valid_pat(pat: u64) -> bool {
    pat.to_le_bytes()
        .iter()
        .all(|&t| matches!(t, 0 | 1 | 4 | 5 | 6 | 7))
}

/// Whether the guest may write `value` into `msr`, whose current value is
/// `current` (for EFER's fixed bits).
pub fn write_ok(msr: GuestMsr, value: u64, current: u64) -> bool {
    match msr {
        GuestMsr::Efer => {
            value & !(EFER_WRITABLE | EFER_FIXED) == 0 && value & EFER_FIXED == current & EFER_FIXED
        }
        GuestMsr::FsBase
        | GuestMsr::GsBase
        | GuestMsr::KernelGsBase
        | GuestMsr::Lstar
        | GuestMsr::Cstar
        | GuestMsr::SysenterEsp
        | GuestMsr::SysenterEip => canonical(value),
        GuestMsr::Star => true,
        GuestMsr::Sfmask | GuestMsr::SysenterCs => value >> 32 == 0,
        GuestMsr::Pat => valid_pat(value),
        GuestMsr::TscAux => crate::virt::rdtscp_offered() && value >> 32 == 0,
    }
}

/// RDMSR: `Some(value)` for EDX:EAX, `None` for #GP.
pub fn read(vcpu: &(impl VcpuBackend + ?Sized), host: &impl Host, index: u32) -> Option<u64> {
    if index == IA32_TSC {
        return Some(host.tsc());
    }
    if let Some(v) = read_only_constant(index) {
        return Some(v);
    }
    let msr = GuestMsr::from_index(index)?;
    if msr == GuestMsr::TscAux && !crate::virt::rdtscp_offered() {
        return None;
    }
    Some(vcpu.msr(msr))
}

/// WRMSR of `value`: `true` when done, `false` for #GP (nothing changed).
pub fn write(vcpu: &mut (impl VcpuBackend + ?Sized), index: u32, value: u64) -> bool {
    if write_ignored(index) {
        return true;
    }
    let Some(msr) = GuestMsr::from_index(index) else {
        return false;
    };
    if !write_ok(msr, value, vcpu.msr(msr)) {
        return false;
    }
    vcpu.set_msr(msr, value);
    true
}

/// Handles one RDMSR/WRMSR exit: EDX:EAX loaded or stored and RIP moved
/// on, or #GP injected (RIP stays at the instruction, as the fault does).
pub fn handle(vcpu: &mut (impl VcpuBackend + ?Sized), host: &impl Host, write_op: bool, len: u64) {
    let index = vcpu.regs().rcx as u32;
    if write_op {
        let value = ((vcpu.regs().rdx & 0xffff_ffff) << 32) | (vcpu.rax() & 0xffff_ffff);
        if write(vcpu, index, value) {
            vcpu.skip(len);
        } else {
            vcpu.inject_gp();
        }
    } else {
        match read(vcpu, host, index) {
            Some(v) => {
                vcpu.set_rax(v & 0xffff_ffff);
                vcpu.regs().rdx = v >> 32;
                vcpu.skip(len);
            }
            None => vcpu.inject_gp(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_constants() {
        // Linux 6.1 reads these with a plain RDMSR (verify_cpu before any
        // IDT on Intel: a #GP was a triple fault under Bochs).
        assert_eq!(read_only_constant(0x1a0), Some((1 << 11) | (1 << 12)));
        assert_eq!(read_only_constant(0xc001_0055), Some(0));
        assert_eq!(read_only_constant(0x1b), None, "APIC_BASE stays #GP");
        // The microcode revision: written 0, read back (Intel early init).
        assert_eq!(read_only_constant(0x8b), Some(1 << 32));
        assert!(write_ignored(0x8b));
        assert!(!write_ignored(0x1a0) && !write_ignored(0xc001_0055));
        // Writes stay #GP: neither is a GuestMsr.
        assert_eq!(GuestMsr::from_index(0x1a0), None);
        assert_eq!(GuestMsr::from_index(0xc001_0055), None);
    }

    #[test]
    fn canonical_addresses() {
        assert!(canonical(0));
        assert!(canonical(0x0000_7fff_ffff_ffff));
        assert!(canonical(0xffff_8000_0000_0000));
        assert!(canonical(u64::MAX));
        assert!(!canonical(0x0000_8000_0000_0000));
        assert!(!canonical(0xfff7_ffff_ffff_ffff));
    }

    #[test]
    fn pat_types() {
        assert!(valid_pat(0x0007_0406_0007_0406));
        assert!(valid_pat(0x0105_0401_0007_0406));
        assert!(!valid_pat(0x0007_0406_0007_0402));
        assert!(!valid_pat(0x0807_0406_0007_0406));
    }

    #[test]
    fn efer_rules() {
        let cur = (1 << 8) | (1 << 10) | (1 << 11);
        assert!(write_ok(GuestMsr::Efer, cur | 1, cur), "SCE on");
        assert!(write_ok(GuestMsr::Efer, cur & !(1 << 11), cur), "NXE off");
        assert!(!write_ok(GuestMsr::Efer, cur & !(1 << 8), cur), "LME off");
        assert!(!write_ok(GuestMsr::Efer, cur & !(1 << 10), cur), "LMA off");
        assert!(!write_ok(GuestMsr::Efer, cur | (1 << 12), cur), "SVME");
        assert!(!write_ok(GuestMsr::Efer, cur | (1 << 63), cur), "reserved");
    }

    #[test]
    fn other_rules() {
        assert!(write_ok(GuestMsr::Star, u64::MAX, 0));
        assert!(write_ok(GuestMsr::Sfmask, 0x4_7700, 0));
        assert!(!write_ok(GuestMsr::Sfmask, 1 << 32, 0));
        assert!(!write_ok(GuestMsr::SysenterCs, 1 << 40, 0));
        for m in [
            GuestMsr::FsBase,
            GuestMsr::GsBase,
            GuestMsr::KernelGsBase,
            GuestMsr::Lstar,
        ] {
            assert!(write_ok(m, 0xffff_ffff_8100_0000, 0), "{m:?}");
            assert!(!write_ok(m, 0x8000_0000_0000_0000, 0), "{m:?}");
        }
        assert_eq!(
            GuestMsr::from_index(0xc000_0102),
            Some(GuestMsr::KernelGsBase)
        );
        assert_eq!(GuestMsr::from_index(0x1b), None, "APIC_BASE stays #GP");
        for m in GuestMsr::ALL {
            assert_eq!(GuestMsr::from_index(m.index()), Some(m));
        }
    }
}
