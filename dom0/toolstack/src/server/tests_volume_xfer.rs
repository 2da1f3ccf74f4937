//! Imports and exports of store objects (`volume_xfer.rs`) through the
//! real [`Server`] over an in-memory store: a volume and an image in
//! chunks and zero runs, read back and exported (zero runs not sent, the
//! end-to-end SHA-256), and every refusal (wrong hash, truncated, out of
//! order, past the end, a name taken, a client gone) leaving no object and
//! all the store's room.
#![allow(clippy::unwrap_used)]

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use base64::Engine as _;
use kestrel_store::Kind;

use super::tests::HELLO;
use super::tests_fixture::import_lines::{begin, chunk, end, zeros};
use super::tests_fixture::{Rig, ask_in, greeted, ok, ok_in, refused};
use super::upload::{hex, sha256};
use super::*;
use crate::proto::Outcome;

/// A server greeted, and a [`Rig`] with a store.
fn setup() -> (Server, Rig) {
    greeted(Rig::new().with_store(), &[None])
}

/// A disk image: a patterned head, 300 KiB of zeros, a patterned tail.
fn disk() -> Vec<u8> {
    let mut b = vec![0u8; 400_000];
    for (i, x) in b[..50_000].iter_mut().enumerate() {
        *x = (i * 7 + 3) as u8;
    }
    for (i, x) in b[350_000..].iter_mut().enumerate() {
        *x = (i * 13 + 1) as u8 | 1;
    }
    b
}

/// Sends `bytes` as import `name`: zero runs of whole 32 KiB pieces as
/// `import_zeros`, the rest as chunks (what hvctl does).
fn send(s: &mut Server, hv: &mut Rig, name: &str, bytes: &[u8]) {
    let mut at = 0;
    for piece in bytes.chunks(proto::UPLOAD_CHUNK_MAX) {
        let line = if piece.iter().all(|&b| b == 0) {
            zeros(name, at, piece.len())
        } else {
            chunk(name, at, piece)
        };
        ok(s, hv, &line);
        at += piece.len();
    }
}

