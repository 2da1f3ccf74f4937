//! The on-disk log rings (`kestrel_store::log`): round trip across a
//! reopen with boots, wrap-around, a power cut after every write of a
//! batch (under every cache model of `common::CrashDisk`), and garbage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::CrashDisk;
use kestrel_store::log::{self, LINE_MAX, LogLine, LogRing};
use kestrel_store::{BLOCK, Disk, Kind, MemDisk, Store};
use proptest::prelude::*;

const BS: usize = 512;
const DISK_BLOCKS: usize = 2048; // 1 MiB
const RING: &str = "kestrel-log";

fn line(i: usize) -> String {
    // Lengths vary so blocks fill at different points.
    format!("line {i:05} {}", "x".repeat(i * 37 % 300))
}

fn texts(v: &[LogLine]) -> Vec<String> {
    v.iter().map(|l| l.text.clone()).collect()
}

/// A store holding an empty ring of `slots` blocks.
fn store_with_ring(slots: u64) -> Store<MemDisk> {
    let mut s = Store::format(MemDisk::new(BS, DISK_BLOCKS)).unwrap();
    s.create_log(RING, slots * BLOCK as u64).unwrap();
    s
}

fn reopen<D: Disk>(s: Store<D>) -> Store<D> {
    Store::open(s.into_disk()).unwrap()
}

#[test]
fn lines_survive_a_reopen_marked_with_their_boot() {
    let mut s = store_with_ring(8);
    let mut r = LogRing::open(&mut s, RING, 1).unwrap();
    assert_eq!(r.last_boot(), 0);
    for i in 0..30 {
        r.push(&line(i));
    }
    r.sync(&mut s).unwrap();
    let mut s = reopen(s);
    let mut r = LogRing::open(&mut s, RING, 2).unwrap();
    assert_eq!(r.last_boot(), 1);
    r.push("second boot");
    r.sync(&mut s).unwrap();
    // Written again with more lines: still each line once.
    r.push("second boot, more");
    r.sync(&mut s).unwrap();
    let got = log::read(&mut reopen(s), RING).unwrap();
    let mut want: Vec<String> = (0..30).map(line).collect();
    want.push("second boot".into());
    want.push("second boot, more".into());
    assert_eq!(texts(&got), want);
    assert!(got[..30].iter().all(|l| l.boot == 1));
    assert!(got[30..].iter().all(|l| l.boot == 2));
}

#[test]
fn unsynced_lines_are_not_on_disk_and_sync_is_batched() {
    let mut s = store_with_ring(8);
    let mut r = LogRing::open(&mut s, RING, 1).unwrap();
    r.push("a");
    r.push("b");
    assert!(r.pending() && !r.block_full());
    assert!(log::read(&mut s, RING).unwrap().is_empty());
    r.sync(&mut s).unwrap();
    assert!(!r.pending());
    assert_eq!(texts(&log::read(&mut s, RING).unwrap()), ["a", "b"]);
    // A block's worth fills a batch.
    let mut i = 0;
    while !r.block_full() {
        r.push(&line(i));
        i += 1;
    }
    assert!(i > 10, "a batch is many lines, not one ({i})");
}

#[test]
fn the_ring_wraps_keeping_the_newest_lines_in_order() {
    for slots in [2u64, 3, 8] {
        let mut s = store_with_ring(slots);
        let mut r = LogRing::open(&mut s, RING, 1).unwrap();
        let n = 2000;
        for i in 0..n {
            r.push(&line(i));
            if i % 7 == 0 {
                r.sync(&mut s).unwrap();
            }
        }
        r.sync(&mut s).unwrap();
        let got = texts(&log::read(&mut reopen(s), RING).unwrap());
        // A contiguous run ending with the last line.
        let start = n - got.len();
        let want: Vec<String> = (start..n).map(line).collect();
        assert_eq!(got, want, "{slots} slots");
        // Every slot but the filling block's two versions holds a full
        // block (full to within one line: at most ~315 bytes here).
        let bytes: usize = got.iter().map(|l| l.len() + 2).sum();
        assert!(
            bytes >= (slots as usize - 2) * (BLOCK - 36 - 320),
            "{slots} slots: only {bytes} bytes kept"
        );
        assert!(got.len() > 5, "{slots} slots: {} lines", got.len());
    }
}

#[test]
fn an_overlong_line_is_cut_not_lost() {
    let mut s = store_with_ring(2);
    let mut r = LogRing::open(&mut s, RING, 1).unwrap();
    let long = "é".repeat(LINE_MAX); // 2 bytes each: cut at a char boundary
    r.push(&long);
    r.push("after");
    r.sync(&mut s).unwrap();
    let got = texts(&log::read(&mut s, RING).unwrap());
    assert_eq!(got.len(), 2);
    assert!(long.starts_with(&got[0]) && got[0].len() <= LINE_MAX && got[0].len() > 4000);
    assert_eq!(got[1], "after");
}

/// The disk image of a store whose ring of `slots` holds `before` lines,
/// durable.
fn base(slots: u64, before: usize) -> Vec<u8> {
    let mut s = store_with_ring(slots);
    let mut r = LogRing::open(&mut s, RING, 1).unwrap();
    for i in 0..before {
        r.push(&line(i));
        if i % 5 == 0 {
            r.sync(&mut s).unwrap();
        }
    }
    r.sync(&mut s).unwrap();
    s.into_disk().bytes
}

