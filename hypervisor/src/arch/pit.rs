//! Time keeping at boot: the TSC frequency (stated by CPUID where it can
//! be, see `boot::tscfreq`, else measured against the 8254 PIT at
//! 1.193182 MHz), and busy-wait delays built on it.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;

use super::cpu::rdtsc;

const PIT_HZ: u64 = 1_193_182;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// Counts TSC ticks over `us` microseconds of PIT channel 2 (gate on port
/// 0x61, mode 0: OUT2 rises when the count expires; Intel 82C54 data
/// sheet, mode 0). `None` when OUT2 never rose (no PIT). The window's error
/// is one PIT period (0.84 us) plus one port read at each end.
pub fn measure_tsc(us: u64) -> Option<u64> {
    let count = (PIT_HZ * us / 1_000_000).clamp(1, 0xffff) as u16;
    let mut ctrl = Port::<u8>::new(0x61);
    let mut cmd = Port::<u8>::new(0x43);
    let mut ch2 = Port::<u8>::new(0x42);
    // SAFETY: the PIT and port 0x61 are legacy platform devices the
    // hypervisor owns; channel 2 drives only the PC speaker gate, which we
    // keep disabled (bit 1 clear).
    unsafe {
        let v = ctrl.read();
        ctrl.write((v & !0x02) | 0x01); // gate on, speaker off
        cmd.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        ch2.write(count as u8);
        ch2.write((count >> 8) as u8);
        let start = rdtsc();
        let mut spins: u64 = 0;
        let mut expired = true;
        while ctrl.read() & 0x20 == 0 {
            spins += 1;
            if spins > 1 << 32 {
                expired = false;
                break;
            }
        }
        let end = rdtsc();
        ctrl.write(v & !0x03);
        expired.then(|| end.wrapping_sub(start))
    }
}

/// TSC ticks over `us` microseconds scaled to ticks per second.
pub fn hz_from(ticks: u64, us: u64) -> u64 {
    (u128::from(ticks) * 1_000_000 / u128::from(us.max(1))).min(u128::from(u64::MAX)) as u64
}

/// Remembers the TSC frequency for [`tsc_hz`] and [`delay_us`].
pub fn set_tsc_hz(hz: u64) {
    TSC_HZ.store(hz.max(1), Ordering::Relaxed);
}

/// TSC ticks per second (after [`set_tsc_hz`]).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed).max(1)
}

