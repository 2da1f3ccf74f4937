//! Console rings (with the `dom0` option): each domain's console
//! output waits here until the control domain drains it
//! (`HC_DOMCTL_CONSOLE_READ`). Bounded twice: [`CONSOLE_RING_BYTES`] per
//! ring (the oldest bytes are dropped and counted; the next read starts
//! with a `[console: N bytes dropped]` line) and [`CONSOLE_RINGS_MAX`]
//! rings (beyond it the ring of the lowest domain id is dropped whole),
//! and [`CONSOLE_RINGS_TOTAL`] bytes in all (the hypervisor heap is small:
//! beyond it a domain's new output pushes out its own oldest, or is
//! dropped and counted when it has none). Every allocation is fallible:
//! a guest printing without end costs dropped bytes, never the heap.
//! A ring outlives its domain until it is read empty, so a domain that
//! prints and ends at once is still heard.

use alloc::collections::{BTreeMap, VecDeque};

use pvabi::{CONSOLE_RING_BYTES, CONSOLE_RINGS_MAX};

use crate::domain::ids::DomainId;

#[derive(Default)]
struct Ring {
    bytes: VecDeque<u8>,
    dropped: u64,
}

/// Bytes all console rings together may hold.
pub const CONSOLE_RINGS_TOTAL: usize = 256 << 10;

/// Every domain's console ring, by domain id.
#[derive(Default)]
pub struct ConsoleRings {
    rings: BTreeMap<DomainId, Ring>,
    /// Bytes held in all rings.
    total: usize,
}

impl ConsoleRings {
    /// No rings.
    pub const fn new() -> Self {
        Self {
            rings: BTreeMap::new(),
            total: 0,
        }
    }

    /// Appends domain `id`'s output; whether its ring was empty before
    /// (and now is not): the control domain is told of that change
    /// (`VIRQ_CONSOLE_OUT`), not of every write.
    pub fn push(&mut self, id: DomainId, bytes: &[u8]) -> bool {
        let was_empty = self
            .rings
            .get(&id)
            .is_none_or(|r| r.bytes.is_empty() && r.dropped == 0);
        if !self.rings.contains_key(&id)
            && self.rings.len() >= CONSOLE_RINGS_MAX
            && let Some((_, old)) = self.rings.pop_first()
        {
            // The oldest domain's ring goes (ids only grow).
            self.total -= old.bytes.len();
        }
        let total = &mut self.total;
        let ring = self.rings.entry(id).or_default();
        for &b in bytes {
            if ring.bytes.len() >= CONSOLE_RING_BYTES || *total >= CONSOLE_RINGS_TOTAL {
                ring.dropped = ring.dropped.saturating_add(1);
                if ring.bytes.pop_front().is_none() {
                    continue;
                }
                *total -= 1;
            }
            if ring.bytes.try_reserve(1).is_err() {
                ring.dropped = ring.dropped.saturating_add(1);
                continue;
            }
            ring.bytes.push_back(b);
            *total += 1;
        }
        was_empty
            && self
                .rings
                .get(&id)
                .is_some_and(|r| !r.bytes.is_empty() || r.dropped != 0)
    }

    /// Moves up to `buf.len()` bytes of domain `id`'s ring into `buf`:
    /// how many. `alive` says whether the domain still exists: a ring of a
    /// domain that has ended is forgotten once empty, and then (or when
    /// there never was one) `None`.
    pub fn read(&mut self, id: DomainId, buf: &mut [u8], alive: bool) -> Option<usize> {
        let Some(ring) = self.rings.get_mut(&id) else {
            return alive.then_some(0);
        };
        let mut n = 0;
        if ring.dropped != 0 {
            let mut note = arrayvec::ArrayString::<64>::new();
            let _ = core::fmt::write(
                &mut note,
                format_args!("[console: {} bytes dropped]\n", ring.dropped),
            );
            // Only whole notes: a buffer too small for one gets data.
            if let Some(dst) = buf.get_mut(..note.len()) {
                dst.copy_from_slice(note.as_bytes());
                n = note.len();
                ring.dropped = 0;
            }
        }
        for slot in buf.iter_mut().skip(n) {
            let Some(b) = ring.bytes.pop_front() else {
                break;
            };
            *slot = b;
            n += 1;
            self.total -= 1;
        }
        if n == 0 && ring.bytes.is_empty() && !alive {
            self.rings.remove(&id);
            return None;
        }
        Some(n)
    }

    /// How many rings are kept.
    pub fn len(&self) -> usize {
        self.rings.len()
    }

