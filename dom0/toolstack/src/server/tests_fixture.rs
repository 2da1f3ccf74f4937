//! What the transfer tests (`tests_upload*.rs`, `tests_volume_xfer.rs`,
//! `tests_transfers.rs`) and the small [`Fake`] wrappers (`tests_logs.rs`,
//! `tests_target.rs`) share: [`Rig`], a [`Fake`] with a store on a memory
//! disk and an image keeper; requests by session with the reply decoded
//! ([`ask_in`], [`ok`], [`refused`]); the request lines of an upload
//! ([`upload_lines`]) and of an import ([`import_lines`]).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloc::string::String;
use alloc::vec::Vec;

use kestrel_store::{MemDisk, Store};

use super::tests::{Fake, HELLO};
use super::upload::hex;
use super::*;
use crate::config::DomainConfig;
use crate::proto::{ImageSource, Outcome, Response, ServerLine, decode_server_line};

/// The [`Hypervisor`] methods a wrapper of [`Fake`] passes straight on,
/// for the wrappers that change one or two others: `forward_to_fake!(0)`
/// in an `impl Hypervisor` of a tuple struct around a [`Fake`].
macro_rules! forward_to_fake {
    ($f:tt) => {
        fn list(&mut self) -> Result<Vec<u32>, Error> {
            self.$f.list()
        }
        fn info(&mut self, id: u32) -> Result<HvDomain, Error> {
            self.$f.info(id)
        }
        fn images(&mut self) -> Vec<String> {
            self.$f.images()
        }
        fn create(&mut self, d: &crate::config::DomainConfig) -> Result<u32, Error> {
            self.$f.create(d)
        }
        fn unpause(&mut self, id: u32) -> Result<(), Error> {
            self.$f.unpause(id)
        }
        fn pause(&mut self, id: u32) -> Result<(), Error> {
            self.$f.pause(id)
        }
        fn destroy(&mut self, id: u32) -> Result<(), Error> {
            self.$f.destroy(id)
        }
        fn console_input(&mut self, id: u32, bytes: &[u8]) -> Result<usize, Error> {
            self.$f.console_input(id, bytes)
        }
    };
}
pub(super) use forward_to_fake;

/// [`Fake`] (64 MiB free) with, as a test asks, a store on a 4 MiB memory
/// disk ([`Self::with_store`]) and an image keeper in memory
/// ([`Self::with_keeper`]); `built_from` records the bytes of each kept
/// image a create built from.
pub(super) struct Rig {
    pub(super) fake: Fake,
    pub(super) store: Option<Store<MemDisk>>,
    pub(super) keeper: Option<MemImages>,
    pub(super) built_from: Vec<Vec<u8>>,
}

impl Rig {
    /// No store, no keeper.
    pub(super) fn new() -> Self {
        Self {
            fake: Fake::new(64),
            store: None,
            keeper: None,
            built_from: Vec::new(),
        }
    }

    /// A fresh store on a 4 MiB memory disk.
    pub(super) fn with_store(mut self) -> Self {
        self.store = Some(Store::format(MemDisk::new(512, 8192)).unwrap());
        self
    }

    /// Uploads kept in memory, `room` bytes of them.
    pub(super) fn with_keeper(mut self, room: u64) -> Self {
        self.keeper = Some(MemImages::new(room));
        self
    }

    /// The store (the test made one).
    pub(super) fn mem_store(&mut self) -> &mut Store<MemDisk> {
        self.store.as_mut().expect("a rig with a store")
    }

    /// Opens the store again from its disk: what a reboot finds.
    pub(super) fn reopen_store(&mut self) {
        let old = self.store.take().expect("a rig with a store");
        self.store = Some(Store::open(old.into_disk()).unwrap());
    }
}

impl Hypervisor for Rig {
    fn list(&mut self) -> Result<Vec<u32>, Error> {
        self.fake.list()
    }
    fn info(&mut self, id: u32) -> Result<HvDomain, Error> {
        self.fake.info(id)
    }
    /// The boot modules and the kept images (the trait's contract).
    fn images(&mut self) -> Vec<String> {
        let mut names = self.fake.images();
        if let Some(k) = &self.keeper {
            names.extend(k.list().into_iter().map(|i| i.name));
        }
        names
    }
    fn create(&mut self, d: &DomainConfig) -> Result<u32, Error> {
        if let Some(b) = self.keeper.as_ref().and_then(|k| k.bytes(&d.image)) {
            self.built_from.push(b.to_vec());
        }
        self.fake.create(d)
    }
    fn unpause(&mut self, id: u32) -> Result<(), Error> {
        self.fake.unpause(id)
    }
    fn pause(&mut self, id: u32) -> Result<(), Error> {
        self.fake.pause(id)
    }
    fn destroy(&mut self, id: u32) -> Result<(), Error> {
        self.fake.destroy(id)
    }
    fn ended(&mut self, id: u32) -> Result<HvEnded, Error> {
        self.fake.ended(id)
    }
    fn console_input(&mut self, id: u32, bytes: &[u8]) -> Result<usize, Error> {
        self.fake.console_input(id, bytes)
    }
    fn now_ns(&mut self) -> u64 {
        self.fake.now
    }
    /// The fake's images as boot modules of 100 bytes.
    fn module_images(&mut self) -> Vec<proto::ImageInfo> {
        self.fake
            .images()
            .into_iter()
            .map(|name| proto::ImageInfo {
                name,
                size: 100,
                sha256: hex(&[0; 32]),
                source: ImageSource::Module,
                elf: true,
            })
            .collect()
    }
    fn keeper(&mut self) -> Option<&mut dyn ImageKeeper> {
        self.keeper.as_mut().map(|k| k as &mut dyn ImageKeeper)
    }
    fn store(&mut self) -> Option<&mut dyn store::ImageStore> {
        self.store.as_mut().map(|s| s as &mut dyn store::ImageStore)
    }
}

