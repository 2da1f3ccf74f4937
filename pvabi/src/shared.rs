//! Structures the guest and the hypervisor exchange through guest memory,
//! other than the start info: the PV clock, vCPU and memory reports, and
//! multicall entries.
//!
//! Every one is `#[repr(C)]`, made only of fixed-width integers and explicit
//! padding, so any bytes are a valid value: both sides read integers and
//! check them.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{Error, VCPU_BLOCKED, VCPU_DOWN, VCPU_RUNNABLE, VCPU_RUNNING, decode_status};

// ---------------------------------------------------------------------------
// time
// ---------------------------------------------------------------------------

/// [`TimeInfo::flags`] bit: the TSC is invariant and synchronized across
/// physical CPUs, so readings on different vCPUs agree and never go
/// backwards. Without it a reading is monotonic on one vCPU only while that
/// vCPU stays on one physical CPU.
pub const TIME_FLAG_TSC_STABLE: u32 = 1 << 0;

/// The paravirtual clock: enough to turn the TSC into system time with no
/// exit. It lies in the start-info page at [`crate::StartInfo::time_info_gpa`].
///
/// **System time** is nanoseconds since the hypervisor started, the same
/// for every domain; hypercall deadlines ([`crate::HC_SCHED_BLOCK`],
/// [`crate::HC_SET_TIMER`]) are in it.
///
/// Every field is OUT: written by the hypervisor, read by every vCPU of the
/// domain. The hypervisor updates it like a sequence lock: it makes
/// `version` odd, writes the other fields, then makes `version` even (one
/// more than the odd value), with write barriers in between. A reader:
///
/// 1. reads `version` (retrying while it is odd),
/// 2. reads the other fields and the TSC (`RDTSC` after an `LFENCE`),
/// 3. reads `version` again and starts over if it changed,
/// 4. computes [`TimeInfo::ns_at`].
///
/// The hypervisor keeps the result monotonic across updates (a new
/// `system_time_ns` is never behind what the old parameters gave for the
/// same TSC value).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct TimeInfo {
    /// OUT: update counter, odd while an update is in progress.
    pub version: u32,
    /// OUT: [`TIME_FLAG_TSC_STABLE`]; other bits are zero.
    pub flags: u32,
    /// OUT: the TSC value at which system time was `system_time_ns`.
    pub tsc_timestamp: u64,
    /// OUT: system time in nanoseconds at `tsc_timestamp`.
    pub system_time_ns: u64,
    /// OUT: multiplier of the TSC-to-nanoseconds scale, a 32.32 fixed-point
    /// fraction (see [`scale_for`]).
    pub tsc_to_system_mul: u32,
    /// OUT: power-of-two pre-scale of a TSC delta: shifted left when
    /// positive, right when negative.
    pub tsc_shift: i8,
    /// Padding; zero.
    pub _pad: [u8; 3],
    /// OUT (since the release after 1.4): the wall-clock base, Unix time
    /// (UTC, nanoseconds since 1970-01-01T00:00:00Z, no leap seconds) at
    /// system time 0, so wall-clock time is `wall_clock_base_ns +
    /// system time` ([`TimeInfo::wall_clock_ns_at`]). The hypervisor sets it
    /// from the CMOS RTC at boot, to the second (the RTC's resolution);
    /// 0 means unknown (no RTC, or an older hypervisor, whose `TimeInfo`
    /// is followed by zero bytes).
    pub wall_clock_base_ns: u64,
}

/// Size of [`TimeInfo`] in bytes.
pub const TIME_INFO_SIZE: usize = 40;

