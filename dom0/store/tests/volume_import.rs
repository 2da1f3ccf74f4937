//! Volumes made by import (`Store::begin_import_as(Kind::Volume, ..)`,
//! what `hvctl volume import` uses): the volume exists only once every
//! byte is in and the commit is made; before that (an abort, a power cut)
//! there is no volume and its blocks are free.
#![allow(clippy::unwrap_used)]

use kestrel_store::{Kind, MemDisk, Store, StoreError};

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn a_volume_import_commits_whole_and_reads_back() {
    let mut s = Store::format(MemDisk::new(512, 4096)).unwrap();
    let data = pattern(100_000);
    let mut imp = s.begin_import_as(Kind::Volume, "disk", 100_000).unwrap();
    // An image of the same name is another name space.
    s.import("disk", b"an image").unwrap();
    for piece in data.chunks(30_000) {
        s.import_write(&mut imp, piece).unwrap();
    }
    assert_eq!(imp.sha256(), kestrel_store_sha(&data));
    assert!(
        s.get(Kind::Volume, "disk").is_err(),
        "not a volume before the commit"
    );
    let o = s.finish_import(imp).unwrap();
    assert_eq!((o.kind, o.size, o.sha256), (Kind::Volume, 100_000, [0; 32]));
    let mut back = vec![0u8; data.len()];
    s.read(Kind::Volume, "disk", 0, &mut back).unwrap();
    assert_eq!(back, data);
    // It is a volume like any other: writable, and it survives a reopen.
    s.write_volume("disk", 5, b"xyz").unwrap();
    s.flush().unwrap();
    let mut s = Store::open(s.into_disk()).unwrap();
    let mut head = [0u8; 8];
    s.read(Kind::Volume, "disk", 0, &mut head).unwrap();
    assert_eq!(&head[5..8], b"xyz");
}

fn kestrel_store_sha(b: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(b).into()
}

#[test]
fn an_unfinished_volume_import_leaves_nothing() {
    let mut s = Store::format(MemDisk::new(512, 2048)).unwrap();
    let free = s.free();
    let mut imp = s.begin_import_as(Kind::Volume, "v", 300_000).unwrap();
    s.import_write(&mut imp, &pattern(200_000)).unwrap();
    // Same name again while it runs: refused.
    let e = s.begin_import_as(Kind::Volume, "v", 10).unwrap_err();
    assert!(matches!(e, StoreError::Exists(_)), "{e}");
    assert!(s.create_volume("v", 4096).is_err());
    assert!(s.free() < free, "its blocks are set aside while it runs");
    // The power goes: the reopened store has no volume and all its room.
    let mut again = Store::open(s.into_disk()).unwrap();
    assert!(again.objects().is_empty());
    assert_eq!(again.free(), free);
    // An abort: the same.
    let mut imp = again.begin_import_as(Kind::Volume, "v", 300_000).unwrap();
    again.import_write(&mut imp, &pattern(1000)).unwrap();
    again.abort_import(imp);
    assert_eq!(again.free(), free);
    assert!(again.get(Kind::Volume, "v").is_err());
    // Too few bytes at the end: refused, nothing kept.
    let mut imp = again.begin_import_as(Kind::Volume, "v", 5000).unwrap();
    again.import_write(&mut imp, &pattern(4000)).unwrap();
    let e = again.finish_import(imp).unwrap_err();
    assert!(e.to_string().contains("after 4000 of 5000 bytes"), "{e}");
    assert!(again.objects().is_empty());
    assert_eq!(again.free(), free);
    let e = again.begin_import_as(Kind::Volume, "z", 0).unwrap_err();
    assert!(e.to_string().contains("size 0"), "{e}");
}

#[test]
fn a_log_cannot_be_imported() {
    // Logs are dom0's own rings (`log.rs`); an import naming that kind is
    // refused before any block is set aside.
    let mut s = Store::format(MemDisk::new(512, 4096)).unwrap();
    let free = s.free();
    match s.begin_import_as(Kind::Log, "kestrel-log", 4096) {
        Err(StoreError::Invalid(m)) => assert!(m.contains("not imported"), "{m}"),
        other => panic!("a log import was not refused: {:?}", other.map(|_| ())),
    }
    assert_eq!(s.free(), free);
}
