//! Speculative-execution mitigations: which ones run, chosen once at boot
//! from what the CPU reports (CPUID and IA32_ARCH_CAPABILITIES) and the
//! `spec-ctrl=` option, in the spirit of Xen's `spec-ctrl=`. Pure: the
//! hardware is read and the barriers are run in `arch/spec.rs`; this file
//! is the decision, the log lines and the CPUID a guest sees, host-tested.
//!
//! Sources: Intel, "Speculative Execution Side Channel Mitigations" and
//! "CPUID Enumeration and Architectural MSRs"; Intel SDM Vol. 4 (MSRs 0x48
//! IA32_SPEC_CTRL, 0x49 IA32_PRED_CMD, 0x10A IA32_ARCH_CAPABILITIES, 0x10B
//! IA32_FLUSH_CMD); AMD, "Software Techniques for Managing Speculation on
//! AMD Processors" (CPUID Fn8000_0008 EBX); Xen's
//! docs/misc/xen-command-line.pandoc (`spec-ctrl=`).
#![forbid(unsafe_code)]

use core::fmt;

/// CPUID.(EAX=7,ECX=0):EDX bits.
pub mod leaf7 {
    /// VERW also overwrites the CPU's fill buffers, store buffers and load
    /// ports (the MDS/TAA microcode).
    pub const MD_CLEAR: u32 = 1 << 10;
    /// IA32_SPEC_CTRL.IBRS and IA32_PRED_CMD.IBPB (Intel).
    pub const IBRS_IBPB: u32 = 1 << 26;
    /// IA32_SPEC_CTRL.STIBP.
    pub const STIBP: u32 = 1 << 27;
    /// IA32_FLUSH_CMD.L1D_FLUSH.
    pub const L1D_FLUSH: u32 = 1 << 28;
    /// IA32_ARCH_CAPABILITIES exists.
    pub const ARCH_CAPABILITIES: u32 = 1 << 29;
    /// IA32_SPEC_CTRL.SSBD.
    pub const SSBD: u32 = 1 << 31;
    /// CPUID.(EAX=7,ECX=0):EBX[11]: TSX restricted transactional memory.
    pub const EBX_RTM: u32 = 1 << 11;
}

/// CPUID Fn8000_0008 EBX bits (AMD).
pub mod ext8 {
    /// IA32_PRED_CMD.IBPB.
    pub const IBPB: u32 = 1 << 12;
    /// IA32_SPEC_CTRL.IBRS.
    pub const IBRS: u32 = 1 << 14;
    /// IA32_SPEC_CTRL.STIBP.
    pub const STIBP: u32 = 1 << 15;
    /// IBRS always on / STIBP always on / IBRS preferred / IBRS same mode:
    /// hints about IA32_SPEC_CTRL, meaningless without it.
    pub const SPEC_CTRL_HINTS: u32 = 0xf << 16;
    /// IA32_SPEC_CTRL.SSBD.
    pub const SSBD: u32 = 1 << 24;
    /// VIRT_SPEC_CTRL (the SSBD interface of a hypervisor).
    pub const VIRT_SSBD: u32 = 1 << 25;
}

/// IA32_ARCH_CAPABILITIES (MSR 0x10A) bits.
pub mod arch_cap {
    /// Not susceptible to Rogue Data Cache Load (Meltdown), nor to L1TF.
    pub const RDCL_NO: u64 = 1 << 0;
    /// Enhanced IBRS.
    pub const IBRS_ALL: u64 = 1 << 1;
    /// RET may predict from the BTB when the RSB is empty.
    pub const RSBA: u64 = 1 << 2;
    /// A hypervisor need not flush the L1D on VM entry.
    pub const SKIP_L1DFL_VMENTRY: u64 = 1 << 3;
    /// Not susceptible to Speculative Store Bypass.
    pub const SSB_NO: u64 = 1 << 4;
    /// Not susceptible to Microarchitectural Data Sampling.
    pub const MDS_NO: u64 = 1 << 5;
    /// Not susceptible to TSX Asynchronous Abort.
    pub const TAA_NO: u64 = 1 << 8;
    /// Names, for the log line.
    pub const NAMES: [(u64, &str); 7] = [
        (RDCL_NO, "RDCL_NO"),
        (IBRS_ALL, "IBRS_ALL"),
        (RSBA, "RSBA"),
        (SKIP_L1DFL_VMENTRY, "SKIP_L1DFL_VMENTRY"),
        (SSB_NO, "SSB_NO"),
        (MDS_NO, "MDS_NO"),
        (TAA_NO, "TAA_NO"),
    ];
}

