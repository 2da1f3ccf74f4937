//! Images sent at run time (`upload_begin`, `upload_chunk`, `upload_end`,
//! `upload_abort`, `image_list`, `image_delete`; docs/toolstack.md).
//!
//! An upload belongs to the session that began it, one at a time per
//! session. dom0 sets the whole announced size aside before the first
//! chunk (and says the numbers when it cannot), takes chunks strictly in
//! order, and at the end checks the length and the SHA-256 before the
//! image is handed to an [`ImageKeeper`]. Anything wrong (a chunk out of
//! order, more bytes than announced, an end before all bytes, a wrong
//! hash) refuses the request and drops the upload: nothing half-received
//! is ever kept or listed. A session that ends (`bye`, its connection
//! closed, a new `hello`) drops its upload too.
//!
//! [`ImageKeeper`] is the one seam between the protocol and where images
//! live: [`MemImages`] keeps them in dom0's heap; an on-disk store can
//! implement the same trait later.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::proto::{ErrorCode, ImageInfo, ImageSource, ProtoError, SessionId, UPLOAD_CHUNK_MAX};

/// Longest image name.
pub const NAME_MAX: usize = 64;

fn err(code: ErrorCode, message: impl Into<String>) -> ProtoError {
    ProtoError::new(code, message)
}

/// A digest as lowercase hex digits (the store's encoder: one for both).
pub use kestrel_store::hex;

/// 64 hex digits (either case) as bytes.
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let digit = |c: u8| char::from(c).to_digit(16);
        *o = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// SHA-256 of bytes that come in pieces (a boot module read 4 KiB at a
/// time).
#[derive(Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// Whether `bytes` start like an ELF file (what a domain's image must be).
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

/// An image name: 1 to [`NAME_MAX`] bytes of `[A-Za-z0-9._-]`, not
/// starting with `.` (the names boot modules and domains use).
pub fn check_name(name: &str) -> Result<(), ProtoError> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(err(
            ErrorCode::BadRequest,
            format!(
                "image name {name:?}: 1 to {NAME_MAX} characters of A-Z a-z 0-9 . _ -, not \
                 starting with '.'"
            ),
        ))
    }
}

/// A piece of an upload or import (`what`: "chunk", "piece") at
/// `offset` when `have` bytes came before it: refused unless it is the
/// next one.
pub fn check_offset(what: &str, have: u64, offset: u64) -> Result<(), ProtoError> {
    if offset == have {
        return Ok(());
    }
    Err(err(
        ErrorCode::BadRequest,
        format!("{what} at offset {offset} out of order: {have} bytes came before it"),
    ))
}

/// A piece of `len` bytes after `have`: refused if it ends past the `size`
/// announced.
pub fn check_end(what: &str, have: u64, len: u64, size: u64) -> Result<(), ProtoError> {
    let end = have.saturating_add(len);
    if end > size {
        return Err(err(
            ErrorCode::BadRequest,
            format!("{what} ends at byte {end}, past the {size} bytes announced"),
        ));
    }
    Ok(())
}

