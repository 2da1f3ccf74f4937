//! Moving a store object's bytes over the management connection
//! (`import_*`, `export_*`; `hvctl image import`, `hvctl volume
//! import|export`; docs/toolstack.md, docs/store.md).
//!
//! An **import** goes straight into the store through
//! [`kestrel_store::Store::begin_import_as`]: its blocks are set aside in
//! memory only, the bytes are written as they come (in order), and the
//! object is committed at `import_end` once the length and the SHA-256
//! announced at `import_begin` match what came. Anything wrong (a chunk out
//! of order or too long, a bad hash, an end too early) or the session
//! ending (`bye`, the connection gone, a new `hello`) aborts the import:
//! the set-aside blocks are free again and nothing is listed, and a power
//! cut during it leaves the store as it was (docs/store.md).
//!
//! Runs of zeros are not sent as bytes: `import_zeros` names their length,
//! and an export's `chunk` reply says how many zero bytes come before its
//! data. qcow2 is read and written by the client (hvctl, with the same
//! `kestrel_store::qcow2` module), so dom0 only ever sees guest-visible
//! bytes; docs/toolstack.md says why.
//!
//! An **export** is read one `export_next` at a time, in order; dom0 hashes
//! what it read and the last piece carries that SHA-256, so the client can
//! check that what it wrote is what dom0 read.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;

use base64::Engine as _;
use kestrel_store::{Disk, Import, Kind, Object, Store, StoreError};
use sha2::{Digest, Sha256};

use super::store::store_err;
use super::upload::{Uploads, check_end, check_offset, decode_chunk, hex, parse_sha256};
use super::{Hypervisor, err};
use crate::proto::{
    ErrorCode, ImageInfo, ImageSource, ObjectKind, Op, ProtoError, Reply, SessionId,
    UPLOAD_CHUNK_MAX, VolumeInfo, XFER_ZEROS_MAX,
};

/// What an import or export needs of the store (object-safe, reached
/// through [`super::store::ImageStore::xfer`]).
pub trait XferStore {
    fn begin(&mut self, kind: Kind, name: &str, size: u64) -> Result<Import, StoreError>;
    fn write(&mut self, imp: &mut Import, data: &[u8]) -> Result<(), StoreError>;
    fn finish(&mut self, imp: Import) -> Result<Object, StoreError>;
    fn abort(&mut self, imp: Import);
    /// Size and recorded SHA-256 (zeros for a volume).
    fn object(&self, kind: Kind, name: &str) -> Result<(u64, [u8; 32]), StoreError>;
    fn read(&mut self, kind: Kind, name: &str, at: u64, buf: &mut [u8]) -> Result<(), StoreError>;
}

impl<D: Disk> XferStore for Store<D> {
    fn begin(&mut self, kind: Kind, name: &str, size: u64) -> Result<Import, StoreError> {
        self.begin_import_as(kind, name, size)
    }
    fn write(&mut self, imp: &mut Import, data: &[u8]) -> Result<(), StoreError> {
        self.import_write(imp, data)
    }
    fn finish(&mut self, imp: Import) -> Result<Object, StoreError> {
        self.finish_import(imp)
    }
    fn abort(&mut self, imp: Import) {
        self.abort_import(imp);
    }
    fn object(&self, kind: Kind, name: &str) -> Result<(u64, [u8; 32]), StoreError> {
        self.get(kind, name).map(|o| (o.size, o.sha256))
    }
    fn read(&mut self, kind: Kind, name: &str, at: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        Store::read(self, kind, name, at, buf)
    }
}

fn kind(k: ObjectKind) -> Kind {
    match k {
        ObjectKind::Image => Kind::Image,
        ObjectKind::Volume => Kind::Volume,
    }
}

/// Zeros written for `import_zeros`, a piece at a time.
const ZEROS: [u8; 4096] = [0; 4096];

struct Importing {
    name: String,
    sha256: [u8; 32],
    imp: Import,
}

struct Exporting {
    name: String,
    kind: Kind,
    size: u64,
    at: u64,
    hash: Sha256,
}

/// The imports and exports in progress, one of each per session.
#[derive(Default)]
pub struct Xfers {
    imports: BTreeMap<SessionId, Importing>,
    exports: BTreeMap<SessionId, Exporting>,
}

