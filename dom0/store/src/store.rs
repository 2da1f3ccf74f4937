//! The store: open or format, list, import (images), create/write
//! (volumes), delete, read. Every change that the metadata records is a
//! commit (see [`Store::commit`]); nothing else ever writes a block that
//! the last committed root refers to, except a volume's own data.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use sha2::{Digest, Sha256};

use crate::disk::{BLOCK, Blocks, Disk};
use crate::error::{Result, StoreError};
use crate::layout::{
    self, EXTENTS_MAX, Extent, FIRST_DATA, Kind, OBJECTS_MAX, Object, Root, blocks_for, check_name,
};
use crate::space;

/// Blocks moved per disk request by imports, volume creation and reads.
const BATCH_BLOCKS: usize = 16;
/// The smallest store: two roots, metadata and some data.
const MIN_BLOCKS: u64 = 8;
/// Largest metadata a root may name (bounds what a damaged root can
/// make `open` allocate).
const META_MAX: u64 = 16 << 20;

/// An open store on a disk.
#[derive(Debug)]
pub struct Store<D> {
    io: Blocks<D>,
    total: u64,
    generation: u64,
    /// The slot (0 or 1) holding the root of `generation`.
    slot: u64,
    meta: Extent,
    objects: Vec<Object>,
    /// Imports begun and not finished: (id, name, extents, what they
    /// become).
    pending: Vec<(u64, String, Vec<Extent>, Kind)>,
    next_id: u64,
    notes: Vec<String>,
}

/// An import in progress: the blocks are reserved in memory only, so a
/// crash (or [`Store::abort_import`]) leaves no trace of it on the disk's
/// committed state.
#[derive(Debug)]
pub struct Import {
    id: u64,
    kind: Kind,
    name: String,
    size: u64,
    extents: Vec<Extent>,
    /// Bytes received.
    received: u64,
    /// Blocks written.
    written: u64,
    buf: Vec<u8>,
    hash: Sha256,
}

impl Import {
    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }
    /// Bytes announced.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// The object's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// What the import becomes: an image, or a volume
    /// ([`Store::begin_import_as`]).
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// SHA-256 of the bytes received so far (of them all once
    /// [`Self::received`] is [`Self::size`]): what a caller checks
    /// against an announced hash *before* [`Store::finish_import`]
    /// commits.
    pub fn sha256(&self) -> [u8; 32] {
        self.hash.clone().finalize().into()
    }
}

/// The store block holding byte block `index` of an object, and how many
/// blocks from there on are contiguous.
fn locate(extents: &[Extent], mut index: u64) -> Option<(u64, u64)> {
    for e in extents {
        if index < e.blocks {
            return Some((e.start + index, e.blocks - index));
        }
        index -= e.blocks;
    }
    None
}

impl<D: Disk> Store<D> {
    /// Makes a new empty store on `disk`, whatever it held. The caller
    /// decides whether that is allowed (dom0: docs/store.md).
    pub fn format(disk: D) -> Result<Self> {
        let mut io = Blocks::new(disk).map_err(|(e, _)| e)?;
        if io.count < MIN_BLOCKS {
            return Err(StoreError::BadDisk(format!(
                "{} store blocks, at least {MIN_BLOCKS} needed",
                io.count
            )));
        }
        // Slot 1 first: an older store's root there must not outlive
        // the format with a higher generation than the new one.
        io.write(1, &vec![0; BLOCK])?;
        io.flush()?;
        let meta = Extent {
            start: FIRST_DATA,
            blocks: 1,
        };
        let bytes = layout::encode_meta(1, &[]);
        let mut block = vec![0; BLOCK];
        block[..bytes.len()].copy_from_slice(&bytes);
        io.write(meta.start, &block)?;
        io.flush()?;
        let root = Root {
            generation: 1,
            total: io.count,
            meta,
            meta_len: bytes.len() as u64,
            meta_crc: crc32fast::hash(&bytes),
        };
        io.write(0, &root.encode())?;
        io.flush()?;
        Ok(Store {
            total: io.count,
            io,
            generation: 1,
            slot: 0,
            meta,
            objects: Vec::new(),
            pending: Vec::new(),
            next_id: 1,
            notes: Vec::new(),
        })
    }

    /// Opens the store on `disk`: the valid root of the highest
    /// generation whose metadata is intact; the other slot when that one
    /// is torn or damaged ([`Store::notes`] says so).
    pub fn open(disk: D) -> Result<Self> {
        Self::try_open(disk).map_err(|(e, _)| e)
    }