/// The bytes of one `upload_chunk` or `import_chunk`, checked the one way
/// both take them: `offset` is the next byte (`have` came before it),
/// `data` is base64 of at most [`UPLOAD_CHUNK_MAX`] bytes (its length is
/// bounded before anything is decoded), and the chunk ends within the
/// `size` announced. `what` names the piece in the refusals.
pub fn decode_chunk(
    what: &str,
    have: u64,
    size: u64,
    offset: u64,
    data: &str,
) -> Result<Vec<u8>, ProtoError> {
    check_offset(what, have, offset)?;
    // base64 of UPLOAD_CHUNK_MAX bytes is 4/3 as long (padded).
    if data.len() > UPLOAD_CHUNK_MAX.div_ceil(3) * 4 {
        return Err(err(
            ErrorCode::BadRequest,
            format!("chunk over {UPLOAD_CHUNK_MAX} bytes"),
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| err(ErrorCode::BadRequest, format!("chunk is not base64: {e}")))?;
    check_end(what, have, bytes.len() as u64, size)?;
    Ok(bytes)
}

/// Where uploaded images are kept: name → bytes, length, SHA-256.
pub trait ImageKeeper {
    /// Every kept image, by name.
    fn list(&self) -> Vec<ImageInfo>;
    /// The bytes of image `name`.
    fn bytes(&self, name: &str) -> Option<&[u8]>;
    /// Bytes one more image may take now (before what uploads in
    /// progress set aside).
    fn room(&self) -> u64;
    /// Keeps `bytes` as `name` (checked: new, hash matches).
    fn keep(&mut self, name: String, bytes: Vec<u8>, sha256: [u8; 32]) -> Result<(), ProtoError>;
    /// Forgets `name`; whether it was kept.
    fn remove(&mut self, name: &str) -> bool;
}

/// Images kept in dom0's heap, at most `limit` bytes of them, and never
/// more than `free` says the heap can spare now.
#[derive(Debug, Default)]
pub struct MemImages {
    images: BTreeMap<String, (Vec<u8>, [u8; 32])>,
    limit: u64,
    free: Option<fn() -> u64>,
}

impl MemImages {
    /// A keeper that holds at most `limit` bytes of images.
    pub fn new(limit: u64) -> Self {
        Self {
            images: BTreeMap::new(),
            limit,
            free: None,
        }
    }

    /// As [`Self::new`], and an image must also fit in what `free` says
    /// the heap can spare when it begins (dom0: free heap less a reserve
    /// for its own work).
    pub fn with_free(limit: u64, free: fn() -> u64) -> Self {
        Self {
            free: Some(free),
            ..Self::new(limit)
        }
    }

    fn used(&self) -> u64 {
        self.images.values().map(|(b, _)| b.len() as u64).sum()
    }
}

impl ImageKeeper for MemImages {
    fn list(&self) -> Vec<ImageInfo> {
        self.images
            .iter()
            .map(|(name, (bytes, sha))| ImageInfo {
                name: name.clone(),
                size: bytes.len() as u64,
                sha256: hex(sha),
                source: ImageSource::Upload,
                elf: is_elf(bytes),
            })
            .collect()
    }

    fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.images.get(name).map(|(b, _)| b.as_slice())
    }

    fn room(&self) -> u64 {
        let room = self.limit.saturating_sub(self.used());
        self.free.map_or(room, |f| room.min(f()))
    }

    fn keep(&mut self, name: String, bytes: Vec<u8>, sha256: [u8; 32]) -> Result<(), ProtoError> {
        if self.images.contains_key(&name) {
            return Err(err(
                ErrorCode::Exists,
                format!("an image named {name:?} exists already"),
            ));
        }
        self.images.insert(name, (bytes, sha256));
        Ok(())
    }

    fn remove(&mut self, name: &str) -> bool {
        self.images.remove(name).is_some()
    }
}

/// One upload in progress.
#[derive(Debug)]
struct Pending {
    name: String,
    size: u64,
    sha256: [u8; 32],
    bytes: Vec<u8>,
}

/// The uploads in progress, one per session.
#[derive(Debug, Default)]
pub struct Uploads {
    pending: BTreeMap<SessionId, Pending>,
}

impl Uploads {
    /// Bytes the uploads in progress set aside.
    pub fn reserved(&self) -> u64 {
        self.pending.values().map(|p| p.size).sum()
    }

    /// Whether an upload in progress has `name`.
    pub fn uploading(&self, name: &str) -> bool {
        self.pending.values().any(|p| p.name == name)
    }

    /// The session uploading `name`, if one is.
    pub fn uploader(&self, name: &str) -> Option<SessionId> {
        self.pending
            .iter()
            .find(|(_, p)| p.name == name)
            .map(|(s, _)| *s)
    }

    /// Whether `session` has an upload in progress.
    pub fn holds(&self, session: SessionId) -> bool {
        self.pending.contains_key(&session)
    }

    /// Drops `session`'s upload (it ended); the name it had, if any.
    pub fn end_session(&mut self, session: SessionId) -> Option<String> {
        self.pending.remove(&session).map(|p| p.name)
    }

    /// `upload_begin`: `taken` says whether a boot module or kept image
    /// already has the name; `room` is what the keeper has left.
    pub fn begin(
        &mut self,
        session: SessionId,
        name: &str,
        size: u64,
        sha256: &str,
        taken: bool,
        room: u64,
    ) -> Result<(), ProtoError> {
        check_name(name)?;
        if let Some(p) = self.pending.get(&session) {
            return Err(err(
                ErrorCode::BadState,
                format!(
                    "this session is already uploading {:?} ({} of {} bytes): end or abort it first",
                    p.name,
                    p.bytes.len(),
                    p.size
                ),
            ));
        }
        if taken || self.uploading(name) {
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
        let room = room.saturating_sub(self.reserved());
        let no_room = || {
            err(
                ErrorCode::NoResources,
                format!(
                    "image {name:?} of {size} bytes does not fit: dom0 has room for {room} bytes \
                     of images now"
                ),
            )
        };
        if size > room {
            return Err(no_room());
        }
        // Ask the allocator before taking anything: a refusal here is an
        // answer, not an allocation failure that stops dom0.
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(usize::try_from(size).map_err(|_| no_room())?)
            .map_err(|_| no_room())?;
        self.pending.insert(
            session,
            Pending {
                name: name.into(),
                size,
                sha256: sha,
                bytes,
            },
        );
        Ok(())
    }

    /// The session's upload, if it is `name`'s.
    fn get(&mut self, session: SessionId, name: &str) -> Result<&mut Pending, ProtoError> {
        match self.pending.get_mut(&session) {
            Some(p) if p.name == name => Ok(p),
            Some(p) => Err(err(
                ErrorCode::BadState,
                format!("this session is uploading {:?}, not {name:?}", p.name),
            )),
            None => Err(err(
                ErrorCode::BadState,
                format!("no upload of {name:?} in progress in this session (upload_begin first)"),
            )),
        }
    }

    /// `upload_chunk`: `data` (base64) at `offset`. A bad chunk drops the
    /// upload.
    pub fn chunk(
        &mut self,
        session: SessionId,
        name: &str,
        offset: u64,
        data: &str,
    ) -> Result<(), ProtoError> {
        let p = self.get(session, name)?;
        let r = Self::take(p, offset, data);
        if let Err(e) = r {
            self.pending.remove(&session);
            let message = format!("{}; the upload of {name:?} is dropped", e.message);
            return Err(err(e.code, message));
        }
        Ok(())
    }

    fn take(p: &mut Pending, offset: u64, data: &str) -> Result<(), ProtoError> {
        let bytes = decode_chunk("chunk", p.bytes.len() as u64, p.size, offset, data)?;
        // Within the capacity reserved at `upload_begin`: no allocation.
        p.bytes.extend_from_slice(&bytes);
        Ok(())
    }

    /// `upload_end`: the bytes, checked, and their hash. The upload is
    /// over either way.
    pub fn end(
        &mut self,
        session: SessionId,
        name: &str,
    ) -> Result<(String, Vec<u8>, [u8; 32]), ProtoError> {
        self.get(session, name)?;
        let p = self
            .pending
            .remove(&session)
            .ok_or_else(|| err(ErrorCode::Internal, "upload vanished"))?;
        let have = p.bytes.len() as u64;
        if have != p.size {
            return Err(err(
                ErrorCode::BadRequest,
                format!(
                    "upload of {name:?} ended after {have} of {} bytes: truncated, nothing kept",
                    p.size
                ),
            ));
        }
        let got = sha256(&p.bytes);
        if got != p.sha256 {
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
        Ok((p.name, p.bytes, got))
    }

    /// `upload_abort`.
    pub fn abort(&mut self, session: SessionId, name: &str) -> Result<(), ProtoError> {
        self.get(session, name)?;
        self.pending.remove(&session);
        Ok(())
    }
}