impl core::fmt::Debug for Xfers {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Xfers")
            .field("imports", &self.imports.len())
            .field("exports", &self.exports.len())
            .finish()
    }
}

fn no_store() -> ProtoError {
    err(
        ErrorCode::BadState,
        "dom0 has no image store: no [store] in its boot configuration, or its disk could not \
         be opened (hvctl log says why)",
    )
}

impl Xfers {
    /// Whether an import in progress has image name `name`.
    pub fn importing(&self, name: &str) -> bool {
        self.imports
            .values()
            .any(|i| i.imp.kind() == Kind::Image && i.name == name)
    }

    /// The session importing a `kind` object named `name`, if one is.
    pub fn importer(&self, kind: Kind, name: &str) -> Option<SessionId> {
        self.imports
            .iter()
            .find(|(_, i)| i.imp.kind() == kind && i.name == name)
            .map(|(s, _)| *s)
    }

    /// Whether `session` has an import in progress.
    pub fn holds_import(&self, session: SessionId) -> bool {
        self.imports.contains_key(&session)
    }

    /// Drops `session`'s import (its blocks free again), keeping its
    /// export: the name it had, if any.
    pub fn drop_import(&mut self, hv: &mut impl Hypervisor, session: SessionId) -> Option<String> {
        let i = self.imports.remove(&session)?;
        if let Some(store) = hv.store() {
            store.xfer().abort(i.imp);
        }
        Some(i.name)
    }

    /// The session ended: its import is dropped (its blocks free again),
    /// its export forgotten.
    pub fn end_session(&mut self, hv: &mut impl Hypervisor, session: SessionId) {
        self.exports.remove(&session);
        if let Some(i) = self.imports.remove(&session)
            && let Some(store) = hv.store()
        {
            store.xfer().abort(i.imp);
        }
    }

    /// Answers an `import_*` or `export_*` request. `uploads`: an image
    /// name being uploaded, a boot module's or an upload's, is taken.
    pub fn handle(
        &mut self,
        hv: &mut impl Hypervisor,
        session: SessionId,
        op: Op,
        uploads: &Uploads,
    ) -> Result<Reply, ProtoError> {
        if let Op::ImportBegin {
            kind: ObjectKind::Image,
            name,
            ..
        } = &op
            && (uploads.uploading(name)
                || hv.images().iter().any(|n| n == name)
                || hv.module_images().iter().any(|i| &i.name == name))
        {
            return Err(err(
                ErrorCode::Exists,
                format!("an image named {name:?} exists already (a boot module or an upload)"),
            ));
        }
        let Some(store) = hv.store() else {
            return Err(no_store());
        };
        let store = store.xfer();
        match op {
            Op::ImportBegin {
                kind: k,
                name,
                size,
                sha256,
            } => self.begin(store, session, kind(k), name, size, &sha256),
            Op::ImportChunk { name, offset, data } => {
                let r = self
                    .get(session, &name)
                    .and_then(|i| chunk(store, i, offset, &data));
                self.drop_on_error(store, session, &name, r)
            }
            Op::ImportZeros {
                name,
                offset,
                length,
            } => {
                let r = self
                    .get(session, &name)
                    .and_then(|i| zeros(store, i, offset, length));
                self.drop_on_error(store, session, &name, r)
            }
            Op::ImportEnd { name } => {
                self.get(session, &name)?;
                let i = self
                    .imports
                    .remove(&session)
                    .ok_or_else(|| err(ErrorCode::Internal, "import vanished"))?;
                end(store, i)
            }
            Op::ImportAbort { name } => {
                self.get(session, &name)?;
                if let Some(i) = self.imports.remove(&session) {
                    store.abort(i.imp);
                }
                Ok(Reply::Done)
            }
            Op::ExportBegin { kind: k, name } => self.export_begin(store, session, kind(k), name),
            Op::ExportNext { name } => self.export_next(store, session, &name),
            Op::ExportAbort { name } => {
                self.export(session, &name)?;
                self.exports.remove(&session);
                Ok(Reply::Done)
            }
            other => Err(err(
                ErrorCode::Internal,
                format!("not an import or export request: {other:?}"),
            )),
        }
    }