/// Busy-waits `us` microseconds.
pub fn delay_us(us: u64) {
    let ticks = u128::from(tsc_hz()) * u128::from(us.max(1)) / 1_000_000;
    let end = rdtsc().saturating_add(ticks.min(u128::from(u64::MAX)) as u64);
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Masks and remaps the legacy 8259 PICs so their (spurious) interrupts
/// cannot land on exception vectors.
pub fn disable_legacy_pic(base: u8) {
    let mut m_cmd = Port::<u8>::new(0x20);
    let mut m_data = Port::<u8>::new(0x21);
    let mut s_cmd = Port::<u8>::new(0xa0);
    let mut s_data = Port::<u8>::new(0xa1);
    // SAFETY: the standard ICW1-4 initialisation of the cascaded PICs,
    // followed by masking every line; the hypervisor owns the PICs.
    unsafe {
        m_cmd.write(0x11);
        s_cmd.write(0x11);
        m_data.write(base);
        s_data.write(base + 8);
        m_data.write(4);
        s_data.write(2);
        m_data.write(1);
        s_data.write(1);
        m_data.write(0xff);
        s_data.write(0xff);
    }
}

/// The boot CPU's clocks, as [`calibrate`] settled them.
pub struct BootClocks {
    /// TSC ticks per second.
    pub tsc_hz: u64,
    /// Where `tsc_hz` came from (for the boot log).
    pub tsc_source: &'static str,
    /// Local APIC timer counts per 10 ms at divide-by-16.
    pub lapic_per_10ms: u32,
    /// Where the APIC timer rate came from.
    pub lapic_source: &'static str,
}

/// The PIT window that checks a CPUID-stated TSC frequency: wide enough to
/// tell an emulator's copied CPU model (off by tens of times) from the
/// truth, short enough to cost little (250 k instructions under `-icount`).
const CHECK_US: u64 = 250;
/// The PIT window that measures the TSC when CPUID states nothing: 1 ms,
/// 1193 PIT periods, so one period and the port reads at either end
/// (about 1 us each on real hardware) are about 0.2 % of it.
const CALIBRATE_US: u64 = 1000;
/// How far (percent) a stated frequency may be from the PIT's figure.
const AGREE_PERCENT: u64 = 25;

/// Most PIT windows per measurement; the least disturbed one counts.
const WINDOWS: usize = 5;

/// PIT windows with the APIC timer counting over each, until two agree
/// (`tscfreq::settled`) or [`WINDOWS`] were taken: the least disturbed
/// one's (TSC ticks, or `None` without a PIT; APIC timer counts at
/// divide-by-16), see `tscfreq::least_disturbed`.
fn window(us: u64) -> (Option<u64>, u64) {
    let mut w = [(None, 0); WINDOWS];
    for i in 0..WINDOWS {
        super::lapic::calibration_start();
        let ticks = measure_tsc(us);
        w[i] = (ticks, super::lapic::calibration_stop());
        if ticks.is_none() {
            // No PIT: its absence took the whole spin budget once already.
            break;
        }
        if crate::boot::tscfreq::settled(&w[..=i]) {
            break;
        }
    }
    crate::boot::tscfreq::least_disturbed(&w)
}

/// Settles the TSC frequency and the APIC timer rate on the boot CPU: from
/// CPUID where it states them and a short PIT window agrees, else from a
/// PIT window (the timer relative to the TSC over the same window). Sets
/// both for [`tsc_hz`], [`delay_us`] and the APIC timer.
pub fn calibrate(intel: bool) -> BootClocks {
    use crate::boot::tscfreq;
    let stated = tscfreq::from_cpuid(
        |leaf| {
            let r = super::cpu::cpuid(leaf);
            [r.eax, r.ebx, r.ecx, r.edx]
        },
        intel,
    );
    let mut us = if stated.is_some() {
        CHECK_US
    } else {
        CALIBRATE_US
    };
    let (mut ticks, mut apic_counts) = window(us);
    let trusted = match (stated, ticks) {
        (Some(s), Some(t)) if tscfreq::agrees(s.tsc_hz, hz_from(t, us), AGREE_PERCENT) => Some(s),
        (Some(s), None) => Some(s),
        (Some(s), Some(t)) => {
            log::info!(
                "clock: {} states a {} MHz TSC, the PIT measures {} MHz; using the PIT",
                s.source.name(),
                s.tsc_hz / 1_000_000,
                hz_from(t, us) / 1_000_000
            );
            us = CALIBRATE_US;
            (ticks, apic_counts) = window(us);
            None
        }
        (None, _) => None,
    };
    let (tsc_hz, tsc_source) = match (trusted, ticks) {
        (Some(s), _) => (s.tsc_hz, s.source.name()),
        (None, Some(t)) => (hz_from(t, us), "PIT"),
        (None, None) => {
            log::error!("clock: no PIT and no CPUID frequency; assuming a 1 GHz TSC");
            (1_000_000_000, "a guess")
        }
    };
    set_tsc_hz(tsc_hz);
    let (lapic_hz, lapic_source) = match (trusted.and_then(|s| s.lapic_hz), ticks) {
        (Some(hz), _) => (hz, trusted.map_or("CPUID", |s| s.source.name())),
        // Counts per TSC tick over the same window, times the TSC rate:
        // the PIT's own error cancels.
        (None, Some(t)) => (
            (u128::from(apic_counts) * 16 * u128::from(tsc_hz) / u128::from(t.max(1)))
                .min(u128::from(u64::MAX)) as u64,
            "measured against the TSC",
        ),
        (None, None) => {
            super::lapic::calibration_start();
            delay_us(CALIBRATE_US);
            let counts = super::lapic::calibration_stop();
            (
                counts * 16 * 1_000_000 / CALIBRATE_US,
                "measured against the TSC",
            )
        }
    };
    BootClocks {
        tsc_hz,
        tsc_source,
        lapic_per_10ms: super::lapic::set_input_hz(lapic_hz),
        lapic_source,
    }
}