const _: () = assert!(core::mem::size_of::<TimeInfo>() == TIME_INFO_SIZE);
const _: () = assert!(core::mem::align_of::<TimeInfo>() == 8);
const _: () = assert!(core::mem::offset_of!(TimeInfo, version) == 0);
const _: () = assert!(core::mem::offset_of!(TimeInfo, flags) == 4);
const _: () = assert!(core::mem::offset_of!(TimeInfo, tsc_timestamp) == 8);
const _: () = assert!(core::mem::offset_of!(TimeInfo, system_time_ns) == 16);
const _: () = assert!(core::mem::offset_of!(TimeInfo, tsc_to_system_mul) == 24);
const _: () = assert!(core::mem::offset_of!(TimeInfo, tsc_shift) == 28);
const _: () = assert!(core::mem::offset_of!(TimeInfo, _pad) == 29);
const _: () = assert!(core::mem::offset_of!(TimeInfo, wall_clock_base_ns) == 32);

impl TimeInfo {
    /// An all-zero time info.
    pub const fn zeroed() -> Self {
        Self {
            version: 0,
            flags: 0,
            tsc_timestamp: 0,
            system_time_ns: 0,
            tsc_to_system_mul: 0,
            tsc_shift: 0,
            _pad: [0; 3],
            wall_clock_base_ns: 0,
        }
    }

    /// Wall-clock time (Unix nanoseconds, UTC) at TSC value `tsc`, or
    /// `None` when the base is unknown (0). Saturates at `u64::MAX` (the
    /// year 2554).
    pub const fn wall_clock_ns_at(&self, tsc: u64) -> Option<u64> {
        if self.wall_clock_base_ns == 0 {
            None
        } else {
            Some(self.wall_clock_base_ns.saturating_add(self.ns_at(tsc)))
        }
    }

    /// System time in nanoseconds at TSC value `tsc`:
    /// `system_time_ns + tsc_to_ns(tsc - tsc_timestamp)`. A `tsc` before
    /// `tsc_timestamp` (a TSC read on a CPU slightly behind, or before an
    /// update) counts as no time since it, so the result never falls below
    /// `system_time_ns`; the result saturates at `u64::MAX`. Pure: works on
    /// a copy taken with the version protocol.
    pub const fn ns_at(&self, tsc: u64) -> u64 {
        let delta = tsc.saturating_sub(self.tsc_timestamp);
        self.system_time_ns
            .saturating_add(tsc_to_ns(delta, self.tsc_to_system_mul, self.tsc_shift))
    }

    /// Whether [`TimeInfo::version`] says an update is in progress.
    pub const fn is_updating(&self) -> bool {
        self.version & 1 != 0
    }

    /// Whether [`TIME_FLAG_TSC_STABLE`] is set.
    pub const fn tsc_stable(&self) -> bool {
        self.flags & TIME_FLAG_TSC_STABLE != 0
    }
}

/// Converts a TSC delta to nanoseconds with a scale from [`scale_for`]:
/// `((delta << shift) * mul) >> 32` (a right shift by `-shift` for a
/// negative shift), in 128-bit arithmetic, saturating at `u64::MAX`.
#[inline]
pub const fn tsc_to_ns(delta: u64, mul: u32, shift: i8) -> u64 {
    // The scales `scale_for` makes (shift -63..=31) in one 64x64->128
    // multiplication, no overflow check: for 0 <= shift < 32,
    // `(delta << shift) * mul < 2^127`, and shifting it right by 32 is
    // shifting `delta * mul` right by `32 - shift`, exactly. The hypervisor
    // reads its clock on every exit, so this is on its hot path.
    let ns = if shift >= 0 && shift < 32 {
        (delta as u128 * mul as u128) >> (32 - shift as u32)
    } else if shift < 0 && shift > -64 {
        ((delta >> shift.unsigned_abs()) as u128 * mul as u128) >> 32
    } else {
        return tsc_to_ns_general(delta, mul, shift);
    };
    if ns > u64::MAX as u128 {
        u64::MAX
    } else {
        ns as u64
    }
}

