//! Domain UUIDs (issue 15, "ready for a fleet engine"): a fleet engine
//! (OpenStack Nova and the like) names instances by UUID, not by a host's
//! domain id or a name an operator may reuse. A domain's UUID is the
//! configuration's `uuid = "..."`, else generated when dom0 first builds
//! it (RFC 4122 version 4: 122 random bits); a domain restarted by its
//! `on_*` policy keeps it.
//!
//! Text form: RFC 4122 section 3, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`
//! in hex digits, read in either case, written in lower case.

use core::fmt;

/// A UUID, its 16 bytes in RFC 4122 (big-endian field) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(pub [u8; 16]);

/// Where the hyphens of the text form are.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

impl Uuid {
    /// Reads the 36-character text form; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 36 {
            return None;
        }
        let mut out = [0u8; 16];
        let mut nibbles = b
            .iter()
            .enumerate()
            .filter(|(i, _)| !HYPHENS.contains(i))
            .map(|(_, &c)| (c as char).to_digit(16));
        if HYPHENS.iter().any(|&i| b.get(i) != Some(&b'-')) {
            return None;
        }
        for byte in &mut out {
            let hi = nibbles.next()??;
            let lo = nibbles.next()??;
            *byte = u8::try_from(hi << 4 | lo).ok()?;
        }
        Some(Self(out))
    }

    /// A version 4 UUID from 128 random bits (RFC 4122 4.4: the version
    /// nibble is 4, the variant bits 10).
    pub fn v4(random: u128) -> Self {
        let mut b = random.to_be_bytes();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Self(b)
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): spreads a seed dom0 takes from
/// RDRAND (or, without it, the TSC) over the UUIDs it generates; each
/// output also mixes in the caller's fresh entropy, so a weak seed alone
/// does not fix every later UUID.
#[derive(Debug, Clone, Default)]
pub struct UuidSource {
    state: u64,
}

impl UuidSource {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next(&mut self, fresh: u64) -> u64 {
        self.state = self
            .state
            .wrapping_add(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(fresh);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A new version 4 UUID; `fresh` is whatever entropy the caller has
    /// now (a RDRAND value, the clock).
    pub fn uuid(&mut self, fresh: u64) -> Uuid {
        let hi = self.next(fresh);
        let lo = self.next(0);
        Uuid::v4(u128::from(hi) << 64 | u128::from(lo))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn text_form_round_trips() {
        let s = "123e4567-e89b-42d3-a456-426614174000";
        let u = Uuid::parse(s).unwrap();
        assert_eq!(u.to_string(), s);
        assert_eq!(
            Uuid::parse("123E4567-E89B-42D3-A456-426614174000"),
            Some(u),
            "upper case is read"
        );
        for bad in [
            "",
            "123e4567e89b42d3a456426614174000",
            "123e4567-e89b-42d3-a456-42661417400",
            "123e4567-e89b-42d3-a456-4266141740000",
            "123e4567-e89b-42d3-a456_426614174000",
            "123e4567-e89b-42d3-a456-42661417400g",
            "+23e4567-e89b-42d3-a456-426614174000",
        ] {
            assert_eq!(Uuid::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn generated_ones_are_version_4_and_differ() {
        let mut src = UuidSource::new(1);
        let a = src.uuid(0);
        let b = src.uuid(0);
        assert_ne!(a, b);
        for u in [a, b, Uuid::v4(0), Uuid::v4(u128::MAX)] {
            let s = u.to_string();
            assert_eq!(s.as_bytes()[14], b'4', "{s}");
            assert!(matches!(s.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{s}");
            assert_eq!(Uuid::parse(&s), Some(u));
        }
    }
}
