//! `transfers.rs` against a fake hypervisor with a real store on a memory
//! disk and a clock: an upload refuses a name an image import is making
//! and the reverse (and a second import of a name), at the begin, naming
//! who holds it; a transfer with no request for the idle limit is dropped
//! (into the store: its blocks free again; into memory: its space), logged,
//! while one that keeps sending stays.
#![allow(clippy::unwrap_used)]

use alloc::string::String;

use super::tests_fixture::import_lines as import;
use super::tests_fixture::upload_lines as upload;
use super::tests_fixture::{Rig, greeted, image, ok_in, refused_in};
use super::*;

const S: u64 = 1_000_000_000;

/// A server with sessions 1 and 2 open, and an image keeper; a store
/// unless `memory`.
fn setup(memory: bool) -> (Server, Rig) {
    let hv = Rig::new().with_keeper(1 << 20);
    let hv = if memory { hv } else { hv.with_store() };
    greeted(hv, &[Some(1), Some(2)])
}

fn store_free(hv: &mut Rig) -> u64 {
    hv.mem_store().free()
}

#[test]
fn an_upload_and_an_import_of_one_name_refuse_each_other_at_the_begin() {
    let (mut s, mut hv) = setup(false);
    let img = image(30_000);
    // Session 1 uploads "lx": session 2 may not import it.
    ok_in(&mut s, &mut hv, Some(1), &upload::begin_of("lx", &img));
    let (code, m) = refused_in(
        &mut s,
        &mut hv,
        Some(2),
        &import::begin_of("image", "lx", &img),
    );
    assert_eq!(code, ErrorCode::Exists, "{m}");
    assert!(
        m.contains("\"lx\" is being made by an upload (session 1)"),
        "{m}"
    );
    // Session 1 imports "vm": session 2 may neither upload it nor import
    // it as well.
    let (mut s, mut hv) = setup(false);
    ok_in(
        &mut s,
        &mut hv,
        Some(1),
        &import::begin_of("image", "vm", &img),
    );
    let (code, m) = refused_in(&mut s, &mut hv, Some(2), &upload::begin_of("vm", &img));
    assert_eq!(code, ErrorCode::Exists, "{m}");
    assert!(
        m.contains("\"vm\" is being made by an image import (session 1)"),
        "{m}"
    );
    let (code, m) = refused_in(
        &mut s,
        &mut hv,
        Some(2),
        &import::begin_of("image", "vm", &img),
    );
    assert_eq!(code, ErrorCode::Exists, "{m}");
    // The refusals left session 1's import alone: it completes.
    ok_in(&mut s, &mut hv, Some(1), &import::chunk("vm", 0, &img));
    let r = ok_in(
        &mut s,
        &mut hv,
        Some(1),
        r#"{"id":4,"op":"import_end","name":"vm"}"#,
    );
    assert!(matches!(r, Reply::Image { .. }), "{r:?}");
    // A volume of the name another session imports: refused too; a volume
    // may share an image's name (another kind of object).
    ok_in(
        &mut s,
        &mut hv,
        Some(1),
        &import::begin_of("volume", "d", &img),
    );
    let (code, m) = refused_in(
        &mut s,
        &mut hv,
        Some(2),
        &import::begin_of("volume", "d", &img),
    );
    assert_eq!(code, ErrorCode::Exists, "{m}");
    assert!(
        m.contains("a volume named \"d\" is being made by a volume import (session 1)"),
        "{m}"
    );
    ok_in(
        &mut s,
        &mut hv,
        Some(2),
        &import::begin_of("image", "d", &img),
    );
}

#[test]
fn an_idle_transfer_is_dropped_and_its_space_freed() {
    let (mut s, mut hv) = setup(false);
    let free = store_free(&mut hv);
    let img = image(100_000);
    // Session 1 uploads into the store and keeps sending; session 2
    // imports and stops after its first chunk.
    ok_in(&mut s, &mut hv, Some(1), &upload::begin_of("up", &img));
    ok_in(
        &mut s,
        &mut hv,
        Some(2),
        &import::begin_of("volume", "im", &img),
    );
    ok_in(
        &mut s,
        &mut hv,
        Some(2),
        &import::chunk("im", 0, &img[..1000]),
    );
    assert!(store_free(&mut hv) < free);
    assert_eq!(s.next_deadline(), Some(60 * S + 1));
    hv.fake.now = 50 * S;
    ok_in(
        &mut s,
        &mut hv,
        Some(1),
        &upload::chunk("up", 0, &img[..1000]),
    );
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
    let (_, m) = refused_in(
        &mut s,
        &mut hv,
        Some(2),
        &import::chunk("im", 1000, &img[1000..2000]),
    );
    assert!(m.contains("no import of \"im\" in progress"), "{m}");
    ok_in(
        &mut s,
        &mut hv,
        Some(1),
        &upload::chunk("up", 1000, &img[1000..2000]),
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
    assert_eq!(store_free(&mut hv), free);
    assert_eq!(s.next_deadline(), None);
    ok_in(&mut s, &mut hv, Some(2), &upload::begin_of("im", &img));
}

#[test]
fn an_idle_upload_into_memory_is_dropped_with_a_configured_limit() {
    let (mut s, mut hv) = setup(true);
    s.set_transfer_idle(5 * S);
    let img = image(100_000);
    ok_in(&mut s, &mut hv, Some(1), &upload::begin_of("m", &img));
    ok_in(
        &mut s,
        &mut hv,
        Some(1),
        &upload::chunk("m", 0, &img[..1000]),
    );
    // The space the upload set aside: another as large does not fit next
    // to it.
    let big = image(1 << 20);
    let (code, _) = refused_in(
        &mut s,
        &mut hv,
        Some(2),
        &upload::begin_of("big", &big[..950_000]),
    );
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
    ok_in(
        &mut s,
        &mut hv,
        Some(2),
        &upload::begin_of("big", &big[..950_000]),
    );
}
