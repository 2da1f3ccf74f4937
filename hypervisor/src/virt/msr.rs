//! The MSRs a guest may own (issue 13), by name. Which of them a guest may
//! read or write, and with what values, is policy (`hypercall/msr.rs`);
//! where each one lives is the backend's (`VcpuBackend::msr` /
//! `set_msr`): the VMCB's state save area on AMD-V (loaded by VMRUN and
//! VMLOAD, APM Vol. 2 15.5.1, Appendix B), the VMCS guest-state area on
//! VT-x where it has a field (SDM Vol. 3C 25.4.1), else the vCPU's own
//! copy swapped at switch-in and switch-out (`vmx_cpustate.rs`).

/// One guest-owned MSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMsr {
    /// IA32_SYSENTER_CS (0x174).
    SysenterCs,
    /// IA32_SYSENTER_ESP (0x175).
    SysenterEsp,
    /// IA32_SYSENTER_EIP (0x176).
    SysenterEip,
    /// IA32_PAT (0x277).
    Pat,
    /// IA32_EFER (0xC000_0080), as the guest sees it (AMD-V's SVME
    /// hidden).
    Efer,
    /// IA32_STAR (0xC000_0081).
    Star,
    /// IA32_LSTAR (0xC000_0082).
    Lstar,
    /// IA32_CSTAR (0xC000_0083).
    Cstar,
    /// IA32_FMASK (0xC000_0084).
    Sfmask,
    /// IA32_FS_BASE (0xC000_0100).
    FsBase,
    /// IA32_GS_BASE (0xC000_0101).
    GsBase,
    /// IA32_KERNEL_GS_BASE (0xC000_0102).
    KernelGsBase,
    /// IA32_TSC_AUX (0xC000_0103).
    TscAux,
}

impl GuestMsr {
    /// Every guest-owned MSR.
    pub const ALL: [Self; 13] = [
        Self::SysenterCs,
        Self::SysenterEsp,
        Self::SysenterEip,
        Self::Pat,
        Self::Efer,
        Self::Star,
        Self::Lstar,
        Self::Cstar,
        Self::Sfmask,
        Self::FsBase,
        Self::GsBase,
        Self::KernelGsBase,
        Self::TscAux,
    ];

    /// The MSR's index (ECX of RDMSR/WRMSR).
    pub const fn index(self) -> u32 {
        match self {
            Self::SysenterCs => 0x174,
            Self::SysenterEsp => 0x175,
            Self::SysenterEip => 0x176,
            Self::Pat => 0x277,
            Self::Efer => 0xc000_0080,
            Self::Star => 0xc000_0081,
            Self::Lstar => 0xc000_0082,
            Self::Cstar => 0xc000_0083,
            Self::Sfmask => 0xc000_0084,
            Self::FsBase => 0xc000_0100,
            Self::GsBase => 0xc000_0101,
            Self::KernelGsBase => 0xc000_0102,
            Self::TscAux => 0xc000_0103,
        }
    }

    /// The guest-owned MSR with this index, if any.
    pub fn from_index(index: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.index() == index)
    }
}
