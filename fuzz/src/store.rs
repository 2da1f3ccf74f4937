//! dom0's image store (`kestrel-store`, docs/store.md): what a damaged or
//! hostile disk and an operator's qcow2 file control. The first byte picks
//! the input:
//!
//! - even: the rest is a qcow2 file: parsed, and (when the header holds)
//!   up to 1 MiB of it read.
//! - odd: the rest is the metadata of a store whose root (checksums made
//!   right, so the fuzzer gets past them) names it: the store is opened,
//!   and if that succeeds, its images verified, and an import and a delete
//!   run.

use kestrel_store::layout::{Root, encode_meta};
use kestrel_store::qcow2::Qcow2;
use kestrel_store::{BLOCK, Extent, Kind, MemDisk, Store};

/// Store blocks of the fake disk (metadata may fill 16 of them).
const DISK_BLOCKS: usize = 64;

/// The fuzzer's bytes as a disk whose newest root names `meta`.
pub fn disk_with_meta(meta: &[u8]) -> MemDisk {
    let mut disk = MemDisk::new(512, DISK_BLOCKS * BLOCK / 512);
    let len = meta.len().min(16 * BLOCK);
    disk.bytes[2 * BLOCK..2 * BLOCK + len].copy_from_slice(&meta[..len]);
    let root = Root {
        generation: 1,
        total: DISK_BLOCKS as u64,
        meta: Extent {
            start: 2,
            blocks: 16,
        },
        meta_len: len as u64,
        meta_crc: crc32fast::hash(&meta[..len]),
    };
    disk.bytes[..BLOCK].copy_from_slice(&root.encode());
    disk
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(q) = Qcow2::parse(rest) {
            let mut buf = vec![0u8; q.size().min(1 << 20) as usize];
            let _ = q.read_at(0, &mut buf);
        }
        return;
    }
    let Ok(mut s) = Store::open(disk_with_meta(rest)) else {
        return;
    };
    let names: Vec<String> = s
        .objects()
        .iter()
        .filter(|o| o.kind == Kind::Image)
        .map(|o| o.name.clone())
        .collect();
    for n in &names {
        let _ = s.verify(n);
    }
    let _ = s.import("fuzz-new", &[0x5a; 5000]);
    if let Some(n) = names.first() {
        let _ = s.delete(Kind::Image, n);
    }
}

/// Seeds: a qcow2 file this crate's exporter wrote, a store's metadata
/// with one image and one volume.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut q = vec![0u8];
    let _ = kestrel_store::qcow2::export(
        data.len() as u64,
        |off, buf| {
            let at = off as usize;
            buf.copy_from_slice(&data[at..at + buf.len()]);
            Ok(())
        },
        &mut |b: &[u8]| {
            q.extend_from_slice(b);
            Ok(())
        },
    );
    let objects = {
        let mut s = match Store::format(MemDisk::new(512, DISK_BLOCKS * BLOCK / 512)) {
            Ok(s) => s,
            Err(_) => return vec![("qcow2", q)],
        };
        let _ = s.import("web", &data[..9000]);
        let _ = s.create_volume("data", 10_000);
        s.objects().to_vec()
    };
    let mut m = vec![1u8];
    m.extend_from_slice(&encode_meta(1, &objects));
    vec![("qcow2", q), ("meta", m)]
}
