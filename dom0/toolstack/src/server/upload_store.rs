//! Uploads into dom0's image store (issue 14): when dom0 has a store,
//! `upload_begin/chunk/end/abort` stream the image straight into it
//! (`begin_import`, one `import_write` per chunk, `finish_import`)
//! instead of holding it in dom0's heap (`upload.rs`), so an image is
//! bounded by the store's free space, not dom0's 4 MiB heap, and is still
//! there after a reboot.
//!
//! The same rules as an upload into memory: one upload per session,
//! chunks strictly in order, the length and the announced SHA-256 checked
//! at the end. Anything wrong (a bad chunk, an end before all bytes, a
//! wrong hash, the session ending) aborts the import: the store's blocks
//! were only reserved in memory, so nothing is left on its disk, and the
//! image is never listed. Only a whole, checked image is committed.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;

use kestrel_store::{Disk, Import, Kind, Store, StoreError};

use super::upload::{check_name, decode_chunk, hex, is_elf, parse_sha256};
use super::{Hypervisor, Server, err, store::store_err};
use crate::proto::{ErrorCode, ImageInfo, ImageSource, Op, ProtoError, Reply, SessionId};

/// What an upload needs of a store: an import streamed into it (object
/// safe, so `dyn ImageStore` carries it).
pub trait StoreStream {
    /// `Store::begin_import`.
    fn stream_begin(&mut self, name: &str, size: u64) -> Result<Import, StoreError>;
    /// `Store::import_write`.
    fn stream_write(&mut self, imp: &mut Import, data: &[u8]) -> Result<(), StoreError>;
    /// `Store::finish_import`: the image's SHA-256 as the store computed it.
    fn stream_finish(&mut self, imp: Import) -> Result<[u8; 32], StoreError>;
    /// `Store::abort_import`.
    fn stream_abort(&mut self, imp: Import);
    /// Whether the store has an image `name`.
    fn has_image(&self, name: &str) -> bool;
}

impl<D: Disk> StoreStream for Store<D> {
    fn stream_begin(&mut self, name: &str, size: u64) -> Result<Import, StoreError> {
        self.begin_import(name, size)
    }
    fn stream_write(&mut self, imp: &mut Import, data: &[u8]) -> Result<(), StoreError> {
        self.import_write(imp, data)
    }
    fn stream_finish(&mut self, imp: Import) -> Result<[u8; 32], StoreError> {
        self.finish_import(imp).map(|o| o.sha256)
    }
    fn stream_abort(&mut self, imp: Import) {
        self.abort_import(imp);
    }
    fn has_image(&self, name: &str) -> bool {
        self.get(Kind::Image, name).is_ok()
    }
}

/// One upload into the store in progress.
struct Pending {
    name: String,
    sha256: [u8; 32],
    magic: [u8; 4],
    imp: Import,
}

/// The uploads into the store in progress, one per session.
#[derive(Default)]
pub struct StoreUploads {
    pending: BTreeMap<SessionId, Pending>,
}

impl core::fmt::Debug for StoreUploads {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_map()
            .entries(self.pending.iter().map(|(s, p)| (s, &p.imp)))
            .finish()
    }
}

impl StoreUploads {
    /// Whether an upload into the store has `name`.
    pub fn uploading(&self, name: &str) -> bool {
        self.pending.values().any(|p| p.name == name)
    }

    /// The session uploading `name` into the store, if one is.
    pub fn uploader(&self, name: &str) -> Option<SessionId> {
        self.pending
            .iter()
            .find(|(_, p)| p.name == name)
            .map(|(s, _)| *s)
    }

    /// Whether `session` has an upload into the store in progress.
    pub fn holds(&self, session: SessionId) -> bool {
        self.pending.contains_key(&session)
    }
}

fn no_store() -> ProtoError {
    err(
        ErrorCode::Internal,
        "dom0's store went away during an upload",
    )
}

impl Server {
    /// The upload ops when dom0 has a store (`None`: not this file's, the
    /// upload goes to memory as before).
    pub(super) fn store_upload_op(
        &mut self,
        hv: &mut impl Hypervisor,
        session: SessionId,
        op: &Op,
    ) -> Option<Result<Reply, ProtoError>> {
        match op {
            Op::UploadBegin { name, size, sha256 } => {
                hv.store()?;
                Some(self.store_begin(hv, session, name, *size, sha256))
            }
            Op::UploadChunk { name, offset, data } => {
                let p = self.store_uploads.pending.get(&session)?;
                if p.name != *name {
                    return Some(Err(err(
                        ErrorCode::BadState,
                        format!("this session is uploading {:?}, not {name:?}", p.name),
                    )));
                }
                Some(self.store_chunk(hv, session, *offset, data))
            }
            Op::UploadEnd { name } => {
                if self.store_uploads.pending.get(&session)?.name != *name {
                    return None;
                }
                Some(self.store_end(hv, session))
            }
            Op::UploadAbort { name } => {
                if self.store_uploads.pending.get(&session)?.name != *name {
                    return None;
                }
                self.end_store_upload(hv, session);
                Some(Ok(Reply::Done))
            }
            _ => None,
        }
    }