/// [`tsc_to_ns`] for any shift, in checked 128-bit arithmetic.
const fn tsc_to_ns_general(delta: u64, mul: u32, shift: i8) -> u64 {
    let d = delta as u128;
    let amount = shift.unsigned_abs() as u32;
    let scaled = if shift >= 0 {
        // u64 << 63 still fits in u128; beyond that only 0 is exact.
        if amount >= 64 {
            if delta == 0 { 0 } else { u128::MAX }
        } else {
            d << amount
        }
    } else if amount >= 64 {
        0
    } else {
        d >> amount
    };
    let ns = match scaled.checked_mul(mul as u128) {
        Some(p) => p >> 32,
        None => u128::MAX,
    };
    if ns > u64::MAX as u128 {
        u64::MAX
    } else {
        ns as u64
    }
}

/// The scale ([`TimeInfo::tsc_to_system_mul`], [`TimeInfo::tsc_shift`]) for
/// a TSC running at `tsc_hz`: the shift is chosen so that the multiplier
/// lies in `2^31..2^32`, which keeps 31 significant bits (relative error
/// below 1e-9). Exact for 1 GHz (`(2^31, 1)`). A frequency of 0 gives
/// `(0, 0)`: time that stands still.
pub const fn scale_for(tsc_hz: u64) -> (u32, i8) {
    const NS_PER_S: u128 = 1_000_000_000;
    if tsc_hz == 0 {
        return (0, 0);
    }
    let hz = tsc_hz as u128;
    // mul = 1e9 * 2^(32 - shift) / hz. Going down from the largest shift any
    // hz >= 1 needs (1e9 < 2^30), mul doubles at each step; the first shift
    // where it reaches 2^31 leaves it below 2^32. For hz = u64::MAX the
    // shift is -34, so 32 - shift stays below 97 and 1e9 << 97 < 2^127.
    let mut shift: i32 = 31;
    while shift > -96 {
        let num = NS_PER_S << (32 - shift) as u32;
        if num / hz >= 1 << 31 {
            let rounded = (num + hz / 2) / hz;
            let mul = if rounded > u32::MAX as u128 {
                u32::MAX
            } else {
                rounded as u32
            };
            return (mul, shift as i8);
        }
        shift -= 1;
    }
    // Unreachable for any u64 frequency (see above).
    (u32::MAX, -96)
}

// ---------------------------------------------------------------------------
// vcpu
// ---------------------------------------------------------------------------

/// What [`crate::HC_VCPU_INFO`] reports about a vCPU. Every field is OUT.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VcpuInfo {
    /// OUT: [`VCPU_DOWN`], [`VCPU_RUNNABLE`], [`VCPU_RUNNING`] or
    /// [`VCPU_BLOCKED`]; see [`VcpuInfo::state`].
    pub state: u32,
    /// OUT: the physical CPU it last ran on, or [`crate::LAST_CPU_NONE`].
    pub last_cpu: u32,
    /// OUT: nanoseconds it has spent running guest code and its hypercalls.
    pub cpu_time_ns: u64,
    /// OUT: its pending-event mask (not cleared by the query).
    pub pending_events: u64,
}

/// Size of [`VcpuInfo`] in bytes.
pub const VCPU_INFO_SIZE: usize = 24;

const _: () = assert!(core::mem::size_of::<VcpuInfo>() == VCPU_INFO_SIZE);
const _: () = assert!(core::mem::align_of::<VcpuInfo>() == 8);
const _: () = assert!(core::mem::offset_of!(VcpuInfo, state) == 0);
const _: () = assert!(core::mem::offset_of!(VcpuInfo, last_cpu) == 4);
const _: () = assert!(core::mem::offset_of!(VcpuInfo, cpu_time_ns) == 8);
const _: () = assert!(core::mem::offset_of!(VcpuInfo, pending_events) == 16);

