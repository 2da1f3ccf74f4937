//! The TSC and local-APIC-timer frequencies as CPUID states them, so that
//! boot need not measure them against the 8254 PIT (a 10 ms busy wait).
//! Pure decoding of CPUID values, host-tested; it sits with the boot-time
//! parsers, below `arch/`, whose `pit::calibrate` reads the leaves and
//! cross-checks the answer against a short PIT window.
//!
//! Sources, best first:
//! 1. **Hypervisor leaf 0x4000_0010** (nested under KVM/QEMU with
//!    `vmware-cpuid-freq`, VMware, ACRN): EAX = TSC kHz, EBX = bus (local
//!    APIC timer) kHz. The leaf is valid only when 0x4000_0000 EAX, the
//!    highest hypervisor leaf, reaches it (Linux `vmware_get_tsc_khz`; the
//!    ACRN and KVM CPUID documentation), and only with CPUID.1:ECX[31] (the
//!    hypervisor bit) set: bare metal returns the highest basic leaf there.
//! 2. **Leaf 0x15** "Time Stamp Counter and Nominal Core Crystal Clock"
//!    (Intel SDM Vol. 2A, CPUID, Table 3-8): TSC = ECX × EBX / EAX, with
//!    ECX the core crystal clock in Hz. The local APIC timer counts that
//!    crystal clock where 0x15 enumerates it (SDM Vol. 3A 12.5.4).
//! 3. **Leaf 0x15 without the crystal (ECX = 0) and leaf 0x16** "Processor
//!    Frequency Information" (SDM Vol. 2A, Table 3-8): EAX = base frequency
//!    in MHz. With an invariant TSC the TSC runs at the base (nominal)
//!    frequency (SDM Vol. 3B 19.17.1), which is what Linux's
//!    `native_calibrate_tsc` derives for parts that leave ECX at 0. No APIC
//!    timer rate comes from this one.
//!
//! Emulators may copy a real CPU's leaves while their clocks run at another
//! rate (Bochs' `tigerlake` model, in its source, reports a 38.4 MHz crystal and 2.4 GHz
//! base, while its TSC counts instructions), so the caller checks the
//! answer against the PIT before it believes it.

/// Where a frequency came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Hypervisor leaf 0x4000_0010.
    HypervisorLeaf,
    /// Leaf 0x15 with the crystal clock.
    Crystal,
    /// Leaf 0x16's base frequency.
    BaseFrequency,
}

impl Source {
    /// For the boot log.
    pub fn name(self) -> &'static str {
        match self {
            Self::HypervisorLeaf => "CPUID 0x40000010",
            Self::Crystal => "CPUID 0x15",
            Self::BaseFrequency => "CPUID 0x16",
        }
    }
}

/// What CPUID says about the clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuidClocks {
    /// TSC ticks per second.
    pub tsc_hz: u64,
    /// Local APIC timer input clock (before its divider), when stated.
    pub lapic_hz: Option<u64>,
    /// The leaf it came from.
    pub source: Source,
}

/// The plausible range of a stated TSC frequency: anything outside is a
/// broken or half-filled leaf, not a clock.
const TSC_HZ_MIN: u64 = 1_000_000;
const TSC_HZ_MAX: u64 = 20_000_000_000;
/// The same for the APIC timer input clock.
const LAPIC_HZ_MIN: u64 = 100_000;
const LAPIC_HZ_MAX: u64 = 20_000_000_000;

fn plausible(hz: u64, min: u64, max: u64) -> Option<u64> {
    (min..=max).contains(&hz).then_some(hz)
}

