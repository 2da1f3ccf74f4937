//! CPU identification and the virtualization features the CPU offers.
//!
//! References: Intel SDM Vol. 2A (CPUID), Vol. 3D Appendix A (VMX
//! capability MSRs), Vol. 3C 24.7 (IA32_FEATURE_CONTROL); AMD APM Vol. 2
//! 15.4 (enabling SVM) and Vol. 3 Appendix E (CPUID Fn8000_000A).

use core::arch::x86_64::{__cpuid, __cpuid_count, CpuidResult};
use core::fmt;

use arrayvec::ArrayString;
use x86_64::registers::model_specific::Msr;

/// `cpuid` for `leaf`, subleaf 0.
pub fn cpuid(leaf: u32) -> CpuidResult {
    // CPUID is available on every x86_64 CPU.
    __cpuid_count(leaf, 0)
}

/// Reads an MSR.
///
/// # Safety
/// The MSR must exist on this CPU (else #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    // SAFETY: the caller guarantees the MSR exists.
    unsafe { Msr::new(msr).read() }
}

/// Writes an MSR.
///
/// # Safety
/// The MSR must exist and the value must be valid and safe for it.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the write is valid and harmless.
    unsafe { Msr::new(msr).write(value) }
}

/// Time stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; CR4.TSD is clear (we never set it).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Stops this CPU for good (interrupts off, HLT loop; an NMI returns to the
/// loop).
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Which hardware virtualization the CPU offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    /// GenuineIntel.
    Intel,
    /// AuthenticAMD (or HygonGenuine).
    Amd,
    /// Anything else.
    Other,
}

/// What the boot banner says about the CPU.
#[derive(Debug, Clone)]
pub struct CpuInfo {
    /// The vendor string from leaf 0.
    pub vendor_string: ArrayString<12>,
    /// Vendor, decoded.
    pub vendor: Vendor,
    /// The brand string (leaves 0x80000002..4), trimmed.
    pub brand: ArrayString<48>,
    /// Display family, model and stepping.
    pub family: u32,
    /// Display model.
    pub model: u32,
    /// Stepping.
    pub stepping: u32,
    /// x2APIC supported (CPUID.1:ECX[21]).
    pub x2apic: bool,
    /// What the CPU offers for virtualization.
    pub virt: VirtFeatures,
}

/// Hardware virtualization support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtFeatures {
    /// Intel VT-x.
    Vmx {
        /// IA32_FEATURE_CONTROL is locked with VMX-outside-SMX clear.
        locked_off: bool,
        /// Extended page tables.
        ept: bool,
        /// Virtual-processor identifiers.
        vpid: bool,
        /// Unrestricted guest (real mode without paging).
        unrestricted: bool,
        /// EPT 2 MiB pages.
        ept_2m: bool,
        /// INVEPT supported.
        invept: bool,
        /// INVVPID supported.
        invvpid: bool,
    },
    /// AMD-V (SVM).
    Svm {
        /// The BIOS disabled SVM (VM_CR.SVMDIS).
        locked_off: bool,
        /// Nested paging.
        npt: bool,
        /// Next-RIP save.
        nrips: bool,
        /// VMCB clean bits.
        vmcb_clean: bool,
        /// Flush by ASID.
        flush_by_asid: bool,
        /// Decode assists.
        decode_assists: bool,
        /// Pause filter.
        pause_filter: bool,
        /// Number of ASIDs.
        asids: u32,
    },
    /// Neither.
    None,
}

fn regs_str(out: &mut ArrayString<48>, regs: &[u32]) {
    for r in regs {
        for b in r.to_le_bytes() {
            if b != 0 {
                let _ = out.try_push(char::from(b));
            }
        }
    }
}