/// Exports `name`: the bytes, and how many came as data (not zeros).
fn export(s: &mut Server, hv: &mut Rig, kind: &str, name: &str) -> (Vec<u8>, usize) {
    let line = format!(r#"{{"id":5,"op":"export_begin","kind":"{kind}","name":"{name}"}}"#);
    let Reply::Export { size, sha256: sha } = ok(s, hv, &line) else {
        panic!()
    };
    let mut out = Vec::new();
    let mut sent = 0;
    let next = format!(r#"{{"id":6,"op":"export_next","name":"{name}"}}"#);
    loop {
        let Reply::Chunk {
            offset,
            zeros,
            data,
            sha256: last,
        } = ok(s, hv, &next)
        else {
            panic!()
        };
        assert_eq!(offset, out.len() as u64);
        assert!(zeros <= proto::XFER_ZEROS_MAX);
        out.resize(out.len() + zeros as usize, 0);
        let data = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        sent += data.len();
        out.extend_from_slice(&data);
        if let Some(last) = last {
            assert_eq!(out.len() as u64, size);
            assert_eq!(last, hex(&sha256(&out)));
            if let Some(sha) = &sha {
                assert_eq!(sha, &last, "an image's recorded hash");
            }
            break;
        }
    }
    // The export is over: another next is refused.
    assert!(matches!(ask_in(s, hv, None, &next), Outcome::Error(_)));
    (out, sent)
}

#[test]
fn a_volume_and_an_image_go_in_and_come_out_with_zero_runs_unsent() {
    let (mut s, mut hv) = setup();
    let d = disk();
    ok(
        &mut s,
        &mut hv,
        &begin("volume", "vol1", d.len(), &sha256(&d)),
    );
    send(&mut s, &mut hv, "vol1", &d);
    let Reply::Volumes { volumes } = ok(&mut s, &mut hv, &end("vol1")) else {
        panic!()
    };
    assert_eq!(
        (volumes[0].name.as_str(), volumes[0].size_bytes),
        ("vol1", 400_000)
    );
    let mut back = vec![0u8; d.len()];
    hv.mem_store()
        .read(Kind::Volume, "vol1", 0, &mut back)
        .unwrap();
    assert_eq!(back, d);
    let (out, sent) = export(&mut s, &mut hv, "volume", "vol1");
    assert_eq!(out, d);
    assert!(sent < 150_000, "zero runs were sent as bytes: {sent}");

    let img = b"\x7fELF a small kernel".to_vec();
    ok(
        &mut s,
        &mut hv,
        &begin("image", "k", img.len(), &sha256(&img)),
    );
    ok(&mut s, &mut hv, &chunk("k", 0, &img));
    let Reply::Image { image } = ok(&mut s, &mut hv, &end("k")) else {
        panic!()
    };
    assert_eq!(image.sha256, hex(&sha256(&img)));
    assert!(image.elf);
    assert_eq!(export(&mut s, &mut hv, "image", "k").0, img);
    // A volume and an image of the same name are different objects.
    assert!(matches!(
        ask_in(
            &mut s,
            &mut hv,
            None,
            &begin("volume", "k", 10, &sha256(&[0; 10]))
        ),
        Outcome::Ok(_)
    ));
}

/// One refusal: what it sends after `import_begin`, and dom0's answer.
type Case<'a> = dyn Fn(&mut Server, &mut Rig) -> (ErrorCode, String) + 'a;

/// Every refusal drops the import: no object, all the room back.
#[test]
fn refusals_drop_the_import_and_leave_nothing() {
    let (mut s, mut hv) = setup();
    let free = hv.mem_store().free();
    let d = disk();
    let sha = sha256(&d);
    let check_clean = |hv: &mut Rig| {
        assert!(
            hv.mem_store().objects().is_empty(),
            "{:?}",
            hv.mem_store().objects()
        );
        assert_eq!(hv.mem_store().free(), free);
    };
    let cases: [(&Case<'_>, &str); 6] = [
        (
            &|s, hv| {
                send(s, hv, "v", &d[..200_000]);
                refused(s, hv, &end("v"))
            },
            "ended after 200000 of 400000 bytes",
        ),
        (
            &|s, hv| {
                let mut bad = d.clone();
                bad[5] ^= 1;
                send(s, hv, "v", &bad);
                refused(s, hv, &end("v"))
            },
            "not the",
        ),
        (
            &|s, hv| refused(s, hv, &chunk("v", 100, b"x")),
            "offset 100 out of order: 0 bytes came before it",
        ),
        (
            &|s, hv| {
                send(s, hv, "v", &d);
                refused(s, hv, &chunk("v", d.len(), b"x"))
            },
            "past the 400000 bytes announced",
        ),
        (
            &|s, hv| refused(s, hv, &zeros("v", 0, (proto::XFER_ZEROS_MAX + 1) as usize)),
            "1 to 8388608 per request",
        ),
        (
            &|s, hv| {
                let line = r#"{"id":2,"op":"import_chunk","name":"v","offset":0,"data":"!!"}"#;
                refused(s, hv, line)
            },
            "not base64",
        ),
    ];
    for (case, want) in cases {
        ok(&mut s, &mut hv, &begin("volume", "v", d.len(), &sha));
        let (code, message) = case(&mut s, &mut hv);
        assert_eq!(code, ErrorCode::BadRequest, "{message}");
        assert!(message.contains(want), "{message}");
        assert!(message.contains("nothing kept"), "{message}");
        check_clean(&mut hv);
        // The session may begin again at once: the import is gone.
        assert!(refused(&mut s, &mut hv, &end("v")).1.contains("no import"));
    }
    // Too big for the store: refused at the start, the sizes named.
    let (code, message) = refused(&mut s, &mut hv, &begin("volume", "v", 64 << 20, &sha));
    assert_eq!(code, ErrorCode::NoResources, "{message}");
    // A boot module's name is taken for an image.
    let (code, _) = refused(&mut s, &mut hv, &begin("image", "hello", 5, &sha));
    assert_eq!(code, ErrorCode::Exists);
    let (code, _) = refused(&mut s, &mut hv, &begin("volume", "../x", 5, &sha));
    assert_eq!(code, ErrorCode::BadRequest);
    let line = r#"{"id":5,"op":"export_begin","kind":"volume","name":"nope"}"#;
    assert_eq!(refused(&mut s, &mut hv, line).0, ErrorCode::NoSuchObject);
    check_clean(&mut hv);
}

#[test]
fn a_client_gone_mid_import_leaves_nothing_and_sessions_are_separate() {
    let (mut s, mut hv) = setup();
    let free = hv.mem_store().free();
    let d = disk();
    let (a, b) = (Some(1), Some(2));
    ok_in(&mut s, &mut hv, a, HELLO);
    ok_in(&mut s, &mut hv, b, HELLO);
    ok_in(
        &mut s,
        &mut hv,
        a,
        &begin("volume", "v", d.len(), &sha256(&d)),
    );
    ok_in(&mut s, &mut hv, a, &chunk("v", 0, &d[..1000]));
    // Another session cannot touch a's import, nor take its name.
    assert!(matches!(
        ask_in(&mut s, &mut hv, b, &chunk("v", 1000, &d[1000..2000])),
        Outcome::Error(_)
    ));
    assert!(matches!(
        ask_in(
            &mut s,
            &mut hv,
            b,
            &begin("volume", "v", 10, &sha256(&[0; 10]))
        ),
        Outcome::Error(_)
    ));
    assert!(hv.mem_store().free() < free);
    // a's connection closes: dom0 sends its `bye`.
    ok_in(&mut s, &mut hv, a, r#"{"id":7,"op":"bye"}"#);
    assert!(hv.mem_store().objects().is_empty());
    assert_eq!(hv.mem_store().free(), free);
    // A new hello on a session drops its import too.
    ok_in(
        &mut s,
        &mut hv,
        b,
        &begin("volume", "w", d.len(), &sha256(&d)),
    );
    ok_in(&mut s, &mut hv, b, HELLO);
    assert_eq!(hv.mem_store().free(), free);
    ok_in(
        &mut s,
        &mut hv,
        b,
        &begin("volume", "w", d.len(), &sha256(&d)),
    );
    ok_in(
        &mut s,
        &mut hv,
        b,
        r#"{"id":8,"op":"import_abort","name":"w"}"#,
    );
    assert_eq!(hv.mem_store().free(), free);
    assert!(hv.mem_store().objects().is_empty());
}