    /// [`Store::open`], giving the disk back when it fails (so the caller
    /// may format it, if it is allowed to).
    pub fn try_open(disk: D) -> core::result::Result<Self, (StoreError, D)> {
        let mut io = match Blocks::new(disk) {
            Ok(io) => io,
            Err((e, disk)) => return Err((e, disk)),
        };
        match Self::load(&mut io) {
            Ok((slot, root, objects, notes)) => Ok(Store {
                total: root.total,
                io,
                generation: root.generation,
                slot,
                meta: root.meta,
                objects,
                pending: Vec::new(),
                next_id: 1,
                notes,
            }),
            Err(e) => Err((e, io.disk)),
        }
    }

    #[allow(clippy::type_complexity)]
    fn load(io: &mut Blocks<D>) -> Result<(u64, Root, Vec<Object>, Vec<String>)> {
        if io.count < MIN_BLOCKS {
            return Err(StoreError::BadDisk(format!(
                "{} store blocks, at least {MIN_BLOCKS} needed",
                io.count
            )));
        }
        let mut slots = vec![0u8; 2 * BLOCK];
        io.read(0, &mut slots)?;
        let mut roots = Vec::new();
        let mut notes = Vec::new();
        let mut magic = false;
        for slot in 0..2u64 {
            let b = &slots[slot as usize * BLOCK..(slot as usize + 1) * BLOCK];
            match Root::decode(b, io.count) {
                Ok(Some(r)) => {
                    magic = true;
                    roots.push((slot, r));
                }
                Ok(None) => notes.push(format!("root slot {slot}: empty")),
                Err(e) => {
                    magic = true;
                    notes.push(format!("root slot {slot}: {e}"));
                }
            }
        }
        if !magic {
            return Err(StoreError::NotAStore {
                blank: slots.iter().all(|&b| b == 0),
            });
        }
        roots.sort_by_key(|r| core::cmp::Reverse(r.1.generation));
        for (slot, root) in roots {
            match Self::read_meta(io, &root) {
                Ok(objects) => return Ok((slot, root, objects, notes)),
                Err(e) => notes.push(format!(
                    "root slot {slot} (generation {}): {e}",
                    root.generation
                )),
            }
        }
        Err(StoreError::Corrupt(format!(
            "no usable root: {}",
            notes.join("; ")
        )))
    }

    fn read_meta(io: &mut Blocks<D>, root: &Root) -> Result<Vec<Object>> {
        if root.meta_len > META_MAX {
            return Err(StoreError::Corrupt(format!(
                "metadata of {} bytes (at most {META_MAX})",
                root.meta_len
            )));
        }
        let mut b = vec![0u8; root.meta.blocks as usize * BLOCK];
        io.read(root.meta.start, &mut b)?;
        b.truncate(root.meta_len as usize);
        let crc = crc32fast::hash(&b);
        if crc != root.meta_crc {
            return Err(StoreError::Corrupt(format!(
                "metadata checksum {crc:08x}, the root says {:08x}",
                root.meta_crc
            )));
        }
        layout::decode_meta(&b, root)
    }

    /// What `open` noticed: empty or damaged root slots it did not use.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The generation of the last commit.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The store's capacity in bytes (roots and metadata included).
    pub fn capacity(&self) -> u64 {
        self.total * BLOCK as u64
    }

    fn used(&self) -> Vec<Extent> {
        let mut u: Vec<Extent> = self
            .objects
            .iter()
            .flat_map(|o| o.extents.iter().copied())
            .collect();
        u.push(self.meta);
        u.extend(self.pending.iter().flat_map(|p| p.2.iter().copied()));
        u
    }

    /// Free bytes (not reserved by an import in progress).
    pub fn free(&self) -> u64 {
        space::free_blocks(self.total, &self.used()) * BLOCK as u64
    }

    /// Every committed object, in the order they were committed.
    pub fn objects(&self) -> &[Object] {
        &self.objects
    }

    /// The object of that kind and name.
    pub fn get(&self, kind: Kind, name: &str) -> Result<&Object> {
        self.objects
            .iter()
            .find(|o| o.kind == kind && o.name == name)
            .ok_or_else(|| StoreError::NotFound(format!("no {} named {name:?}", kind.word())))
    }

    /// The disk, for the caller's own use once done.
    pub fn into_disk(self) -> D {
        self.io.disk
    }

