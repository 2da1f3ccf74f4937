//! Uploads into the store (`upload_store.rs`) against a fake hypervisor
//! with a real `kestrel_store::Store` on a memory disk: a whole upload is
//! committed, listed with source `store` and still there when the store
//! is opened again (a reboot); a wrong hash, a truncated upload, a bad
//! chunk, an abort or a session that ends leave nothing in the store
//! (not listed, its space free again, nothing after a reopen).
#![allow(clippy::unwrap_used)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use base64::Engine as _;
use kestrel_store::{Kind, MemDisk, Store};

use super::tests::{Fake, HELLO};
use super::upload::{hex, sha256};
use super::*;
use crate::config::DomainConfig;
use crate::proto::{ImageSource, Outcome, Response, ServerLine, decode_server_line};

struct St {
    fake: Fake,
    store: Store<MemDisk>,
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
    fn store(&mut self) -> Option<&mut dyn store::ImageStore> {
        Some(&mut self.store)
    }
}

fn ask_in(s: &mut Server, hv: &mut St, session: SessionId, line: &str) -> Outcome {
    let out = s.handle_session_line(hv, session, Ok(line.as_bytes().to_vec()));
    match decode_server_line(out.as_bytes()).unwrap() {
        ServerLine::Response(Response { result, .. }) => result,
        ServerLine::Event(e) => panic!("event {e:?}"),
    }
}

fn ok(s: &mut Server, hv: &mut St, line: &str) -> Reply {
    match ask_in(s, hv, None, line) {
        Outcome::Ok(r) => r,
        Outcome::Error(e) => panic!("{line}: {e:?}"),
    }
}

fn refused(s: &mut Server, hv: &mut St, line: &str) -> (ErrorCode, String) {
    match ask_in(s, hv, None, line) {
        Outcome::Ok(r) => panic!("{line}: unexpected {r:?}"),
        Outcome::Error(e) => (e.code, e.message),
    }
}

fn begin(name: &str, size: usize, sha: &[u8; 32]) -> String {
    format!(
        r#"{{"id":1,"op":"upload_begin","name":"{name}","size":{size},"sha256":"{}"}}"#,
        hex(sha)
    )
}

fn chunk(name: &str, offset: usize, bytes: &[u8]) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!(r#"{{"id":2,"op":"upload_chunk","name":"{name}","offset":{offset},"data":"{data}"}}"#)
}