    fn begin(
        &mut self,
        store: &mut dyn XferStore,
        session: SessionId,
        kind: Kind,
        name: String,
        size: u64,
        sha256: &str,
    ) -> Result<Reply, ProtoError> {
        if let Some(i) = self.imports.get(&session) {
            return Err(err(
                ErrorCode::BadState,
                format!(
                    "this session is already importing {:?} ({} of {} bytes): end or abort it \
                     first",
                    i.name,
                    i.imp.received(),
                    i.imp.size()
                ),
            ));
        }
        let sha256 = parse_sha256(sha256).ok_or_else(|| {
            err(
                ErrorCode::BadRequest,
                format!("sha256 {sha256:?} is not 64 hex digits"),
            )
        })?;
        if size == 0 {
            return Err(err(
                ErrorCode::BadRequest,
                format!("{} {name:?} of 0 bytes", kind.word()),
            ));
        }
        let imp = store.begin(kind, &name, size).map_err(store_err)?;
        self.imports
            .insert(session, Importing { name, sha256, imp });
        Ok(Reply::Done)
    }

    fn get(&mut self, session: SessionId, name: &str) -> Result<&mut Importing, ProtoError> {
        match self.imports.get_mut(&session) {
            Some(i) if i.name == name => Ok(i),
            Some(i) => Err(err(
                ErrorCode::BadState,
                format!("this session is importing {:?}, not {name:?}", i.name),
            )),
            None => Err(err(
                ErrorCode::BadState,
                format!("no import of {name:?} in progress in this session (import_begin first)"),
            )),
        }
    }

    /// A refused chunk drops the session's import (of `name`).
    fn drop_on_error(
        &mut self,
        store: &mut dyn XferStore,
        session: SessionId,
        name: &str,
        r: Result<(), ProtoError>,
    ) -> Result<Reply, ProtoError> {
        let Err(e) = r else {
            return Ok(Reply::Done);
        };
        match self.imports.remove(&session) {
            Some(i) if i.name == name => {
                store.abort(i.imp);
                Err(err(
                    e.code,
                    format!(
                        "{}; the import of {name:?} is dropped, nothing kept",
                        e.message
                    ),
                ))
            }
            // Not this session's import (a request naming another): it
            // stays.
            Some(i) => {
                self.imports.insert(session, i);
                Err(e)
            }
            None => Err(e),
        }
    }

    fn export(&mut self, session: SessionId, name: &str) -> Result<&mut Exporting, ProtoError> {
        match self.exports.get_mut(&session) {
            Some(x) if x.name == name => Ok(x),
            Some(x) => Err(err(
                ErrorCode::BadState,
                format!("this session is exporting {:?}, not {name:?}", x.name),
            )),
            None => Err(err(
                ErrorCode::BadState,
                format!("no export of {name:?} in progress in this session (export_begin first)"),
            )),
        }
    }

    fn export_begin(
        &mut self,
        store: &mut dyn XferStore,
        session: SessionId,
        kind: Kind,
        name: String,
    ) -> Result<Reply, ProtoError> {
        if let Some(x) = self.exports.get(&session) {
            return Err(err(
                ErrorCode::BadState,
                format!(
                    "this session is already exporting {:?} ({} of {} bytes): finish or abort it \
                     first",
                    x.name, x.at, x.size
                ),
            ));
        }
        let (size, sha) = store.object(kind, &name).map_err(store_err)?;
        self.exports.insert(
            session,
            Exporting {
                name,
                kind,
                size,
                at: 0,
                hash: Sha256::new(),
            },
        );
        Ok(Reply::Export {
            size,
            sha256: (kind == Kind::Image).then(|| hex(&sha)),
        })
    }

    fn export_next(
        &mut self,
        store: &mut dyn XferStore,
        session: SessionId,
        name: &str,
    ) -> Result<Reply, ProtoError> {
        let x = self.export(session, name)?;
        let r = next_piece(store, x);
        let last = x.at == x.size;
        if r.is_err() || last {
            self.exports.remove(&session);
        }
        r
    }
}