    fn check_new(&self, kind: Kind, name: &str) -> Result<()> {
        check_name(name)?;
        let busy = self
            .objects
            .iter()
            .any(|o| o.kind == kind && o.name == name)
            || self.pending.iter().any(|p| p.3 == kind && p.1 == name);
        if busy {
            return Err(StoreError::Exists(format!(
                "{} {name:?} exists already",
                kind.word()
            )));
        }
        if self.objects.len() + self.pending.len() >= OBJECTS_MAX {
            return Err(StoreError::Invalid(format!(
                "the store holds {OBJECTS_MAX} objects, its limit"
            )));
        }
        Ok(())
    }

    /// Commits `objects` as the new state: (1) the metadata goes to
    /// blocks no committed root and no live object uses, and is flushed;
    /// (2) the root of generation + 1 goes to the other slot (the one
    /// holding the older root), and is flushed. Data the new state adds
    /// must be flushed before. A crash before (2) completes leaves the
    /// old root the newest valid one; after it, the new one. A torn (2)
    /// fails its checksum and the old root wins.
    fn commit(&mut self, objects: Vec<Object>) -> Result<()> {
        let generation = self.generation + 1;
        let bytes = layout::encode_meta(generation, &objects);
        let mut used = self.used();
        used.extend(objects.iter().flat_map(|o| o.extents.iter().copied()));
        let meta = space::allocate_contiguous(self.total, &used, blocks_for(bytes.len() as u64))?;
        let mut padded = bytes.clone();
        padded.resize(meta.blocks as usize * BLOCK, 0);
        self.io.write(meta.start, &padded)?;
        self.io.flush()?;
        let root = Root {
            generation,
            total: self.total,
            meta,
            meta_len: bytes.len() as u64,
            meta_crc: crc32fast::hash(&bytes),
        };
        let slot = 1 - self.slot;
        self.io.write(slot, &root.encode())?;
        self.io.flush()?;
        self.generation = generation;
        self.slot = slot;
        self.meta = meta;
        self.objects = objects;
        Ok(())
    }

    /// Begins importing an image of `size` bytes named `name`: reserves
    /// its blocks (in memory only).
    pub fn begin_import(&mut self, name: &str, size: u64) -> Result<Import> {
        self.begin_import_as(Kind::Image, name, size)
    }

    /// As [`Self::begin_import`], for an image or a volume: a volume
    /// imported this way exists only once [`Self::finish_import`] commits
    /// it, with every byte written (a cut or an abort before leaves no
    /// volume, not a half-filled one). Its size must be above 0.
    pub fn begin_import_as(&mut self, kind: Kind, name: &str, size: u64) -> Result<Import> {
        self.check_new(kind, name)?;
        if kind == Kind::Log {
            return Err(StoreError::Invalid(format!(
                "log {name:?}: logs are written by dom0, not imported"
            )));
        }
        if kind == Kind::Volume && size == 0 {
            return Err(StoreError::Invalid(format!("volume {name:?}: size 0")));
        }
        let extents = space::allocate(self.total, &self.used(), blocks_for(size), EXTENTS_MAX)?;
        let id = self.next_id;
        self.next_id += 1;
        self.pending.push((id, name.into(), extents.clone(), kind));
        Ok(Import {
            id,
            kind,
            name: name.into(),
            size,
            extents,
            received: 0,
            written: 0,
            buf: Vec::with_capacity(BATCH_BLOCKS * BLOCK),
            hash: Sha256::new(),
        })
    }

