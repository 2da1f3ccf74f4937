//! The on-disk format (docs/store.md has the picture and the reasons).
//!
//! Store block 0 and 1 are the two root slots. A root names the one
//! metadata extent of its generation and carries the metadata's CRC-32;
//! the metadata lists every object and its extents. Every other block is
//! data or free. All integers are little-endian.
//!
//! Root (first 64 bytes of its 4096-byte slot, the rest zero):
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `KSTRROOT` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | block size (4096) |
//! | 16 | 8 | generation (a commit writes generation + 1 into the other slot) |
//! | 24 | 8 | store blocks (the disk's size when formatted) |
//! | 32 | 8 | metadata: first block |
//! | 40 | 8 | metadata: blocks |
//! | 48 | 8 | metadata: bytes |
//! | 56 | 4 | metadata: CRC-32 of its bytes |
//! | 60 | 4 | CRC-32 of bytes 0..60 |
//!
//! Metadata: `KSTRMETA`, generation (u64, equals the root's), object
//! count (u32), 4 bytes zero, then per object: kind (u8: 1 image, 2
//! volume), name length (u8), 2 bytes zero, extent count (u32), size in
//! bytes (u64), SHA-256 (32 bytes; zero for volumes), the name, then the
//! extents as (first block u64, blocks u64).
//!
//! Decoding checks every rule (names, extents inside the disk, no block
//! owned twice, extent total matching the size): a root whose metadata
//! breaks one is not used.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::disk::BLOCK;
use crate::error::{Result, StoreError};

/// Root magic.
pub const ROOT_MAGIC: &[u8; 8] = b"KSTRROOT";
/// Metadata magic.
pub const META_MAGIC: &[u8; 8] = b"KSTRMETA";
/// On-disk format version.
pub const VERSION: u32 = 1;
/// The first block data or metadata may use (0 and 1 are the roots).
pub const FIRST_DATA: u64 = 2;
/// Longest object name, in bytes.
pub const NAME_MAX: usize = 64;
/// Most objects a store holds (bounds the metadata a root may name).
pub const OBJECTS_MAX: usize = 4096;
/// Most extents one object may have.
pub const EXTENTS_MAX: usize = 4096;

/// A run of store blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Extent {
    /// First block.
    pub start: u64,
    /// Number of blocks (non-zero).
    pub blocks: u64,
}

impl Extent {
    /// One past the last block.
    pub fn end(&self) -> u64 {
        self.start + self.blocks
    }
}

/// The two kinds of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Immutable once committed; has a SHA-256.
    Image,
    /// Fixed size, writable in place.
    Volume,
    /// Fixed size, written in place by dom0 only: a ring of log blocks
    /// (`crate::log`), not listed as a volume.
    Log,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Image => 1,
            Kind::Volume => 2,
            Kind::Log => 3,
        }
    }
    /// `image` or `volume`.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Volume => "volume",
            Kind::Log => "log",
        }
    }
}

/// An object as the metadata records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Image or volume.
    pub kind: Kind,
    /// Its name (unique within its kind).
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the bytes (images); zero for volumes.
    pub sha256: [u8; 32],
    /// Where the bytes are, in order.
    pub extents: Vec<Extent>,
}

/// Blocks needed for `bytes`.
pub fn blocks_for(bytes: u64) -> u64 {
    bytes.div_ceil(BLOCK as u64)
}

/// Checks a name: 1 to 64 bytes of `A-Z a-z 0-9 . _ -`, not starting
/// with `.` or `-` (names appear in hvctl's command lines and output).
pub fn check_name(name: &str) -> Result<()> {
    let ok_char = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-');
    if name.is_empty() || name.len() > NAME_MAX {
        return Err(StoreError::BadName(format!(
            "name {name:?} must be 1 to {NAME_MAX} bytes long"
        )));
    }
    if !name.bytes().all(ok_char) || name.starts_with(['.', '-']) {
        return Err(StoreError::BadName(format!(
            "name {name:?} may hold only A-Z a-z 0-9 . _ - and must not start with . or -"
        )));
    }
    Ok(())
}

/// A decoded root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Root {
    pub generation: u64,
    pub total: u64,
    pub meta: Extent,
    pub meta_len: u64,
    pub meta_crc: u32,
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