impl CpuInfo {
    /// Whether this CPU needs none of the MP spec's INIT/SIPI delays
    /// (10 ms after INIT, 200 us after each SIPI), which were written for
    /// external APICs (82489DX) and early P6 parts. Linux keeps them only
    /// for older CPUs: none for Intel family 6 (which also covers every
    /// Intel CPU with VT-x) and AMD from family 0xF (K8, every AMD64 part);
    /// see its `smp_quirk_init_udelay`, whose comment records that Intel
    /// confirmed the 10 ms delay is not needed.
    pub fn fast_ap_start(&self) -> bool {
        match self.vendor {
            Vendor::Intel => self.family == 6,
            Vendor::Amd => self.family >= 0xf,
            Vendor::Other => false,
        }
    }

    /// Reads CPUID (and, where CPUID says they exist, the VMX or SVM
    /// capability MSRs) on the current CPU.
    pub fn read() -> Self {
        let l0 = cpuid(0);
        let mut v = ArrayString::<48>::new();
        regs_str(&mut v, &[l0.ebx, l0.edx, l0.ecx]);
        let mut vendor_string = ArrayString::<12>::new();
        let _ = vendor_string.try_push_str(&v);
        let vendor = match vendor_string.as_str() {
            "GenuineIntel" => Vendor::Intel,
            "AuthenticAMD" | "HygonGenuine" => Vendor::Amd,
            _ => Vendor::Other,
        };

        let l1 = cpuid(1);
        let base_family = (l1.eax >> 8) & 0xf;
        let ext_family = (l1.eax >> 20) & 0xff;
        let base_model = (l1.eax >> 4) & 0xf;
        let ext_model = (l1.eax >> 16) & 0xf;
        let family = if base_family == 0xf {
            base_family + ext_family
        } else {
            base_family
        };
        let model = if base_family == 0x6 || base_family == 0xf {
            (ext_model << 4) | base_model
        } else {
            base_model
        };

        let max_ext = cpuid(0x8000_0000).eax;
        let mut brand = ArrayString::<48>::new();
        if max_ext >= 0x8000_0004 {
            for leaf in 0x8000_0002..=0x8000_0004u32 {
                let r = cpuid(leaf);
                regs_str(&mut brand, &[r.eax, r.ebx, r.ecx, r.edx]);
            }
        }
        let trimmed = ArrayString::<48>::from(brand.trim()).unwrap_or_default();

        let vmx = l1.ecx & (1 << 5) != 0;
        let svm = max_ext >= 0x8000_0001 && cpuid(0x8000_0001).ecx & (1 << 2) != 0;
        let virt = if vmx {
            read_vmx()
        } else if svm {
            read_svm(max_ext)
        } else {
            VirtFeatures::None
        };

        Self {
            vendor_string,
            vendor,
            brand: trimmed,
            family,
            model,
            stepping: l1.eax & 0xf,
            x2apic: l1.ecx & (1 << 21) != 0,
            virt,
        }
    }
}

const IA32_FEATURE_CONTROL: u32 = 0x3a;
const IA32_VMX_BASIC: u32 = 0x480;
const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;
const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
const IA32_VMX_EPT_VPID_CAP: u32 = 0x48c;
const MSR_VM_CR: u32 = 0xc001_0114;

