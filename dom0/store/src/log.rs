//! Bounded text logs kept in the store (issue 15): dom0's own log and each
//! domain's console history, each a ring of 4096-byte blocks inside one
//! fixed-size object of kind [`Kind::Log`] (docs/store.md, "Logs", says
//! why: allocated and committed like a volume, written in place like one,
//! but not a volume an operator lists, deletes or attaches).
//!
//! Each slot of the ring is one store block, self-describing and
//! checksummed (all integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `KLOGBLK1` |
//! | 8..16 | `seq`: write number within this ring, +1 per slot written |
//! | 16..24 | `first`: the stream's number of the block's first line |
//! | 24..28 | `boot`: dom0's boot the lines belong to |
//! | 28..30 | `count`: lines in the block |
//! | 30..32 | `used`: payload bytes |
//! | 32..32+used | `count` lines, each a u16 length and its bytes |
//! | 4092..4096 | CRC-32 of bytes 0..4092 |
//!
//! Lines go to an in-memory block; [`LogRing::sync`] writes what is
//! pending, one slot per block, each write followed by a flush. The block
//! still filling is rewritten by later syncs, never over the slot holding
//! its last flushed version (a torn rewrite would lose lines already
//! durable): each write goes to an empty slot, else to a stale version of
//! some block (one whose newer version is flushed), else over the oldest
//! block (the ring wraps). So at any moment at most one slot is unflushed:
//! a power cut loses at most the lines of that write, the last batch.
//! Reading checks every slot's magic, checksum and framing, keeps the
//! newest version of each block and returns the lines in stream order:
//! never garbage, whatever the volume holds.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::disk::{BLOCK, Disk};
use crate::error::Result;
use crate::layout::Kind;
use crate::store::Store;

const MAGIC: &[u8; 8] = b"KLOGBLK1";
const HEADER: usize = 32;
const CRC_AT: usize = BLOCK - 4;
/// Payload bytes in one block.
pub const PAYLOAD: usize = CRC_AT - HEADER;
/// Longest line kept (longer ones are cut to this many bytes).
pub const LINE_MAX: usize = PAYLOAD - 2;
/// The fewest slots a ring may have: with one, rewriting the filling
/// block would overwrite its only durable version.
pub const MIN_SLOTS: u64 = 2;

/// One line read back, with the boot it was written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub boot: u32,
    pub text: String,
}

/// A decoded, valid slot.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    seq: u64,
    first: u64,
    boot: u32,
    lines: Vec<String>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The slot in `b`, or `None` when it is empty, torn or not one of ours.
fn decode(b: &[u8]) -> Option<Slot> {
    if b.len() != BLOCK || b.get(..8)? != MAGIC {
        return None;
    }
    if crc32fast::hash(b.get(..CRC_AT)?) != u32_at(b, CRC_AT)? {
        return None;
    }
    let (seq, first, boot) = (u64_at(b, 8)?, u64_at(b, 16)?, u32_at(b, 24)?);
    let (count, used) = (usize::from(u16_at(b, 28)?), usize::from(u16_at(b, 30)?));
    if used > PAYLOAD || first.checked_add(count as u64).is_none() {
        return None;
    }
    let payload = b.get(HEADER..HEADER + used)?;
    let mut lines = Vec::with_capacity(count.min(PAYLOAD / 2));
    let mut at = 0;
    for _ in 0..count {
        let len = usize::from(u16_at(payload, at)?);
        let text = payload.get(at + 2..at + 2 + len)?;
        lines.push(String::from_utf8_lossy(text).into_owned());
        at += 2 + len;
    }
    (at == used).then_some(Slot {
        seq,
        first,
        boot,
        lines,
    })
}

fn encode(seq: u64, first: u64, boot: u32, lines: &[String]) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    b[..8].copy_from_slice(MAGIC);
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b[16..24].copy_from_slice(&first.to_le_bytes());
    b[24..28].copy_from_slice(&boot.to_le_bytes());
    let mut at = HEADER;
    for l in lines {
        // `push` cut every line to LINE_MAX and fills blocks only up to
        // PAYLOAD, so this fits.
        b[at..at + 2].copy_from_slice(&(l.len() as u16).to_le_bytes());
        b[at + 2..at + 2 + l.len()].copy_from_slice(l.as_bytes());
        at += 2 + l.len();
    }
    b[28..30].copy_from_slice(&(lines.len() as u16).to_le_bytes());
    b[30..32].copy_from_slice(&((at - HEADER) as u16).to_le_bytes());
    let crc = crc32fast::hash(&b[..CRC_AT]);
    b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Every valid slot of volume `name`, by index.