impl Root {
    /// The slot's 4096 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = alloc::vec![0u8; BLOCK];
        b[0..8].copy_from_slice(ROOT_MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(BLOCK as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.generation.to_le_bytes());
        b[24..32].copy_from_slice(&self.total.to_le_bytes());
        b[32..40].copy_from_slice(&self.meta.start.to_le_bytes());
        b[40..48].copy_from_slice(&self.meta.blocks.to_le_bytes());
        b[48..56].copy_from_slice(&self.meta_len.to_le_bytes());
        b[56..60].copy_from_slice(&self.meta_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a slot. `Ok(None)` when it has no magic at all (never
    /// written or foreign); `Err` names what is wrong with a slot that
    /// has the magic. `disk_blocks` bounds everything it points at.
    pub fn decode(b: &[u8], disk_blocks: u64) -> Result<Option<Root>> {
        if b.len() < 64 || &b[0..8] != ROOT_MAGIC {
            return Ok(None);
        }
        let bad = |w: String| Err(StoreError::Corrupt(w));
        let crc = crc32fast::hash(&b[0..60]);
        if crc != le32(b, 60) {
            return bad(format!(
                "checksum {:08x} does not match the stored {:08x} (torn or damaged)",
                crc,
                le32(b, 60)
            ));
        }
        let (version, bs) = (le32(b, 8), le32(b, 12));
        if version != VERSION || bs as usize != BLOCK {
            return bad(format!(
                "format version {version} block size {bs} (this dom0 reads version {VERSION}, {BLOCK})"
            ));
        }
        let root = Root {
            generation: le64(b, 16),
            total: le64(b, 24),
            meta: Extent {
                start: le64(b, 32),
                blocks: le64(b, 40),
            },
            meta_len: le64(b, 48),
            meta_crc: le32(b, 56),
        };
        if root.total > disk_blocks || root.total <= FIRST_DATA {
            return bad(format!(
                "store of {} blocks does not fit the disk's {disk_blocks}",
                root.total
            ));
        }
        let m = root.meta;
        let fits = m.start >= FIRST_DATA
            && m.blocks > 0
            && m.start
                .checked_add(m.blocks)
                .is_some_and(|e| e <= root.total)
            && root.meta_len <= m.blocks * BLOCK as u64
            && root.meta_len >= 24;
        if !fits {
            return bad(format!(
                "metadata at blocks {}..+{} ({} bytes) is outside the store",
                m.start, m.blocks, root.meta_len
            ));
        }
        Ok(Some(root))
    }
}

/// Encodes the metadata of `generation`.
pub fn encode_meta(generation: u64, objects: &[Object]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(META_MAGIC);
    b.extend_from_slice(&generation.to_le_bytes());
    b.extend_from_slice(&(objects.len() as u32).to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    for o in objects {
        b.push(o.kind.code());
        b.push(o.name.len() as u8);
        b.extend_from_slice(&[0; 2]);
        b.extend_from_slice(&(o.extents.len() as u32).to_le_bytes());
        b.extend_from_slice(&o.size.to_le_bytes());
        b.extend_from_slice(&o.sha256);
        b.extend_from_slice(o.name.as_bytes());
        for e in &o.extents {
            b.extend_from_slice(&e.start.to_le_bytes());
            b.extend_from_slice(&e.blocks.to_le_bytes());
        }
    }
    b
}

/// A bounds-checked cursor over metadata bytes.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        match end {
            Some(end) => {
                let s = &self.b[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(StoreError::Corrupt(format!(
                "metadata ends at byte {} inside a record",
                self.b.len()
            ))),
        }
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(le64(self.take(8)?, 0))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(le32(self.take(4)?, 0))
    }
}

/// Decodes and checks the metadata `root` names.
pub fn decode_meta(b: &[u8], root: &Root) -> Result<Vec<Object>> {
    let bad = |w: String| StoreError::Corrupt(w);
    let mut c = Cursor { b, at: 0 };
    if c.take(8)? != META_MAGIC {
        return Err(bad("metadata has no KSTRMETA magic".into()));
    }
    let generation = c.u64()?;
    if generation != root.generation {
        return Err(bad(format!(
            "metadata of generation {generation} under a root of generation {}",
            root.generation
        )));
    }
    let count = c.u32()? as usize;
    c.take(4)?;
    if count > OBJECTS_MAX {
        return Err(bad(format!("{count} objects (at most {OBJECTS_MAX})")));
    }
    // Every block owned at most once: the roots, the metadata, the objects.
    let mut owned: Vec<Extent> = alloc::vec![
        Extent {
            start: 0,
            blocks: FIRST_DATA
        },
        root.meta
    ];
    let mut objects = Vec::with_capacity(count);
    for i in 0..count {
        let head = c.take(48)?;
        let kind = match head[0] {
            1 => Kind::Image,
            2 => Kind::Volume,
            3 => Kind::Log,
            k => return Err(bad(format!("object {i} has kind {k}"))),
        };
        let name_len = head[1] as usize;
        let n_ext = le32(head, 4) as usize;
        let size = le64(head, 8);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&head[16..48]);
        let name = core::str::from_utf8(c.take(name_len)?)
            .map_err(|_| bad(format!("object {i}'s name is not UTF-8")))?;
        check_name(name).map_err(|e| bad(format!("object {i}: {e}")))?;
        if objects
            .iter()
            .any(|o: &Object| o.kind == kind && o.name == name)
        {
            return Err(bad(format!("{} {name:?} is listed twice", kind.word())));
        }
        if n_ext > EXTENTS_MAX {
            return Err(bad(format!("{} {name:?} has {n_ext} extents", kind.word())));
        }
        let mut extents = Vec::with_capacity(n_ext);
        let mut sum = 0u64;
        for _ in 0..n_ext {
            let e = Extent {
                start: c.u64()?,
                blocks: c.u64()?,
            };
            let inside = e.blocks > 0
                && e.start >= FIRST_DATA
                && e.start
                    .checked_add(e.blocks)
                    .is_some_and(|end| end <= root.total);
            if !inside {
                return Err(bad(format!(
                    "{} {name:?}: extent {}..+{} is outside the store's data blocks",
                    kind.word(),
                    e.start,
                    e.blocks
                )));
            }
            sum += e.blocks;
            extents.push(e);
            owned.push(e);
        }
        if sum != blocks_for(size) {
            return Err(bad(format!(
                "{} {name:?}: {sum} blocks for {size} bytes",
                kind.word()
            )));
        }
        objects.push(Object {
            kind,
            name: name.into(),
            size,
            sha256,
            extents,
        });
    }
    if c.at != b.len() {
        return Err(bad(format!(
            "{} bytes after the last object",
            b.len() - c.at
        )));
    }
    owned.sort();
    for w in owned.windows(2) {
        if w[0].end() > w[1].start {
            return Err(bad(format!(
                "block {} is owned twice (extents {}..+{} and {}..+{})",
                w[1].start, w[0].start, w[0].blocks, w[1].start, w[1].blocks
            )));
        }
    }
    Ok(objects)
}