fn read_vmx() -> VirtFeatures {
    // SAFETY: CPUID.1:ECX.VMX = 1, so IA32_FEATURE_CONTROL and the VMX
    // capability MSRs exist (SDM Vol. 3D A.1).
    let (fc, basic) = unsafe { (rdmsr(IA32_FEATURE_CONTROL), rdmsr(IA32_VMX_BASIC)) };
    let locked_off = fc & 1 != 0 && fc & (1 << 2) == 0;
    // Bit 55 of IA32_VMX_BASIC: the TRUE control MSRs exist (SDM A.1).
    let procbased_msr = if basic & (1 << 55) != 0 {
        IA32_VMX_TRUE_PROCBASED_CTLS
    } else {
        IA32_VMX_PROCBASED_CTLS
    };
    // SAFETY: chosen per IA32_VMX_BASIC bit 55 above.
    let procbased = unsafe { rdmsr(procbased_msr) };
    // Allowed-1 settings are the high half; bit 31 = activate secondary controls.
    let secondary_ok = procbased & (1 << 63) != 0;
    let ctls2 = if secondary_ok {
        // SAFETY: the secondary controls MSR exists when they can be activated.
        (unsafe { rdmsr(IA32_VMX_PROCBASED_CTLS2) }) >> 32
    } else {
        0
    };
    let ept = ctls2 & (1 << 1) != 0;
    let vpid = ctls2 & (1 << 5) != 0;
    let cap = if ept || vpid {
        // SAFETY: IA32_VMX_EPT_VPID_CAP exists when EPT or VPID can be enabled.
        unsafe { rdmsr(IA32_VMX_EPT_VPID_CAP) }
    } else {
        0
    };
    VirtFeatures::Vmx {
        locked_off,
        ept,
        vpid,
        unrestricted: ctls2 & (1 << 7) != 0,
        ept_2m: cap & (1 << 16) != 0,
        invept: cap & (1 << 20) != 0,
        invvpid: cap & (1 << 32) != 0,
    }
}

fn read_svm(max_ext: u32) -> VirtFeatures {
    let f = if max_ext >= 0x8000_000a {
        __cpuid(0x8000_000a)
    } else {
        CpuidResult {
            eax: 0,
            ebx: 0,
            ecx: 0,
            edx: 0,
        }
    };
    // SAFETY: VM_CR exists on every CPU with SVM (APM Vol. 2 15.30.1).
    let vm_cr = unsafe { rdmsr(MSR_VM_CR) };
    VirtFeatures::Svm {
        locked_off: vm_cr & (1 << 4) != 0,
        npt: f.edx & 1 != 0,
        nrips: f.edx & (1 << 3) != 0,
        vmcb_clean: f.edx & (1 << 5) != 0,
        flush_by_asid: f.edx & (1 << 6) != 0,
        decode_assists: f.edx & (1 << 7) != 0,
        pause_filter: f.edx & (1 << 10) != 0,
        asids: f.ebx,
    }
}

fn flag(f: &mut fmt::Formatter<'_>, on: bool, name: &str) -> fmt::Result {
    write!(f, " {}{name}", if on { '+' } else { '-' })
}

impl fmt::Display for VirtFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Vmx {
                locked_off,
                ept,
                vpid,
                unrestricted,
                ept_2m,
                invept,
                invvpid,
            } => {
                write!(f, "Intel VT-x (VMX)")?;
                flag(f, ept, "EPT")?;
                flag(f, ept_2m, "EPT-2M")?;
                flag(f, invept, "INVEPT")?;
                flag(f, vpid, "VPID")?;
                flag(f, invvpid, "INVVPID")?;
                flag(f, unrestricted, "unrestricted-guest")?;
                if locked_off {
                    write!(
                        f,
                        " (DISABLED by firmware: IA32_FEATURE_CONTROL locked with VMX off; enable VT-x in the BIOS setup)"
                    )?;
                }
                Ok(())
            }
            Self::Svm {
                locked_off,
                npt,
                nrips,
                vmcb_clean,
                flush_by_asid,
                decode_assists,
                pause_filter,
                asids,
            } => {
                write!(f, "AMD-V (SVM)")?;
                flag(f, npt, "NPT")?;
                flag(f, nrips, "NRIPS")?;
                flag(f, vmcb_clean, "VMCB-clean")?;
                flag(f, flush_by_asid, "flush-by-ASID")?;
                flag(f, decode_assists, "decode-assists")?;
                flag(f, pause_filter, "pause-filter")?;
                write!(f, " ASIDs={asids}")?;
                if locked_off {
                    write!(
                        f,
                        " (DISABLED by firmware: VM_CR.SVMDIS set; enable SVM in the BIOS setup)"
                    )?;
                }
                Ok(())
            }
            Self::None => write!(
                f,
                "none: this CPU offers neither VT-x nor AMD-V; guests cannot run"
            ),
        }
    }
}
