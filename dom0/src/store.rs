//! dom0's image store (docs/store.md): opened, or made, at start on the
//! disk the boot configuration's `[store]` table names, and the boot
//! modules it lists under `import` copied in as images. The store itself
//! (layout, crash consistency, qcow2) is the `kestrel-store` crate; this
//! file adapts dom0's disks to it and says what it did:
//!
//!     dom0: store: 0000:00:03.0 virtio-blk: generation 4, 2 images, 1 volumes, 28 MiB free of 32 MiB
//!     dom0: store: importing big.bin: 1048576 of 8388608 bytes
//!     dom0: store: imported image big.bin (8388608 bytes, sha256 ...)
//!
//! A disk that holds no store is formatted only when the table says
//! `format = true`; one that holds a damaged store never is.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use kestrel_store::{Disk, Kind, Store, StoreError};
use kestrel_toolstack::config::store::StoreConfig;
use pvabi::guest::domctl;

use crate::dev::block::BlockDevice;
use crate::hv::Module;
use crate::say;

/// A progress line every this many bytes of an import.
const PROGRESS_BYTES: u64 = 1 << 20;

/// One of dom0's disks as the store's [`Disk`].
pub struct StoreDisk(Box<dyn BlockDevice>);

impl Disk for StoreDisk {
    fn block_size(&self) -> usize {
        self.0.block_size()
    }
    fn blocks(&self) -> u64 {
        self.0.blocks()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String> {
        self.0.read(lba, buf).map_err(|e| format!("{e}"))
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), String> {
        self.0.write(lba, buf).map_err(|e| format!("{e}"))
    }
    fn flush(&mut self) -> Result<(), String> {
        self.0.flush().map_err(|e| format!("{e}"))
    }
}

/// dom0's store.
pub type DiskStore = Store<StoreDisk>;

fn mib(b: u64) -> u64 {
    b >> 20
}

/// Opens (or, if allowed, formats) the store on the disk `cfg` names,
/// taking that disk out of `disks`; then imports the modules `cfg` lists.
pub fn start(
    cfg: &StoreConfig,
    disks: &mut Vec<Box<dyn BlockDevice>>,
    modules: &[Module],
) -> Option<DiskStore> {
    let Some(i) = disks
        .iter()
        .position(|d| d.model() == cfg.disk || d.bdf() == cfg.disk)
    else {
        let have: Vec<String> = disks
            .iter()
            .map(|d| format!("{} \"{}\"", d.bdf(), d.model().escape_default()))
            .collect();
        say(&format!(
            "store: no disk \"{}\" (dom0's disks: {}): no store",
            cfg.disk,
            if have.is_empty() {
                "none".into()
            } else {
                have.join(", ")
            }
        ));
        return None;
    };
    let disk = disks.swap_remove(i);
    let name = format!("{} {}", disk.bdf(), disk.kind());
    let mut store = match Store::try_open(StoreDisk(disk)) {
        Ok(s) => s,
        Err((StoreError::NotAStore { blank }, d)) if cfg.format => {
            say(&format!(
                "store: {name}: formatting (it held no store{})",
                if blank {
                    ", blank"
                } else {
                    ", but other data: format = true says so"
                }
            ));
            match Store::format(d) {
                Ok(s) => s,
                Err(e) => {
                    say(&format!("store: {name}: format failed: {e}: no store"));
                    return None;
                }
            }
        }
        Err((e @ StoreError::NotAStore { .. }, _)) => {
            say(&format!(
                "store: {name}: {e}; [store] format = true makes one there: no store"
            ));
            return None;
        }
        Err((e, _)) => {
            say(&format!(
                "store: {name}: {e}: not used (a damaged store is never formatted over)"
            ));
            return None;
        }
    };
    for n in store.notes() {
        say(&format!("store: {name}: note: {n}"));
    }
    let count = |k| store.objects().iter().filter(|o| o.kind == k).count();
    say(&format!(
        "store: {name}: generation {}, {} images, {} volumes, {} MiB free of {} MiB",
        store.generation(),
        count(Kind::Image),
        count(Kind::Volume),
        mib(store.free()),
        mib(store.capacity())
    ));
    for m in &cfg.import {
        import_module(&mut store, m, modules);
    }
    Some(store)
}

/// Copies boot module `name` into the store as an image of that name,
/// unless one exists.
fn import_module(store: &mut DiskStore, name: &str, modules: &[Module]) {
    if let Ok(o) = store.get(Kind::Image, name) {
        say(&format!(
            "store: image {name} already in the store ({} bytes, sha256 {})",
            o.size,
            kestrel_store::hex(&o.sha256)
        ));
        return;
    }
    let Some(m) = modules.iter().find(|m| m.name == name) else {
        say(&format!(
            "store: import {name}: no boot module of that name"
        ));
        return;
    };
    let mut imp = match store.begin_import(name, m.size) {
        Ok(i) => i,
        Err(e) => {
            say(&format!("store: import {name}: {e}"));
            return;
        }
    };
    let mut buf = vec![0u8; pvabi::DOMCTL_READ_MAX as usize];
    let mut next = PROGRESS_BYTES;
    while imp.received() < m.size {
        let step = domctl::module_read(m.index, imp.received(), &mut buf)
            .map_err(|e| format!("reading the module at {}: {e:?}", imp.received()))
            .and_then(|n| match buf.get(..n) {
                Some(b) if n > 0 => Ok(b),
                _ => Err(format!(
                    "the module ended at {} of {} bytes",
                    imp.received(),
                    m.size
                )),
            })
            .and_then(|b| store.import_write(&mut imp, b).map_err(|e| format!("{e}")));
        if let Err(e) = step {
            say(&format!("store: import {name}: {e}: nothing kept"));
            store.abort_import(imp);
            return;
        }
        if imp.received() >= next {
            say(&format!(
                "store: importing {name}: {} of {} bytes",
                imp.received(),
                m.size
            ));
            next += PROGRESS_BYTES;
        }
    }
    match store.finish_import(imp) {
        Ok(o) => say(&format!(
            "store: imported image {name} ({} bytes, sha256 {})",
            o.size,
            kestrel_store::hex(&o.sha256)
        )),
        Err(e) => say(&format!("store: import {name}: {e}: nothing kept")),
    }
}
