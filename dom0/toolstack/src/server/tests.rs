//! The service against a fake hypervisor: every op, every refusal, bad
//! lines, and all-or-nothing creation.
#![allow(clippy::unwrap_used)]

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::config::DomainConfig;
use crate::proto::{Outcome, Response, ServerLine, decode_server_line};

/// Domain 1 is dom0; `free` pages of 1 MiB; a create fails with ENOMEM past it.
pub(super) struct Fake {
    pub(super) domains: Vec<HvDomain>,
    next: u32,
    free_mib: u64,
    pub(super) destroyed: Vec<u32>,
    /// Console input taken, per domain, and how much more fits.
    input: Vec<(u32, Vec<u8>)>,
    input_room: usize,
    /// How ended domains ended (by id), and the clock.
    pub(super) ended: Vec<(u32, HvEnded)>,
    pub(super) now: u64,
    /// Shutdown requests made: (domain, reboot).
    pub(super) requests: Vec<(u32, bool)>,
    /// Memory targets set: (domain, pages).
    pub(super) targets: Vec<(u32, u64)>,
    /// PCI functions moved: (domain, SBDF).
    pub(super) assigned: Vec<(u32, u32)>,
}

impl Fake {
    pub(super) fn new(free_mib: u64) -> Self {
        let dom0 = HvDomain {
            id: 1,
            name: "dom0".into(),
            state: pvabi::DOMAIN_RUNNING,
            exit_code: 0,
            memory_bytes: 8 << 20,
            vcpus: 1,
            weight: 256,
            cap: 0,
            cpu_time_ns: 5,
            privileged: true,
            heap_budget: 1 << 20,
            heap_used: 1 << 12,
            exits: 0,
            current_bytes: 8 << 20,
            target_bytes: None,
        };
        Self {
            domains: vec![dom0],
            next: 2,
            free_mib,
            destroyed: Vec::new(),
            input: Vec::new(),
            input_room: 1 << 20,
            ended: Vec::new(),
            now: 0,
            requests: Vec::new(),
            targets: Vec::new(),
            assigned: Vec::new(),
        }
    }

    /// Domain `id` ends as `reason` (`exited`, `rebooted`, `killed`) with
    /// `code` and is freed.
    pub(super) fn end(&mut self, id: u32, code: i32, reason: &'static str) {
        if let Some(i) = self.domains.iter().position(|d| d.id == id) {
            let d = self.domains.remove(i);
            self.free_mib += d.memory_bytes >> 20;
        }
        self.ended.push((
            id,
            HvEnded {
                exit_code: code,
                reason,
                kill_reason: None,
            },
        ));
    }

    /// Domain `id` exits by itself with `code` and is freed.
    pub(super) fn exit(&mut self, id: u32, code: i32) {
        self.domains.retain(|d| d.id != id);
        let reason = "exited";
        self.ended.push((
            id,
            HvEnded {
                exit_code: code,
                reason,
                kill_reason: None,
            },
        ));
    }
}