/// What the CPU reports about speculation (read by `arch/spec.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSpec {
    /// GenuineIntel: the only vendor affected by MDS, TAA and L1TF
    /// (AMD documents its CPUs as not affected by either).
    pub intel: bool,
    /// CPUID.(EAX=7,ECX=0):EBX.
    pub leaf7_ebx: u32,
    /// CPUID.(EAX=7,ECX=0):EDX.
    pub leaf7_edx: u32,
    /// CPUID Fn8000_0008 EBX (0 where the leaf is missing).
    pub ext8_ebx: u32,
    /// IA32_ARCH_CAPABILITIES, 0 unless leaf 7 EDX says it exists.
    pub arch_caps: u64,
}

impl CpuSpec {
    /// IA32_PRED_CMD.IBPB exists (Intel's or AMD's enumeration).
    pub fn has_ibpb(&self) -> bool {
        self.leaf7_edx & leaf7::IBRS_IBPB != 0 || self.ext8_ebx & ext8::IBPB != 0
    }

    /// IA32_FLUSH_CMD exists.
    pub fn has_l1d_flush(&self) -> bool {
        self.leaf7_edx & leaf7::L1D_FLUSH != 0
    }

    fn cap(&self, bit: u64) -> bool {
        self.leaf7_edx & leaf7::ARCH_CAPABILITIES != 0 && self.arch_caps & bit != 0
    }
}

impl fmt::Display for CpuSpec {
    /// `IBRS/IBPB STIBP ... ; ARCH_CAPABILITIES 0x.. (RDCL_NO ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const LEAF7: [(u32, &str); 6] = [
            (leaf7::IBRS_IBPB, "IBRS/IBPB"),
            (leaf7::STIBP, "STIBP"),
            (leaf7::SSBD, "SSBD"),
            (leaf7::MD_CLEAR, "MD_CLEAR"),
            (leaf7::L1D_FLUSH, "L1D_FLUSH"),
            (leaf7::ARCH_CAPABILITIES, "ARCH_CAPABILITIES"),
        ];
        const EXT8: [(u32, &str); 4] = [
            (ext8::IBPB, "AMD-IBPB"),
            (ext8::IBRS, "AMD-IBRS"),
            (ext8::STIBP, "AMD-STIBP"),
            (ext8::SSBD, "AMD-SSBD"),
        ];
        let mut any = false;
        for (bit, name) in LEAF7 {
            if self.leaf7_edx & bit != 0 {
                write!(f, "{}{name}", if any { " " } else { "" })?;
                any = true;
            }
        }
        for (bit, name) in EXT8 {
            if self.ext8_ebx & bit != 0 {
                write!(f, "{}{name}", if any { " " } else { "" })?;
                any = true;
            }
        }
        if !any {
            f.write_str("none of IBRS/IBPB, STIBP, SSBD, MD_CLEAR, L1D_FLUSH, ARCH_CAPABILITIES")?;
        }
        if self.leaf7_edx & leaf7::ARCH_CAPABILITIES != 0 {
            write!(f, "; ARCH_CAPABILITIES {:#x} (", self.arch_caps)?;
            let mut first = true;
            for (bit, name) in arch_cap::NAMES {
                if self.arch_caps & bit != 0 {
                    write!(f, "{}{name}", if first { "" } else { " " })?;
                    first = false;
                }
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// The `spec-ctrl=` option: which mitigations the operator allows (each
/// still runs only where the CPU needs and supports it). Off switches are
/// for measurement: they reopen the hole they close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecOpts {
    /// IBPB when a CPU switches to another domain's vCPU.
    pub ibpb: bool,
    /// Fill the return stack buffer after every VM exit.
    pub rsb: bool,
    /// VERW before every VM entry.
    pub verw: bool,
    /// L1D flush before every VM entry.
    pub l1d_flush: bool,
}

impl Default for SpecOpts {
    fn default() -> Self {
        Self::ALL
    }
}

/// What `spec-ctrl=` accepts, for the error message.
pub const SPEC_CTRL_VALUES: &str = "on, off, or a comma-separated list of ibpb, rsb, verw, l1d-flush, each optionally prefixed with no-";

impl SpecOpts {
    /// Every mitigation allowed (the default).
    pub const ALL: Self = Self {
        ibpb: true,
        rsb: true,
        verw: true,
        l1d_flush: true,
    };
    /// None (`spec-ctrl=off`).
    pub const NONE: Self = Self {
        ibpb: false,
        rsb: false,
        verw: false,
        l1d_flush: false,
    };

    /// Parses the value of `spec-ctrl=`: `on`, `off`, or a comma-separated
    /// list applied in order from the default (all on), e.g.
    /// `no-ibpb,no-rsb` or `off,rsb` (only the RSB filling). An empty or
    /// unknown item is an error carrying that item.
    pub fn parse(value: &str) -> Result<Self, &str> {
        let mut o = Self::ALL;
        for item in value.split(',') {
            let (name, on) = match item.get(..3) {
                Some(p) if p.eq_ignore_ascii_case("no-") => (&item[3..], false),
                _ => (item, true),
            };
            let is = |s: &str| name.eq_ignore_ascii_case(s);
            if on && is("on") {
                o = Self::ALL;
            } else if on && is("off") {
                o = Self::NONE;
            } else if is("ibpb") {
                o.ibpb = on;
            } else if is("rsb") {
                o.rsb = on;
            } else if is("verw") {
                o.verw = on;
            } else if is("l1d-flush") {
                o.l1d_flush = on;
            } else {
                return Err(item);
            }
        }
        Ok(o)
    }
}

/// One mitigation's decision and the reason the log gives for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// It runs.
    pub on: bool,
    /// Why (on or off), for the log line.
    pub why: &'static str,
}

