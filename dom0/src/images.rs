//! dom0's images (issue 14): the boot modules as `image_list` shows them
//! (hashed once, on first use) and the images sent at run time, kept in
//! dom0's heap (`kestrel_toolstack::server::upload`).
//!
//! Room: dom0's heap is [`crate::HEAP_BYTES`]; an upload must leave
//! [`RESERVE`] of it free for dom0's own work (protocol lines, drivers,
//! the network stack), and all images together take at most [`LIMIT`].
//! dom0 has 8 MiB of memory in all (the hypervisor's boot-module domain
//! size), which is what bounds the heap: images of a few MiB (pvabi
//! guests) fit; a Linux kernel does not yet (docs/toolstack.md).

use alloc::string::String;
use alloc::vec::Vec;

use kestrel_toolstack::proto::{ImageInfo, ImageSource};
use kestrel_toolstack::server::MemImages;
use kestrel_toolstack::server::upload::{Hasher, hex, is_elf};

use crate::hv::Module;

/// Heap dom0 keeps free for itself whatever is uploaded.
pub const RESERVE: u64 = 1 << 20;
/// All uploaded images together, at most.
pub const LIMIT: u64 = (crate::HEAP_BYTES as u64) - RESERVE;

fn spare() -> u64 {
    let s = crate::HEAP.stats();
    (s.size.saturating_sub(s.used) as u64).saturating_sub(RESERVE)
}

/// The keeper dom0 starts with.
pub fn keeper() -> MemImages {
    MemImages::with_free(LIMIT, spare)
}

/// Boot module `m` as an image: its SHA-256 read through
/// `HC_DOMCTL_MODULE_READ`.
pub fn module_info(m: &Module) -> ImageInfo {
    let mut h = Hasher::default();
    let mut buf = [0u8; pvabi::DOMCTL_READ_MAX as usize];
    let mut off = 0u64;
    let mut first = Vec::new();
    while off < m.size {
        let n = pvabi::guest::domctl::module_read(m.index, off, &mut buf).unwrap_or(0);
        let Some(piece) = buf.get(..n).filter(|p| !p.is_empty()) else {
            break;
        };
        if first.is_empty() {
            first.extend_from_slice(piece.get(..4).unwrap_or(piece));
        }
        h.update(piece);
        off = off.saturating_add(n as u64);
    }
    ImageInfo {
        name: String::from(m.name.as_str()),
        size: m.size,
        sha256: hex(&h.finish()),
        source: ImageSource::Module,
        elf: m.elf || is_elf(&first),
    }
}
