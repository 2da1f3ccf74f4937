//! Power cut after every write of an import, a volume creation and a
//! delete: the store reopens in the state before or after the
//! operation, every earlier image intact, and usable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{CrashDisk, bytes};
use kestrel_store::{Kind, MemDisk, Object, Store, StoreError};
use sha2::{Digest, Sha256};

const BS: usize = 512;
const DISK_BLOCKS: usize = 4096; // 2 MiB

/// A store with two images and a volume with data, all durable.
fn base() -> Vec<u8> {
    let mut s = Store::format(MemDisk::new(BS, DISK_BLOCKS)).unwrap();
    s.import("alpha", &bytes(1, 10_000)).unwrap();
    s.import("beta", &bytes(2, 150_000)).unwrap();
    s.create_volume("vol", 40_000).unwrap();
    s.write_volume("vol", 1000, &bytes(3, 20_000)).unwrap();
    s.flush().unwrap();
    s.into_disk().bytes
}

fn summary(s: &Store<MemDisk>) -> Vec<(Kind, String, u64, [u8; 32])> {
    s.objects()
        .iter()
        .map(|o: &Object| (o.kind, o.name.clone(), o.size, o.sha256))
        .collect()
}

/// Every image's bytes still hash to its recorded SHA-256, the volume
/// holds what was written, and the store takes a new import and a
/// delete, which survive a reopen.
fn check_intact_and_usable(img: Vec<u8>, what: &str) {
    let mut s = Store::open(MemDisk {
        bytes: img,
        block_size: BS,
    })
    .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let images: Vec<String> = s
        .objects()
        .iter()
        .filter(|o| o.kind == Kind::Image)
        .map(|o| o.name.clone())
        .collect();
    for name in &images {
        s.verify(name).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    let mut vol = vec![0u8; 40_000];
    s.read(Kind::Volume, "vol", 0, &mut vol).unwrap();
    let mut want = vec![0u8; 40_000];
    want[1000..21_000].copy_from_slice(&bytes(3, 20_000));
    assert!(vol == want, "{what}: volume contents changed");
    let data = bytes(99, 30_000);
    s.import("after-cut", &data)
        .unwrap_or_else(|e| panic!("{what}: import after reopen: {e}"));
    s.delete(
        Kind::Image,
        images.first().map_or("after-cut", |n| n.as_str()),
    )
    .unwrap();
    let mut s = Store::open(s.into_disk()).unwrap();
    if !images.is_empty() {
        s.verify("after-cut").unwrap();
    }
}

/// Runs `op` on the base store with power cut after write k, for every
/// k the operation issues, under every cache model.
fn cut_everywhere(name: &str, op: impl Fn(&mut Store<CrashDisk>) -> Result<(), StoreError>) {
    let before = summary(
        &Store::open(MemDisk {
            bytes: base(),
            block_size: BS,
        })
        .unwrap(),
    );
    // A run without a cut: how many writes, and the state after.
    let mut whole = Store::open(CrashDisk::new(base(), BS, None)).unwrap();
    op(&mut whole).unwrap();
    let disk = whole.into_disk();
    let total = disk.writes;
    let after = summary(
        &Store::open(MemDisk {
            bytes: disk.durable,
            block_size: BS,
        })
        .unwrap(),
    );
    assert_ne!(before, after, "{name}: the operation changed nothing");
    let (mut saw_before, mut saw_after) = (0, 0);
    for k in 1..=total {
        let mut s = Store::open(CrashDisk::new(base(), BS, Some(k))).unwrap();
        let r = op(&mut s);
        assert!(
            r.is_err(),
            "{name}: cut after write {k} of {total} went unnoticed"
        );
        let disk = s.into_disk();
        for (model, img) in disk.outcomes() {
            let what = format!("{name}, power cut after write {k} of {total}, {model}");
            let s = Store::open(MemDisk {
                bytes: img.clone(),
                block_size: BS,
            })
            .unwrap_or_else(|e| panic!("{what}: {e}"));
            let got = summary(&s);
            if got == before {
                saw_before += 1;
            } else if got == after {
                saw_after += 1;
            } else {
                panic!("{what}: neither the state before nor after:\n{got:?}");
            }
            check_intact_and_usable(img, &what);
        }
    }
    // Both outcomes happen: the cut points cover the commit.
    assert!(
        saw_before > 0 && saw_after > 0,
        "{name}: before {saw_before} after {saw_after}"
    );
    eprintln!("{name}: {total} cut points, {saw_before} outcomes before, {saw_after} after");
}

#[test]
fn power_cut_during_import() {
    cut_everywhere("import", |s| {
        // Several batches, and a partial last block.
        let data = bytes(7, 200_000);
        let mut imp = s.begin_import("gamma", data.len() as u64)?;
        for chunk in data.chunks(30_001) {
            s.import_write(&mut imp, chunk)?;
        }
        let o = s.finish_import(imp)?;
        assert_eq!(o.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
        Ok(())
    });
}

#[test]
fn power_cut_during_delete() {
    cut_everywhere("delete", |s| s.delete(Kind::Image, "alpha"));
}

#[test]
fn power_cut_during_volume_create() {
    cut_everywhere("volume create", |s| {
        s.create_volume("vol2", 70_000).map(|_| ())
    });
}

#[test]
fn an_unfinished_import_leaves_nothing_and_frees_its_space() {
    let mut s = Store::open(MemDisk {
        bytes: base(),
        block_size: BS,
    })
    .unwrap();
    let free = s.free();
    let mut imp = s.begin_import("half", 100_000).unwrap();
    s.import_write(&mut imp, &bytes(5, 70_000)).unwrap();
    assert!(s.free() < free);
    let e = s.finish_import(imp).unwrap_err();
    assert!(
        e.to_string().contains("ended after 70000 of 100000 bytes"),
        "{e}"
    );
    assert_eq!(s.free(), free);
    let s = Store::open(s.into_disk()).unwrap();
    assert!(s.get(Kind::Image, "half").is_err());
    assert_eq!(s.free(), free);
}

#[test]
fn imports_refuse_extra_bytes_and_taken_names() {
    let mut s = Store::open(MemDisk {
        bytes: base(),
        block_size: BS,
    })
    .unwrap();
    assert!(matches!(
        s.import("alpha", b"x"),
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        s.import("../x", b"x"),
        Err(StoreError::BadName(_))
    ));
    let mut imp = s.begin_import("small", 10).unwrap();
    let e = s.import_write(&mut imp, &[0; 11]).unwrap_err();
    assert!(
        e.to_string().contains("1 more bytes than the 10 announced"),
        "{e}"
    );
    assert!(matches!(
        s.begin_import("small", 1),
        Err(StoreError::Exists(_))
    ));
    s.abort_import(imp);
    assert!(matches!(
        s.import("huge", &vec![0; 3 << 20]),
        Err(StoreError::NoSpace { .. })
    ));
    // Images are immutable: no write path takes one.
    assert!(matches!(
        s.write_volume("alpha", 0, b"x"),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn volumes_read_zero_where_a_deleted_image_was() {
    let mut s = Store::open(MemDisk {
        bytes: base(),
        block_size: BS,
    })
    .unwrap();
    s.delete(Kind::Image, "beta").unwrap();
    s.create_volume("fresh", 150_000).unwrap();
    let mut buf = vec![1u8; 150_000];
    s.read(Kind::Volume, "fresh", 0, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
}