const fn on(why: &'static str) -> Choice {
    Choice { on: true, why }
}

const fn off(why: &'static str) -> Choice {
    Choice { on: false, why }
}

/// The mitigations this machine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// IBPB (IA32_PRED_CMD = 1) when a CPU enters a vCPU of another domain
    /// than the one it ran last: no domain's branch-target training steers
    /// another's indirect branches (Spectre v2 across domains).
    pub ibpb: Choice,
    /// Return stack buffer filled with 32 harmless entries after every VM
    /// exit, before the hypervisor's first RET: a guest's RSB entries never
    /// steer the hypervisor's returns.
    pub rsb: Choice,
    /// VERW before VM entry: the CPU's internal buffers carry no
    /// hypervisor or other-domain data into a guest (MDS, TAA).
    pub verw: Choice,
    /// IA32_FLUSH_CMD.L1D_FLUSH before VM entry: no hypervisor or
    /// other-domain data left in the L1D for a guest's L1TF load.
    pub l1d_flush: Choice,
}

/// Decides the mitigations from the CPU's report and the operator's
/// option.
pub fn plan(cpu: &CpuSpec, opts: &SpecOpts) -> Plan {
    let ibpb = if !cpu.has_ibpb() {
        off("CPU lacks IBPB: not mitigated")
    } else if !opts.ibpb {
        off("spec-ctrl=no-ibpb")
    } else {
        on("CPU has IBPB")
    };
    // Filling is plain CALLs: every CPU can. Xen and KVM fill on every
    // VM exit whatever the CPU (RSB underflow and guest-planted entries).
    let rsb = if opts.rsb {
        on("32 entries, every exit")
    } else {
        off("spec-ctrl=no-rsb")
    };
    // MDS: every Intel CPU without MDS_NO; TAA: Intel CPUs with TSX
    // (RTM) without TAA_NO, MDS_NO or not (Intel's MDS and TAA guidance).
    let mds = cpu.intel && !cpu.cap(arch_cap::MDS_NO);
    let taa = cpu.intel && cpu.leaf7_ebx & leaf7::EBX_RTM != 0 && !cpu.cap(arch_cap::TAA_NO);
    let verw = if !cpu.intel {
        off("not affected: not an Intel CPU")
    } else if !mds && !taa {
        off("not affected: ARCH_CAPABILITIES.MDS_NO, and TAA_NO or no TSX")
    } else if cpu.leaf7_edx & leaf7::MD_CLEAR == 0 {
        off("CPU affected by MDS/TAA but lacks MD_CLEAR: not mitigated")
    } else if !opts.verw {
        off("spec-ctrl=no-verw")
    } else if mds {
        on("CPU affected by MDS, has MD_CLEAR")
    } else {
        on("CPU affected by TAA, has MD_CLEAR")
    };
    // L1TF: every Intel CPU without RDCL_NO. SKIP_L1DFL_VMENTRY says a VMM
    // nested under another that flushes need not (Intel's L1TF guidance).
    let l1d_flush = if !cpu.intel {
        off("not affected: not an Intel CPU")
    } else if cpu.cap(arch_cap::RDCL_NO) {
        off("not affected: ARCH_CAPABILITIES.RDCL_NO")
    } else if cpu.cap(arch_cap::SKIP_L1DFL_VMENTRY) {
        off("not needed: ARCH_CAPABILITIES.SKIP_L1DFL_VMENTRY")
    } else if !cpu.has_l1d_flush() {
        off("CPU affected by L1TF but lacks L1D_FLUSH: not mitigated")
    } else if !opts.l1d_flush {
        off("spec-ctrl=no-l1d-flush")
    } else {
        on("CPU affected by L1TF, has L1D_FLUSH")
    };
    Plan {
        ibpb,
        rsb,
        verw,
        l1d_flush,
    }
}