fn read_slots<D: Disk>(store: &mut Store<D>, name: &str) -> Result<Vec<Option<Slot>>> {
    let size = store.get(Kind::Log, name)?.size;
    let n = size / BLOCK as u64;
    let mut buf = vec![0u8; BLOCK];
    let mut slots = Vec::new();
    for i in 0..n {
        store.read(Kind::Log, name, i * BLOCK as u64, &mut buf)?;
        slots.push(decode(&buf));
    }
    Ok(slots)
}

/// The lines of valid `slots`, in stream order: the newest version
/// (highest `seq`) of each block, each line number once.
fn lines_of(slots: &[Option<Slot>]) -> Vec<LogLine> {
    let mut newest: Vec<&Slot> = Vec::new();
    for s in slots.iter().flatten() {
        match newest.iter_mut().find(|n| n.first == s.first) {
            Some(n) if n.seq < s.seq => *n = s,
            Some(_) => {}
            None => newest.push(s),
        }
    }
    newest.sort_by_key(|s| (s.first, s.seq));
    let mut out = Vec::new();
    let mut next = 0u64;
    for s in newest {
        for (i, text) in s.lines.iter().enumerate() {
            let number = s.first + i as u64;
            if number >= next {
                out.push(LogLine {
                    boot: s.boot,
                    text: text.clone(),
                });
                next = number + 1;
            }
        }
    }
    out
}

/// Reads ring `name` of `store`: its lines, oldest first.
pub fn read<D: Disk>(store: &mut Store<D>, name: &str) -> Result<Vec<LogLine>> {
    Ok(lines_of(&read_slots(store, name)?))
}

/// A block of lines in memory.
#[derive(Debug, Clone, Default)]
struct Open {
    first: u64,
    lines: Vec<String>,
    /// Payload bytes of `lines`.
    bytes: usize,
    /// The slot holding this block's last flushed version: not to be
    /// written over until a newer version is flushed.
    slot: Option<usize>,
}

/// What a slot holds, as the writer tracks it (no lines).
#[derive(Debug, Clone, Copy)]
struct Meta {
    seq: u64,
    first: u64,
}

/// A ring open for appending.
#[derive(Debug)]
pub struct LogRing {
    name: String,
    slots: Vec<Option<Meta>>,
    next_seq: u64,
    boot: u32,
    /// The highest boot any valid slot had at open.
    last_boot: u32,
    /// Blocks filled and not written yet, oldest first (at most as many
    /// as there are slots: older ones would be overwritten anyway).
    full: VecDeque<Open>,
    cur: Open,
    /// `cur` changed since it was last written.
    dirty: bool,
    /// Lines dropped because the ring could not keep up.
    pub dropped: u64,
}

