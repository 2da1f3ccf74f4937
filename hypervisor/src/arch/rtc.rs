//! Reading the CMOS real-time clock (MC146818A-compatible, ports 0x70 /
//! 0x71) once at boot for the wall-clock base; `boot::rtc` decodes it.

use x86_64::instructions::port::Port;

use crate::boot::rtc::CmosDate;

/// Status A bit 7: an update is in progress; the date registers may be
/// mid-change for up to 1984 us after it sets (MC146818A data sheet,
/// "Update Cycle").
const STATUS_A_UIP: u8 = 1 << 7;
/// How many update-in-progress polls before giving up (no chip answers
/// 0xff for status A, whose bit 7 then never clears): far more than the
/// 2 ms an update takes at any port-read speed.
const MAX_POLLS: u32 = 1 << 22;

fn read_reg(index: u8) -> u8 {
    let mut idx = Port::<u8>::new(0x70);
    let mut data = Port::<u8>::new(0x71);
    // SAFETY: the RTC's index and data ports are legacy platform devices
    // the hypervisor owns (no domain gets them); selecting a register and
    // reading it has no side effect but on the index latch. Bit 7 of the
    // index (the NMI mask) is left clear, as it was.
    unsafe {
        idx.write(index & 0x7f);
        data.read()
    }
}

fn read_once() -> Option<CmosDate> {
    let mut polls = 0;
    while read_reg(0x0a) & STATUS_A_UIP != 0 {
        polls += 1;
        if polls > MAX_POLLS {
            return None;
        }
        core::hint::spin_loop();
    }
    Some(CmosDate {
        seconds: read_reg(0x00),
        minutes: read_reg(0x02),
        hours: read_reg(0x04),
        day: read_reg(0x07),
        month: read_reg(0x08),
        year: read_reg(0x09),
        century: read_reg(0x32),
        status_b: read_reg(0x0b),
    })
}

/// The RTC's registers, read until two reads agree (an update may begin
/// between the poll and the reads; OSDev "CMOS", the method Linux's
/// `mach_get_cmos_time` also relies on). `None` when the chip never
/// settles.
pub fn read() -> Option<CmosDate> {
    let mut last = read_once()?;
    for _ in 0..8 {
        let now = read_once()?;
        if now == last {
            return Some(now);
        }
        last = now;
    }
    None
}
