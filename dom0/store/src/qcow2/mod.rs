//! qcow2, the image format every other hypervisor's tools hand around:
//! reading (import: versions 2 and 3, the active layer) and writing
//! (export: version 3, sparse, 64 KiB clusters). Field facts are from
//! QEMU's specification, `docs/interop/qcow2.txt` ("qcow2 spec" below).
//!
//! Not taken, each refused with a message naming it: backing files,
//! encryption, compressed clusters, external data files, extended L2
//! entries (subclusters), a non-zlib compression type, and images
//! marked corrupt. Internal snapshots are ignored (the active layer is
//! what is read).

mod read;
mod write;

pub use read::Qcow2;
pub use write::{ExportPlan, export};

use alloc::vec;

use crate::disk::Disk;
use crate::error::Result;
use crate::layout::{Kind, Object};
use crate::store::Store;

/// The qcow2 magic, `QFI\xfb`.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";

/// Whether `src` starts like a qcow2 file.
pub fn is_qcow2(src: &[u8]) -> bool {
    src.starts_with(&MAGIC)
}

/// Imports the guest-visible bytes of the qcow2 file `src` as image
/// `name` (its size is the qcow2 virtual size). `progress(done, total)`
/// is called after every cluster.
pub fn import<D: Disk>(
    store: &mut Store<D>,
    name: &str,
    src: &[u8],
    mut progress: impl FnMut(u64, u64),
) -> Result<Object> {
    let q = Qcow2::parse(src)?;
    let size = q.size();
    let mut imp = store.begin_import(name, size)?;
    let mut buf = vec![0u8; q.cluster_size()];
    let mut at = 0u64;
    while at < size {
        let n = (size - at).min(buf.len() as u64) as usize;
        let step = q
            .read_at(at, &mut buf[..n])
            .and_then(|()| store.import_write(&mut imp, &buf[..n]));
        if let Err(e) = step {
            store.abort_import(imp);
            return Err(e);
        }
        at += n as u64;
        progress(at, size);
    }
    store.finish_import(imp)
}

/// Exports object `name` as a qcow2 file, handed to `sink` in order.
/// Returns the file's length.
pub fn export_object<D: Disk>(
    store: &mut Store<D>,
    kind: Kind,
    name: &str,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let size = store.get(kind, name)?.size;
    export(size, |off, buf| store.read(kind, name, off, buf), &mut sink)
}