impl LogRing {
    /// Opens ring `name` (a [`Kind::Log`] object of `store`), appending from a new block
    /// whose lines belong to boot `boot`.
    pub fn open<D: Disk>(store: &mut Store<D>, name: &str, boot: u32) -> Result<Self> {
        let slots = read_slots(store, name)?;
        let next_seq = slots
            .iter()
            .flatten()
            .map(|s| s.seq.saturating_add(1))
            .max()
            .unwrap_or(1);
        let next_line = slots
            .iter()
            .flatten()
            .map(|s| s.first + s.lines.len() as u64)
            .max()
            .unwrap_or(0);
        let last_boot = slots.iter().flatten().map(|s| s.boot).max().unwrap_or(0);
        Ok(LogRing {
            name: name.into(),
            slots: slots
                .iter()
                .map(|s| {
                    s.as_ref().map(|s| Meta {
                        seq: s.seq,
                        first: s.first,
                    })
                })
                .collect(),
            next_seq,
            boot,
            last_boot,
            full: VecDeque::new(),
            cur: Open {
                first: next_line,
                ..Open::default()
            },
            dirty: false,
            dropped: 0,
        })
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the boot new lines belong to (before the first [`Self::push`]).
    pub fn set_boot(&mut self, boot: u32) {
        self.boot = boot;
    }

    /// The newest boot found in the ring when it was opened (0: none).
    pub fn last_boot(&self) -> u32 {
        self.last_boot
    }

    /// Slots (store blocks) in the ring.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Adds a line, in memory (cut to [`LINE_MAX`] bytes, at a character
    /// boundary).
    pub fn push(&mut self, line: &str) {
        let mut end = line.len().min(LINE_MAX);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        let line = &line[..end];
        if self.cur.bytes + 2 + line.len() > PAYLOAD {
            let next = self.cur.first + self.cur.lines.len() as u64;
            let done = core::mem::replace(
                &mut self.cur,
                Open {
                    first: next,
                    ..Open::default()
                },
            );
            self.full.push_back(done);
            while self.full.len() > self.slots.len() {
                if let Some(b) = self.full.pop_front() {
                    self.dropped += b.lines.len() as u64;
                }
            }
        }
        self.cur.lines.push(line.into());
        self.cur.bytes += 2 + line.len();
        self.dirty = true;
    }

    /// Lines wait to be written.
    pub fn pending(&self) -> bool {
        self.dirty || !self.full.is_empty()
    }

    /// A whole block waits to be written (a batch is full).
    pub fn block_full(&self) -> bool {
        !self.full.is_empty()
    }

    /// The slot the next write goes to: empty, else a stale version of a
    /// block whose newer version is durable, else the oldest; never one
    /// holding the last flushed version of a block still to be written
    /// (`b`, or one waiting). At most one slot is such (only the block
    /// that was filling when it filled has a flushed version), and a ring
    /// has at least [`MIN_SLOTS`], so there is always a target.
    fn target(&self, b: &Open) -> usize {
        let keep = |i: usize| {
            b.slot == Some(i)
                || self.cur.slot == Some(i)
                || self.full.iter().any(|f| f.slot == Some(i))
        };
        let mut best: Option<(u8, u64, usize)> = None;
        for (i, s) in self.slots.iter().enumerate() {
            if keep(i) {
                continue;
            }
            let rank = match s {
                None => (0, 0),
                Some(m) => {
                    let stale = self
                        .slots
                        .iter()
                        .flatten()
                        .any(|o| o.first == m.first && o.seq > m.seq);
                    (if stale { 1 } else { 2 }, m.seq)
                }
            };
            if best.is_none_or(|(r, q, _)| (rank.0, rank.1) < (r, q)) {
                best = Some((rank.0, rank.1, i));
            }
        }
        best.map_or(0, |b| b.2)
    }

    fn write<D: Disk>(&mut self, store: &mut Store<D>, b: &Open) -> Result<usize> {
        let i = self.target(b);
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        let block = encode(seq, b.first, self.boot, &b.lines);
        // Forget what the slot held before the write: if it fails, the
        // slot may hold anything (it is read back checked).
        self.slots[i] = None;
        store.write_log(&self.name, i as u64 * BLOCK as u64, &block)?;
        store.flush()?;
        self.slots[i] = Some(Meta {
            seq,
            first: b.first,
        });
        Ok(i)
    }

    /// Writes every pending block, each with its own flush (so only one
    /// slot is ever unflushed). On an error what was not written stays
    /// pending.
    pub fn sync<D: Disk>(&mut self, store: &mut Store<D>) -> Result<()> {
        while let Some(b) = self.full.pop_front() {
            if let Err(e) = self.write(store, &b) {
                self.full.push_front(b);
                return Err(e);
            }
        }
        if self.dirty {
            let cur = core::mem::take(&mut self.cur);
            let r = self.write(store, &cur);
            self.cur = cur;
            self.cur.slot = Some(r?);
            self.dirty = false;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_block_round_trips_and_any_flipped_bit_voids_it() {
        let lines = vec![String::from("one"), String::from(""), String::from("three")];
        let b = encode(7, 40, 3, &lines);
        let s = decode(&b).unwrap();
        assert_eq!((s.seq, s.first, s.boot, s.lines), (7, 40, 3, lines));
        for bit in [0, 8 * 9, 8 * 29, 8 * 33, 8 * 4093] {
            let mut d = b.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&d).is_none(), "bit {bit}");
        }
        assert!(decode(&vec![0u8; BLOCK]).is_none());
    }
}
