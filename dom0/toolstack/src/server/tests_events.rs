//! UUIDs (given, generated, kept across a restart, accepted where a name
//! is) and domain events (each change once, in order), against the fake
//! hypervisor.
#![allow(clippy::unwrap_used)]

use alloc::string::String;
use alloc::vec::Vec;

use super::tests::{Fake, HELLO, create_line};
use super::*;
use crate::proto::{Change, Event, Outcome, Response, ServerLine, decode_server_line};

fn ok(s: &mut Server, hv: &mut Fake, line: &str) -> Reply {
    match decode_server_line(s.handle_line(hv, Ok(line.as_bytes().to_vec())).as_bytes()) {
        Ok(ServerLine::Response(Response {
            result: Outcome::Ok(r),
            ..
        })) => r,
        other => panic!("{line}: {other:?}"),
    }
}

fn info(s: &mut Server, hv: &mut Fake, domain: &str) -> proto::DomainInfo {
    let line = alloc::format!(r#"{{"id":5,"op":"info","domain":"{domain}"}}"#);
    match ok(s, hv, &line) {
        Reply::Domain { domain } => domain,
        other => panic!("{other:?}"),
    }
}

/// `(change, domain, name, uuid)` of every queued event.
fn changes(s: &mut Server) -> Vec<(Change, u32, String, String)> {
    s.take_events()
        .into_iter()
        .map(|e| match e {
            Event::Domain(d) => (d.change, d.domain, d.name, d.uuid.unwrap_or_default()),
            other => panic!("{other:?}"),
        })
        .collect()
}

const GIVEN: &str = "123e4567-e89b-42d3-a456-426614174000";
const TWO: &str = "[[domain]]\nname = \"a\"\nimage = \"ticker\"\nmemory = 4\n\
uuid = \"123E4567-E89B-42D3-A456-426614174000\"\non_reboot = \"restart\"\n\n\
[[domain]]\nname = \"b\"\nimage = \"ticker\"\nmemory = 4\non_reboot = \"restart\"\n";

#[test]
fn uuids_given_or_generated_shown_accepted_and_kept_across_a_restart() {
    let mut hv = Fake::new(64);
    let mut s = Server::with_history(4);
    s.seed_uuids(42);
    ok(&mut s, &mut hv, HELLO);
    let Reply::Domains { domains } = ok(&mut s, &mut hv, &create_line(TWO)) else {
        panic!("create");
    };
    assert_eq!(domains[0].uuid.as_deref(), Some(GIVEN), "given, lower case");
    let b = domains[1].uuid.clone().unwrap();
    let parsed = crate::uuid::Uuid::parse(&b).unwrap();
    assert_eq!(alloc::string::ToString::to_string(&parsed), b);
    assert_eq!(b.as_bytes()[14], b'4', "version 4: {b}");
    // Accepted wherever a name is: info, pause (any case).
    assert_eq!(info(&mut s, &mut hv, &b).name, "b");
    assert_eq!(
        info(&mut s, &mut hv, "123E4567-E89B-42D3-A456-426614174000").name,
        "a"
    );
    let pause = alloc::format!(r#"{{"id":6,"op":"pause","domain":"{b}"}}"#);
    let Reply::Domain { domain } = ok(&mut s, &mut hv, &pause) else {
        panic!("pause");
    };
    assert_eq!(
        (domain.name.as_str(), domain.uuid.as_deref()),
        ("b", Some(b.as_str()))
    );
    // dom0 itself has one too, and list shows every one.
    let Reply::Domains { domains } = ok(&mut s, &mut hv, r#"{"id":7,"op":"list"}"#) else {
        panic!("list");
    };
    assert!(domains.iter().all(|d| d.uuid.is_some()), "{domains:?}");
    // b reboots: restarted as domain 4 under the same UUID.
    hv.end(3, 0, "rebooted");
    let _ = s.observe(&mut hv);
    let again = info(&mut s, &mut hv, &b);
    assert_eq!((again.id, again.name.as_str()), (4, "b"));
    // The ended one keeps it too, and is found by it in the history.
    let ended: Vec<_> = s.history.ended().cloned().collect();
    assert_eq!(ended[0].uuid.as_deref(), Some(b.as_str()));
}

#[test]
fn each_change_is_one_event_in_order() {
    let mut hv = Fake::new(64);
    let mut s = Server::with_history(4);
    ok(&mut s, &mut hv, HELLO);
    ok(&mut s, &mut hv, r#"{"id":1,"op":"subscribe"}"#);
    assert_eq!(s.subscribers(), [None]);
    let one = "[[domain]]\nname = \"w\"\nimage = \"ticker\"\nmemory = 4\n";
    ok(&mut s, &mut hv, &create_line(one));
    ok(&mut s, &mut hv, r#"{"id":2,"op":"pause","domain":"w"}"#);
    ok(&mut s, &mut hv, r#"{"id":3,"op":"unpause","domain":"w"}"#);
    ok(&mut s, &mut hv, r#"{"id":4,"op":"shutdown","domain":"w"}"#);
    ok(&mut s, &mut hv, r#"{"id":5,"op":"destroy","domain":"w"}"#);
    let got = changes(&mut s);
    let kinds: Vec<(Change, u32)> = got.iter().map(|(c, id, ..)| (*c, *id)).collect();
    assert_eq!(
        kinds,
        [
            (Change::Created, 2),
            (Change::Started, 2),
            (Change::Paused, 2),
            (Change::Unpaused, 2),
            (Change::ShutdownRequested, 2),
            (Change::Ended, 2),
        ]
    );
    assert!(got.iter().all(|(_, _, n, u)| n == "w" && u == &got[0].3));
    assert!(changes(&mut s).is_empty(), "taken once");
    // A session that ends stops getting them.
    ok(&mut s, &mut hv, r#"{"id":6,"op":"bye"}"#);
    assert!(s.subscribers().is_empty());
}
