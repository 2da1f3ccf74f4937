//! Reading a qcow2 file held in memory (dom0 holds an upload whole).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::MAGIC;
use crate::error::{Result, StoreError};

/// L1 entry bits 9-55: the L2 table's offset (qcow2 spec, "Cluster
/// mapping"); L2 entry (standard cluster) bits 9-55: the data's offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Bit 63 of L1 and L2 entries: "COPIED" (refcount is 1); ignored on read.
const COPIED: u64 = 1 << 63;
/// Bit 62 of an L2 entry: the cluster is compressed.
const COMPRESSED: u64 = 1 << 62;
/// Bit 0 of a standard L2 entry (version 3): the cluster reads as zeros.
const ZERO: u64 = 1;
/// Largest virtual size taken: 16 TiB (far beyond any disk dom0 has, and
/// keeps cluster arithmetic far from overflow).
const SIZE_MAX: u64 = 1 << 44;

fn err<T>(w: String) -> Result<T> {
    Err(StoreError::Qcow2(w))
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

/// A parsed qcow2 file: header checked, L1 table read.
#[derive(Debug)]
pub struct Qcow2<'a> {
    src: &'a [u8],
    version: u32,
    cluster_bits: u32,
    size: u64,
    l1: Vec<u64>,
}

impl<'a> Qcow2<'a> {
    /// Checks the header (qcow2 spec, "Header") and reads the L1 table.
    pub fn parse(src: &'a [u8]) -> Result<Self> {
        if src.len() < 72 || src[0..4] != MAGIC {
            return err("not a qcow2 file (no QFI\\xfb magic)".into());
        }
        let version = be32(src, 4);
        if version != 2 && version != 3 {
            return err(format!("version {version} (only 2 and 3 are read)"));
        }
        let backing = be64(src, 8);
        if backing != 0 {
            let len = be32(src, 16) as usize;
            let name = usize::try_from(backing)
                .ok()
                .and_then(|b| src.get(b..b.checked_add(len)?))
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default();
            return err(format!(
                "backing files are not supported (this image's backing file is {name:?}): \
                 flatten it first (qemu-img convert -O qcow2)"
            ));
        }
        let cluster_bits = be32(src, 20);
        if !(9..=21).contains(&cluster_bits) {
            return err(format!(
                "cluster_bits {cluster_bits} (the spec allows 9 to 21)"
            ));
        }
        let size = be64(src, 24);
        if size > SIZE_MAX {
            return err(format!("virtual size {size} bytes (at most {SIZE_MAX})"));
        }
        let crypt = be32(src, 32);
        if crypt != 0 {
            return err(format!(
                "encryption is not supported (crypt_method {crypt})"
            ));
        }
        if version == 3 {
            if src.len() < 104 {
                return err(format!("version 3 header cut short ({} bytes)", src.len()));
            }
            let header_length = be32(src, 100);
            if header_length < 104 || header_length as usize > src.len() {
                return err(format!("header_length {header_length}"));
            }
            let incompatible = be64(src, 72);
            // Bit 0 "dirty" (refcounts may be stale) is harmless to a
            // reader that never looks at refcounts.
            let named = [
                (1u64 << 1, "the image is marked corrupt"),
                (1 << 2, "external data files are not supported"),
                (
                    1 << 3,
                    "compression types other than zlib are not supported (nor is compression)",
                ),
                (
                    1 << 4,
                    "extended L2 entries (subclusters) are not supported",
                ),
            ];
            for (bit, what) in named {
                if incompatible & bit != 0 {
                    return err(what.into());
                }
            }
            let unknown = incompatible & !0x1f;
            if unknown != 0 {
                return err(format!("unknown incompatible feature bits {unknown:#x}"));
            }
        }
        let cs = 1u64 << cluster_bits;
        let l1_size = be32(src, 36) as u64;
        let l1_offset = be64(src, 40);
        // Each L1 entry maps cs/8 clusters.
        let need = size.div_ceil(cs).div_ceil(cs / 8);
        if l1_size < need {
            return err(format!(
                "L1 table of {l1_size} entries maps less than the virtual size {size} (needs {need})"
            ));
        }
        let l1_bytes = l1_size * 8;
        let l1 = Self::slice(src, l1_offset, l1_bytes, cs, "L1 table")?;
        let l1 = (0..need as usize).map(|i| be64(l1, i * 8)).collect();
        Ok(Qcow2 {
            src,
            version,
            cluster_bits,
            size,
            l1,
        })
    }

    /// `len` bytes at `offset`, which must be cluster-aligned and inside
    /// the file.
    fn slice(src: &'a [u8], offset: u64, len: u64, cs: u64, what: &str) -> Result<&'a [u8]> {
        if offset == 0 || !offset.is_multiple_of(cs) {
            return err(format!(
                "{what} at offset {offset:#x} is not cluster-aligned"
            ));
        }
        let end = offset.checked_add(len).filter(|&e| e <= src.len() as u64);
        match end {
            Some(end) => Ok(&src[offset as usize..end as usize]),
            None => err(format!(
                "{what} at offset {offset:#x} ({len} bytes) extends past the end of the file ({} bytes)",
                src.len()
            )),
        }
    }

    /// The guest-visible size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Bytes per cluster.
    pub fn cluster_size(&self) -> usize {
        1 << self.cluster_bits
    }

    /// The bytes of virtual cluster `index`: `None` when it reads as
    /// zeros (unallocated, or the zero flag).
    fn cluster(&self, index: u64) -> Result<Option<&'a [u8]>> {
        let cs = 1u64 << self.cluster_bits;
        let per_l2 = cs / 8;
        let l1e = self.l1[(index / per_l2) as usize];
        if l1e & !(OFFSET_MASK | COPIED) != 0 {
            return err(format!(
                "L1 entry {} has reserved bits set ({l1e:#x})",
                index / per_l2
            ));
        }
        let l2_offset = l1e & OFFSET_MASK;
        if l2_offset == 0 {
            return Ok(None);
        }
        let l2 = Self::slice(self.src, l2_offset, cs, cs, "L2 table")?;
        let l2e = be64(l2, ((index % per_l2) * 8) as usize);
        let vaddr = index * cs;
        if l2e & COMPRESSED != 0 {
            return err(format!(
                "compressed clusters are not supported (virtual offset {vaddr:#x}): \
                 convert without -c first"
            ));
        }
        let reserved = !(OFFSET_MASK | COPIED | if self.version == 3 { ZERO } else { 0 });
        if l2e & reserved != 0 {
            return err(format!(
                "L2 entry for virtual offset {vaddr:#x} has reserved bits set ({l2e:#x})"
            ));
        }
        if l2e & ZERO != 0 {
            return Ok(None);
        }
        let offset = l2e & OFFSET_MASK;
        if offset == 0 {
            return Ok(None);
        }
        Self::slice(self.src, offset, cs, cs, "data cluster").map(Some)
    }

    /// Reads guest-visible bytes from `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.size) {
            return err(format!(
                "{} bytes at {offset} are beyond the virtual size {}",
                buf.len(),
                self.size
            ));
        }
        let cs = self.cluster_size();
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let within = (at % cs as u64) as usize;
            let n = (cs - within).min(buf.len() - done);
            let dst = &mut buf[done..done + n];
            match self.cluster(at / cs as u64)? {
                Some(c) => dst.copy_from_slice(&c[within..within + n]),
                None => dst.fill(0),
            }
            done += n;
        }
        Ok(())
    }
}
