//! Vendor exit information to [`VmExit`], as pure functions so the host
//! tests can check every mapping.
//!
//! AMD: APM Vol. 2 Appendix C (exit codes), 15.10.2 (IOIO EXITINFO1),
//! 15.25.6 (#NPF EXITINFO1/2). Intel: SDM Vol. 3C Appendix C (basic exit
//! reasons), Table 28-5 (I/O qualification), Table 28-7 (EPT violation
//! qualification).
#![forbid(unsafe_code)]

use super::{CrSource, VmExit};

/// What an SVM #VMEXIT left in the VMCB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvmExitInfo {
    /// EXITCODE.
    pub code: u64,
    /// EXITINFO1.
    pub info1: u64,
    /// EXITINFO2.
    pub info2: u64,
    /// nRIP - RIP when the CPU has NRIPS, else `None`.
    pub next_rip_len: Option<u64>,
    /// The CPU has decode assists (EXITINFO1 of a MOV CR names the
    /// register, APM Vol. 2 15.33.1).
    pub decode_assists: bool,
}

/// AMD-V's exit code for VMMCALL (APM Vol. 2, appendix C).
pub const SVM_VMMCALL: u64 = 0x81;

/// A VMMCALL exit: the instruction's length from next-RIP where the CPU
/// saves it, else VMMCALL's 3 bytes. The run path decodes it without
/// reading EXITINFO (`SvmVcpu::decode`); [`svm`] gives the same.
#[inline(always)]
pub fn svm_hypercall(next_rip_len: Option<u64>) -> VmExit {
    VmExit::Hypercall {
        len: next_rip_len.unwrap_or(3),
    }
}

/// Decodes an SVM exit.
#[inline(always)]
pub fn svm(e: SvmExitInfo) -> VmExit {
    let len = |fallback: u64| e.next_rip_len.unwrap_or(fallback);
    match e.code {
        SVM_VMMCALL => svm_hypercall(e.next_rip_len),
        0x72 => VmExit::Cpuid { len: len(2) },
        0x7c => VmExit::Msr {
            write: e.info1 & 1 != 0,
            len: len(2),
        },
        0x7b => VmExit::Io {
            port: (e.info1 >> 16) as u16,
            write: e.info1 & 1 == 0,
            // SZ8/SZ16/SZ32 are one-hot in bits 4-6.
            size: match (e.info1 >> 4) & 7 {
                1 => 1,
                2 => 2,
                _ => 4,
            },
            len: len(0),
        },
        0x78 => VmExit::Hlt { len: len(1) },
        0x8d => VmExit::Xsetbv { len: len(3) },   // 0f 01 d1
        0x60..=0x63 => VmExit::ExternalInterrupt, // INTR, NMI, SMI, INIT
        0x64 => VmExit::InterruptWindow,          // VINTR (APM 15.21.4)
        0x400 => VmExit::NestedPageFault {
            gpa: e.info2,
            write: e.info1 & 2 != 0,
            fetch: e.info1 & 0x10 != 0,
        },
        0x7f => VmExit::Shutdown,
        // Writes of CR0 (0x10) and CR4 (0x14): with decode assists bit 63
        // of EXITINFO1 marks a MOV CR and bits 3:0 name its register.
        0x10 | 0x14 => VmExit::CrWrite {
            cr: (e.code - 0x10) as u8,
            source: if e.decode_assists && e.info1 >> 63 != 0 {
                CrSource::Gpr((e.info1 & 0xf) as u8)
            } else {
                CrSource::Decode
            },
            len: e.next_rip_len,
        },
        // MOV from (0x20-0x27) and to (0x30-0x37) DRn: with decode assists
        // EXITINFO1 bits 3:0 name the register (APM Vol. 2 15.33.2).
        c @ (0x20..=0x27 | 0x30..=0x37) => VmExit::DrAccess {
            dr: (c & 7) as u8,
            write: c >= 0x30,
            gpr: e.decode_assists.then_some((e.info1 & 0xf) as u8),
            len: e.next_rip_len,
        },
        // RDPMC: no counters are virtualized, #GP as for an invalid counter.
        0x6f => VmExit::Refuse {
            ud: false,
            what: "RDPMC",
        },
        // INVLPGA: guests are not told SVM exists (CPUID), so #UD, as a CPU
        // without it; run natively it would flush any ASID's entries.
        0x7a => VmExit::Refuse {
            ud: true,
            what: "INVLPGA",
        },
        0x76 => VmExit::Forbidden { what: "INVD" },
        0x89 => VmExit::Forbidden { what: "WBINVD" },
        0x8a | 0x8b => VmExit::Forbidden {
            what: "MONITOR/MWAIT",
        },
        0x7d => VmExit::Forbidden {
            what: "a task switch",
        },
        0x80..=0x86 => VmExit::Forbidden {
            what: "an SVM instruction",
        },
        c if c & 0xffff_ffff == 0xffff_ffff => VmExit::InvalidState { detail: c },
        c => VmExit::Unknown {
            code: c,
            info1: e.info1,
            info2: e.info2,
        },
    }
}