fn end(name: &str) -> String {
    format!(r#"{{"id":3,"op":"upload_end","name":"{name}"}}"#)
}

fn image(n: usize) -> Vec<u8> {
    let mut b: Vec<u8> = (0..n).map(|i| (i * 13 + 5) as u8).collect();
    b[..4].copy_from_slice(b"\x7fELF");
    b
}

fn setup() -> (Server, St) {
    let mut s = Server::new();
    let mut hv = St {
        fake: Fake::new(64),
        store: Store::format(MemDisk::new(512, 8192)).unwrap(),
    };
    ok(&mut s, &mut hv, HELLO);
    (s, hv)
}

fn send_all(s: &mut Server, hv: &mut St, name: &str, bytes: &[u8]) {
    for (i, piece) in bytes.chunks(proto::UPLOAD_CHUNK_MAX).enumerate() {
        ok(s, hv, &chunk(name, i * proto::UPLOAD_CHUNK_MAX, piece));
    }
}

/// The store holds no image, its space is all free, and opening it again
/// (a reboot) finds none either.
fn store_empty(hv: &mut St, free: u64) {
    assert!(hv.store.objects().is_empty(), "{:?}", hv.store.objects());
    assert_eq!(hv.store.free(), free, "reserved blocks left");
    let disk = core::mem::replace(&mut hv.store, Store::format(MemDisk::new(512, 64)).unwrap())
        .into_disk();
    hv.store = Store::open(disk).unwrap();
    assert!(hv.store.objects().is_empty(), "after a reopen");
}

#[test]
fn an_upload_goes_into_the_store_and_survives_a_reopen() {
    let (mut s, mut hv) = setup();
    let img = image(100_000);
    let sha = sha256(&img);
    ok(&mut s, &mut hv, &begin("lx", img.len(), &sha));
    send_all(&mut s, &mut hv, "lx", &img);
    let Reply::Image { image: info } = ok(&mut s, &mut hv, &end("lx")) else {
        panic!()
    };
    assert_eq!(info.source, ImageSource::Store);
    assert_eq!(
        (info.size, info.sha256.clone(), info.elf),
        (100_000, hex(&sha), true)
    );
    let Reply::Images { images } = ok(&mut s, &mut hv, r#"{"id":4,"op":"image_list"}"#) else {
        panic!()
    };
    assert!(
        images
            .iter()
            .any(|i| i.name == "lx" && i.source == ImageSource::Store)
    );
    // The same name again is refused.
    let (c, _) = refused(&mut s, &mut hv, &begin("lx", 10, &sha));
    assert_eq!(c, ErrorCode::Exists);
    // A reboot: the store opened again from its disk has the same bytes.
    let disk = core::mem::replace(&mut hv.store, Store::format(MemDisk::new(512, 64)).unwrap())
        .into_disk();
    hv.store = Store::open(disk).unwrap();
    let mut back = alloc::vec![0u8; img.len()];
    hv.store.read(Kind::Image, "lx", 0, &mut back).unwrap();
    assert_eq!(back, img);
    assert_eq!(hv.store.get(Kind::Image, "lx").unwrap().sha256, sha);
}

#[test]
fn a_failed_upload_leaves_nothing_in_the_store() {
    let (mut s, mut hv) = setup();
    let free = hv.store.free();
    let img = image(70_000);
    let sha = sha256(&img);

    // The wrong hash.
    ok(&mut s, &mut hv, &begin("bad", img.len(), &sha256(b"other")));
    send_all(&mut s, &mut hv, "bad", &img);
    let (c, m) = refused(&mut s, &mut hv, &end("bad"));
    assert_eq!(c, ErrorCode::BadRequest);
    assert!(m.contains("SHA-256") && m.contains("nothing kept"), "{m}");
    store_empty(&mut hv, free);

    // Truncated: the end comes before the last chunk.
    ok(&mut s, &mut hv, &begin("bad", img.len(), &sha));
    ok(
        &mut s,
        &mut hv,
        &chunk("bad", 0, &img[..proto::UPLOAD_CHUNK_MAX]),
    );
    let (c, m) = refused(&mut s, &mut hv, &end("bad"));
    assert_eq!(c, ErrorCode::BadRequest);
    assert!(m.contains("truncated"), "{m}");
    store_empty(&mut hv, free);

    // A chunk out of order drops the upload.
    ok(&mut s, &mut hv, &begin("bad", img.len(), &sha));
    let (c, m) = refused(&mut s, &mut hv, &chunk("bad", 5, &img[..10]));
    assert_eq!(c, ErrorCode::BadRequest);
    assert!(m.contains("dropped"), "{m}");
    let (c, _) = refused(&mut s, &mut hv, &end("bad"));
    assert_eq!(c, ErrorCode::BadState, "no upload left to end");
    store_empty(&mut hv, free);

    // More bytes than announced.
    ok(&mut s, &mut hv, &begin("bad", 10, &sha));
    let (c, _) = refused(&mut s, &mut hv, &chunk("bad", 0, &img[..11]));
    assert_eq!(c, ErrorCode::BadRequest);
    store_empty(&mut hv, free);

    // Aborted, and a session that ends half-way (the client went away).
    ok(&mut s, &mut hv, &begin("bad", img.len(), &sha));
    ok(&mut s, &mut hv, &chunk("bad", 0, &img[..100]));
    ok(
        &mut s,
        &mut hv,
        r#"{"id":5,"op":"upload_abort","name":"bad"}"#,
    );
    store_empty(&mut hv, free);
    ok(&mut s, &mut hv, &begin("bad", img.len(), &sha));
    ok(&mut s, &mut hv, &chunk("bad", 0, &img[..100]));
    ok(&mut s, &mut hv, r#"{"id":6,"op":"bye"}"#);
    ok(&mut s, &mut hv, HELLO);
    store_empty(&mut hv, free);

    // Larger than the store: refused at the start, nothing reserved.
    let (c, _) = refused(&mut s, &mut hv, &begin("huge", 1 << 30, &sha));
    assert_eq!(c, ErrorCode::NoResources);
    store_empty(&mut hv, free);

    // After all that, the same name uploads whole.
    ok(&mut s, &mut hv, &begin("bad", img.len(), &sha));
    send_all(&mut s, &mut hv, "bad", &img);
    ok(&mut s, &mut hv, &end("bad"));
    assert_eq!(hv.store.objects().len(), 1);
}