    /// Drops `session`'s upload into the store, if any (it ended, or the
    /// upload failed): the store forgets the blocks it reserved. The
    /// name it had, if any.
    pub(super) fn end_store_upload(
        &mut self,
        hv: &mut impl Hypervisor,
        session: SessionId,
    ) -> Option<String> {
        let p = self.store_uploads.pending.remove(&session)?;
        if let Some(s) = hv.store() {
            s.stream_abort(p.imp);
        }
        Some(p.name)
    }

    fn store_begin(
        &mut self,
        hv: &mut impl Hypervisor,
        session: SessionId,
        name: &str,
        size: u64,
        sha256: &str,
    ) -> Result<Reply, ProtoError> {
        check_name(name)?;
        if let Some(p) = self.store_uploads.pending.get(&session) {
            return Err(err(
                ErrorCode::BadState,
                format!(
                    "this session is already uploading {:?} ({} of {} bytes): end or abort it first",
                    p.name,
                    p.imp.received(),
                    p.imp.size()
                ),
            ));
        }
        let taken = hv.images().iter().any(|n| n == name)
            || hv.module_images().iter().any(|i| i.name == name)
            || hv.store().is_some_and(|s| s.has_image(name));
        if taken || self.store_uploads.uploading(name) || self.uploads.uploading(name) {
            return Err(err(
                ErrorCode::Exists,
                format!("an image named {name:?} exists already (or is being uploaded)"),
            ));
        }
        let sha = parse_sha256(sha256).ok_or_else(|| {
            err(
                ErrorCode::BadRequest,
                format!("sha256 {sha256:?} is not 64 hex digits"),
            )
        })?;
        if size == 0 {
            return Err(err(ErrorCode::BadRequest, "an image of 0 bytes"));
        }
        let imp = hv
            .store()
            .ok_or_else(no_store)?
            .stream_begin(name, size)
            .map_err(store_err)?;
        self.store_uploads.pending.insert(
            session,
            Pending {
                name: name.into(),
                sha256: sha,
                magic: [0; 4],
                imp,
            },
        );
        Ok(Reply::Done)
    }

    fn store_chunk(
        &mut self,
        hv: &mut impl Hypervisor,
        session: SessionId,
        offset: u64,
        data: &str,
    ) -> Result<Reply, ProtoError> {
        let r = self.store_take(hv, session, offset, data);
        if let Err(e) = r {
            let name = self
                .store_uploads
                .pending
                .get(&session)
                .map(|p| p.name.clone())
                .unwrap_or_default();
            self.end_store_upload(hv, session);
            return Err(err(
                e.code,
                format!("{}; the upload of {name:?} is dropped", e.message),
            ));
        }
        Ok(Reply::Done)
    }

    fn store_take(
        &mut self,
        hv: &mut impl Hypervisor,
        session: SessionId,
        offset: u64,
        data: &str,
    ) -> Result<(), ProtoError> {
        let p = self
            .store_uploads
            .pending
            .get_mut(&session)
            .ok_or_else(no_store)?;
        let have = p.imp.received();
        let bytes = decode_chunk("chunk", have, p.imp.size(), offset, data)?;
        for (i, b) in bytes.iter().enumerate().take(4) {
            if let Some(m) = usize::try_from(have)
                .ok()
                .and_then(|h| p.magic.get_mut(h + i))
            {
                *m = *b;
            }
        }
        hv.store()
            .ok_or_else(no_store)?
            .stream_write(&mut p.imp, &bytes)
            .map_err(store_err)
    }

    fn store_end(
        &mut self,
        hv: &mut impl Hypervisor,
        session: SessionId,
    ) -> Result<Reply, ProtoError> {
        let p = self
            .store_uploads
            .pending
            .remove(&session)
            .ok_or_else(no_store)?;
        let store = hv.store().ok_or_else(no_store)?;
        let (name, size, have) = (p.name.clone(), p.imp.size(), p.imp.received());
        if have != size {
            store.stream_abort(p.imp);
            return Err(err(
                ErrorCode::BadRequest,
                format!(
                    "upload of {name:?} ended after {have} of {size} bytes: truncated, nothing kept"
                ),
            ));
        }
        // The store hashes what it is given as it writes
        // (`Import::sha256`): hashing here too cost a second SHA-256 pass
        // over every byte.
        let got = p.imp.sha256();
        if got != p.sha256 {
            store.stream_abort(p.imp);
            return Err(err(
                ErrorCode::BadRequest,
                format!(
                    "upload of {name:?}: SHA-256 of the {have} bytes received is {}, not the {} \
                     announced: nothing kept",
                    hex(&got),
                    hex(&p.sha256)
                ),
            ));
        }
        let stored = store.stream_finish(p.imp).map_err(store_err)?;
        Ok(Reply::Image {
            image: ImageInfo {
                name,
                size,
                sha256: hex(&stored),
                source: ImageSource::Store,
                elf: is_elf(&p.magic),
            },
        })
    }
}
