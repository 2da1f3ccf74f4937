//! Bounds-checked little-endian reads for the ACPI table parsers: every
//! read names the table and the offset it failed at, so a malformed
//! firmware table gives one clear error and never a panic.

use core::fmt;

/// What was wrong with a table, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableError {
    /// The table's signature (`DMAR`, `IVRS`).
    pub table: &'static str,
    /// Byte offset from the start of the table.
    pub offset: usize,
    /// The problem.
    pub problem: Problem,
}

/// The ways a table can be malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The buffer ends before the header does.
    Truncated,
    /// The header's signature is not the table's.
    BadSignature,
    /// The header's length is shorter than the header or longer than the
    /// bytes given.
    BadTableLength(u32),
    /// The bytes do not sum to zero (ACPI 6.5 5.2.6).
    BadChecksum,
    /// A structure's length field is below its minimum (a zero length
    /// would loop for ever).
    LengthTooSmall { ty: u16, len: usize },
    /// A structure's length runs past the end of its container.
    PastEnd { ty: u16, len: usize },
    /// A device-scope path has an odd number of bytes.
    BadPath(usize),
    /// A type whose length cannot be known, so the rest cannot be read.
    UnknownType(u16),
    /// A range entry without its end, or an end without a start.
    UnpairedRange(u8),
    /// A register base that is zero or not page aligned.
    BadBase(u64),
    /// An RMRR whose limit lies below its base, or that is not page aligned.
    BadRegion { base: u64, limit: u64 },
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: at offset {:#x}: ", self.table, self.offset)?;
        match self.problem {
            Problem::Truncated => write!(f, "table truncated"),
            Problem::BadSignature => write!(f, "wrong signature"),
            Problem::BadTableLength(l) => write!(f, "header length {l} does not fit the table"),
            Problem::BadChecksum => write!(f, "checksum does not sum to zero"),
            Problem::LengthTooSmall { ty, len } => {
                write!(
                    f,
                    "structure type {ty:#x} has length {len}, below its minimum"
                )
            }
            Problem::PastEnd { ty, len } => {
                write!(
                    f,
                    "structure type {ty:#x} of length {len} runs past the end"
                )
            }
            Problem::BadPath(n) => write!(f, "device scope path of {n} bytes is not whole pairs"),
            Problem::UnknownType(t) => write!(f, "unknown entry type {t:#x} of unknown length"),
            Problem::UnpairedRange(t) => write!(f, "range entry type {t:#x} without its partner"),
            Problem::BadBase(b) => write!(f, "register base {b:#x} is zero or unaligned"),
            Problem::BadRegion { base, limit } => {
                write!(
                    f,
                    "reserved region {base:#x}..={limit:#x} is empty or unaligned"
                )
            }
        }
    }
}

/// A view of a table's bytes that reports where it failed.
#[derive(Clone, Copy)]
pub struct Bytes<'a> {
    pub table: &'static str,
    pub data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// An error at `offset`.
    pub fn err(&self, offset: usize, problem: Problem) -> TableError {
        TableError {
            table: self.table,
            offset,
            problem,
        }
    }

    fn get<const N: usize>(&self, off: usize) -> Result<[u8; N], TableError> {
        off.checked_add(N)
            .and_then(|end| self.data.get(off..end))
            .and_then(|s| s.try_into().ok())
            .ok_or(self.err(off, Problem::Truncated))
    }

    pub fn u8(&self, off: usize) -> Result<u8, TableError> {
        Ok(self.get::<1>(off)?[0])
    }

    pub fn u16(&self, off: usize) -> Result<u16, TableError> {
        Ok(u16::from_le_bytes(self.get(off)?))
    }

    pub fn u32(&self, off: usize) -> Result<u32, TableError> {
        Ok(u32::from_le_bytes(self.get(off)?))
    }

    pub fn u64(&self, off: usize) -> Result<u64, TableError> {
        Ok(u64::from_le_bytes(self.get(off)?))
    }

    /// Checks the standard ACPI header (ACPI 6.5 5.2.6): signature, a
    /// length within the bytes given and at least `min`, the checksum.
    /// Returns the table cut to its header length.
    pub fn checked_table(
        table: &'static str,
        data: &'a [u8],
        min: usize,
    ) -> Result<Self, TableError> {
        let b = Bytes { table, data };
        if data.len() < 36 {
            return Err(b.err(data.len(), Problem::Truncated));
        }
        if &data[..4] != table.as_bytes() {
            return Err(b.err(0, Problem::BadSignature));
        }
        let len = b.u32(4)?;
        if (len as usize) < min || len as usize > data.len() {
            return Err(b.err(4, Problem::BadTableLength(len)));
        }
        let data = &data[..len as usize];
        if data.iter().fold(0u8, |s, x| s.wrapping_add(*x)) != 0 {
            return Err(b.err(9, Problem::BadChecksum));
        }
        Ok(Bytes { table, data })
    }

    /// The sub-structure `[off, off+len)` after checking it lies inside
    /// `[.., end)` and is at least `min` long; `ty` names it in errors.
    pub fn structure(
        &self,
        off: usize,
        len: usize,
        end: usize,
        min: usize,
        ty: u16,
    ) -> Result<(), TableError> {
        if len < min {
            return Err(self.err(off, Problem::LengthTooSmall { ty, len }));
        }
        match off.checked_add(len) {
            Some(e) if e <= end && e <= self.data.len() => Ok(()),
            _ => Err(self.err(off, Problem::PastEnd { ty, len })),
        }
    }
}

/// Fixes the checksum byte of a hand-made table (tests).
#[cfg(test)]
pub fn seal(t: &mut [u8]) {
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    t[9] = 0;
    let sum = t.iter().fold(0u8, |s, x| s.wrapping_add(*x));
    t[9] = 0u8.wrapping_sub(sum);
}

/// A hand-made ACPI header with `sig` (tests).
#[cfg(test)]
pub fn header(sig: &[u8; 4]) -> alloc::vec::Vec<u8> {
    let mut t = alloc::vec![0u8; 36];
    t[..4].copy_from_slice(sig);
    t[8] = 1;
    t
}