impl Hypervisor for Fake {
    fn list(&mut self) -> Result<Vec<u32>, Error> {
        Ok(self.domains.iter().map(|d| d.id).collect())
    }
    fn info(&mut self, id: u32) -> Result<HvDomain, Error> {
        self.domains
            .iter()
            .find(|d| d.id == id)
            .cloned()
            .ok_or(Error::NoEntry)
    }
    fn images(&mut self) -> Vec<String> {
        vec!["hello".into(), "ticker".into()]
    }
    fn create(&mut self, d: &DomainConfig) -> Result<u32, Error> {
        if d.memory_mib > self.free_mib {
            return Err(Error::NoMem);
        }
        self.free_mib -= d.memory_mib;
        let id = self.next;
        self.next += 1;
        self.domains.push(HvDomain {
            id,
            name: d.name.clone(),
            state: pvabi::DOMAIN_PAUSED,
            exit_code: 0,
            memory_bytes: d.memory_bytes(),
            vcpus: d.vcpus,
            weight: d.weight,
            cap: d.cap,
            cpu_time_ns: 0,
            privileged: false,
            heap_budget: d.heap_budget_bytes(),
            heap_used: 0,
            exits: 0,
            current_bytes: d.memory_bytes(),
            target_bytes: Some(d.memory_bytes()),
        });
        Ok(id)
    }
    fn unpause(&mut self, id: u32) -> Result<(), Error> {
        self.set(id, pvabi::DOMAIN_RUNNING)
    }
    fn pause(&mut self, id: u32) -> Result<(), Error> {
        self.set(id, pvabi::DOMAIN_PAUSED)
    }
    fn destroy(&mut self, id: u32) -> Result<(), Error> {
        let i = self
            .domains
            .iter()
            .position(|d| d.id == id)
            .ok_or(Error::NoEntry)?;
        let d = self.domains.remove(i);
        self.free_mib += d.memory_bytes >> 20;
        self.destroyed.push(id);
        let reason = "destroyed";
        self.ended.push((
            id,
            HvEnded {
                exit_code: -1,
                reason,
                kill_reason: None,
            },
        ));
        Ok(())
    }
    fn ended(&mut self, id: u32) -> Result<HvEnded, Error> {
        let e = self.ended.iter().rev().find(|(i, _)| *i == id);
        e.map(|(_, e)| e.clone()).ok_or(Error::NoEntry)
    }
    fn now_ns(&mut self) -> u64 {
        self.now
    }
    fn request_shutdown(&mut self, id: u32, reboot: bool) -> Result<(), Error> {
        self.info(id)?;
        self.requests.push((id, reboot));
        Ok(())
    }
    fn set_sched(&mut self, id: u32, weight: u32, cap: u32) -> Result<(), Error> {
        let d = self
            .domains
            .iter_mut()
            .find(|d| d.id == id)
            .ok_or(Error::NoEntry)?;
        d.weight = weight;
        d.cap = cap;
        Ok(())
    }
    fn set_mem_target(&mut self, id: u32, pages: u64) -> Result<u64, Error> {
        let d = self
            .domains
            .iter_mut()
            .find(|d| d.id == id)
            .ok_or(Error::NoEntry)?;
        d.target_bytes = Some(pages * 4096);
        self.targets.push((id, pages));
        Ok(pages)
    }
    fn free_bytes(&mut self) -> Option<u64> {
        Some(self.free_mib << 20)
    }
    /// The machine has dom0's edu at 0000:00:06.0 and the hypervisor's
    /// bridge at 0000:00:1f.0; a domain that runs takes none.
    fn assign_pci(&mut self, id: u32, sbdf: u32) -> Result<(), Error> {
        if self.info(id)?.state != pvabi::DOMAIN_PAUSED {
            return Err(Error::Busy);
        }
        match sbdf {
            s if s == pvabi::sbdf(0, 0, 0x1f, 0) => Err(Error::Perm),
            s if s != pvabi::sbdf(0, 0, 6, 0) => Err(Error::NoEntry),
            _ if self.assigned.iter().any(|&(_, s)| s == sbdf) => Err(Error::Exists),
            _ => {
                self.assigned.push((id, sbdf));
                Ok(())
            }
        }
    }
    fn host(&mut self) -> Result<HvHost, Error> {
        Ok(HvHost {
            cpus: 2,
            total_bytes: 128 << 20,
            free_bytes: self.free_mib << 20,
            domains: self.domains.len() as u32,
            abi: pvabi::PVABI_VERSION,
        })
    }
    fn console_input(&mut self, id: u32, bytes: &[u8]) -> Result<usize, Error> {
        self.info(id)?;
        // As the hypercall: at most MGMT_IO_MAX bytes a call.
        let n = bytes
            .len()
            .min(self.input_room)
            .min(pvabi::MGMT_IO_MAX as usize);
        self.input_room -= n;
        self.input.push((id, bytes[..n].to_vec()));
        Ok(n)
    }
}

