//! Damaged and foreign disks: `open` answers with a clear error or
//! falls back to the other root, and never panics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::bytes;
use kestrel_store::layout::{Root, encode_meta};
use kestrel_store::{BLOCK, Kind, MemDisk, Store, StoreError};
use proptest::prelude::*;

const BS: usize = 512;

fn disk(bytes: Vec<u8>) -> MemDisk {
    MemDisk {
        bytes,
        block_size: BS,
    }
}

/// A store with two images; the second commit is the newest root.
fn two_images() -> Vec<u8> {
    let mut s = Store::format(MemDisk::new(BS, 1024)).unwrap();
    s.import("one", &bytes(1, 9000)).unwrap();
    s.import("two", &bytes(2, 9000)).unwrap();
    s.into_disk().bytes
}

#[test]
fn blank_and_foreign_disks_are_not_stores() {
    let e = Store::open(MemDisk::new(BS, 1024)).unwrap_err();
    assert_eq!(e, StoreError::NotAStore { blank: true });
    assert_eq!(e.to_string(), "the disk holds no store (it is blank)");
    let e = Store::open(disk(bytes(3, 1024 * BS))).unwrap_err();
    assert_eq!(e, StoreError::NotAStore { blank: false });
    let e = Store::open(MemDisk::new(BS, 8)).unwrap_err();
    assert!(matches!(e, StoreError::BadDisk(_)), "{e}");
    let e = Store::format(MemDisk::new(3000, 64)).unwrap_err();
    assert!(e.to_string().contains("block size 3000"), "{e}");
}

#[test]
fn a_damaged_newest_root_falls_back_to_the_older_one() {
    let mut img = two_images();
    let s = Store::open(disk(img.clone())).unwrap();
    let generation = s.generation();
    // Generation g sits in slot (g - 1) % 2: format wrote 1 to slot 0.
    let slot = ((generation - 1) % 2) as usize;
    img[slot * BLOCK + 20] ^= 0x40;
    let s = Store::open(disk(img.clone())).unwrap();
    assert_eq!(s.generation(), generation - 1);
    assert!(s.get(Kind::Image, "two").is_err());
    assert!(
        s.notes().iter().any(|n| n.contains("checksum")),
        "{:?}",
        s.notes()
    );
    // Both roots damaged: a clear error naming both.
    img[(1 - slot) * BLOCK + 20] ^= 0x40;
    let e = Store::open(disk(img)).unwrap_err();
    let t = e.to_string();
    assert!(
        t.contains("no usable root") && t.contains("slot 0") && t.contains("slot 1"),
        "{t}"
    );
}

#[test]
fn damaged_metadata_falls_back_too() {
    let mut img = two_images();
    let s = Store::open(disk(img.clone())).unwrap();
    let g = s.generation();
    // Find the newest root's metadata and break one byte of it.
    let slot = ((g - 1) % 2) as usize;
    let root = Root::decode(
        &img[slot * BLOCK..(slot + 1) * BLOCK],
        1024 * BS as u64 / 4096,
    )
    .unwrap()
    .unwrap();
    img[root.meta.start as usize * BLOCK + 30] ^= 1;
    let s = Store::open(disk(img)).unwrap();
    assert_eq!(s.generation(), g - 1);
    assert!(
        s.notes().iter().any(|n| n.contains("metadata checksum")),
        "{:?}",
        s.notes()
    );
}

/// Writes `meta` (checksums right) as the newest root's metadata, so
/// that only the decoder's rules stand between it and the store.
fn forge(meta: &[u8]) -> Vec<u8> {
    let mut img = MemDisk::new(BS, 1024).bytes;
    let at = 2 * BLOCK;
    let len = meta.len().min(64 * BLOCK);
    img[at..at + len].copy_from_slice(&meta[..len]);
    let root = Root {
        generation: 1,
        total: 128,
        meta: kestrel_store::Extent {
            start: 2,
            blocks: 64,
        },
        meta_len: len as u64,
        meta_crc: crc32fast::hash(&meta[..len]),
    };
    img[..BLOCK].copy_from_slice(&root.encode());
    img
}

#[test]
fn forged_metadata_that_breaks_a_rule_is_refused() {
    let good = {
        let mut s = Store::format(MemDisk::new(BS, 1024)).unwrap();
        s.import("one", &bytes(1, 9000)).unwrap();
        s.objects().to_vec()
    };
    let mut twice = good.clone();
    twice.push(good[0].clone());
    twice[1].name = "other".into();
    let mut outside = good.clone();
    outside[0].extents[0].start = 127;
    let mut short = good.clone();
    short[0].size = 100_000;
    let mut over_meta = good.clone();
    over_meta[0].extents[0].start = 3;
    for (objs, want) in [
        (twice, "owned twice"),
        (outside, "outside the store"),
        (short, "blocks for 100000 bytes"),
        (over_meta, "owned twice"),
    ] {
        let e = Store::open(disk(forge(&encode_meta(1, &objs)))).unwrap_err();
        assert!(e.to_string().contains(want), "want {want:?}: {e}");
    }
    let e = Store::open(disk(forge(&encode_meta(2, &good)))).unwrap_err();
    assert!(
        e.to_string()
            .contains("generation 2 under a root of generation 1"),
        "{e}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random bytes in place of the metadata (checksums made right).
    #[test]
    fn random_metadata_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..600), count in 0u32..5) {
        let mut meta = encode_meta(1, &[]);
        meta[16..20].copy_from_slice(&count.to_le_bytes());
        meta.extend_from_slice(&tail);
        let _ = Store::open(disk(forge(&meta)));
    }

    /// Random damage anywhere in the first blocks of a real store: it
    /// opens (some state whose images verify or report damage) or says
    /// why not.
    #[test]
    fn random_damage_never_panics(hits in proptest::collection::vec((0usize..16 * BLOCK, any::<u8>()), 1..20)) {
        let mut img = two_images();
        for (at, x) in hits {
            img[at] ^= x | 1;
        }
        if let Ok(mut s) = Store::open(disk(img)) {
            let names: Vec<String> = s.objects().iter().map(|o| o.name.clone()).collect();
            for n in names {
                let _ = s.verify(&n);
            }
            let _ = s.import("new", &bytes(5, 5000));
        }
    }

    /// Random bytes in both root slots and everything else.
    #[test]
    fn random_disks_never_panic(seed in any::<u64>()) {
        let mut img = bytes(seed, 256 * BS);
        img[..8].copy_from_slice(b"KSTRROOT");
        let _ = Store::open(disk(img));
    }
}
