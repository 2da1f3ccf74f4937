//! Uploads into the store (`upload_store.rs`) against a fake hypervisor
//! with a real `kestrel_store::Store` on a memory disk: a whole upload is
//! committed, listed with source `store` and still there when the store
//! is opened again (a reboot); a wrong hash, a truncated upload, a bad
//! chunk, an abort or a session that ends leave nothing in the store
//! (not listed, its space free again, nothing after a reopen).
#![allow(clippy::unwrap_used)]

use kestrel_store::Kind;

use super::tests::HELLO;
use super::tests_fixture::upload_lines::{begin, chunk, end};
use super::tests_fixture::{Rig, greeted, image, ok, refused, send_upload};
use super::upload::{hex, sha256};
use super::*;
use crate::proto::ImageSource;

/// A server greeted, and a [`Rig`] with a store.
fn setup() -> (Server, Rig) {
    greeted(Rig::new().with_store(), &[None])
}

/// The store holds no image, its space is all free, and opening it again
/// (a reboot) finds none either.
fn store_empty(hv: &mut Rig, free: u64) {
    assert!(
        hv.mem_store().objects().is_empty(),
        "{:?}",
        hv.mem_store().objects()
    );
    assert_eq!(hv.mem_store().free(), free, "reserved blocks left");
    hv.reopen_store();
    assert!(hv.mem_store().objects().is_empty(), "after a reopen");
}

#[test]
fn an_upload_goes_into_the_store_and_survives_a_reopen() {
    let (mut s, mut hv) = setup();
    let img = image(100_000);
    let sha = sha256(&img);
    ok(&mut s, &mut hv, &begin("lx", img.len(), &sha));
    send_upload(&mut s, &mut hv, "lx", &img);
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
    hv.reopen_store();
    let mut back = alloc::vec![0u8; img.len()];
    hv.mem_store()
        .read(Kind::Image, "lx", 0, &mut back)
        .unwrap();
    assert_eq!(back, img);
    assert_eq!(hv.mem_store().get(Kind::Image, "lx").unwrap().sha256, sha);
}

#[test]
fn a_failed_upload_leaves_nothing_in_the_store() {
    let (mut s, mut hv) = setup();
    let free = hv.mem_store().free();
    let img = image(70_000);
    let sha = sha256(&img);

    // The wrong hash.
    ok(&mut s, &mut hv, &begin("bad", img.len(), &sha256(b"other")));
    send_upload(&mut s, &mut hv, "bad", &img);
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
    send_upload(&mut s, &mut hv, "bad", &img);
    ok(&mut s, &mut hv, &end("bad"));
    assert_eq!(hv.mem_store().objects().len(), 1);
}