/// Power cut after write k of a batch, for every k, under every cache
/// model: the store opens, the ring reads back a contiguous run of real
/// lines that holds everything durable before the batch (as far as the
/// ring's size keeps it) and at most the whole batch, the last batch is
/// all that may be lost, and the ring takes new lines after.
fn cut_everywhere(slots: u64, before: usize, batch: usize) {
    let img = base(slots, before);
    let durable = texts(
        &log::read(
            &mut Store::open(MemDisk {
                bytes: img.clone(),
                block_size: BS,
            })
            .unwrap(),
            RING,
        )
        .unwrap(),
    );
    // The crash run first makes 3 lines durable in a block that the batch
    // then fills further: rewriting it must not risk those 3 lines.
    let early = 3;
    let all: Vec<String> = (0..before + early + batch).map(line).collect();
    let durable_end = before + early;
    let mut k = 2u64;
    let mut whole_batch_seen = false;
    loop {
        let mut s = Store::open(CrashDisk::new(img.clone(), BS, Some(k))).unwrap();
        let mut r = LogRing::open(&mut s, RING, 1).unwrap();
        for l in &all[before..durable_end] {
            r.push(l);
        }
        r.sync(&mut s).unwrap();
        for l in &all[durable_end..] {
            r.push(l);
        }
        let res = r.sync(&mut s);
        let disk = s.into_disk();
        let writes = disk.writes;
        for (model, bytes) in disk.outcomes() {
            let what = format!("{slots} slots, cut after write {k}, {model}");
            let mut s = Store::open(MemDisk {
                bytes,
                block_size: BS,
            })
            .unwrap_or_else(|e| panic!("{what}: store: {e}"));
            let got = texts(&log::read(&mut s, RING).unwrap());
            let last = got.last().cloned().unwrap_or_default();
            let end = all.iter().position(|l| *l == last).map_or(0, |p| p + 1);
            let start = end - got.len();
            assert_eq!(got, all[start..end], "{what}: not a run of real lines");
            // Nothing durable before is lost but what the ring evicts:
            // the run ends at or after the durable lines' end and starts
            // no later than the durable run did (when no wrap happened).
            assert!(
                end >= durable_end,
                "{what}: durable lines lost (ends at {end}, not {durable_end})"
            );
            if end == all.len() {
                whole_batch_seen = true;
            }
            if slots as usize * (BLOCK - 36) > all.len() * 320 {
                assert_eq!(start, 0, "{what}: lines lost from the start");
                assert!(got.len() >= durable.len(), "{what}");
            }
            // Still usable.
            let mut r = LogRing::open(&mut s, RING, 2).unwrap();
            r.push("after the cut");
            r.sync(&mut s).unwrap();
            let again = texts(&log::read(&mut reopen(s), RING).unwrap());
            let (new, prev) = again.split_last().unwrap();
            assert_eq!(new, "after the cut", "{what}");
            assert!(
                got.ends_with(prev),
                "{what}: lines changed by a later write"
            );
        }
        if res.is_ok() && writes < k {
            break;
        }
        k += 1;
    }
    assert!(k > 3, "the batch took several writes ({k})");
    assert!(whole_batch_seen);
}

#[test]
fn a_power_cut_loses_at_most_the_last_batch() {
    cut_everywhere(16, 40, 120);
}

#[test]
fn a_power_cut_while_the_ring_wraps() {
    cut_everywhere(3, 60, 60);
}

#[test]
fn a_damaged_slot_drops_only_its_lines() {
    let mut s = store_with_ring(8);
    let mut r = LogRing::open(&mut s, RING, 1).unwrap();
    for i in 0..100 {
        r.push(&line(i));
    }
    r.sync(&mut s).unwrap();
    let full = texts(&log::read(&mut s, RING).unwrap());
    // Flip one byte in slot 0's payload.
    let mut b = vec![0u8; BLOCK];
    s.read(Kind::Log, RING, 0, &mut b).unwrap();
    b[100] ^= 0x40;
    s.write_log(RING, 0, &b).unwrap();
    let got = texts(&log::read(&mut s, RING).unwrap());
    assert!(!got.is_empty() && got.len() < full.len());
    assert!(got.iter().all(|l| full.contains(l)), "no garbage");
}

#[test]
fn a_volume_of_garbage_reads_as_no_lines() {
    let mut s = store_with_ring(4);
    s.write_log(RING, 0, &common::bytes(5, 4 * BLOCK)).unwrap();
    assert!(log::read(&mut s, RING).unwrap().is_empty());
    // And is usable as a ring.
    let mut r = LogRing::open(&mut s, RING, 1).unwrap();
    r.push("fresh");
    r.sync(&mut s).unwrap();
    assert_eq!(texts(&log::read(&mut s, RING).unwrap()), ["fresh"]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random bytes, and blocks with our magic, a right checksum and
    /// random framing: never a panic, and every line read back fits.
    #[test]
    fn random_slots_never_panic(seed in any::<u64>(), forge in any::<bool>(),
                                count in any::<u16>(), used in any::<u16>()) {
        let mut s = store_with_ring(2);
        let mut b = common::bytes(seed, BLOCK);
        if forge {
            b[..8].copy_from_slice(b"KLOGBLK1");
            b[28..30].copy_from_slice(&count.to_le_bytes());
            b[30..32].copy_from_slice(&used.to_le_bytes());
            let crc = crc32fast::hash(&b[..BLOCK - 4]);
            b[BLOCK - 4..].copy_from_slice(&crc.to_le_bytes());
        }
        s.write_log(RING, 0, &b).unwrap();
        let got = log::read(&mut s, RING).unwrap();
        prop_assert!(got.iter().all(|l| l.text.len() <= LINE_MAX * 3));
        let mut r = LogRing::open(&mut s, RING, 9).unwrap();
        r.push("ok");
        r.sync(&mut s).unwrap();
        let got = log::read(&mut s, RING).unwrap();
        prop_assert_eq!(got.last().map(|l| l.text.as_str()), Some("ok"));
    }
}