/// [`VcpuInfo::state`] as an enum (never stored in shared memory; made from
/// the integer with `TryFrom`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VcpuState {
    /// [`VCPU_DOWN`]
    Down,
    /// [`VCPU_RUNNABLE`]
    Runnable,
    /// [`VCPU_RUNNING`]
    Running,
    /// [`VCPU_BLOCKED`]
    Blocked,
}

impl TryFrom<u32> for VcpuState {
    type Error = Error;

    /// `Err(Error::Invalid)` for a value this version does not define.
    fn try_from(v: u32) -> Result<Self, Error> {
        match v {
            VCPU_DOWN => Ok(Self::Down),
            VCPU_RUNNABLE => Ok(Self::Runnable),
            VCPU_RUNNING => Ok(Self::Running),
            VCPU_BLOCKED => Ok(Self::Blocked),
            _ => Err(Error::Invalid),
        }
    }
}

impl From<VcpuState> for u32 {
    fn from(s: VcpuState) -> u32 {
        match s {
            VcpuState::Down => VCPU_DOWN,
            VcpuState::Runnable => VCPU_RUNNABLE,
            VcpuState::Running => VCPU_RUNNING,
            VcpuState::Blocked => VCPU_BLOCKED,
        }
    }
}

impl VcpuInfo {
    /// An all-zero vCPU info.
    pub const fn zeroed() -> Self {
        Self {
            state: 0,
            last_cpu: 0,
            cpu_time_ns: 0,
            pending_events: 0,
        }
    }

    /// The state, checked.
    pub fn vcpu_state(&self) -> Result<VcpuState, Error> {
        VcpuState::try_from(self.state)
    }
}

// ---------------------------------------------------------------------------
// memory
// ---------------------------------------------------------------------------

/// What [`crate::HC_MEM_INFO`] reports about the domain's memory. Every
/// field is OUT.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct MemInfo {
    /// OUT: pages the domain has present now.
    pub current_pages: u64,
    /// OUT: the quota: the most pages it may have present
    /// ([`crate::StartInfo::max_pages`]).
    pub max_pages: u64,
    /// OUT: the page size in bytes, [`crate::PAGE_SIZE`].
    pub page_size: u64,
}

/// Size of [`MemInfo`] in bytes.
pub const MEM_INFO_SIZE: usize = 24;

const _: () = assert!(core::mem::size_of::<MemInfo>() == MEM_INFO_SIZE);
const _: () = assert!(core::mem::align_of::<MemInfo>() == 8);
const _: () = assert!(core::mem::offset_of!(MemInfo, current_pages) == 0);
const _: () = assert!(core::mem::offset_of!(MemInfo, max_pages) == 8);
const _: () = assert!(core::mem::offset_of!(MemInfo, page_size) == 16);

impl MemInfo {
    /// An all-zero memory info.
    pub const fn zeroed() -> Self {
        Self {
            current_pages: 0,
            max_pages: 0,
            page_size: 0,
        }
    }
}

// ---------------------------------------------------------------------------
// multicall
// ---------------------------------------------------------------------------

/// One hypercall of a [`crate::HC_MULTICALL`] batch.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct MulticallEntry {
    /// IN: the hypercall number (what RAX would hold).
    pub op: u64,
    /// IN: its arguments (what RDI, RSI, RDX, R10, R8, R9 would hold).
    pub args: [u64; 6],
    /// OUT: what RAX would hold after the call: a result `>= 0` or a
    /// negative status code. Its value going in is ignored.
    pub result: u64,
}

/// Size of [`MulticallEntry`] in bytes.
pub const MULTICALL_ENTRY_SIZE: usize = 64;

const _: () = assert!(core::mem::size_of::<MulticallEntry>() == MULTICALL_ENTRY_SIZE);
const _: () = assert!(core::mem::align_of::<MulticallEntry>() == 8);
const _: () = assert!(core::mem::offset_of!(MulticallEntry, op) == 0);
const _: () = assert!(core::mem::offset_of!(MulticallEntry, args) == 8);
const _: () = assert!(core::mem::offset_of!(MulticallEntry, result) == 56);

