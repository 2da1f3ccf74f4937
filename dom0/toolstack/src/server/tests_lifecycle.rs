//! Shutdown and reboot requests with a forced end after the timeout, the
//! end policies (restart with its loop guard, preserve), set_sched, and
//! uptimes counted from creation.
#![allow(clippy::unwrap_used)]

use alloc::string::String;
use alloc::vec::Vec;

use super::tests::{Fake, HELLO, create_line};
use super::*;
use crate::config;
use crate::proto::{DomainInfo, Outcome, Response, ServerLine, decode_server_line};

fn reply(s: &mut Server, hv: &mut Fake, line: &str) -> Outcome {
    match decode_server_line(s.handle_line(hv, Ok(line.as_bytes().to_vec())).as_bytes()) {
        Ok(ServerLine::Response(Response { result, .. })) => result,
        other => panic!("{other:?}"),
    }
}

fn ok(s: &mut Server, hv: &mut Fake, line: &str) -> Reply {
    match reply(s, hv, line) {
        Outcome::Ok(r) => r,
        Outcome::Error(e) => panic!("{line}: {e:?}"),
    }
}

fn refused(s: &mut Server, hv: &mut Fake, line: &str) -> proto::ProtoError {
    match reply(s, hv, line) {
        Outcome::Ok(r) => panic!("{line}: unexpected {r:?}"),
        Outcome::Error(e) => e,
    }
}

fn ended(s: &mut Server, hv: &mut Fake) -> Vec<DomainInfo> {
    let _ = s.observe(hv);
    s.history.ended().cloned().collect()
}

fn live_names(hv: &Fake) -> Vec<(u32, String)> {
    hv.domains.iter().map(|d| (d.id, d.name.clone())).collect()
}

fn setup(config: &str) -> (Server, Fake) {
    let mut hv = Fake::new(64);
    let mut s = Server::with_history(2);
    ok(&mut s, &mut hv, HELLO);
    ok(&mut s, &mut hv, &create_line(config));
    (s, hv)
}

const T: &str = "[[domain]]\nname = \"t\"\nimage = \"ticker\"\nmemory = 4\n";

#[test]
fn a_guest_that_honours_a_shutdown_ends_as_itself() {
    let (mut s, mut hv) = setup(T);
    ok(
        &mut s,
        &mut hv,
        r#"{"id":1,"op":"shutdown","domain":"t","timeout_ms":500}"#,
    );
    assert_eq!(hv.requests, [(2, false)]);
    assert!(
        s.lifecycle.notes[0].contains("poweroff requested; destroyed if it has not ended in 0.5 s")
    );
    hv.now = 100_000_000;
    hv.end(2, 0, "exited");
    let e = ended(&mut s, &mut hv);
    assert_eq!(e[0].reason.as_deref(), Some("exited"));
    // Its deadline is gone with it: nothing is destroyed later.
    hv.now = 10_000_000_000;
    let _ = s.observe(&mut hv);
    assert_eq!(ended(&mut s, &mut hv).len(), 1);
}

#[test]
fn a_guest_that_ignores_it_is_destroyed_at_the_timeout_and_reported_forced() {
    let (mut s, mut hv) = setup(T);
    ok(
        &mut s,
        &mut hv,
        r#"{"id":1,"op":"shutdown","domain":"t","timeout_ms":500}"#,
    );
    hv.now = 499_999_999;
    assert!(ended(&mut s, &mut hv).is_empty(), "not yet");
    hv.now = 500_000_000;
    let e = ended(&mut s, &mut hv);
    assert_eq!(
        (e[0].name.as_str(), e[0].reason.as_deref()),
        ("t", Some("forced"))
    );
    assert!(
        s.lifecycle.notes.iter().any(|n| n
            == "domain 2 (t) did not end within 0.5 s of the poweroff request: destroyed (forced)"),
        "{:?}",
        s.lifecycle.notes
    );
    // Forced after a poweroff request: no policy, nothing restarted.
    assert_eq!(live_names(&hv), [(1, "dom0".into())]);
}