    /// Whether no ring is kept.
    pub fn is_empty(&self) -> bool {
        self.rings.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn drain(r: &mut ConsoleRings, id: u32, alive: bool) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 100];
        loop {
            let n = r.read(DomainId(id), &mut buf, alive)?;
            if n == 0 {
                return Some(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// dom0 is woken (`VIRQ_CONSOLE_OUT`) when a ring fills from empty,
    /// not on every write: once per read-empty, per domain.
    #[test]
    fn only_output_into_an_empty_ring_notifies() {
        let mut r = ConsoleRings::new();
        assert!(r.push(DomainId(2), b"a"), "first output");
        assert!(!r.push(DomainId(2), b"b"), "ring not empty yet");
        assert!(r.push(DomainId(3), b"x"), "another domain's ring");
        assert!(!r.push(DomainId(2), b""), "nothing written");
        assert_eq!(drain(&mut r, 2, true).unwrap(), b"ab");
        assert!(r.push(DomainId(2), b"c"), "read empty, then output");
        assert!(!r.push(DomainId(3), b"y"));
    }

    #[test]
    fn bytes_come_out_in_order_per_domain() {
        let mut r = ConsoleRings::new();
        r.push(DomainId(2), b"hello ");
        r.push(DomainId(3), b"other\n");
        r.push(DomainId(2), b"world\n");
        assert_eq!(drain(&mut r, 2, true).unwrap(), b"hello world\n");
        assert_eq!(drain(&mut r, 3, true).unwrap(), b"other\n");
        assert_eq!(drain(&mut r, 4, true).unwrap(), b"", "alive, never wrote");
        assert_eq!(
            r.read(DomainId(9), &mut [0; 4], false),
            None,
            "never existed"
        );
    }

    #[test]
    fn a_dead_domains_ring_is_read_to_the_end_then_forgotten() {
        let mut r = ConsoleRings::new();
        r.push(DomainId(5), b"last words\n");
        assert_eq!(drain(&mut r, 5, false), None, "ends with None once empty");
        let mut r = ConsoleRings::new();
        r.push(DomainId(5), b"last words\n");
        let mut buf = [0u8; 64];
        assert_eq!(r.read(DomainId(5), &mut buf, false), Some(11));
        assert_eq!(&buf[..11], b"last words\n");
        assert_eq!(r.read(DomainId(5), &mut buf, false), None);
        assert!(r.is_empty());
    }

    #[test]
    fn a_full_ring_drops_the_oldest_and_says_how_many() {
        let mut r = ConsoleRings::new();
        let data: Vec<u8> = (0..CONSOLE_RING_BYTES + 10)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        r.push(DomainId(1), &data);
        let out = drain(&mut r, 1, true).unwrap();
        let note = b"[console: 10 bytes dropped]\n";
        assert_eq!(&out[..note.len()], note);
        assert_eq!(&out[note.len()..], &data[10..]);
        // A buffer too small for the note still gets data.
        r.push(DomainId(1), &vec![b'x'; CONSOLE_RING_BYTES + 1]);
        let mut tiny = [0u8; 4];
        assert_eq!(r.read(DomainId(1), &mut tiny, true), Some(4));
        assert_eq!(&tiny, b"xxxx");
    }

    #[test]
    fn at_most_the_limit_of_rings_is_kept() {
        let mut r = ConsoleRings::new();
        for id in 0..(CONSOLE_RINGS_MAX as u32 + 5) {
            r.push(DomainId(id), b"x");
        }
        assert_eq!(r.len(), CONSOLE_RINGS_MAX);
        assert_eq!(
            r.read(DomainId(0), &mut [0; 4], false),
            None,
            "the oldest went"
        );
        assert_eq!(
            r.read(DomainId(CONSOLE_RINGS_MAX as u32 + 4), &mut [0; 4], true),
            Some(1)
        );
    }

    #[test]
    fn all_rings_together_stay_within_their_budget() {
        let mut r = ConsoleRings::new();
        let chunk = [b'x'; 4096];
        // 64 domains printing 16 KiB each would hold 1 MiB unbounded.
        for id in 1..=64 {
            for _ in 0..4 {
                r.push(DomainId(id), &chunk);
            }
        }
        assert_eq!(r.total, CONSOLE_RINGS_TOTAL, "full, not over");
        let held: usize = r.rings.values().map(|x| x.bytes.len()).sum();
        assert_eq!(held, r.total);
        // The rings that came late dropped their bytes and say so.
        let late = drain(&mut r, 64, true).unwrap();
        assert!(
            late.starts_with(b"[console: 16384 bytes dropped]"),
            "{late:?}"
        );
        // Reading frees budget for others.
        let first = drain(&mut r, 1, true).unwrap();
        assert_eq!(first.len(), CONSOLE_RING_BYTES);
        assert_eq!(r.total, CONSOLE_RINGS_TOTAL - CONSOLE_RING_BYTES);
        r.push(DomainId(64), b"back\n");
        assert_eq!(drain(&mut r, 64, true).unwrap(), b"back\n");
    }
}