impl MulticallEntry {
    /// An entry for hypercall `op` with `args` (unused ones 0).
    pub const fn new(op: u64, args: [u64; 6]) -> Self {
        Self {
            op,
            args,
            result: 0,
        }
    }

    /// The entry's outcome as a `Result`: `Ok` for a result `>= 0`, the
    /// [`Error`] otherwise (a code this version does not know counts as
    /// [`Error::Invalid`]).
    pub fn status(&self) -> Result<u64, Error> {
        decode_status(self.result).map_err(|e| e.unwrap_or(Error::Invalid))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::mem::{offset_of, size_of};
    use std::vec::Vec;
    use zerocopy::FromZeros;

    #[test]
    fn layouts() {
        assert_eq!(size_of::<TimeInfo>(), 40);
        assert_eq!(offset_of!(TimeInfo, version), 0);
        assert_eq!(offset_of!(TimeInfo, flags), 4);
        assert_eq!(offset_of!(TimeInfo, tsc_timestamp), 8);
        assert_eq!(offset_of!(TimeInfo, system_time_ns), 16);
        assert_eq!(offset_of!(TimeInfo, tsc_to_system_mul), 24);
        assert_eq!(offset_of!(TimeInfo, tsc_shift), 28);
        assert_eq!(offset_of!(TimeInfo, _pad), 29);
        assert_eq!(offset_of!(TimeInfo, wall_clock_base_ns), 32);

        assert_eq!(size_of::<VcpuInfo>(), 24);
        assert_eq!(offset_of!(VcpuInfo, state), 0);
        assert_eq!(offset_of!(VcpuInfo, last_cpu), 4);
        assert_eq!(offset_of!(VcpuInfo, cpu_time_ns), 8);
        assert_eq!(offset_of!(VcpuInfo, pending_events), 16);

        assert_eq!(size_of::<MemInfo>(), 24);
        assert_eq!(offset_of!(MemInfo, current_pages), 0);
        assert_eq!(offset_of!(MemInfo, max_pages), 8);
        assert_eq!(offset_of!(MemInfo, page_size), 16);

        assert_eq!(size_of::<MulticallEntry>(), 64);
        assert_eq!(offset_of!(MulticallEntry, op), 0);
        assert_eq!(offset_of!(MulticallEntry, args), 8);
        assert_eq!(offset_of!(MulticallEntry, result), 56);

        assert_eq!(TimeInfo::new_zeroed(), TimeInfo::zeroed());
        assert_eq!(VcpuInfo::new_zeroed(), VcpuInfo::zeroed());
        assert_eq!(MemInfo::new_zeroed(), MemInfo::zeroed());
        assert_eq!(MulticallEntry::new_zeroed(), MulticallEntry::new(0, [0; 6]));
    }

    #[test]
    fn time_info_bytes() {
        let t = TimeInfo {
            version: 3,
            flags: TIME_FLAG_TSC_STABLE,
            tsc_timestamp: 0x1122_3344_5566_7788,
            system_time_ns: 0x99aa_bbcc_ddee_ff00,
            tsc_to_system_mul: 0x8000_0000,
            tsc_shift: -2,
            _pad: [0; 3],
            wall_clock_base_ns: 0x0102_0304_0506_0708,
        };
        let b = t.as_bytes();
        assert_eq!(&b[0..4], &3u32.to_le_bytes());
        assert_eq!(&b[4..8], &1u32.to_le_bytes());
        assert_eq!(&b[8..16], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&b[16..24], &0x99aa_bbcc_ddee_ff00u64.to_le_bytes());
        assert_eq!(&b[24..28], &0x8000_0000u32.to_le_bytes());
        assert_eq!(b[28], 0xfe);
        assert_eq!(&b[32..40], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(TimeInfo::read_from_bytes(b).ok(), Some(t));
        assert!(t.is_updating());
        assert!(t.tsc_stable());
    }

    #[test]
    fn wall_clock_is_base_plus_system_time() {
        let mut t = clock(1_000_000_000, 1000, 5);
        assert_eq!(t.wall_clock_ns_at(3000), None, "base 0: unknown");
        t.wall_clock_base_ns = 1_577_934_245_000_000_000;
        assert_eq!(t.wall_clock_ns_at(3000), Some(1_577_934_245_000_002_005));
        t.wall_clock_base_ns = u64::MAX - 1;
        assert_eq!(t.wall_clock_ns_at(3000), Some(u64::MAX));
    }

    #[test]
    fn multicall_entry_bytes() {
        let mut e = MulticallEntry::new(13, [1, 2, 3, 4, 5, 6]);
        e.result = crate::EINVAL as u64;
        let b = e.as_bytes();
        assert_eq!(&b[0..8], &13u64.to_le_bytes());
        for i in 0..6 {
            assert_eq!(&b[8 + 8 * i..16 + 8 * i], &(i as u64 + 1).to_le_bytes());
        }
        assert_eq!(&b[56..64], &(-22i64).to_le_bytes());
        assert_eq!(e.status(), Err(Error::Invalid));
        e.result = 7;
        assert_eq!(e.status(), Ok(7));
        e.result = -1000i64 as u64;
        assert_eq!(e.status(), Err(Error::Invalid));
        // An array of entries is contiguous, 64 bytes apart.
        let batch = [
            MulticallEntry::new(1, [0; 6]),
            MulticallEntry::new(2, [0; 6]),
        ];
        let bytes = batch.as_bytes();
        assert_eq!(bytes.len(), 128);
        assert_eq!(&bytes[64..72], &2u64.to_le_bytes());
    }

    #[test]
    fn vcpu_state_round_trips() {
        for s in [
            VcpuState::Down,
            VcpuState::Runnable,
            VcpuState::Running,
            VcpuState::Blocked,
        ] {
            assert_eq!(VcpuState::try_from(u32::from(s)), Ok(s));
        }
        assert_eq!(VcpuState::try_from(4), Err(Error::Invalid));
        assert_eq!(VcpuState::try_from(u32::MAX), Err(Error::Invalid));
        let info = VcpuInfo {
            state: VCPU_BLOCKED,
            ..VcpuInfo::zeroed()
        };
        assert_eq!(info.vcpu_state(), Ok(VcpuState::Blocked));
    }

    fn clock(hz: u64, tsc0: u64, sys0: u64) -> TimeInfo {
        let (mul, shift) = scale_for(hz);
        TimeInfo {
            version: 2,
            flags: TIME_FLAG_TSC_STABLE,
            tsc_timestamp: tsc0,
            system_time_ns: sys0,
            tsc_to_system_mul: mul,
            tsc_shift: shift,
            _pad: [0; 3],
            wall_clock_base_ns: 0,
        }
    }

    #[test]
    fn one_ghz_is_exact() {
        assert_eq!(scale_for(1_000_000_000), (1 << 31, 1));
        let t = clock(1_000_000_000, 5_000, 123);
        for delta in [
            0u64,
            1,
            2,
            3,
            999,
            1_000_000_007,
            u32::MAX as u64,
            1 << 40,
            1 << 62,
        ] {
            assert_eq!(t.ns_at(5_000 + delta), 123 + delta, "delta {delta}");
        }
    }

    #[test]
    fn tsc_before_timestamp_saturates() {
        let t = clock(2_500_000_000, 1_000_000, 42_000);
        assert_eq!(t.ns_at(999_999), 42_000);
        assert_eq!(t.ns_at(0), 42_000);
        assert_eq!(t.ns_at(1_000_000), 42_000);
        // And the far end saturates instead of wrapping.
        let late = clock(1, 0, u64::MAX - 10);
        assert_eq!(late.ns_at(u64::MAX), u64::MAX);
    }

    #[test]
    fn fast_scale_is_the_general_one() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for shift in -70i8..=40 {
            for mul in [0u32, 1, 0x8000_0000, 0xffff_ffff, 0x9abc_def1] {
                for _ in 0..300 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    for d in [x, x >> (x % 64), 0, 1, u64::MAX] {
                        assert_eq!(
                            tsc_to_ns(d, mul, shift),
                            tsc_to_ns_general(d, mul, shift),
                            "delta {d} mul {mul} shift {shift}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn ns_at_is_monotonic() {
        for hz in [
            1u64,
            32_768,
            1_000_000,
            999_999_999,
            1_000_000_001,
            2_893_412_123,
            5_000_000_000,
            u64::MAX,
        ] {
            let t = clock(hz, 1 << 20, 7);
            let mut last = 0;
            let mut tsc = 0u64;
            for i in 0..20_000u64 {
                // Small steps, then ever larger ones up to the end of u64.
                tsc = tsc.saturating_add(i * i * 7919 + (i << (i % 40)));
                let now = t.ns_at(tsc);
                assert!(now >= last, "hz {hz}: {now} < {last} at tsc {tsc}");
                last = now;
            }
        }
    }

    #[test]
    fn scale_for_is_accurate() {
        // Frequencies from 1 MHz to 100 GHz, spread geometrically with an odd
        // step so they are not round numbers, plus some real ones.
        let mut freqs: Vec<u64> = Vec::new();
        let mut hz = 1_000_000f64;
        while hz < 100e9 {
            freqs.push(hz as u64);
            hz *= 1.000_731_3;
        }
        freqs.extend([
            1_193_182,
            14_318_180,
            2_100_000_000,
            2_893_412_123,
            3_000_000_000,
            3_599_999_999,
        ]);
        for &hz in &freqs {
            let (mul, shift) = scale_for(hz);
            assert!(mul >= 1 << 31, "hz {hz}: mul {mul:#x} shift {shift}");
            // One hour of ticks: the error must be below 1 ppm (plus the
            // nanosecond lost to truncation).
            let ticks = hz.saturating_mul(3600);
            let exact = (ticks as u128 * 1_000_000_000 / hz as u128) as u64;
            let got = tsc_to_ns(ticks, mul, shift);
            let err = got.abs_diff(exact);
            assert!(err <= exact / 1_000_000 + 1, "hz {hz}: {got} vs {exact}");
            // Tighter: the scale itself is good to ~1e-9.
            assert!(err <= exact / 100_000_000 + 2, "hz {hz}: {got} vs {exact}");
        }
        // Ends of the range.
        assert_eq!(scale_for(0), (0, 0));
        let (mul, shift) = scale_for(1);
        assert_eq!(tsc_to_ns(3, mul, shift), 3_000_000_000);
        let (mul, shift) = scale_for(u64::MAX);
        assert!(mul >= 1 << 31);
        assert_eq!(shift, -34);
        assert_eq!(tsc_to_ns(u64::MAX, mul, shift), 1_000_000_000 - 1);
    }

    #[test]
    fn tsc_to_ns_never_panics_on_odd_scales() {
        for shift in [
            i8::MIN,
            -127,
            -65,
            -64,
            -63,
            -1,
            0,
            1,
            31,
            32,
            63,
            64,
            100,
            i8::MAX,
        ] {
            for mul in [0, 1, u32::MAX] {
                for delta in [0, 1, u64::MAX] {
                    let _ = tsc_to_ns(delta, mul, shift);
                }
            }
        }
        assert_eq!(tsc_to_ns(u64::MAX, u32::MAX, 64), u64::MAX);
        assert_eq!(tsc_to_ns(0, u32::MAX, 100), 0);
        assert_eq!(tsc_to_ns(u64::MAX, u32::MAX, -64), 0);
    }
}
