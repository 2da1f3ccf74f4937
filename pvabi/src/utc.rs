//! Calendar dates for wall-clock time: Unix time (UTC, no leap seconds) to
//! and from year, month, day, hour, minute, second, in the proleptic
//! Gregorian calendar. The hypervisor turns the CMOS RTC's date into the
//! wall-clock base with [`UtcTime::to_unix_s`]; guests print
//! [`TimeInfo::wall_clock_ns_at`](crate::TimeInfo::wall_clock_ns_at) with
//! [`UtcTime::from_unix_ns`] and its `Display` (ISO 8601, `2020-01-02T03:04:05Z`).
//!
//! The day arithmetic is Howard Hinnant's `days_from_civil` /
//! `civil_from_days` (public domain, "chrono-Compatible Low-Level Date
//! Algorithms"): eras of 400 years, March-based years so the leap day is
//! the last of the year.

use core::fmt;

/// A moment in UTC, to the nanosecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UtcTime {
    /// Year, 1970 ..= 2554 from [`UtcTime::from_unix_ns`].
    pub year: u32,
    /// Month, 1 ..= 12.
    pub month: u8,
    /// Day of the month, 1 ..= 31.
    pub day: u8,
    /// Hour, 0 ..= 23.
    pub hour: u8,
    /// Minute, 0 ..= 59.
    pub minute: u8,
    /// Second, 0 ..= 59.
    pub second: u8,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

const NS_PER_S: u64 = 1_000_000_000;
const S_PER_DAY: u64 = 86_400;

/// Days in `month` of `year`.
pub const fn days_in_month(year: u32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

impl UtcTime {
    /// The date of Unix time `ns` (nanoseconds since 1970-01-01T00:00:00Z).
    pub const fn from_unix_ns(ns: u64) -> Self {
        let secs = ns / NS_PER_S;
        let days = secs / S_PER_DAY;
        let rem = secs % S_PER_DAY;
        // civil_from_days, for days >= 0 (so eras are never negative).
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
        Self {
            year: year as u32,
            month: month as u8,
            day: day as u8,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
            nanos: (ns % NS_PER_S) as u32,
        }
    }

    /// Unix seconds of this date (nanoseconds ignored), or `None` when a
    /// field is out of range (month 13, February 30, hour 24, ...) or the
    /// date is before 1970. Every field is checked: the hypervisor feeds it
    /// what the RTC chip says.
    pub const fn to_unix_s(&self) -> Option<u64> {
        if self.year < 1970
            || self.month < 1
            || self.month > 12
            || self.day < 1
            || self.day > days_in_month(self.year, self.month)
            || self.hour > 23
            || self.minute > 59
            || self.second > 59
        {
            return None;
        }
        // days_from_civil.
        let y = self.year as u64 - if self.month <= 2 { 1 } else { 0 };
        let era = y / 400;
        let yoe = y - era * 400;
        let m = self.month as u64;
        let mp = if m > 2 { m - 3 } else { m + 9 };
        let doy = (153 * mp + 2) / 5 + self.day as u64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        Some(
            days * S_PER_DAY
                + self.hour as u64 * 3600
                + self.minute as u64 * 60
                + self.second as u64,
        )
    }
}

impl fmt::Display for UtcTime {
    /// ISO 8601 to the second: `2020-01-02T03:04:05Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::*;

    fn t(year: u32, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> UtcTime {
        UtcTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            nanos: 0,
        }
    }

    #[test]
    fn known_dates() {
        // `date -u -d 2020-01-02T03:04:05 +%s` = 1577934245.
        let d = t(2020, 1, 2, 3, 4, 5);
        assert_eq!(d.to_unix_s(), Some(1_577_934_245));
        assert_eq!(
            UtcTime::from_unix_ns(1_577_934_245 * NS_PER_S + 7),
            UtcTime { nanos: 7, ..d }
        );
        assert_eq!(d.to_string(), "2020-01-02T03:04:05Z");
        assert_eq!(t(1970, 1, 1, 0, 0, 0).to_unix_s(), Some(0));
        assert_eq!(UtcTime::from_unix_ns(0), t(1970, 1, 1, 0, 0, 0));
        // Leap days: 2000 (div. by 400) is leap, 2100 is not.
        assert_eq!(t(2000, 2, 29, 23, 59, 59).to_unix_s(), Some(951_868_799));
        assert_eq!(t(2100, 2, 29, 0, 0, 0).to_unix_s(), None);
        assert_eq!(t(2024, 2, 29, 12, 0, 0).to_unix_s(), Some(1_709_208_000));
        assert_eq!(UtcTime::from_unix_ns(u64::MAX).year, 2554);
    }

    #[test]
    fn round_trip_every_day_for_centuries() {
        let mut s = 0u64;
        while s < 200 * 366 * S_PER_DAY {
            let d = UtcTime::from_unix_ns(s * NS_PER_S + 12_345);
            assert_eq!(d.to_unix_s(), Some(s), "{d}");
            s += S_PER_DAY + 3_661;
        }
    }

    #[test]
    fn nonsense_from_a_clock_chip_is_refused() {
        for bad in [
            t(1969, 12, 31, 23, 59, 59),
            t(2020, 0, 1, 0, 0, 0),
            t(2020, 13, 1, 0, 0, 0),
            t(2020, 4, 31, 0, 0, 0),
            t(2021, 2, 29, 0, 0, 0),
            t(2020, 1, 0, 0, 0, 0),
            t(2020, 1, 1, 24, 0, 0),
            t(2020, 1, 1, 0, 60, 0),
            t(2020, 1, 1, 0, 0, 60),
        ] {
            assert_eq!(bad.to_unix_s(), None, "{bad:?}");
        }
    }
}
