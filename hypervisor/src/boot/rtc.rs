//! The CMOS real-time clock's date, decoded: what the boot's wall-clock
//! base (`pvabi::TimeInfo::wall_clock_base_ns`) is set from. Reading the
//! chip is `arch::rtc`; this part is pure and host-tested, because the
//! chip's bytes are the firmware's to get wrong.
//!
//! Registers (MC146818A data sheet; the same on every PC chipset):
//! 0x00 seconds, 0x02 minutes, 0x04 hours (bit 7 = PM in 12-hour mode),
//! 0x07 day of month, 0x08 month, 0x09 year in the century, 0x32 the
//! century (the index ACPI's FADT `CENTURY` names on QEMU, Bochs and most
//! PCs; ACPI 6.4 table 5.9); status B (0x0B) bit 2 = binary (else BCD), bit
//! 1 = 24-hour (else 12-hour).
//!
//! The RTC is taken to hold UTC, as QEMU's `-rtc base=utc` (its default)
//! and Linux servers keep it; a machine whose RTC holds local time gets a
//! wall clock off by its time-zone offset.
#![forbid(unsafe_code)]

use pvabi::UtcTime;

/// Status B bit 2: values are binary, not BCD.
pub const STATUS_B_BINARY: u8 = 1 << 2;
/// Status B bit 1: hours run 0-23, not 1-12 with a PM bit.
pub const STATUS_B_24H: u8 = 1 << 1;

/// The date registers as read from the chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CmosDate {
    pub seconds: u8,
    pub minutes: u8,
    pub hours: u8,
    pub day: u8,
    pub month: u8,
    pub year: u8,
    pub century: u8,
    pub status_b: u8,
}

fn bcd(v: u8) -> Option<u8> {
    let (hi, lo) = (v >> 4, v & 0x0f);
    (hi <= 9 && lo <= 9).then_some(hi * 10 + lo)
}

impl CmosDate {
    /// The date, or `None` when a register holds no valid value (a BCD
    /// digit above 9, month 13, hour 25, ...): then the wall clock stays
    /// unknown rather than wrong.
    pub fn decode(&self) -> Option<UtcTime> {
        let binary = self.status_b & STATUS_B_BINARY != 0;
        let num = |v: u8| if binary { Some(v) } else { bcd(v) };
        let pm = self.hours & 0x80 != 0;
        let mut hour = num(self.hours & 0x7f)?;
        if self.status_b & STATUS_B_24H == 0 {
            // 12-hour mode: 12 AM is 0 h, 12 PM is 12 h.
            if !(1..=12).contains(&hour) {
                return None;
            }
            hour = hour % 12 + if pm { 12 } else { 0 };
        }
        let yy = num(self.year)?;
        if yy > 99 {
            return None;
        }
        // A century register that says 19, 20 or 21 is believed; anything
        // else (absent, 0, 0xff) means this century.
        let century = match num(self.century) {
            Some(c @ 19..=21) => u32::from(c),
            _ => 20,
        };
        let t = UtcTime {
            year: century * 100 + u32::from(yy),
            month: num(self.month)?,
            day: num(self.day)?,
            hour,
            minute: num(self.minutes)?,
            second: num(self.seconds)?,
            nanos: 0,
        };
        t.to_unix_s().map(|_| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2020-01-02T03:04:05 as QEMU's RTC holds it (`-rtc base=...`): BCD,
    /// 24-hour (status B 0x02), century 0x20.
    const QEMU: CmosDate = CmosDate {
        seconds: 0x05,
        minutes: 0x04,
        hours: 0x03,
        day: 0x02,
        month: 0x01,
        year: 0x20,
        century: 0x20,
        status_b: STATUS_B_24H,
    };

    #[test]
    fn bcd_24h_as_qemu_keeps_it() {
        let t = QEMU.decode().unwrap_or_else(|| panic!("{QEMU:?}"));
        assert_eq!(t.to_unix_s(), Some(1_577_934_245));
    }

    #[test]
    fn binary_and_12_hour_modes() {
        let b = CmosDate {
            seconds: 59,
            minutes: 30,
            hours: 23,
            day: 31,
            month: 12,
            year: 99,
            century: 19,
            status_b: STATUS_B_BINARY | STATUS_B_24H,
        };
        assert_eq!(b.decode().map(|t| t.to_unix_s()), Some(Some(946_683_059)));
        // 12-hour BCD: 12 AM is midnight, 12 PM noon, 0x81 is 1 PM.
        let h = |hours| {
            CmosDate {
                hours,
                status_b: 0,
                ..QEMU
            }
            .decode()
            .map(|t| t.hour)
        };
        assert_eq!(h(0x12), Some(0));
        assert_eq!(h(0x92), Some(12));
        assert_eq!(h(0x81), Some(13));
        assert_eq!(h(0x01), Some(1));
        assert_eq!(h(0x00), None, "there is no hour 0 on a 12-hour clock");
        assert_eq!(h(0x13), None);
    }

    #[test]
    fn no_century_register_means_this_century() {
        for century in [0, 0xff, 0x99] {
            let t = CmosDate { century, ..QEMU }.decode();
            assert_eq!(t.map(|t| t.year), Some(2020), "{century:#x}");
        }
    }

    #[test]
    fn garbage_is_no_date() {
        for bad in [
            CmosDate {
                seconds: 0x60,
                ..QEMU
            },
            CmosDate {
                seconds: 0x1a,
                ..QEMU
            },
            CmosDate {
                minutes: 0x75,
                ..QEMU
            },
            CmosDate {
                hours: 0x24,
                ..QEMU
            },
            CmosDate { day: 0x00, ..QEMU },
            CmosDate { day: 0x32, ..QEMU },
            CmosDate {
                month: 0x13,
                ..QEMU
            },
            CmosDate {
                month: 0x02,
                day: 0x30,
                ..QEMU
            },
            CmosDate { year: 0xa0, ..QEMU },
            CmosDate {
                seconds: 200,
                status_b: STATUS_B_BINARY | STATUS_B_24H,
                ..QEMU
            },
            CmosDate {
                year: 100,
                status_b: STATUS_B_BINARY | STATUS_B_24H,
                ..QEMU
            },
            CmosDate::default(),
        ] {
            assert_eq!(bad.decode(), None, "{bad:?}");
        }
    }
}
