//! `transfers.rs` against a fake hypervisor with a real store on a memory
//! disk and a clock: an upload refuses a name an image import is making
//! and the reverse (and a second import of a name), at the begin, naming
//! who holds it; a transfer with no request for the idle limit is dropped
//! (into the store: its blocks free again; into memory: its space), logged,
//! while one that keeps sending stays.
#![allow(clippy::unwrap_used)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use base64::Engine as _;
use kestrel_store::{MemDisk, Store};

use super::tests::{Fake, HELLO};
use super::upload::{hex, sha256};
use super::*;
use crate::config::DomainConfig;
use crate::proto::{Outcome, Response, ServerLine, decode_server_line};

const S: u64 = 1_000_000_000;

struct St {
    fake: Fake,
    store: Option<Store<MemDisk>>,
    keeper: MemImages,
}

impl Hypervisor for St {
    fn list(&mut self) -> Result<Vec<u32>, Error> {
        self.fake.list()
    }
    fn info(&mut self, id: u32) -> Result<HvDomain, Error> {
        self.fake.info(id)
    }
    fn images(&mut self) -> Vec<String> {
        self.fake.images()
    }
    fn create(&mut self, d: &DomainConfig) -> Result<u32, Error> {
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
    fn console_input(&mut self, id: u32, bytes: &[u8]) -> Result<usize, Error> {
        self.fake.console_input(id, bytes)
    }
    fn now_ns(&mut self) -> u64 {
        self.fake.now
    }
    fn keeper(&mut self) -> Option<&mut dyn ImageKeeper> {
        Some(&mut self.keeper)
    }
    fn store(&mut self) -> Option<&mut dyn store::ImageStore> {
        self.store.as_mut().map(|s| s as &mut dyn store::ImageStore)
    }
}

/// A server with sessions 1 and 2 open; a store unless `memory`.
fn setup(memory: bool) -> (Server, St) {
    let mut s = Server::new();
    let mut hv = St {
        fake: Fake::new(64),
        store: (!memory).then(|| Store::format(MemDisk::new(512, 8192)).unwrap()),
        keeper: MemImages::new(1 << 20),
    };
    ok(&mut s, &mut hv, 1, HELLO);
    ok(&mut s, &mut hv, 2, HELLO);
    (s, hv)
}

fn ask(s: &mut Server, hv: &mut St, session: u64, line: &str) -> Outcome {
    let out = s.handle_session_line(hv, Some(session), Ok(line.as_bytes().to_vec()));
    match decode_server_line(out.as_bytes()).unwrap() {
        ServerLine::Response(Response { result, .. }) => result,
        ServerLine::Event(e) => panic!("event {e:?}"),
    }
}

fn ok(s: &mut Server, hv: &mut St, session: u64, line: &str) -> Reply {
    match ask(s, hv, session, line) {
        Outcome::Ok(r) => r,
        Outcome::Error(e) => panic!("{}: {e:?}", &line[..line.len().min(80)]),
    }
}

fn refused(s: &mut Server, hv: &mut St, session: u64, line: &str) -> (ErrorCode, String) {
    match ask(s, hv, session, line) {
        Outcome::Ok(r) => panic!("{line}: unexpected {r:?}"),
        Outcome::Error(e) => (e.code, e.message),
    }
}

fn upload_begin(name: &str, bytes: &[u8]) -> String {
    format!(
        r#"{{"id":1,"op":"upload_begin","name":"{name}","size":{},"sha256":"{}"}}"#,
        bytes.len(),
        hex(&sha256(bytes))
    )
}

fn upload_chunk(name: &str, offset: usize, bytes: &[u8]) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!(r#"{{"id":2,"op":"upload_chunk","name":"{name}","offset":{offset},"data":"{data}"}}"#)
}

fn import_begin(kind: &str, name: &str, bytes: &[u8]) -> String {
    format!(
        r#"{{"id":1,"op":"import_begin","kind":"{kind}","name":"{name}","size":{},"sha256":"{}"}}"#,
        bytes.len(),
        hex(&sha256(bytes))
    )
}

fn import_chunk(name: &str, offset: usize, bytes: &[u8]) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!(r#"{{"id":2,"op":"import_chunk","name":"{name}","offset":{offset},"data":"{data}"}}"#)
}

fn image(n: usize) -> Vec<u8> {
    let mut b: Vec<u8> = (0..n).map(|i| (i * 13 + 5) as u8).collect();
    b[..4].copy_from_slice(b"\x7fELF");
    b
}

fn store_free(hv: &St) -> u64 {
    hv.store.as_ref().unwrap().free()
}

#[test]
fn an_upload_and_an_import_of_one_name_refuse_each_other_at_the_begin() {
    let (mut s, mut hv) = setup(false);
    let img = image(30_000);
    // Session 1 uploads "lx": session 2 may not import it.
    ok(&mut s, &mut hv, 1, &upload_begin("lx", &img));
    let (code, m) = refused(&mut s, &mut hv, 2, &import_begin("image", "lx", &img));
    assert_eq!(code, ErrorCode::Exists, "{m}");
    assert!(
        m.contains("\"lx\" is being made by an upload (session 1)"),
        "{m}"
    );
    // Session 1 imports "vm": session 2 may neither upload it nor import
    // it as well.
    let (mut s, mut hv) = setup(false);
    ok(&mut s, &mut hv, 1, &import_begin("image", "vm", &img));
    let (code, m) = refused(&mut s, &mut hv, 2, &upload_begin("vm", &img));
    assert_eq!(code, ErrorCode::Exists, "{m}");
    assert!(
        m.contains("\"vm\" is being made by an image import (session 1)"),
        "{m}"
    );
    let (code, m) = refused(&mut s, &mut hv, 2, &import_begin("image", "vm", &img));
    assert_eq!(code, ErrorCode::Exists, "{m}");
    // The refusals left session 1's import alone: it completes.
    ok(&mut s, &mut hv, 1, &import_chunk("vm", 0, &img));
    let r = ok(
        &mut s,
        &mut hv,
        1,
        r#"{"id":4,"op":"import_end","name":"vm"}"#,
    );
    assert!(matches!(r, Reply::Image { .. }), "{r:?}");
    // A volume of the name another session imports: refused too; a volume
    // may share an image's name (another kind of object).
    ok(&mut s, &mut hv, 1, &import_begin("volume", "d", &img));
    let (code, m) = refused(&mut s, &mut hv, 2, &import_begin("volume", "d", &img));
    assert_eq!(code, ErrorCode::Exists, "{m}");
    assert!(
        m.contains("a volume named \"d\" is being made by a volume import (session 1)"),
        "{m}"
    );
    ok(&mut s, &mut hv, 2, &import_begin("image", "d", &img));
}

#[test]
fn an_idle_transfer_is_dropped_and_its_space_freed() {
    let (mut s, mut hv) = setup(false);
    let free = store_free(&hv);
    let img = image(100_000);
    // Session 1 uploads into the store and keeps sending; session 2
    // imports and stops after its first chunk.
    ok(&mut s, &mut hv, 1, &upload_begin("up", &img));
    ok(&mut s, &mut hv, 2, &import_begin("volume", "im", &img));
    ok(&mut s, &mut hv, 2, &import_chunk("im", 0, &img[..1000]));
    assert!(store_free(&hv) < free);
    assert_eq!(s.next_deadline(), Some(60 * S + 1));
    hv.fake.now = 50 * S;
    ok(&mut s, &mut hv, 1, &upload_chunk("up", 0, &img[..1000]));
    // 60 s exactly: not over yet.
    hv.fake.now = 60 * S;
    s.observe(&mut hv);
    assert!(s.lifecycle.notes.is_empty(), "{:?}", s.lifecycle.notes);
    hv.fake.now = 60 * S + 1;
    s.observe(&mut hv);
    assert_eq!(
        s.lifecycle.notes,
        [String::from(
            "session 2: the import of \"im\" had no request for 60 s: dropped, the space set \
             aside for it is free again"
        )]
    );
    // Session 1's upload (last request at 50 s) stays until 110 s.
    assert_eq!(s.next_deadline(), Some(110 * S + 1));
    let (_, m) = refused(
        &mut s,
        &mut hv,
        2,
        &import_chunk("im", 1000, &img[1000..2000]),
    );
    assert!(m.contains("no import of \"im\" in progress"), "{m}");
    ok(
        &mut s,
        &mut hv,
        1,
        &upload_chunk("up", 1000, &img[1000..2000]),
    );
    hv.fake.now = 200 * S;
    s.observe(&mut hv);
    assert_eq!(s.lifecycle.notes.len(), 2, "{:?}", s.lifecycle.notes);
    assert!(
        s.lifecycle.notes[1].starts_with("session 1: the upload of \"up\" (into the store)"),
        "{:?}",
        s.lifecycle.notes
    );
    // Both reservations are gone: the store has all its space, no deadline
    // is left, and the names are free.
    assert_eq!(store_free(&hv), free);
    assert_eq!(s.next_deadline(), None);
    ok(&mut s, &mut hv, 2, &upload_begin("im", &img));
}

#[test]
fn an_idle_upload_into_memory_is_dropped_with_a_configured_limit() {
    let (mut s, mut hv) = setup(true);
    s.set_transfer_idle(5 * S);
    let img = image(100_000);
    ok(&mut s, &mut hv, 1, &upload_begin("m", &img));
    ok(&mut s, &mut hv, 1, &upload_chunk("m", 0, &img[..1000]));
    // The space the upload set aside: another as large does not fit next
    // to it.
    let big = image(1 << 20);
    let (code, _) = refused(&mut s, &mut hv, 2, &upload_begin("big", &big[..950_000]));
    assert_eq!(code, ErrorCode::NoResources);
    hv.fake.now = 5 * S + 1;
    s.observe(&mut hv);
    assert_eq!(
        s.lifecycle.notes,
        [String::from(
            "session 1: the upload of \"m\" (into memory) had no request for 5 s: dropped, the \
             space set aside for it is free again"
        )]
    );
    ok(&mut s, &mut hv, 2, &upload_begin("big", &big[..950_000]));
}