/// What guests see of the speculation controls, and what is not done.
pub const GUEST_LINES: [&str; 3] = [
    "guest SPEC_CTRL (IBRS, STIBP, SSBD): hidden from guest CPUID, MSR 0x48 raises #GP; not switched, the guest runs with the hypervisor's value",
    "guest PRED_CMD and FLUSH_CMD: filtered: hidden from guest CPUID, writes raise #GP (cross-domain IBPB is the hypervisor's, on domain switch)",
    "not done yet: IBRS/eIBRS and STIBP for the hypervisor itself, SSBD, retpolines, IBPB/SPEC_CTRL for a guest's own processes, BHI/retbleed/SRSO/GDS/MMIO-stale-data sequences, SMT scheduling",
];

impl Plan {
    /// Calls `line` with each log line (without the `spec-ctrl: ` prefix),
    /// the CPU's report first and what is not done last.
    pub fn describe(&self, cpu: &CpuSpec, line: &mut dyn FnMut(fmt::Arguments<'_>)) {
        line(format_args!("CPU reports {cpu}"));
        let items = [
            ("IBPB on domain switch", self.ibpb),
            ("RSB filling after VM exit", self.rsb),
            ("VERW before VM entry", self.verw),
            ("L1D flush on VM entry", self.l1d_flush),
        ];
        for (what, c) in items {
            let state = if c.on { "on" } else { "off" };
            line(format_args!("{what}: {state} ({})", c.why));
        }
        if self.verw.on && self.l1d_flush.on {
            // Intel: on a CPU with MD_CLEAR, L1D_FLUSH also overwrites the
            // buffers VERW clears, so an entry that flushes skips VERW.
            line(format_args!(
                "VERW is skipped on entries that flush the L1D (the flush clears the same buffers)"
            ));
        }
        for l in GUEST_LINES {
            line(format_args!("{l}"));
        }
    }
}

/// The CPUID a guest sees of the speculation controls: every feature
/// whose MSR the MSR model refuses (IA32_SPEC_CTRL, IA32_PRED_CMD,
/// IA32_FLUSH_CMD, IA32_ARCH_CAPABILITIES, VIRT_SPEC_CTRL) is hidden, so a
/// guest does not take #GP for using what it was told it has. MD_CLEAR
/// stays: VERW needs no MSR and runs natively.
pub fn guest_cpuid(leaf: u32, subleaf: u32, r: [u32; 4]) -> [u32; 4] {
    let [a, b, c, d] = r;
    match (leaf, subleaf) {
        (7, 0) => {
            let hide = leaf7::IBRS_IBPB
                | leaf7::STIBP
                | leaf7::L1D_FLUSH
                | leaf7::ARCH_CAPABILITIES
                | leaf7::SSBD;
            [a, b, c, d & !hide]
        }
        (0x8000_0008, _) => {
            let hide = ext8::IBPB
                | ext8::IBRS
                | ext8::STIBP
                | ext8::SPEC_CTRL_HINTS
                | ext8::SSBD
                | ext8::VIRT_SSBD;
            [a, b & !hide, c, d]
        }
        _ => r,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests;