/// A server to which each of `sessions` has said `hello`.
pub(super) fn greeted(mut hv: Rig, sessions: &[SessionId]) -> (Server, Rig) {
    let mut s = Server::new();
    for &session in sessions {
        ok_in(&mut s, &mut hv, session, HELLO);
    }
    (s, hv)
}

/// `line` in `session`: the reply's outcome (an event instead fails the
/// test, as does a reply longer than a protocol line).
pub(super) fn ask_in(
    s: &mut Server,
    hv: &mut impl Hypervisor,
    session: SessionId,
    line: &str,
) -> Outcome {
    let out = s.handle_session_line(hv, session, Ok(line.as_bytes().to_vec()));
    assert!(out.len() <= proto::MAX_LINE + 1, "{}", out.len());
    match decode_server_line(out.as_bytes()).unwrap() {
        ServerLine::Response(Response { result, .. }) => result,
        ServerLine::Event(e) => panic!("event {e:?}"),
    }
}

/// The reply to `line` in `session`, which must succeed.
pub(super) fn ok_in(
    s: &mut Server,
    hv: &mut impl Hypervisor,
    session: SessionId,
    line: &str,
) -> Reply {
    match ask_in(s, hv, session, line) {
        Outcome::Ok(r) => r,
        Outcome::Error(e) => panic!("{}: {e:?}", &line[..line.len().min(80)]),
    }
}

/// [`ok_in`] in the unnamed session.
pub(super) fn ok(s: &mut Server, hv: &mut impl Hypervisor, line: &str) -> Reply {
    ok_in(s, hv, None, line)
}

/// The code and message of the refusal of `line` in `session`.
pub(super) fn refused_in(
    s: &mut Server,
    hv: &mut impl Hypervisor,
    session: SessionId,
    line: &str,
) -> (ErrorCode, String) {
    match ask_in(s, hv, session, line) {
        Outcome::Ok(r) => panic!("{line}: unexpected {r:?}"),
        Outcome::Error(e) => (e.code, e.message),
    }
}

/// [`refused_in`] in the unnamed session.
pub(super) fn refused(s: &mut Server, hv: &mut impl Hypervisor, line: &str) -> (ErrorCode, String) {
    refused_in(s, hv, None, line)
}

/// Sends all of `bytes` as upload `name`'s chunks, in order, each line
/// within the protocol's line length.
pub(super) fn send_upload(s: &mut Server, hv: &mut impl Hypervisor, name: &str, bytes: &[u8]) {
    for (i, piece) in bytes.chunks(proto::UPLOAD_CHUNK_MAX).enumerate() {
        let line = upload_lines::chunk(name, i * proto::UPLOAD_CHUNK_MAX, piece);
        assert!(line.len() < proto::MAX_LINE, "{}", line.len());
        ok(s, hv, &line);
    }
}

/// An ELF-looking image of `n` bytes (at least 4).
pub(super) fn image(n: usize) -> Vec<u8> {
    let mut b: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
    b[..4].copy_from_slice(b"\x7fELF");
    b
}

/// The request lines of an image upload (`upload.rs`, `upload_store.rs`).
pub(super) mod upload_lines {
    use alloc::format;
    use alloc::string::String;

    use base64::Engine as _;

    use super::super::upload::{hex, sha256};

    pub(in super::super) fn begin(name: &str, size: usize, sha: &[u8; 32]) -> String {
        format!(
            r#"{{"id":1,"op":"upload_begin","name":"{name}","size":{size},"sha256":"{}"}}"#,
            hex(sha)
        )
    }

    /// [`begin`] for all of `bytes`, with their hash.
    pub(in super::super) fn begin_of(name: &str, bytes: &[u8]) -> String {
        begin(name, bytes.len(), &sha256(bytes))
    }

    pub(in super::super) fn chunk(name: &str, offset: usize, bytes: &[u8]) -> String {
        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
        format!(
            r#"{{"id":2,"op":"upload_chunk","name":"{name}","offset":{offset},"data":"{data}"}}"#
        )
    }

    pub(in super::super) fn end(name: &str) -> String {
        format!(r#"{{"id":3,"op":"upload_end","name":"{name}"}}"#)
    }
}

/// The request lines of a store object import (`volume_xfer.rs`).
pub(super) mod import_lines {
    use alloc::format;
    use alloc::string::String;

    use base64::Engine as _;

    use super::super::upload::{hex, sha256};

    pub(in super::super) fn begin(kind: &str, name: &str, size: usize, sha: &[u8; 32]) -> String {
        format!(
            r#"{{"id":1,"op":"import_begin","kind":"{kind}","name":"{name}","size":{size},"sha256":"{}"}}"#,
            hex(sha)
        )
    }

    /// [`begin`] for all of `bytes`, with their hash.
    pub(in super::super) fn begin_of(kind: &str, name: &str, bytes: &[u8]) -> String {
        begin(kind, name, bytes.len(), &sha256(bytes))
    }

    pub(in super::super) fn chunk(name: &str, offset: usize, bytes: &[u8]) -> String {
        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
        format!(
            r#"{{"id":2,"op":"import_chunk","name":"{name}","offset":{offset},"data":"{data}"}}"#
        )
    }

    pub(in super::super) fn zeros(name: &str, offset: usize, length: usize) -> String {
        format!(
            r#"{{"id":3,"op":"import_zeros","name":"{name}","offset":{offset},"length":{length}}}"#
        )
    }

    pub(in super::super) fn end(name: &str) -> String {
        format!(r#"{{"id":4,"op":"import_end","name":"{name}"}}"#)
    }
}