impl Fake {
    fn set(&mut self, id: u32, state: u32) -> Result<(), Error> {
        let d = self
            .domains
            .iter_mut()
            .find(|d| d.id == id)
            .ok_or(Error::NoEntry)?;
        d.state = state;
        Ok(())
    }
}

pub(super) fn ask(s: &mut Server, hv: &mut Fake, line: &str) -> Response {
    let out = s.handle_line(hv, Ok(line.as_bytes().to_vec()));
    assert!(out.ends_with('\n'), "{out}");
    match decode_server_line(out.as_bytes()).unwrap() {
        ServerLine::Response(r) => r,
        ServerLine::Event(e) => panic!("event {e:?}"),
    }
}

fn ok(s: &mut Server, hv: &mut Fake, line: &str) -> Reply {
    match ask(s, hv, line).result {
        Outcome::Ok(r) => r,
        Outcome::Error(e) => panic!("{line}: {e:?}"),
    }
}

fn code(s: &mut Server, hv: &mut Fake, line: &str) -> ErrorCode {
    match ask(s, hv, line).result {
        Outcome::Ok(r) => panic!("{line}: unexpected {r:?}"),
        Outcome::Error(e) => e.code,
    }
}

pub(super) const HELLO: &str = r#"{"id":0,"op":"hello","version":1,"client":"test"}"#;
const THREE: &str = "[[domain]]\nname = \"a\"\nimage = \"ticker\"\nmemory = 4\n\n\
[[domain]]\nname = \"b\"\nimage = \"hello\"\nmemory = 4\n\n\
[[domain]]\nname = \"c\"\nimage = \"ticker\"\nmemory = 4\nautostart = false\n";

pub(super) fn create_line(config: &str) -> String {
    let req = crate::proto::Request {
        id: 9,
        op: Op::Create {
            file: "g.toml".into(),
            config: config.into(),
        },
    };
    crate::proto::encode_request(&req).unwrap()
}