/// The next piece of an export: whole windows of zeros (up to
/// [`XFER_ZEROS_MAX`] bytes) are counted, not sent; the first window that
/// holds a non-zero byte is sent as data.
fn next_piece(store: &mut dyn XferStore, x: &mut Exporting) -> Result<Reply, ProtoError> {
    let offset = x.at;
    let mut buf = vec![0u8; UPLOAD_CHUNK_MAX];
    let mut zeros = 0u64;
    let mut sent = 0usize;
    while x.at < x.size {
        let n = (x.size - x.at).min(UPLOAD_CHUNK_MAX as u64) as usize;
        if buf[..n].iter().any(|&b| b != 0) {
            buf[..n].fill(0);
        }
        let window = &mut buf[..n];
        store
            .read(x.kind, &x.name, x.at, window)
            .map_err(store_err)?;
        let zero = window.iter().all(|&b| b == 0);
        if zero && zeros + n as u64 > XFER_ZEROS_MAX {
            break;
        }
        x.hash.update(&*window);
        x.at += n as u64;
        if zero {
            zeros += n as u64;
        } else {
            sent = n;
            break;
        }
    }
    let data = base64::engine::general_purpose::STANDARD.encode(&buf[..sent]);
    let sha256 = (x.at == x.size).then(|| hex(&x.hash.clone().finalize()));
    Ok(Reply::Chunk {
        offset,
        zeros,
        data,
        sha256,
    })
}

fn chunk(
    store: &mut dyn XferStore,
    i: &mut Importing,
    offset: u64,
    data: &str,
) -> Result<(), ProtoError> {
    let (have, size) = (i.imp.received(), i.imp.size());
    let bytes = decode_chunk("piece", have, size, offset, data)?;
    store.write(&mut i.imp, &bytes).map_err(store_err)
}

fn zeros(
    store: &mut dyn XferStore,
    i: &mut Importing,
    offset: u64,
    length: u64,
) -> Result<(), ProtoError> {
    let (have, size) = (i.imp.received(), i.imp.size());
    check_offset("piece", have, offset)?;
    if length == 0 || length > XFER_ZEROS_MAX {
        return Err(err(
            ErrorCode::BadRequest,
            format!("a run of {length} zero bytes: 1 to {XFER_ZEROS_MAX} per request"),
        ));
    }
    check_end("piece", have, length, size)?;
    let mut left = length;
    while left > 0 {
        let n = left.min(ZEROS.len() as u64) as usize;
        store.write(&mut i.imp, &ZEROS[..n]).map_err(store_err)?;
        left -= n as u64;
    }
    Ok(())
}

fn end(store: &mut dyn XferStore, i: Importing) -> Result<Reply, ProtoError> {
    let (name, have, size) = (i.name.clone(), i.imp.received(), i.imp.size());
    let refuse = |store: &mut dyn XferStore, imp, message: String| {
        store.abort(imp);
        Err(err(ErrorCode::BadRequest, message))
    };
    if have != size {
        return refuse(
            store,
            i.imp,
            format!(
                "import of {name:?} ended after {have} of {size} bytes: truncated, nothing kept"
            ),
        );
    }
    let got = i.imp.sha256();
    if got != i.sha256 {
        return refuse(
            store,
            i.imp,
            format!(
                "import of {name:?}: SHA-256 of the {have} bytes received is {}, not the {} \
                 announced: nothing kept",
                hex(&got),
                hex(&i.sha256)
            ),
        );
    }
    let o = store.finish(i.imp).map_err(store_err)?;
    Ok(match o.kind {
        Kind::Image => {
            let mut magic = [0u8; 4];
            let elf = o.size >= 4
                && store.read(Kind::Image, &o.name, 0, &mut magic).is_ok()
                && super::upload::is_elf(&magic);
            Reply::Image {
                image: ImageInfo {
                    name: o.name,
                    size: o.size,
                    sha256: hex(&o.sha256),
                    source: ImageSource::Store,
                    elf,
                },
            }
        }
        Kind::Volume => Reply::Volumes {
            volumes: [VolumeInfo {
                name: o.name,
                size_bytes: o.size,
            }]
            .into(),
        },
        // The store refuses to import a log (`begin_import_as`).
        Kind::Log => return Err(err(ErrorCode::Internal, "a log cannot be imported")),
    })
}