/// What a VMX VM exit left in the VMCS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmxExitInfo {
    /// Exit reason (bit 31: VM-entry failure).
    pub reason: u64,
    /// Exit qualification.
    pub qualification: u64,
    /// VM-exit instruction length.
    pub instruction_len: u64,
    /// Guest-physical address (EPT violations).
    pub guest_physical: u64,
}

/// VT-x's basic exit reason for VMCALL (SDM Vol. 3D, appendix C).
const VMX_VMCALL_BASIC: u64 = 18;
/// The whole exit reason of a VMCALL exit (no entry failure, no other
/// bit set): what the run path compares before reading anything else.
pub const VMX_VMCALL: u64 = VMX_VMCALL_BASIC;

/// A VMCALL exit of `len` bytes; the run path decodes it without reading
/// the qualification or the guest-physical address (`VmxVcpu::decode`);
/// [`vmx`] gives the same.
#[inline(always)]
pub fn vmx_hypercall(len: u64) -> VmExit {
    VmExit::Hypercall { len }
}

/// Decodes a VMX exit.
pub fn vmx(e: VmxExitInfo) -> VmExit {
    let (q, len) = (e.qualification, e.instruction_len);
    if e.reason & (1 << 31) != 0 {
        return VmExit::InvalidState {
            detail: e.reason & 0xffff,
        };
    }
    match e.reason & 0xffff {
        0 | 1 => VmExit::ExternalInterrupt, // NMI (exception bitmap is empty), interrupt
        52 => VmExit::ExternalInterrupt,    // VMX-preemption timer: the slice is over
        7 => VmExit::InterruptWindow,       // interrupt-window exiting (SDM 3C 26.2.1.2)
        2 => VmExit::Shutdown,
        9 => VmExit::Forbidden {
            what: "a task switch",
        },
        10 => VmExit::Cpuid { len },
        12 => VmExit::Hlt { len },
        13 => VmExit::Forbidden { what: "INVD" },
        // RDPMC exiting: #GP, as on AMD-V.
        15 => VmExit::Refuse {
            ud: false,
            what: "RDPMC",
        },
        // Control-register access (Table 28-3): MOV to CR (type 0), CLTS
        // (2), LMSW (3, source in 31:16); only CR0 and CR4 exit (every bit
        // of their guest/host masks is set).
        28 if matches!(q & 0xf, 0 | 4) && (q >> 4) & 3 != 1 => VmExit::CrWrite {
            cr: (q & 0xf) as u8,
            source: match (q >> 4) & 3 {
                0 => CrSource::Gpr(((q >> 8) & 0xf) as u8),
                2 => CrSource::Clts,
                _ => CrSource::Lmsw((q >> 16) as u16),
            },
            len: Some(len),
        },
        VMX_VMCALL_BASIC => vmx_hypercall(len),
        19..=27 | 50 | 53 => VmExit::Forbidden {
            what: "a VMX instruction",
        },
        30 => VmExit::Io {
            port: (q >> 16) as u16,
            write: q & 8 == 0,
            size: (q & 7) as u8 + 1,
            len,
        },
        31 => VmExit::Msr { write: false, len },
        32 => VmExit::Msr { write: true, len },
        36 | 39 => VmExit::Forbidden {
            what: "MONITOR/MWAIT",
        },
        48 => VmExit::NestedPageFault {
            gpa: e.guest_physical,
            write: q & 2 != 0,
            fetch: q & 4 != 0,
        },
        54 => VmExit::Forbidden { what: "WBINVD" },
        55 => VmExit::Xsetbv { len },
        r => VmExit::Unknown {
            code: r,
            info1: q,
            info2: e.guest_physical,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(code: u64, info1: u64, info2: u64) -> VmExit {
        svm(SvmExitInfo {
            code,
            info1,
            info2,
            next_rip_len: None,
            decode_assists: false,
        })
    }

    fn v(reason: u64, qualification: u64, guest_physical: u64) -> VmExit {
        vmx(VmxExitInfo {
            reason,
            qualification,
            instruction_len: 3,
            guest_physical,
        })
    }

    #[test]
    /// The run path's shortcut for VMMCALL (no EXITINFO read) decodes as
    /// the full decoder does, whatever EXITINFO holds.
    fn svm_hypercall_matches_the_decoder() {
        for next_rip_len in [None, Some(3), Some(4)] {
            for (info1, info2) in [(0, 0), (u64::MAX, 0x1234), (1 << 63, u64::MAX)] {
                for decode_assists in [false, true] {
                    let full = svm(SvmExitInfo {
                        code: SVM_VMMCALL,
                        info1,
                        info2,
                        next_rip_len,
                        decode_assists,
                    });
                    assert_eq!(svm_hypercall(next_rip_len), full);
                }
            }
        }
        assert_eq!(svm_hypercall(None), VmExit::Hypercall { len: 3 });
    }

    #[test]
    /// VT-x's shortcut likewise, for the reason it compares whole.
    fn vmx_hypercall_matches_the_decoder() {
        for len in [1, 3, 15] {
            for (qualification, guest_physical) in [(0, 0), (u64::MAX, 0x1000)] {
                let full = vmx(VmxExitInfo {
                    reason: VMX_VMCALL,
                    qualification,
                    instruction_len: len,
                    guest_physical,
                });
                assert_eq!(vmx_hypercall(len), full);
            }
        }
    }

    #[test]
    fn svm_exits() {
        assert_eq!(s(0x81, 0, 0), VmExit::Hypercall { len: 3 });
        assert_eq!(
            svm(SvmExitInfo {
                code: 0x81,
                info1: 0,
                info2: 0,
                next_rip_len: Some(4),
                decode_assists: false,
            }),
            VmExit::Hypercall { len: 4 }
        );
        assert_eq!(s(0x72, 0, 0), VmExit::Cpuid { len: 2 });
        assert_eq!(s(0x8d, 0, 0), VmExit::Xsetbv { len: 3 });
        assert_eq!(
            s(0x7c, 1, 0),
            VmExit::Msr {
                write: true,
                len: 2
            }
        );
        assert_eq!(
            s(0x7c, 0, 0),
            VmExit::Msr {
                write: false,
                len: 2
            }
        );
        // OUT dx, ax to 0x3f8: type 0 (out), SZ16.
        assert_eq!(
            s(0x7b, (0x3f8 << 16) | (2 << 4), 0),
            VmExit::Io {
                port: 0x3f8,
                write: true,
                size: 2,
                len: 0
            }
        );
        assert_eq!(
            s(0x7b, (0x60 << 16) | (1 << 4) | 1, 0),
            VmExit::Io {
                port: 0x60,
                write: false,
                size: 1,
                len: 0
            }
        );
        assert_eq!(
            s(0x400, 0x6, 0x80_1000),
            VmExit::NestedPageFault {
                gpa: 0x80_1000,
                write: true,
                fetch: false
            }
        );
        assert_eq!(
            s(0x400, 0x14, 0x1000),
            VmExit::NestedPageFault {
                gpa: 0x1000,
                write: false,
                fetch: true
            }
        );
        assert_eq!(s(0x7f, 0, 0), VmExit::Shutdown);
        assert_eq!(
            s(0x14, 1 << 63 | 3, 0),
            VmExit::CrWrite {
                cr: 4,
                source: CrSource::Decode,
                len: None
            }
        );
        assert_eq!(
            svm(SvmExitInfo {
                code: 0x10,
                info1: 1 << 63 | 9,
                info2: 0,
                next_rip_len: Some(4),
                decode_assists: true,
            }),
            VmExit::CrWrite {
                cr: 0,
                source: CrSource::Gpr(9),
                len: Some(4)
            }
        );
        assert!(matches!(s(0x6f, 0, 0), VmExit::Refuse { ud: false, .. }));
        assert_eq!(
            s(0x37, 5, 0),
            VmExit::DrAccess {
                dr: 7,
                write: true,
                gpr: None,
                len: None
            }
        );
        assert!(matches!(
            s(0x21, 0, 0),
            VmExit::DrAccess {
                dr: 1,
                write: false,
                ..
            }
        ));
        assert!(matches!(s(0x7a, 0, 0), VmExit::Refuse { ud: true, .. }));
        assert_eq!(s(0x60, 0, 0), VmExit::ExternalInterrupt);
        // VINTR: the interrupt window for an upcall, whatever EXITINFO holds.
        assert_eq!(s(0x64, u64::MAX, u64::MAX), VmExit::InterruptWindow);
        assert_eq!(
            s(0x65, 0, 0),
            VmExit::Unknown {
                code: 0x65,
                info1: 0,
                info2: 0
            }
        );
        assert_eq!(
            s(0x80, 0, 0),
            VmExit::Forbidden {
                what: "an SVM instruction"
            }
        );
        // QEMU writes 0x00000000ffffffff, Bochs all ones (TESTING.md).
        assert!(matches!(s(0xffff_ffff, 0, 0), VmExit::InvalidState { .. }));
        assert!(matches!(s(u64::MAX, 0, 0), VmExit::InvalidState { .. }));
        assert!(matches!(
            s(0x55, 1, 2),
            VmExit::Unknown {
                code: 0x55,
                info1: 1,
                info2: 2
            }
        ));
    }

    #[test]
    fn vmx_exits() {
        assert_eq!(v(18, 0, 0), VmExit::Hypercall { len: 3 });
        assert_eq!(v(10, 0, 0), VmExit::Cpuid { len: 3 });
        assert_eq!(v(55, 0, 0), VmExit::Xsetbv { len: 3 });
        assert_eq!(
            v(32, 0, 0),
            VmExit::Msr {
                write: true,
                len: 3
            }
        );
        // OUT to 0x80, 1 byte: size-1 = 0, direction 0.
        assert_eq!(
            v(30, 0x80 << 16, 0),
            VmExit::Io {
                port: 0x80,
                write: true,
                size: 1,
                len: 3
            }
        );
        assert_eq!(
            v(30, (0x71 << 16) | 8 | 3, 0),
            VmExit::Io {
                port: 0x71,
                write: false,
                size: 4,
                len: 3
            }
        );
        assert_eq!(
            v(48, 2, 0x80_1000),
            VmExit::NestedPageFault {
                gpa: 0x80_1000,
                write: true,
                fetch: false
            }
        );
        assert_eq!(v(2, 0, 0), VmExit::Shutdown);
        // MOV CR4, RBX; CLTS; LMSW with 0xb; MOV from CR0 is not a write.
        assert_eq!(
            v(28, 4 | (3 << 8), 0),
            VmExit::CrWrite {
                cr: 4,
                source: CrSource::Gpr(3),
                len: Some(3)
            }
        );
        assert!(matches!(
            v(28, 2 << 4, 0),
            VmExit::CrWrite {
                cr: 0,
                source: CrSource::Clts,
                ..
            }
        ));
        assert!(matches!(
            v(28, (3 << 4) | (0xb << 16), 0),
            VmExit::CrWrite {
                cr: 0,
                source: CrSource::Lmsw(0xb),
                ..
            }
        ));
        assert!(matches!(v(28, 1 << 4, 0), VmExit::Unknown { code: 28, .. }));
        assert!(matches!(v(15, 0, 0), VmExit::Refuse { ud: false, .. }));
        assert_eq!(v(52, 0, 0), VmExit::ExternalInterrupt);
        // Interrupt-window exiting; high reason bits other than 31 ignored.
        assert_eq!(v(7, u64::MAX, u64::MAX), VmExit::InterruptWindow);
        assert_eq!(v((1 << 27) | 7, 0, 0), VmExit::InterruptWindow);
        assert_eq!(v((1 << 31) | 7, 0, 0), VmExit::InvalidState { detail: 7 });
        assert_eq!(v(13, 0, 0), VmExit::Forbidden { what: "INVD" });
        assert_eq!(
            v(27, 0, 0),
            VmExit::Forbidden {
                what: "a VMX instruction"
            }
        );
        assert_eq!(v((1 << 31) | 33, 0, 0), VmExit::InvalidState { detail: 33 });
        assert!(matches!(v(29, 5, 0), VmExit::Unknown { code: 29, .. }));
    }
}
