//! Images sent at run time (`upload.rs`, `images.rs`) against a fake
//! hypervisor that keeps uploads in a [`MemImages`]: a whole upload, every
//! refusal (wrong hash, truncated, out of order, too long, too big, a
//! name taken, a client gone), and a domain built from an uploaded image.
#![allow(clippy::unwrap_used)]

use alloc::format;
use alloc::vec::Vec;

use super::tests::{Fake, HELLO};
use super::tests_fixture::upload_lines::{begin, chunk, end};
use super::tests_fixture::{Rig, ask_in, greeted, image, ok, refused, send_upload};
use super::upload::{hex, sha256};
use super::*;
use crate::proto::{ImageSource, Outcome};

/// Only the boot modules are listed (nothing half-kept).
fn only_modules(s: &mut Server, hv: &mut Rig) {
    let Reply::Images { images } = ok(s, hv, r#"{"id":9,"op":"image_list"}"#) else {
        panic!()
    };
    assert!(
        images.iter().all(|i| i.source == ImageSource::Module),
        "{images:?}"
    );
}

/// A server greeted, and a [`Rig`] that keeps `room` bytes of uploads.
fn setup(room: u64) -> (Server, Rig) {
    greeted(Rig::new().with_keeper(room), &[None])
}

#[test]
fn an_upload_in_chunks_is_kept_listed_built_from_and_deleted() {
    let (mut s, mut hv) = setup(1 << 20);
    let img = image(70_000);
    let sha = sha256(&img);
    ok(&mut s, &mut hv, &begin("up1", img.len(), &sha));
    send_upload(&mut s, &mut hv, "up1", &img);
    let Reply::Image { image: info } = ok(&mut s, &mut hv, &end("up1")) else {
        panic!()
    };
    assert_eq!(
        (info.size, info.sha256.as_str()),
        (70_000, hex(&sha).as_str())
    );
    assert!(info.elf);
    let Reply::Images { images } = ok(&mut s, &mut hv, r#"{"id":4,"op":"image_list"}"#) else {
        panic!()
    };
    let names: Vec<_> = images.iter().map(|i| (i.name.as_str(), i.source)).collect();
    assert_eq!(
        names,
        [
            ("hello", ImageSource::Module),
            ("ticker", ImageSource::Module),
            ("up1", ImageSource::Upload)
        ]
    );
    // A configuration may name it; the domain is built from its bytes.
    let cfg = "[[domain]]\nname = \"u\"\nimage = \"up1\"\nmemory = 4\n";
    let create = format!(
        r#"{{"id":5,"op":"create","file":"u.toml","config":{}}}"#,
        serde_json::to_string(cfg).unwrap()
    );
    let Reply::Domains { domains } = ok(&mut s, &mut hv, &create) else {
        panic!()
    };
    assert_eq!(domains[0].name, "u");
    assert_eq!(hv.built_from, core::slice::from_ref(&img));
    // In use: refused, named; destroyed: deleted.
    let del = r#"{"id":6,"op":"image_delete","name":"up1"}"#;
    let (c, m) = refused(&mut s, &mut hv, del);
    assert_eq!(c, ErrorCode::BadState);
    assert!(m.contains("in use by domain(s) 2 (u)"), "{m}");
    ok(&mut s, &mut hv, r#"{"id":7,"op":"destroy","domain":"u"}"#);
    ok(&mut s, &mut hv, del);
    only_modules(&mut s, &mut hv);
    assert_eq!(refused(&mut s, &mut hv, del).0, ErrorCode::NoSuchImage);
    let (c, m) = refused(
        &mut s,
        &mut hv,
        r#"{"id":8,"op":"image_delete","name":"hello"}"#,
    );
    assert_eq!(c, ErrorCode::BadState);
    assert!(m.contains("boot module"), "{m}");
}

#[test]
fn a_wrong_hash_is_refused_and_nothing_kept() {
    let (mut s, mut hv) = setup(1 << 20);
    let img = image(1000);
    ok(&mut s, &mut hv, &begin("bad", 1000, &sha256(b"other")));
    ok(&mut s, &mut hv, &chunk("bad", 0, &img));
    let (c, m) = refused(&mut s, &mut hv, &end("bad"));
    assert_eq!(c, ErrorCode::BadRequest);
    assert!(
        m.contains(&hex(&sha256(&img))) && m.contains("nothing kept"),
        "{m}"
    );
    only_modules(&mut s, &mut hv);
    // The name is free again, the room whole.
    let sha = sha256(&img);
    ok(&mut s, &mut hv, &begin("bad", 1000, &sha));
}

#[test]
fn an_end_before_every_byte_is_refused() {
    let (mut s, mut hv) = setup(1 << 20);
    let img = image(1000);
    ok(&mut s, &mut hv, &begin("short", 1000, &sha256(&img)));
    ok(&mut s, &mut hv, &chunk("short", 0, &img[..600]));
    let (c, m) = refused(&mut s, &mut hv, &end("short"));
    assert_eq!(c, ErrorCode::BadRequest);
    assert!(m.contains("after 600 of 1000 bytes"), "{m}");
    only_modules(&mut s, &mut hv);
}

#[test]
fn chunks_out_of_order_or_past_the_size_drop_the_upload() {
    let (mut s, mut hv) = setup(1 << 20);
    let img = image(1000);
    let sha = sha256(&img);
    ok(&mut s, &mut hv, &begin("o", 1000, &sha));
    ok(&mut s, &mut hv, &chunk("o", 0, &img[..100]));
    let (_, m) = refused(&mut s, &mut hv, &chunk("o", 200, &img[200..300]));
    assert!(m.contains("offset 200 out of order: 100 bytes"), "{m}");
    // Dropped: a later chunk finds no upload.
    let (c, m) = refused(&mut s, &mut hv, &chunk("o", 100, &img[100..200]));
    assert_eq!(c, ErrorCode::BadState);
    assert!(m.contains("no upload"), "{m}");
    ok(&mut s, &mut hv, &begin("o", 1000, &sha));
    let (_, m) = refused(&mut s, &mut hv, &chunk("o", 0, &image(1001)));
    assert!(m.contains("past the 1000 bytes announced"), "{m}");
    ok(&mut s, &mut hv, &begin("o", 1000, &sha));
    let bad = r#"{"id":2,"op":"upload_chunk","name":"o","offset":0,"data":"!!!"}"#;
    let (_, m) = refused(&mut s, &mut hv, bad);
    assert!(m.contains("not base64"), "{m}");
    only_modules(&mut s, &mut hv);
}

#[test]
fn too_big_a_taken_name_a_bad_name_and_a_second_upload_are_refused() {
    let (mut s, mut hv) = setup(10_000);
    let sha = sha256(b"x");
    let (c, m) = refused(&mut s, &mut hv, &begin("big", 10_001, &sha));
    assert_eq!(c, ErrorCode::NoResources);
    assert!(
        m.contains("of 10001 bytes does not fit: dom0 has room for 10000 bytes"),
        "{m}"
    );
    assert_eq!(
        refused(&mut s, &mut hv, &begin("hello", 10, &sha)).0,
        ErrorCode::Exists
    );
    assert_eq!(
        refused(&mut s, &mut hv, &begin("../x", 10, &sha)).0,
        ErrorCode::BadRequest
    );
    let bad_sha = r#"{"id":1,"op":"upload_begin","name":"a","size":1,"sha256":"xyz"}"#;
    assert_eq!(refused(&mut s, &mut hv, bad_sha).0, ErrorCode::BadRequest);
    ok(&mut s, &mut hv, &begin("a", 6_000, &sha));
    let (c, m) = refused(&mut s, &mut hv, &begin("b", 10, &sha));
    assert_eq!(c, ErrorCode::BadState);
    assert!(m.contains("already uploading \"a\""), "{m}");
    // Another session: the name is taken, and only 4,000 bytes are left.
    let hello = ask_in(&mut s, &mut hv, Some(7), HELLO);
    assert!(matches!(hello, Outcome::Ok(_)));
    let Outcome::Error(e) = ask_in(&mut s, &mut hv, Some(7), &begin("a", 10, &sha)) else {
        panic!()
    };
    assert_eq!(e.code, ErrorCode::Exists);
    let Outcome::Error(e) = ask_in(&mut s, &mut hv, Some(7), &begin("c", 4_001, &sha)) else {
        panic!()
    };
    assert!(e.message.contains("room for 4000 bytes"), "{}", e.message);
}

#[test]
fn a_client_gone_mid_upload_leaves_nothing() {
    let (mut s, mut hv) = setup(1 << 20);
    let img = image(5000);
    let sha = sha256(&img);
    for (session, gone) in [
        (Some(3), r#"{"id":0,"op":"bye"}"#),
        (Some(4), HELLO),
        (None, HELLO),
    ] {
        if session.is_some() {
            assert!(matches!(
                ask_in(&mut s, &mut hv, session, HELLO),
                Outcome::Ok(_)
            ));
        }
        let r = ask_in(&mut s, &mut hv, session, &begin("gone", 5000, &sha));
        assert!(matches!(r, Outcome::Ok(_)), "{r:?}");
        let r = ask_in(&mut s, &mut hv, session, &chunk("gone", 0, &img[..2000]));
        assert!(matches!(r, Outcome::Ok(_)), "{r:?}");
        // The relay's `bye` when the client's connection closes, or a
        // new client's `hello` on the same line.
        assert!(matches!(
            ask_in(&mut s, &mut hv, session, gone),
            Outcome::Ok(_)
        ));
        only_modules(&mut s, &mut hv);
        if session == Some(3) {
            assert!(matches!(
                ask_in(&mut s, &mut hv, session, HELLO),
                Outcome::Ok(_)
            ));
        }
        // Nothing of it remains: its end finds no upload.
        let Outcome::Error(e) = ask_in(&mut s, &mut hv, session, &end("gone")) else {
            panic!()
        };
        assert!(e.message.contains("no upload"), "{}", e.message);
    }
}

#[test]
fn a_dom0_without_a_keeper_refuses_uploads() {
    let mut s = Server::new();
    let mut hv = Fake::new(64);
    let out = s.handle_line(&mut hv, Ok(HELLO.as_bytes().to_vec()));
    assert!(out.contains("\"ok\""));
    let out = s.handle_line(
        &mut hv,
        Ok(begin("x", 10, &sha256(b"")).as_bytes().to_vec()),
    );
    assert!(out.contains("no image keeper"), "{out}");
}