#[test]
fn hello_first_then_every_op() {
    let mut hv = Fake::new(64);
    let mut s = Server::new();
    assert_eq!(
        code(&mut s, &mut hv, r#"{"id":1,"op":"list"}"#),
        ErrorCode::VersionMismatch
    );
    let bad = r#"{"id":1,"op":"hello","version":2,"client":"x"}"#;
    assert_eq!(code(&mut s, &mut hv, bad), ErrorCode::VersionMismatch);
    assert!(matches!(
        ok(&mut s, &mut hv, HELLO),
        Reply::Hello { version: 1, .. }
    ));
    let Reply::Domains { domains } = ok(&mut s, &mut hv, &create_line(THREE)) else {
        panic!()
    };
    let states: Vec<(&str, DomainState)> =
        domains.iter().map(|d| (d.name.as_str(), d.state)).collect();
    assert_eq!(
        states,
        [
            ("a", DomainState::Running),
            ("b", DomainState::Running),
            ("c", DomainState::Paused)
        ]
    );
    let Reply::Domains { domains } = ok(&mut s, &mut hv, r#"{"id":2,"op":"list"}"#) else {
        panic!()
    };
    assert_eq!(domains.len(), 4, "dom0 and three");
    let Reply::Domain { domain } = ok(&mut s, &mut hv, r#"{"id":3,"op":"info","domain":"c"}"#)
    else {
        panic!()
    };
    assert_eq!((domain.id, domain.memory_bytes), (4, 4 << 20));
    let unpause = r#"{"id":4,"op":"unpause","domain":4}"#;
    assert!(matches!(ok(&mut s, &mut hv, unpause), Reply::Domain { .. }));
    assert_eq!(
        code(&mut s, &mut hv, unpause),
        ErrorCode::BadState,
        "already running"
    );
    let pause = r#"{"id":5,"op":"pause","domain":"a"}"#;
    let Reply::Domain { domain } = ok(&mut s, &mut hv, pause) else {
        panic!()
    };
    assert_eq!(domain.state, DomainState::Paused);
    let attach = r#"{"id":6,"op":"console_attach","domain":"b"}"#;
    assert_eq!(
        ok(&mut s, &mut hv, attach),
        Reply::Attached {
            domain: 3,
            name: "b".into()
        }
    );
    assert_eq!(s.watchers(3), [None]);
    ok(&mut s, &mut hv, HELLO);
    assert!(s.watchers(3).is_empty(), "a hello starts a new session");
    ok(&mut s, &mut hv, attach);
    let destroy = r#"{"id":7,"op":"destroy","domain":"b"}"#;
    assert_eq!(ok(&mut s, &mut hv, destroy), Reply::Done);
    assert_eq!(
        (hv.destroyed.as_slice(), s.watchers(3)),
        ([3].as_slice(), Vec::new())
    );
    assert_eq!(code(&mut s, &mut hv, destroy), ErrorCode::NoSuchDomain);
    for dom0 in ["pause", "destroy", "console_attach"] {
        let line = alloc::format!(r#"{{"id":8,"op":"{dom0}","domain":1}}"#);
        assert_eq!(
            code(&mut s, &mut hv, &line),
            ErrorCode::BadState,
            "{dom0} dom0"
        );
    }
    let input = r#"{"id":8,"op":"console_input","domain":1,"data":"x"}"#;
    assert_eq!(code(&mut s, &mut hv, input), ErrorCode::BadState, "dom0");
}

#[test]
fn console_input_reaches_the_domain_in_order() {
    let mut hv = Fake::new(64);
    let mut s = Server::new();
    ok(&mut s, &mut hv, HELLO);
    ok(&mut s, &mut hv, &create_line(THREE));
    let input = r#"{"id":8,"op":"console_input","domain":"a","data":"ls\r"}"#;
    assert_eq!(ok(&mut s, &mut hv, input), Reply::Done);
    assert_eq!(hv.input, [(2, b"ls\r".to_vec())]);
    // Longer than one call: split, nothing lost.
    let long = "y".repeat(5000);
    let line = alloc::format!(r#"{{"id":9,"op":"console_input","domain":2,"data":"{long}"}}"#);
    assert_eq!(ok(&mut s, &mut hv, &line), Reply::Done);
    let lens: Vec<usize> = hv.input.iter().skip(1).map(|(_, b)| b.len()).collect();
    assert_eq!(lens, [4096, 904]);
    // A full queue: how much went in, no_resources.
    hv.input_room = 2;
    let line = r#"{"id":10,"op":"console_input","domain":"a","data":"abcd"}"#;
    let resp = s.handle_line(&mut hv, Ok(line.as_bytes().to_vec()));
    assert!(
        resp.contains("no_resources") && resp.contains("full: 2 of 4 bytes taken"),
        "{resp}"
    );
    let nosuch = r#"{"id":11,"op":"console_input","domain":"zz","data":"x"}"#;
    assert_eq!(code(&mut s, &mut hv, nosuch), ErrorCode::NoSuchDomain);
    // An empty string is accepted and queues nothing.
    let before = hv.input.len();
    let empty = r#"{"id":12,"op":"console_input","domain":"a","data":""}"#;
    assert_eq!(ok(&mut s, &mut hv, empty), Reply::Done);
    assert_eq!(hv.input.len(), before);
}

#[test]
fn bad_lines_get_errors_and_the_service_goes_on() {
    let mut hv = Fake::new(64);
    let mut s = Server::new();
    for line in [
        "",
        "nonsense",
        "[1,2]",
        r#"{"id":3}"#,
        r#"{"id":3,"op":"fly"}"#,
        "{\"id\":\u{0}",
    ] {
        let r = ask(&mut s, &mut hv, line);
        assert!(
            matches!(r.result, Outcome::Error(ref e) if e.code == ErrorCode::BadRequest),
            "{line}: {r:?}"
        );
    }
    assert_eq!(ask(&mut s, &mut hv, r#"{"id":3,"op":"fly"}"#).id, Some(3));
    let too_long = ProtoError::new(ErrorCode::LineTooLong, "long");
    let out = s.handle_line(&mut hv, Err(too_long));
    assert!(
        out.contains("line_too_long") && out.contains("\"id\":null"),
        "{out}"
    );
    let r = s.handle_line(&mut hv, Ok(vec![0xff, 0xfe, b'\n']));
    assert!(r.contains("bad_request"), "{r}");
    assert!(matches!(ok(&mut s, &mut hv, HELLO), Reply::Hello { .. }));
}

#[test]
fn a_bad_configuration_creates_nothing_and_names_file_line_field() {
    let mut hv = Fake::new(64);
    let mut s = Server::new();
    ok(&mut s, &mut hv, HELLO);
    let bad = "[[domain]]\nname = \"a\"\nimage = \"nginx\"\nmemory = 5\n";
    let r = ask(&mut s, &mut hv, &create_line(bad));
    let Outcome::Error(e) = r.result else {
        panic!("{r:?}")
    };
    assert_eq!(e.code, ErrorCode::BadConfig);
    assert!(
        e.message
            .contains("g.toml:3:9: domain \"a\": field \"image\""),
        "{}",
        e.message
    );
    assert!(
        e.message
            .contains("g.toml:4:10: domain \"a\": field \"memory\""),
        "{}",
        e.message
    );
    assert_eq!(hv.domains.len(), 1);
}

#[test]
fn a_failed_create_destroys_what_the_file_built() {
    let mut hv = Fake::new(10);
    let mut s = Server::new();
    ok(&mut s, &mut hv, HELLO);
    let cfg = "[[domain]]\nname = \"a\"\nimage = \"hello\"\nmemory = 4\n\n\
               [[domain]]\nname = \"big\"\nimage = \"hello\"\nmemory = 8\n";
    let r = ask(&mut s, &mut hv, &create_line(cfg));
    let Outcome::Error(e) = r.result else {
        panic!("{r:?}")
    };
    assert_eq!(e.code, ErrorCode::NoResources);
    assert!(
        e.message
            .starts_with("g.toml:6: domain \"big\": not enough free memory: 8 MiB asked, 6 MiB free; nothing from g.toml was created"),
        "{}",
        e.message
    );
    assert!(
        e.message
            .ends_with("(the domain built before it was destroyed again)"),
        "{}",
        e.message
    );
    assert_eq!(
        (hv.domains.len(), hv.free_mib, hv.destroyed.as_slice()),
        (1, 10, [2].as_slice())
    );
    // A name that is taken is refused before anything is built.
    ok(
        &mut s,
        &mut hv,
        &create_line("[[domain]]\nname = \"a\"\nimage = \"hello\"\nmemory = 4\n"),
    );
    let r = ask(&mut s, &mut hv, &create_line(cfg));
    assert!(
        matches!(r.result, Outcome::Error(ref e) if e.code == ErrorCode::Exists),
        "{r:?}"
    );
    assert_eq!(hv.domains.len(), 2);
    let failure = CreateFailure {
        file: "f.toml".to_string(),
        asked_mib: 4,
        free_bytes: None,
        domain: "x".to_string(),
        line: 1,
        error: create::CreateError::Exists,
        destroyed: 0,
    };
    assert_eq!(failure.to_proto().code, ErrorCode::Exists);
    assert_eq!(
        failure.to_proto().message,
        "f.toml:1: domain \"x\": a domain of that name exists already; nothing from f.toml was created"
    );
    // A file with no domain is an error, not a silent success.
    for empty in ["", "# nothing\n"] {
        let r = ask(&mut s, &mut hv, &create_line(empty));
        assert!(
            matches!(r.result, Outcome::Error(ref e) if e.code == ErrorCode::BadConfig && e.message == "g.toml: no [[domain]] in it: nothing to create"),
            "{r:?}"
        );
    }
}

/// Tagged sessions are apart: each needs its hello, attaches its own
/// consoles, and `bye` or an untagged hello ends them.
#[test]
fn sessions_are_separate() {
    let mut hv = Fake::new(64);
    let mut s = Server::new();
    let line = |s: &mut Server, hv: &mut Fake, session, l: &str| {
        let out = s.handle_session_line(hv, session, Ok(l.as_bytes().to_vec()));
        match decode_server_line(out.as_bytes()) {
            Ok(ServerLine::Response(Response { result, .. })) => result,
            other => panic!("{other:?}"),
        }
    };
    let is_ok = |o: &Outcome| matches!(o, Outcome::Ok(_));
    let create = r#"{"id":2,"op":"create","file":"f.toml","config":"[[domain]]\nname = \"a\"\nimage = \"hello\"\nmemory = 4\n"}"#;
    assert!(is_ok(&line(&mut s, &mut hv, Some(1), HELLO)));
    assert!(is_ok(&line(&mut s, &mut hv, Some(1), create)));
    let list = r#"{"id":3,"op":"list"}"#;
    let attach = r#"{"id":4,"op":"console_attach","domain":"a"}"#;
    assert!(
        matches!(line(&mut s, &mut hv, Some(2), list), Outcome::Error(e) if e.code == ErrorCode::VersionMismatch),
        "session 2 has not said hello"
    );
    assert!(is_ok(&line(&mut s, &mut hv, Some(2), HELLO)));
    assert!(is_ok(&line(&mut s, &mut hv, Some(2), list)));
    assert!(is_ok(&line(&mut s, &mut hv, Some(1), attach)));
    assert!(is_ok(&line(&mut s, &mut hv, Some(2), attach)));
    assert_eq!(s.watchers(2), [Some(1), Some(2)]);
    // A hello of session 2 restarts only session 2.
    assert!(is_ok(&line(&mut s, &mut hv, Some(2), HELLO)));
    assert_eq!(s.watchers(2), [Some(1)]);
    assert!(is_ok(&line(&mut s, &mut hv, Some(2), attach)));
    // bye ends session 1: its console detaches, it needs hello again.
    assert!(is_ok(&line(
        &mut s,
        &mut hv,
        Some(1),
        r#"{"id":5,"op":"bye"}"#
    )));
    assert_eq!(s.watchers(2), [Some(2)]);
    assert!(!is_ok(&line(&mut s, &mut hv, Some(1), list)));
    assert!(is_ok(&line(&mut s, &mut hv, Some(2), list)));
    // An untagged hello: a new owner of the line, every session ends.
    assert!(is_ok(&line(&mut s, &mut hv, None, HELLO)));
    assert!(s.watchers(2).is_empty());
    assert!(!is_ok(&line(&mut s, &mut hv, Some(2), list)));
    // At most MAX_SESSIONS: the oldest goes.
    for n in 0..=MAX_SESSIONS as u64 {
        assert!(is_ok(&line(&mut s, &mut hv, Some(100 + n), HELLO)));
    }
    assert!(!is_ok(&line(&mut s, &mut hv, None, list)), "untagged ended");
    assert!(
        !is_ok(&line(&mut s, &mut hv, Some(100), list)),
        "oldest ended"
    );
    assert!(is_ok(&line(&mut s, &mut hv, Some(101), list)));
}

#[test]
fn host_inventory() {
    let mut hv = Fake::new(64);
    let mut s = Server::new();
    ok(&mut s, &mut hv, HELLO);
    let Reply::Host(h) = ok(&mut s, &mut hv, r#"{"id":2,"op":"host"}"#) else {
        panic!()
    };
    assert_eq!(
        (
            h.cpus,
            h.memory_total_bytes,
            h.memory_free_bytes,
            h.domains,
            h.ended_domains
        ),
        (2, 128 << 20, 64 << 20, 1, 0)
    );
    assert_eq!(h.pvabi, h.hypervisor_pvabi);
    assert!(h.dom0.starts_with("kestrel-dom0 "), "{}", h.dom0);
}
