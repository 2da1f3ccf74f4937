//! The vendor-neutral vCPU register file and exit reasons.
#![forbid(unsafe_code)]

/// The guest's general-purpose registers, saved and restored around each
/// run. RIP, RSP and RFLAGS live in the backend's control structure.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// Which hardware runs guests on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Intel VT-x with EPT.
    Vmx,
    /// AMD-V with nested paging.
    Svm,
}

impl Backend {
    /// Name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vmx => "VT-x/EPT",
            Self::Svm => "AMD-V/NPT",
        }
    }
}

/// Why a vCPU stopped running guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VmExit {
    /// VMCALL / VMMCALL: a hypercall; the instruction is `len` bytes long.
    Hypercall { len: u64 },
    /// CPUID with the leaf in EAX and subleaf in ECX.
    Cpuid { len: u64 },
    /// RDMSR (`write == false`) or WRMSR of the MSR in ECX.
    Msr { write: bool, len: u64 },
    /// IN/OUT to `port`.
    Io {
        port: u16,
        write: bool,
        size: u8,
        len: u64,
    },
    /// HLT.
    Hlt { len: u64 },
    /// XSETBV (XCR number in ECX, value in EDX:EAX).
    Xsetbv { len: u64 },
    /// A host interrupt arrived (timer, IPI): the host handles it.
    ExternalInterrupt,
    /// The guest can take an interrupt now (an interrupt window the
    /// hypervisor asked for to inject an upcall).
    InterruptWindow,
    /// A guest-physical access the nested page tables do not allow.
    NestedPageFault { gpa: u64, write: bool, fetch: bool },
    /// Triple fault (the guest is dead).
    Shutdown,
    /// An instruction the hypervisor never lets guests run (VMRUN, VMXON,
    /// INVD, ...), named for the log.
    Forbidden { what: &'static str },
    /// Entry failed: the backend's state checks rejected the guest state.
    InvalidState { detail: u64 },
    /// An instruction the guest may not use, answered as a CPU without it
    /// would: #UD (`ud == true`) or #GP(0) in the guest (INVLPGA, RDPMC).
    Refuse { ud: bool, what: &'static str },
    /// A write to control register `cr` (0 or 4) the hypervisor checks
    /// before the guest gets it (`virt::cr`). `len` is the instruction's
    /// length where the CPU reports it.
    CrWrite {
        cr: u8,
        source: CrSource,
        len: Option<u64>,
    },
    /// MOV to (`write`) or from debug register `dr` (AMD-V intercepts
    /// them: `virt::cr::emulate_dr`). `gpr` names the general-purpose
    /// register where the CPU says (decode assists), `len` the length.
    DrAccess {
        dr: u8,
        write: bool,
        gpr: Option<u8>,
        len: Option<u64>,
    },
    /// Any exit the hypervisor does not understand.
    Unknown { code: u64, info1: u64, info2: u64 },
}

/// Where the value of an intercepted control-register write comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrSource {
    /// MOV CRn, reg: general-purpose register number (0 = RAX ... 15).
    Gpr(u8),
    /// LMSW with this 16-bit operand (CR0 bits 0-3 only).
    Lmsw(u16),
    /// CLTS (clears CR0.TS).
    Clts,
    /// Unknown: the CPU gave no decode information (AMD-V without decode
    /// assists); the handler decodes the instruction at RIP itself.
    Decode,
}