#[test]
fn force_destroys_at_once_and_a_forced_reboot_restarts() {
    let (mut s, mut hv) = setup(T);
    ok(
        &mut s,
        &mut hv,
        r#"{"id":1,"op":"shutdown","domain":"t","reboot":true,"force":true}"#,
    );
    assert!(hv.requests.is_empty(), "not asked");
    let e = ended(&mut s, &mut hv);
    assert_eq!(e[0].reason.as_deref(), Some("forced"));
    // on_reboot defaults to restart (as xl).
    assert_eq!(live_names(&hv), [(1, "dom0".into()), (3, "t".into())]);
}

#[test]
fn reboot_restarts_by_default_and_the_new_domain_keeps_its_policies() {
    let (mut s, mut hv) = setup(T);
    ok(
        &mut s,
        &mut hv,
        r#"{"id":1,"op":"shutdown","domain":"t","reboot":true}"#,
    );
    assert_eq!(hv.requests, [(2, true)]);
    hv.end(2, 0, "rebooted");
    let _ = s.observe(&mut hv);
    assert_eq!(live_names(&hv), [(1, "dom0".into()), (3, "t".into())]);
    assert_eq!(hv.domains[1].state, pvabi::DOMAIN_RUNNING, "started");
    // A poweroff of the new one: on_poweroff = destroy.
    hv.end(3, 0, "exited");
    let _ = s.observe(&mut hv);
    assert_eq!(live_names(&hv), [(1, "dom0".into())]);
}

