//! The Identify data the driver reads (NVMe 1.4 5.15.2).

/// From Identify Controller (figure 247).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// Model Number (bytes 63:24), ASCII, trailing spaces trimmed.
    pub model: [u8; 40],
    /// Length of `model` after trimming.
    pub model_len: usize,
    /// Serial Number (bytes 23:04), trimmed length in `serial_len`.
    pub serial: [u8; 20],
    /// Length of `serial` after trimming.
    pub serial_len: usize,
    /// MDTS (byte 77): largest transfer is `2^mdts` minimum pages; 0 = no
    /// limit.
    pub mdts: u8,
    /// Number of Namespaces (bytes 519:516).
    pub namespaces: u32,
}

fn trimmed(b: &[u8]) -> usize {
    b.iter()
        .rposition(|&c| c != b' ' && c != 0)
        .map_or(0, |i| i + 1)
}

impl Controller {
    /// Parses the 4096-byte data structure.
    pub fn parse(d: &[u8; 4096]) -> Self {
        let mut model = [0; 40];
        model.copy_from_slice(&d[24..64]);
        let mut serial = [0; 20];
        serial.copy_from_slice(&d[4..24]);
        Self {
            model_len: trimmed(&model),
            model,
            serial_len: trimmed(&serial),
            serial,
            mdts: d[77],
            namespaces: u32::from_le_bytes([d[516], d[517], d[518], d[519]]),
        }
    }

    /// The model as text (non-ASCII bytes as `?`).
    pub fn model_str(&self) -> impl Iterator<Item = char> + '_ {
        self.model[..self.model_len].iter().map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '?'
            }
        })
    }

    /// Largest transfer in bytes for minimum page `page_min`, capped at
    /// `cap` (0 MDTS = no limit from the controller).
    pub fn max_transfer(&self, page_min: u64, cap: u64) -> u64 {
        if self.mdts == 0 || self.mdts >= 32 {
            return cap;
        }
        (page_min << self.mdts).min(cap)
    }
}

/// From Identify Namespace (figure 245).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespace {
    /// Namespace Size (bytes 7:0) in logical blocks; 0 if inactive.
    pub blocks: u64,
    /// Logical block size in bytes, from the LBA format FLBAS selects
    /// (byte 26 bits 3:0; LBAF at 128 + 4 * n, LBADS bits 23:16).
    pub block_size: u64,
    /// Metadata bytes per block in that format (MS, bits 15:0).
    pub metadata: u16,
}

impl Namespace {
    /// Parses the 4096-byte data structure; `None` if FLBAS names a
    /// format beyond NLBAF or LBADS is outside 9..=16 (512 B..64 KiB).
    pub fn parse(d: &[u8; 4096]) -> Option<Self> {
        let blocks = u64::from_le_bytes(d[0..8].try_into().ok()?);
        let nlbaf = d[25];
        let f = d[26] & 0xf;
        if f > nlbaf {
            return None;
        }
        let at = 128 + 4 * usize::from(f);
        let lbaf = u32::from_le_bytes(d[at..at + 4].try_into().ok()?);
        let lbads = (lbaf >> 16) & 0xff;
        if !(9..=16).contains(&lbads) {
            return None;
        }
        Some(Self {
            blocks,
            block_size: 1 << lbads,
            metadata: lbaf as u16,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn controller() {
        let mut d = [0u8; 4096];
        d[4..12].copy_from_slice(b"kestrel0");
        d[12..24].fill(b' ');
        let m = b"QEMU NVMe Ctrl";
        d[24..24 + m.len()].copy_from_slice(m);
        d[24 + m.len()..64].fill(b' ');
        d[77] = 7;
        d[516] = 1;
        let c = Controller::parse(&d);
        assert_eq!(&c.model[..c.model_len], m);
        assert_eq!(&c.serial[..c.serial_len], b"kestrel0");
        assert_eq!(c.model_str().collect::<alloc_free::S>().0, 14);
        assert_eq!(c.namespaces, 1);
        assert_eq!(c.max_transfer(4096, 1 << 20), 512 * 1024);
        assert_eq!(c.max_transfer(4096, 64 * 1024), 64 * 1024);
        d[77] = 0;
        assert_eq!(Controller::parse(&d).max_transfer(4096, 1 << 20), 1 << 20);
    }

    /// Counts chars without alloc.
    mod alloc_free {
        pub struct S(pub usize);
        impl FromIterator<char> for S {
            fn from_iter<I: IntoIterator<Item = char>>(i: I) -> Self {
                S(i.into_iter().count())
            }
        }
    }

    #[test]
    fn namespace() {
        let mut d = [0u8; 4096];
        d[0..8].copy_from_slice(&32768u64.to_le_bytes());
        d[25] = 1; // two formats
        d[26] = 1; // the second in use
        d[128..132].copy_from_slice(&(9u32 << 16).to_le_bytes());
        d[132..136].copy_from_slice(&(12u32 << 16 | 8).to_le_bytes());
        let n = Namespace::parse(&d).unwrap();
        assert_eq!((n.blocks, n.block_size, n.metadata), (32768, 4096, 8));
        d[26] = 0;
        assert_eq!(Namespace::parse(&d).unwrap().block_size, 512);
        d[26] = 2; // beyond NLBAF
        assert!(Namespace::parse(&d).is_none());
        d[26] = 0;
        d[128..132].copy_from_slice(&(8u32 << 16).to_le_bytes());
        assert!(Namespace::parse(&d).is_none());
    }
}
