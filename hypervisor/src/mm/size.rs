//! Byte counts for log lines.
#![forbid(unsafe_code)]

use core::fmt;

/// A byte count that displays in binary units: `512 B`, `12 KiB`, `1.5 MiB`,
/// `128 MiB`. One decimal is shown when the value is not a whole number of
/// the unit; it is truncated, not rounded, so a size is never overstated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let mut unit = 0;
        // Largest unit not exceeding the value; u64::MAX is just under 16 EiB.
        while unit + 1 < UNITS.len() && self.0 >> (10 * (unit + 1)) != 0 {
            unit += 1;
        }
        let shift = 10 * unit;
        let whole = self.0 >> shift;
        // Tenths of the unit from the remainder; u128 so `* 10` cannot overflow.
        let rem = u128::from(self.0) - (u128::from(whole) << shift);
        let tenths = (rem * 10) >> shift;
        let name = UNITS[unit];
        if tenths == 0 {
            write!(f, "{whole} {name}")
        } else {
            write!(f, "{whole}.{tenths} {name}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn size_display() {
        let cases: [(u64, &str); 13] = [
            (0, "0 B"),
            (1, "1 B"),
            (1023, "1023 B"),
            (1024, "1 KiB"),
            (1536, "1.5 KiB"),
            (12 * 1024, "12 KiB"),
            (3 * 512 * 1024, "1.5 MiB"),
            (128 << 20, "128 MiB"),
            ((2 << 20) - 1, "1.9 MiB"),
            (1 << 30, "1 GiB"),
            ((5 << 40) + (1 << 39), "5.5 TiB"),
            (1 << 60, "1 EiB"),
            (u64::MAX, "15.9 EiB"),
        ];
        for (v, want) in cases {
            assert_eq!(Size(v).to_string(), want, "Size({v})");
        }
    }
}