    fn write_blocks(&mut self, extents: &[Extent], mut index: u64, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let (block, run) = locate(extents, index).ok_or_else(|| {
                StoreError::Invalid(format!("block {index} is beyond the object's extents"))
            })?;
            let n = (run as usize).min(data.len() / BLOCK);
            self.io.write(block, &data[..n * BLOCK])?;
            data = &data[n * BLOCK..];
            index += n as u64;
        }
        Ok(())
    }

    fn read_blocks(
        &mut self,
        extents: &[Extent],
        mut index: u64,
        mut buf: &mut [u8],
    ) -> Result<()> {
        while !buf.is_empty() {
            let (block, run) = locate(extents, index).ok_or_else(|| {
                StoreError::Invalid(format!("block {index} is beyond the object's extents"))
            })?;
            let n = (run as usize).min(buf.len() / BLOCK);
            let (now, rest) = buf.split_at_mut(n * BLOCK);
            self.io.read(block, now)?;
            buf = rest;
            index += n as u64;
        }
        Ok(())
    }

    fn check_import(&self, imp: &Import) -> Result<()> {
        if self.pending.iter().any(|p| p.0 == imp.id) {
            Ok(())
        } else {
            Err(StoreError::Invalid(format!(
                "import of {:?} is not in progress in this store",
                imp.name
            )))
        }
    }

    /// Appends bytes to an import. More bytes than announced are refused.
    pub fn import_write(&mut self, imp: &mut Import, mut data: &[u8]) -> Result<()> {
        self.check_import(imp)?;
        let left = imp.size - imp.received;
        if data.len() as u64 > left {
            return Err(StoreError::Invalid(format!(
                "import of {:?}: {} more bytes than the {} announced",
                imp.name,
                data.len() as u64 - left,
                imp.size
            )));
        }
        imp.hash.update(data);
        imp.received += data.len() as u64;
        while !data.is_empty() {
            let room = BATCH_BLOCKS * BLOCK - imp.buf.len();
            let n = room.min(data.len());
            imp.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if imp.buf.len() == BATCH_BLOCKS * BLOCK {
                self.write_blocks(&imp.extents, imp.written, &imp.buf)?;
                imp.written += BATCH_BLOCKS as u64;
                imp.buf.clear();
            }
        }
        Ok(())
    }

    /// Finishes an import: the last bytes written, the data flushed, then
    /// committed. Fewer bytes than announced are refused (the import is
    /// dropped).
    pub fn finish_import(&mut self, mut imp: Import) -> Result<Object> {
        self.check_import(&imp)?;
        let result = self.finish_inner(&mut imp);
        self.pending.retain(|p| p.0 != imp.id);
        result
    }

    fn finish_inner(&mut self, imp: &mut Import) -> Result<Object> {
        if imp.received != imp.size {
            return Err(StoreError::Invalid(format!(
                "import of {:?} ended after {} of {} bytes; nothing kept",
                imp.name, imp.received, imp.size
            )));
        }
        if !imp.buf.is_empty() {
            let whole = imp.buf.len().div_ceil(BLOCK) * BLOCK;
            imp.buf.resize(whole, 0);
            let buf = core::mem::take(&mut imp.buf);
            self.write_blocks(&imp.extents, imp.written, &buf)?;
        }
        self.io.flush()?;
        // A volume's bytes change once a guest writes them: no hash is
        // recorded for it (as for `create_volume`).
        let sha256 = match imp.kind {
            Kind::Image => imp.sha256(),
            Kind::Volume | Kind::Log => [0; 32],
        };
        let object = Object {
            kind: imp.kind,
            name: imp.name.clone(),
            size: imp.size,
            sha256,
            extents: imp.extents.clone(),
        };
        let mut objects = self.objects.clone();
        objects.push(object.clone());
        self.commit(objects)?;
        Ok(object)
    }

    /// Drops an import: its reserved blocks are free again.
    pub fn abort_import(&mut self, imp: Import) {
        self.pending.retain(|p| p.0 != imp.id);
    }

    /// Imports `data` as image `name` in one call.
    pub fn import(&mut self, name: &str, data: &[u8]) -> Result<Object> {
        let mut imp = self.begin_import(name, data.len() as u64)?;
        if let Err(e) = self.import_write(&mut imp, data) {
            self.abort_import(imp);
            return Err(e);
        }
        self.finish_import(imp)
    }

    /// Creates a volume of `size` bytes that reads as zeros (the blocks
    /// may have held another object's data: they are zeroed, and flushed,
    /// before the commit makes them the volume's).
    pub fn create_volume(&mut self, name: &str, size: u64) -> Result<Object> {
        self.create_zeroed(Kind::Volume, name, size)
    }

    /// Creates a log ring's object of `size` bytes, zeroed (as a volume,
    /// but of kind [`Kind::Log`]: `crate::log`).
    pub fn create_log(&mut self, name: &str, size: u64) -> Result<Object> {
        self.create_zeroed(Kind::Log, name, size)
    }

    fn create_zeroed(&mut self, kind: Kind, name: &str, size: u64) -> Result<Object> {
        self.check_new(kind, name)?;
        if size == 0 {
            return Err(StoreError::Invalid(format!(
                "{} {name:?}: size 0",
                kind.word()
            )));
        }
        let extents = space::allocate(self.total, &self.used(), blocks_for(size), EXTENTS_MAX)?;
        let zeros = vec![0u8; BATCH_BLOCKS * BLOCK];
        for e in &extents {
            let mut at = e.start;
            while at < e.end() {
                let n = (e.end() - at).min(BATCH_BLOCKS as u64);
                self.io.write(at, &zeros[..n as usize * BLOCK])?;
                at += n;
            }
        }
        self.io.flush()?;
        let object = Object {
            kind,
            name: name.into(),
            size,
            sha256: [0; 32],
            extents,
        };
        let mut objects = self.objects.clone();
        objects.push(object.clone());
        self.commit(objects)?;
        Ok(object)
    }

    /// Deletes an object (one commit; its blocks are free afterwards).
    pub fn delete(&mut self, kind: Kind, name: &str) -> Result<()> {
        self.get(kind, name)?;
        let objects = self
            .objects
            .iter()
            .filter(|o| !(o.kind == kind && o.name == name))
            .cloned()
            .collect();
        self.commit(objects)
    }

    /// Reads `buf.len()` bytes of an object from byte `offset`.
    pub fn read(&mut self, kind: Kind, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let o = self.get(kind, name)?;
        let (size, extents) = (o.size, o.extents.clone());
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > size) {
            return Err(StoreError::Invalid(format!(
                "{} {name:?}: {} bytes at {offset} are beyond its {size} bytes",
                kind.word(),
                buf.len()
            )));
        }
        let mut tmp = vec![0u8; BATCH_BLOCKS * BLOCK];
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let skip = (at % BLOCK as u64) as usize;
            let want = (buf.len() - done).min(tmp.len() - skip);
            let blocks = (skip + want).div_ceil(BLOCK);
            self.read_blocks(&extents, at / BLOCK as u64, &mut tmp[..blocks * BLOCK])?;
            buf[done..done + want].copy_from_slice(&tmp[skip..skip + want]);
            done += want;
        }
        Ok(())
    }

    /// Writes `data` into volume `name` at byte `offset` (partial blocks
    /// are read, changed and written). Durable after [`Store::flush`].
    pub fn write_volume(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<()> {
        self.write_in_place(Kind::Volume, name, offset, data)
    }

    /// [`Store::write_volume`] for a log ring's object.
    pub fn write_log(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<()> {
        self.write_in_place(Kind::Log, name, offset, data)
    }

    fn write_in_place(&mut self, kind: Kind, name: &str, offset: u64, data: &[u8]) -> Result<()> {
        let o = self.get(kind, name)?;
        let (size, extents) = (o.size, o.extents.clone());
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|e| e > size)
        {
            return Err(StoreError::Invalid(format!(
                "{} {name:?}: {} bytes at {offset} are beyond its {size} bytes",
                kind.word(),
                data.len()
            )));
        }
        let mut tmp = vec![0u8; BATCH_BLOCKS * BLOCK];
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let skip = (at % BLOCK as u64) as usize;
            let want = (data.len() - done).min(tmp.len() - skip);
            let blocks = (skip + want).div_ceil(BLOCK);
            let index = at / BLOCK as u64;
            let buf = &mut tmp[..blocks * BLOCK];
            if skip != 0 || !want.is_multiple_of(BLOCK) {
                self.read_blocks(&extents, index, buf)?;
            }
            buf[skip..skip + want].copy_from_slice(&data[done..done + want]);
            self.write_blocks(&extents, index, buf)?;
            done += want;
        }
        Ok(())
    }

    /// Makes volume writes durable.
    pub fn flush(&mut self) -> Result<()> {
        self.io.flush()
    }

    /// SHA-256 of an object's bytes as they are on the disk now.
    pub fn hash(&mut self, kind: Kind, name: &str) -> Result<[u8; 32]> {
        let size = self.get(kind, name)?.size;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; BATCH_BLOCKS * BLOCK];
        let mut at = 0u64;
        while at < size {
            let n = (size - at).min(buf.len() as u64) as usize;
            self.read(kind, name, at, &mut buf[..n])?;
            h.update(&buf[..n]);
            at += n as u64;
        }
        Ok(h.finalize().into())
    }

    /// Checks an image against the SHA-256 recorded when it was imported.
    pub fn verify(&mut self, name: &str) -> Result<()> {
        let want = self.get(Kind::Image, name)?.sha256;
        let got = self.hash(Kind::Image, name)?;
        if got == want {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!(
                "image {name:?}: its bytes hash to {}, recorded {}",
                hex(&got),
                hex(&want)
            )))
        }
    }
}

/// Lower-case hex of a digest.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
