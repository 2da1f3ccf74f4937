//! Boot protocols: each entry path is parsed into one [`BootInfo`].
//!
//! The parsers never dereference loader pointers themselves: they read
//! physical memory through [`PhysRead`], which the architecture code
//! implements over the boot identity map and the host tests implement over a
//! byte buffer. Every length the loader supplies is bounds-checked.

pub mod cmdline;
pub mod info;
pub mod multiboot2;
pub mod pciopts;
pub mod pvh;
pub mod rtc;
pub mod spec;
pub mod tscfreq;

pub use info::{BootInfo, BootInfoError, BootProtocol, MemoryRegion, Module, RegionKind};

/// Reads physical memory during boot.
pub trait PhysRead {
    /// Copies `buf.len()` bytes starting at physical address `paddr`.
    /// Returns `false` (and leaves `buf` unspecified) if any byte of the range
    /// is not readable, including on address overflow.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool;
}

/// Reads a little-endian `u32` at `paddr`.
pub fn read_u32(mem: &impl PhysRead, paddr: u64) -> Option<u32> {
    let mut b = [0u8; 4];
    mem.read(paddr, &mut b).then(|| u32::from_le_bytes(b))
}

/// Reads a little-endian `u64` at `paddr`.
pub fn read_u64(mem: &impl PhysRead, paddr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    mem.read(paddr, &mut b).then(|| u64::from_le_bytes(b))
}

/// Reads a NUL-terminated UTF-8 string of at most `N` bytes (NUL excluded)
/// starting at `paddr`, looking at no more than `limit` bytes.
///
/// Loader strings are untrusted: the NUL must occur within `limit` bytes
/// and the bytes must be valid UTF-8, otherwise the result is
/// [`BootInfoError::BadString`]; more than `N` bytes before it gives
/// [`BootInfoError::TooLong`] (naming `N`). Unreadable memory gives
/// [`BootInfoError::Truncated`] with the offset from `paddr`.
pub fn read_cstr<const N: usize>(
    mem: &impl PhysRead,
    paddr: u64,
    limit: u64,
    what: &'static str,
) -> Result<arrayvec::ArrayString<N>, BootInfoError> {
    let mut bytes = arrayvec::ArrayVec::<u8, N>::new();
    let mut off = 0u64;
    // Byte-wise reads keep this simple; strings are at most a few hundred
    // bytes and are read once at boot.
    loop {
        if off >= limit {
            return Err(BootInfoError::BadString { what });
        }
        let addr = paddr
            .checked_add(off)
            .ok_or(BootInfoError::Truncated { what, offset: off })?;
        let mut b = [0u8; 1];
        if !mem.read(addr, &mut b) {
            return Err(BootInfoError::Truncated { what, offset: off });
        }
        if b[0] == 0 {
            break;
        }
        bytes
            .try_push(b[0])
            .map_err(|_| BootInfoError::TooLong { what, limit: N })?;
        off += 1;
    }
    let s = core::str::from_utf8(&bytes).map_err(|_| BootInfoError::BadString { what })?;
    arrayvec::ArrayString::from(s).map_err(|_| BootInfoError::BadString { what })
}

/// Appends one e820-style entry (`base`, `len`, type code) to a boot memory
/// map. Empty entries are skipped. An entry that ends exactly at 2^64 is
/// clipped to end at `u64::MAX` (the exclusive end cannot express 2^64);
/// one that would wrap further is rejected.
pub(crate) fn push_e820_region(
    memory: &mut arrayvec::ArrayVec<MemoryRegion, { info::MAX_MEMORY_REGIONS }>,
    base: u64,
    len: u64,
    ty: u32,
    what: &'static str,
) -> Result<(), BootInfoError> {
    if len == 0 {
        return Ok(());
    }
    let end = match base.checked_add(len) {
        Some(end) => end,
        // `len - 1` cannot underflow: len != 0 above.
        None if base.checked_add(len - 1).is_some() => u64::MAX,
        None => return Err(BootInfoError::BadSize { what, value: len }),
    };
    memory
        .try_push(MemoryRegion {
            start: base,
            end,
            kind: RegionKind::from_e820(ty),
        })
        .map_err(|_| BootInfoError::TooMany {
            what: "memory map entries",
            limit: info::MAX_MEMORY_REGIONS,
        })
}

/// A [`PhysRead`] over a byte buffer placed at a physical base address; used
/// by host tests to feed hand-made (and hand-broken) loader structures.
#[cfg(test)]
pub struct FakeMem {
    /// Physical address of `bytes[0]`.
    pub base: u64,
    /// The memory.
    pub bytes: std::vec::Vec<u8>,
}

#[cfg(test)]
impl PhysRead for FakeMem {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        let Some(off) = paddr.checked_sub(self.base) else {
            return false;
        };
        let Ok(off) = usize::try_from(off) else {
            return false;
        };
        let Some(end) = off.checked_add(buf.len()) else {
            return false;
        };
        match self.bytes.get(off..end) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}