/// Decodes the clocks from CPUID. `cpuid(leaf)` returns EAX, EBX, ECX, EDX
/// of subleaf 0; `intel` is the vendor check (leaf 0x15's crystal is the
/// APIC timer's clock on Intel only).
pub fn from_cpuid(cpuid: impl Fn(u32) -> [u32; 4], intel: bool) -> Option<CpuidClocks> {
    let max_basic = cpuid(0)[0];
    let hypervisor = cpuid(1)[2] & (1 << 31) != 0;
    if hypervisor {
        let max_hv = cpuid(0x4000_0000)[0];
        // A highest leaf beyond 0x4000_00ff is not a hypervisor range
        // (bare-metal-like answers echo a basic leaf there).
        if (0x4000_0010..=0x4000_00ff).contains(&max_hv) {
            let [tsc_khz, bus_khz, ..] = cpuid(0x4000_0010);
            if let Some(tsc_hz) = plausible(u64::from(tsc_khz) * 1000, TSC_HZ_MIN, TSC_HZ_MAX) {
                return Some(CpuidClocks {
                    tsc_hz,
                    lapic_hz: plausible(u64::from(bus_khz) * 1000, LAPIC_HZ_MIN, LAPIC_HZ_MAX),
                    source: Source::HypervisorLeaf,
                });
            }
        }
    }
    if max_basic >= 0x15 {
        let [denom, numer, crystal, _] = cpuid(0x15);
        if denom != 0 && numer != 0 && crystal != 0 {
            let tsc = u64::from(crystal) * u64::from(numer) / u64::from(denom);
            if let Some(tsc_hz) = plausible(tsc, TSC_HZ_MIN, TSC_HZ_MAX) {
                return Some(CpuidClocks {
                    tsc_hz,
                    lapic_hz: if intel {
                        plausible(u64::from(crystal), LAPIC_HZ_MIN, LAPIC_HZ_MAX)
                    } else {
                        None
                    },
                    source: Source::Crystal,
                });
            }
        }
    }
    if max_basic >= 0x16 {
        let base_mhz = cpuid(0x16)[0] & 0xffff;
        if let Some(tsc_hz) = plausible(u64::from(base_mhz) * 1_000_000, TSC_HZ_MIN, TSC_HZ_MAX) {
            return Some(CpuidClocks {
                tsc_hz,
                lapic_hz: None,
                source: Source::BaseFrequency,
            });
        }
    }
    None
}

/// Whether a stated frequency agrees with one measured over a short PIT
/// window within `percent`. The window is short, so the tolerance is wide:
/// the check catches a leaf that describes another machine (an emulator's
/// copied CPU model, off by tens of times), not a few parts per million.
pub fn agrees(stated: u64, measured: u64, percent: u64) -> bool {
    let diff = stated.abs_diff(measured);
    u128::from(diff) * 100 <= u128::from(stated) * u128::from(percent)
}

/// Of several PIT windows of the same length, each `(TSC ticks, APIC timer
/// counts)` (`None` without a PIT), the least disturbed: the one with the
/// fewest TSC ticks. Anything that holds the CPU during a window (an SMI,
/// or under an emulator the host descheduling its thread: the TSC keeps
/// counting host time while the PIT's count has long expired) only makes
/// it longer, never shorter; one such window once measured a 656 GHz TSC
/// and slowed the hypervisor's clock 286 times (issue 13). Linux does the
/// same: `pit_calibrate_tsc` keeps the minimum over its tries
/// (arch/x86/kernel/tsc.c). The APIC counts come from that same window.
pub fn least_disturbed(windows: &[(Option<u64>, u64)]) -> (Option<u64>, u64) {
    windows
        .iter()
        .filter_map(|&(t, a)| Some((t?, a)))
        .min_by_key(|&(t, _)| t)
        .map_or((None, windows.first().map_or(0, |w| w.1)), |(t, a)| {
            (Some(t), a)
        })
}

/// How close (parts per thousand) two windows' TSC counts must be for
/// the measurement to be settled: 2 per mille is about two PIT periods
/// and the port reads at either end of a 1 ms window.
pub const SETTLED_PER_MILLE: u64 = 2;

/// Whether the windows taken so far settle the measurement: the two
/// fewest TSC counts agree within [`SETTLED_PER_MILLE`]. A disturbance
/// only lengthens a window, so two that agree are both undisturbed (or
/// equally disturbed, which two independent stalls rarely are); the
/// usual boot then takes two windows, not all of them (the boot-to-ready
/// figure, docs/benchmarks.md).
pub fn settled(windows: &[(Option<u64>, u64)]) -> bool {
    let mut least = [u64::MAX; 2];
    for t in windows.iter().filter_map(|w| w.0) {
        if t < least[0] {
            least = [t, least[0]];
        } else if t < least[1] {
            least[1] = t;
        }
    }
    least[1] != u64::MAX
        && u128::from(least[1] - least[0]) * 1000
            <= u128::from(least[0]) * u128::from(SETTLED_PER_MILLE)
}

#[cfg(test)]
mod tests;
