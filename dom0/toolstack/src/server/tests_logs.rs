//! `console_history` of a domain of an earlier boot, by name: answered
//! from what dom0's store kept (`Hypervisor::console_history_named`), only
//! when neither a live nor a remembered domain has that name.
#![allow(clippy::unwrap_used)]

use alloc::string::ToString;

use super::tests::{Fake, HELLO, create_line};
use super::tests_fixture::forward_to_fake;
use super::*;
use crate::proto::{Outcome, Response, ServerLine, decode_server_line};

/// A dom0 whose store kept `old`'s console from boot 1.
struct Kept(Fake);

impl Hypervisor for Kept {
    forward_to_fake!(0);
    fn console_history(&mut self, id: u32) -> Option<(Vec<String>, u64)> {
        Some((alloc::vec![alloc::format!("this boot, domain {id}")], 0))
    }
    fn console_history_named(&mut self, name: &str) -> Option<(Vec<String>, u64)> {
        (name == "old" || name == "web").then(|| (alloc::vec!["[boot 1] kept".to_string()], 0))
    }
}

fn reply(s: &mut Server, hv: &mut Kept, line: &str) -> Outcome {
    match decode_server_line(s.handle_line(hv, Ok(line.as_bytes().to_vec())).as_bytes()) {
        Ok(ServerLine::Response(Response { result, .. })) => result,
        other => panic!("{other:?}"),
    }
}

fn history(s: &mut Server, hv: &mut Kept, dom: &str) -> Outcome {
    let line = alloc::format!(r#"{{"id":5,"op":"console_history","domain":"{dom}"}}"#);
    reply(s, hv, &line)
}

#[test]
fn an_earlier_boots_domain_is_found_by_name_only() {
    let mut hv = Kept(Fake::new(64));
    let mut s = Server::new();
    reply(&mut s, &mut hv, HELLO);
    // Not live, not remembered: what the store kept.
    match history(&mut s, &mut hv, "old") {
        Outcome::Ok(Reply::Lines { lines, dropped }) => {
            assert_eq!(
                (lines, dropped),
                (alloc::vec!["[boot 1] kept".to_string()], 0)
            );
        }
        other => panic!("{other:?}"),
    }
    // A live domain of that name: its own history, by id.
    reply(
        &mut s,
        &mut hv,
        &create_line("[[domain]]\nname = \"web\"\nimage = \"hello\"\nmemory = 4\n"),
    );
    match history(&mut s, &mut hv, "web") {
        Outcome::Ok(Reply::Lines { lines, .. }) => assert_eq!(lines, ["this boot, domain 2"]),
        other => panic!("{other:?}"),
    }
    // Nothing kept anywhere: the error it always was.
    match history(&mut s, &mut hv, "never") {
        Outcome::Error(e) => assert_eq!(e.code, ErrorCode::NoSuchDomain),
        other => panic!("{other:?}"),
    }
    // An id is never looked up by name.
    assert!(matches!(history(&mut s, &mut hv, "99"), Outcome::Error(_)));
}
