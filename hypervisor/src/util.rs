//! Small helpers with no better home: a CRC-32 for checking boot modules and
//! a human-readable byte size for log lines.
#![forbid(unsafe_code)]

use core::fmt;

/// The reflected IEEE 802.3 polynomial (the one zlib, PNG and `cksum -o 3`
/// use), so a module's checksum can be compared with `crc32` on the build
/// host.
const CRC32_POLY: u32 = 0xEDB8_8320;

/// Byte-at-a-time lookup table, built at compile time so nothing runs at boot
/// and no dependency is needed. 1 KiB of read-only data.
static CRC32_TABLE: [u32; 256] = crc32_table();

const fn crc32_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                CRC32_POLY ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

/// CRC-32 (IEEE) of `bytes`: `crc32(b"123456789") == 0xCBF4_3926`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32_update(0, bytes)
}

/// Continues a CRC-32 over more bytes: `crc32_update(crc32(a), b)` equals
/// `crc32` of `a` followed by `b`. Lets a large module be checked in pieces.
pub fn crc32_update(crc: u32, bytes: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in bytes {
        // The index is a u8-masked value, so it is always below 256.
        c = CRC32_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

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
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn crc32_empty_and_known() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"a"), 0xE8B7_BE43);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn crc32_incremental_matches_whole() {
        let data: std::vec::Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for split in [0, 1, 17, 500, 999, 1000] {
            let (a, b) = data.split_at(split);
            assert_eq!(crc32_update(crc32(a), b), crc32(&data));
        }
    }

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