#[test]
fn on_crash_restart_is_bounded_then_preserved() {
    let crashy =
        "[[domain]]\nname = \"c\"\nimage = \"hello\"\nmemory = 4\non_crash = \"restart\"\n";
    let (mut s, mut hv) = setup(crashy);
    let mut id = 2;
    for n in 1..=config::RESTART_LIMIT {
        hv.now += 1_000_000_000;
        // The guest says it crashed (SHUTDOWN_CRASH).
        hv.end(id, -1, "crashed");
        let _ = s.observe(&mut hv);
        let next = hv.domains.last().unwrap().id;
        assert_ne!(next, id, "restart {n}");
        assert!(
            s.lifecycle
                .notes
                .last()
                .unwrap()
                .contains(&alloc::format!("restarted as domain {next} (on_crash = \"restart\", restart {n} of at most 3 in 60.0 s)")),
            "{:?}",
            s.lifecycle.notes
        );
        id = next;
    }
    hv.now += 1_000_000_000;
    // The hypervisor kills it: on_crash applies as well.
    hv.end(id, -1, "killed");
    let e = ended(&mut s, &mut hv);
    assert_eq!(live_names(&hv), [(1, "dom0".into())], "stays down");
    assert!(
        s.lifecycle.notes.last().unwrap().contains(
            "was killed by the hypervisor: not restarted: it was restarted 3 times in the last 60.0 s (the limit); preserved"
        ),
        "{:?}",
        s.lifecycle.notes
    );
    // Preserved: kept although the history holds 2, newest ones pushed out.
    assert!(e.iter().any(|d| d.id == id), "{e:?}");
    assert_eq!(e.len(), 2, "history=2: {e:?}");
    // A minute later it may be restarted again.
    ok(&mut s, &mut hv, &create_line(crashy));
    hv.now += config::RESTART_WINDOW_NS;
    let last = hv.domains.last().unwrap().id;
    hv.end(last, -1, "killed");
    let _ = s.observe(&mut hv);
    assert_eq!(hv.domains.len(), 2, "restarted: {:?}", live_names(&hv));
    // The preserved one does not count against history=2.
    let e = ended(&mut s, &mut hv);
    assert!(e.iter().any(|d| d.id == id), "{e:?}");
    assert_eq!(e.len(), 3, "{e:?}");
    // forget drops the pin too.
    ok(
        &mut s,
        &mut hv,
        &alloc::format!(r#"{{"id":3,"op":"forget","domain":{id}}}"#),
    );
    assert!(!s.history.ended().any(|d| d.id == id));
}

#[test]
fn preserve_pins_and_destroy_does_not_and_operator_destroys_apply_nothing() {
    let two = "[[domain]]\nname = \"p\"\nimage = \"hello\"\nmemory = 4\non_poweroff = \"preserve\"\n\n\
               [[domain]]\nname = \"r\"\nimage = \"hello\"\nmemory = 4\non_poweroff = \"restart\"\n";
    let (mut s, mut hv) = setup(two);
    hv.end(2, 0, "exited");
    let _ = s.observe(&mut hv);
    assert!(
        s.lifecycle
            .notes
            .contains(&"domain 2 (p) powered off: preserved (on_poweroff = \"preserve\"): listed until hvctl forget".into())
    );
    // r is destroyed by the operator: its on_poweroff does not apply.
    ok(&mut s, &mut hv, r#"{"id":2,"op":"destroy","domain":"r"}"#);
    assert_eq!(live_names(&hv), [(1, "dom0".into())]);
}

#[test]
fn shutdown_refusals() {
    let (mut s, mut hv) = setup(T);
    let e = refused(
        &mut s,
        &mut hv,
        r#"{"id":1,"op":"shutdown","domain":"dom0"}"#,
    );
    assert_eq!(e.code, proto::ErrorCode::BadState);
    let e = refused(
        &mut s,
        &mut hv,
        r#"{"id":1,"op":"shutdown","domain":"nosuch"}"#,
    );
    assert_eq!(e.code, proto::ErrorCode::NoSuchDomain);
}

#[test]
fn set_sched_changes_what_info_shows_and_checks_ranges() {
    let (mut s, mut hv) = setup(T);
    let Reply::Domain { domain } = ok(
        &mut s,
        &mut hv,
        r#"{"id":1,"op":"set_sched","domain":"t","weight":512}"#,
    ) else {
        panic!()
    };
    assert_eq!((domain.weight, domain.cap), (512, 0));
    let Reply::Domain { domain } = ok(
        &mut s,
        &mut hv,
        r#"{"id":2,"op":"set_sched","domain":"t","cap":40}"#,
    ) else {
        panic!()
    };
    assert_eq!((domain.weight, domain.cap), (512, 40), "weight kept");
    let e = refused(
        &mut s,
        &mut hv,
        r#"{"id":3,"op":"set_sched","domain":"t","cap":101}"#,
    );
    assert_eq!(
        e.message,
        "cap 101 is over 100 (100 per vCPU; domain 2 (t) has 1 vCPUs)"
    );
    let e = refused(
        &mut s,
        &mut hv,
        r#"{"id":4,"op":"set_sched","domain":"t","weight":0}"#,
    );
    assert_eq!(e.message, "weight 0 is out of range 1 ..= 65535");
    let e = refused(&mut s, &mut hv, r#"{"id":5,"op":"set_sched","domain":"t"}"#);
    assert_eq!(e.code, proto::ErrorCode::BadRequest);
    // The control domain's own weight may change too.
    ok(
        &mut s,
        &mut hv,
        r#"{"id":6,"op":"set_sched","domain":1,"weight":1024}"#,
    );
    assert_eq!(hv.domains[0].weight, 1024);
}

#[test]
fn uptime_counts_from_creation_even_if_it_ended_before_the_first_look() {
    // The dom0_ended race: a domain that runs and ends before dom0 first
    // lists it used to be reported with uptime 0.
    let mut hv = Fake::new(64);
    let mut s = Server::new();
    ok(&mut s, &mut hv, HELLO);
    hv.now = 1_000_000_000;
    ok(&mut s, &mut hv, &create_line(T));
    hv.now = 1_300_000_000;
    hv.end(2, 7, "exited");
    let e = ended(&mut s, &mut hv);
    assert_eq!(e[0].uptime_ns, Some(300_000_000));
}

/// A domain gone from the list before its end report is kept is looked at
/// again without an event: the service's deadline covers it until the
/// report comes (or [`history::PENDING_NS`] passed), and only then.
#[test]
fn a_late_end_report_sets_a_deadline_until_it_comes() {
    let (mut s, mut hv) = setup(T);
    let id = hv.domains.iter().find(|d| d.name == "t").unwrap().id;
    let _ = s.observe(&mut hv);
    assert_eq!(s.next_deadline(), None, "nothing pending");
    hv.now = 1_000;
    hv.domains.retain(|d| d.id != id);
    assert!(ended(&mut s, &mut hv).is_empty(), "no report yet");
    assert_eq!(s.next_deadline(), Some(1_000 + history::PENDING_NS));
    hv.ended.push((
        id,
        HvEnded {
            exit_code: 0,
            reason: "exited",
            kill_reason: None,
        },
    ));
    assert_eq!(ended(&mut s, &mut hv).len(), 1);
    assert_eq!(s.next_deadline(), None, "recorded: no deadline left");
}
