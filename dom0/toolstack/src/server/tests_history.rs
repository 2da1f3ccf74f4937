//! Ended domains stay listed (state `ended`, exit code, reason, uptime,
//! CPU time) until `forget` or until the history is full.
#![allow(clippy::unwrap_used)]

use alloc::string::ToString;
use alloc::vec::Vec;

use super::tests::{Fake, HELLO, create_line};
use super::*;
use crate::proto::{Outcome, Response, ServerLine, decode_server_line};

fn reply(s: &mut Server, hv: &mut Fake, line: &str) -> Outcome {
    match decode_server_line(s.handle_line(hv, Ok(line.as_bytes().to_vec())).as_bytes()) {
        Ok(ServerLine::Response(Response { result, .. })) => result,
        other => panic!("{other:?}"),
    }
}

fn list(s: &mut Server, hv: &mut Fake) -> Vec<proto::DomainInfo> {
    match reply(s, hv, r#"{"id":9,"op":"list"}"#) {
        Outcome::Ok(Reply::Domains { domains }) => domains,
        other => panic!("{other:?}"),
    }
}

#[test]
fn ended_domains_stay_listed_until_forget() {
    let mut hv = Fake::new(64);
    let mut s = Server::with_history(2);
    reply(&mut s, &mut hv, HELLO);
    let two = "[[domain]]\nname = \"a\"\nimage = \"hello\"\nmemory = 4\n\n[[domain]]\nname = \"b\"\nimage = \"hello\"\nmemory = 4\n";
    assert!(matches!(
        reply(&mut s, &mut hv, &create_line(two)),
        Outcome::Ok(_)
    ));
    hv.now = 5_000;
    hv.domains[1].cpu_time_ns = 700;
    assert_eq!(list(&mut s, &mut hv).len(), 3, "dom0, a, b");
    // a exits by itself with code 3; b is destroyed.
    hv.now = 9_000;
    hv.exit(2, 3);
    let destroy = r#"{"id":4,"op":"destroy","domain":"b"}"#;
    assert!(matches!(
        reply(&mut s, &mut hv, destroy),
        Outcome::Ok(Reply::Done)
    ));
    let l = list(&mut s, &mut hv);
    let ended: Vec<_> = l
        .iter()
        .filter(|d| d.state == proto::DomainState::Ended)
        .map(|d| {
            (
                d.name.as_str(),
                d.exit_code,
                d.reason.as_deref(),
                d.cpu_time_ns,
            )
        })
        .collect();
    assert_eq!(
        ended,
        [
            ("a", Some(3), Some("exited"), 700),
            ("b", Some(-1), Some("destroyed"), 0)
        ]
    );
    let a = l.iter().find(|d| d.name == "a").unwrap();
    assert_eq!(
        a.uptime_ns,
        Some(9_000),
        "seen at creation (0), gone at 9000"
    );
    // info finds an ended domain by name; forget drops it.
    let info = r#"{"id":5,"op":"info","domain":"a"}"#;
    assert!(
        matches!(reply(&mut s, &mut hv, info), Outcome::Ok(Reply::Domain { domain }) if domain.exit_code == Some(3))
    );
    let forget = r#"{"id":6,"op":"forget","domain":"a"}"#;
    assert!(matches!(
        reply(&mut s, &mut hv, forget),
        Outcome::Ok(Reply::Done)
    ));
    assert!(
        matches!(reply(&mut s, &mut hv, forget), Outcome::Error(e) if e.code == ErrorCode::NoSuchDomain && e.message.contains("no ended domain"))
    );
    let forget_dom0 = r#"{"id":7,"op":"forget","domain":"dom0"}"#;
    assert!(
        matches!(reply(&mut s, &mut hv, forget_dom0), Outcome::Error(e) if e.code == ErrorCode::BadState && e.message.contains("has not ended")),
    );
    // The history holds 2: a third ended domain pushes the oldest out.
    for name in ["c", "d"] {
        let one = alloc::format!("[[domain]]\nname = \"{name}\"\nimage = \"hello\"\nmemory = 4\n");
        assert!(matches!(
            reply(&mut s, &mut hv, &create_line(&one)),
            Outcome::Ok(_)
        ));
        let d = alloc::format!(r#"{{"id":8,"op":"destroy","domain":"{name}"}}"#);
        assert!(matches!(reply(&mut s, &mut hv, &d), Outcome::Ok(_)));
    }
    let names: Vec<_> = list(&mut s, &mut hv)
        .iter()
        .filter(|d| d.state == proto::DomainState::Ended)
        .map(|d| d.name.to_string())
        .collect();
    assert_eq!(names, ["c", "d"]);
}
