//! Time keeping at boot: the TSC, calibrated once against the 8254 PIT
//! (1.193182 MHz), and busy-wait delays built on it.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;

use super::cpu::rdtsc;

const PIT_HZ: u64 = 1_193_182;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// Measures the TSC frequency with PIT channel 2 (gate on port 0x61) over
/// `ms` milliseconds and remembers it.
pub fn calibrate_tsc(ms: u64) -> u64 {
    let count = (PIT_HZ * ms / 1000) as u16;
    let mut ctrl = Port::<u8>::new(0x61);
    let mut cmd = Port::<u8>::new(0x43);
    let mut ch2 = Port::<u8>::new(0x42);
    // SAFETY: the PIT and port 0x61 are legacy platform devices the
    // hypervisor owns; channel 2 drives only the PC speaker gate, which we
    // keep disabled (bit 1 clear).
    let hz = unsafe {
        let v = ctrl.read();
        ctrl.write((v & !0x02) | 0x01); // gate on, speaker off
        cmd.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        ch2.write(count as u8);
        ch2.write((count >> 8) as u8);
        let start = rdtsc();
        // Mode 0: OUT2 (port 0x61 bit 5) goes high when the count expires.
        let mut spins: u64 = 0;
        while ctrl.read() & 0x20 == 0 {
            spins += 1;
            if spins > 1 << 32 {
                break;
            }
        }
        let end = rdtsc();
        ctrl.write(v & !0x03);
        (end - start) * 1000 / ms.max(1)
    };
    TSC_HZ.store(hz.max(1), Ordering::Relaxed);
    hz
}

/// TSC ticks per second (after [`calibrate_tsc`]).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed).max(1)
}

/// Busy-waits `us` microseconds.
pub fn delay_us(us: u64) {
    let end = rdtsc() + tsc_hz() / 1_000_000 * us.max(1);
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
