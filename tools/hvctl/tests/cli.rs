//! Runs the real `hvctl` binary against an in-test server speaking the
//! management protocol on a unix socket: a stand-in for dom0's service
//! (which is not written yet), holding domains in memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kestrel_toolstack::config::{self, Images, Limits};
use kestrel_toolstack::proto::{
    self, DomainInfo, DomainRef, DomainState, ErrorCode, Event, Op, Outcome, ProtoError, Reply,
    Response,
};

/// How the stand-in behaves.
#[derive(Clone, Copy)]
enum Mode {
    Good,
    /// Answers hello with another protocol version.
    OldVersion,
    /// Answers with a line that is not the protocol.
    Garbage,
}

struct Server {
    path: PathBuf,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tmpdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hvctl-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn start(tag: &str, mode: Mode) -> Server {
    let dir = tmpdir(tag);
    let path = dir.join("mgmt.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let mut doms = vec![
            dom(1, "hello", DomainState::Running, 16, 1),
            dom(3, "web", DomainState::Paused, 64, 2),
        ];
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            serve(conn, mode, &mut doms);
        }
    });
    Server { path, dir }
}

fn dom(id: u32, name: &str, state: DomainState, mib: u64, vcpus: u32) -> DomainInfo {
    DomainInfo {
        id,
        name: name.into(),
        state,
        memory_bytes: mib << 20,
        vcpus,
        weight: 256,
        cap: 0,
        cpu_time_ns: 1_500_000_000,
        heap_budget_bytes: 0,
        heap_used_bytes: 0,
    }
}

fn serve(conn: UnixStream, mode: Mode, doms: &mut Vec<DomainInfo>) {
    let mut out = conn.try_clone().unwrap();
    for line in BufReader::new(conn).split(b'\n') {
        let Ok(line) = line else { return };
        let (resp, events) = match proto::decode_request(&line) {
            Err(e) => (e.into_response(), vec![]),
            Ok(req) => {
                let (result, events) = handle(req.op, mode, doms);
                (
                    Response {
                        id: Some(req.id),
                        result,
                    },
                    events,
                )
            }
        };
        let mut text = proto::encode_response(&resp);
        if let Mode::Garbage = mode {
            text = "this is not json\n".into();
        }
        for e in events {
            text.push_str(&proto::encode_event(&e).unwrap());
        }
        if out.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

fn err(code: ErrorCode, msg: String) -> Outcome {
    Outcome::Error(ProtoError::new(code, msg))
}

fn handle(op: Op, mode: Mode, doms: &mut Vec<DomainInfo>) -> (Outcome, Vec<Event>) {
    let find = |doms: &[DomainInfo], r: &DomainRef| {
        doms.iter().position(|d| match r {
            DomainRef::Id(id) => d.id == *id,
            DomainRef::Name(n) => d.name == *n,
        })
    };
    let mut events = vec![];
    let target = match &op {
        Op::Destroy { domain }
        | Op::Pause { domain }
        | Op::Unpause { domain }
        | Op::Info { domain }
        | Op::ConsoleAttach { domain }
        | Op::ConsoleDetach { domain }
        | Op::ConsoleInput { domain, .. } => match find(doms, domain) {
            Some(i) => Some(i),
            None => {
                return (
                    err(ErrorCode::NoSuchDomain, format!("no domain \"{domain}\"")),
                    events,
                );
            }
        },
        _ => None,
    };
    let i = target.unwrap_or(0);
    let outcome = match op {
        Op::Hello { .. } => {
            let version = if let Mode::OldVersion = mode {
                0
            } else {
                proto::VERSION
            };
            Outcome::Ok(Reply::Hello {
                version,
                server: "fake-dom0".into(),
            })
        }
        Op::List => Outcome::Ok(Reply::Domains {
            domains: doms.clone(),
        }),
        Op::Create { file, config } => {
            match config::parse(
                &file,
                &config,
                &Limits::default(),
                Images::Only(&["hello", "web.elf"]),
            ) {
                Err(e) => err(ErrorCode::BadConfig, e.to_string()),
                Ok(c) => {
                    let mut made = vec![];
                    for d in c.domains {
                        let id = doms.iter().map(|d| d.id).max().unwrap_or(0) + 1;
                        let state = if d.autostart {
                            DomainState::Running
                        } else {
                            DomainState::Created
                        };
                        made.push(dom(id, &d.name, state, d.memory_mib, d.vcpus));
                        doms.push(made.last().unwrap().clone());
                    }
                    Outcome::Ok(Reply::Domains { domains: made })
                }
            }
        }
        Op::Destroy { .. } => {
            doms.remove(i);
            Outcome::Ok(Reply::Done)
        }
        Op::Pause { .. } | Op::Unpause { .. } => {
            let pause = matches!(op, Op::Pause { .. });
            let (from, to) = if pause {
                (DomainState::Running, DomainState::Paused)
            } else {
                (DomainState::Paused, DomainState::Running)
            };
            if doms[i].state == from {
                doms[i].state = to;
                Outcome::Ok(Reply::Domain {
                    domain: doms[i].clone(),
                })
            } else {
                err(
                    ErrorCode::BadState,
                    format!("domain {} is {}", doms[i].name, doms[i].state.as_str()),
                )
            }
        }
        Op::Info { .. } => Outcome::Ok(Reply::Domain {
            domain: doms[i].clone(),
        }),
        Op::ConsoleAttach { .. } => {
            let d = &doms[i];
            events.push(Event::Console {
                domain: d.id,
                data: format!("Welcome to {}\n", d.name),
            });
            Outcome::Ok(Reply::Attached {
                domain: d.id,
                name: d.name.clone(),
            })
        }
        Op::ConsoleInput { data, .. } => {
            events.push(Event::Console {
                domain: doms[i].id,
                data: format!("echo: {data}"),
            });
            Outcome::Ok(Reply::Done)
        }
        Op::ConsoleDetach { .. } => Outcome::Ok(Reply::Done),
    };
    (outcome, events)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn hvctl(sock: &Path, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hvctl"))
        .arg("--socket")
        .arg(sock)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

#[test]
fn list_info_pause_unpause_destroy() {
    let s = start("life", Mode::Good);
    let r = hvctl(&s.path, &["list"], b"");
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(
        r.stdout,
        "\
ID  NAME   STATE    MEMORY  VCPUS  WEIGHT  CAP  CPU TIME
 1  hello  running  16 MiB      1     256    -     1.5 s
 3  web    paused   64 MiB      2     256    -     1.5 s
"
    );
    let r = hvctl(&s.path, &["info", "3"], b"");
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.starts_with(
            "id:        3\nname:      web\nstate:     paused\nmemory:    64 MiB (67108864 bytes)\n"
        ),
        "{}",
        r.stdout
    );
    let r = hvctl(&s.path, &["unpause", "web"], b"");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "unpaused domain 3 (web): running\n")
    );
    let r = hvctl(&s.path, &["pause", "web"], b"");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "paused domain 3 (web): paused\n")
    );
    // Pausing again: dom0 refuses, exit 1, its message on stderr.
    let r = hvctl(&s.path, &["pause", "web"], b"");
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout, "");
    assert_eq!(
        r.stderr,
        "hvctl: dom0 refused: domain web is paused (bad_state)\n"
    );
    let r = hvctl(&s.path, &["destroy", "hello"], b"");
    assert_eq!((r.code, r.stdout.as_str()), (0, "destroyed domain hello\n"));
    let r = hvctl(&s.path, &["--json", "list"], b"");
    assert_eq!(r.code, 0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["kind"], "domains");
    assert_eq!(v["domains"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["domains"][0]["name"], "web");
    assert_eq!(v["domains"][0]["memory_bytes"], 64u64 << 20);
}

#[test]
fn unknown_domain() {
    let s = start("unknown", Mode::Good);
    for cmd in ["info", "pause", "unpause", "destroy", "console"] {
        let r = hvctl(&s.path, &[cmd, "nosuch"], b"");
        assert_eq!(r.code, 1, "{cmd}: {}", r.stderr);
        assert_eq!(
            r.stderr, "hvctl: dom0 refused: no domain \"nosuch\" (no_such_domain)\n",
            "{cmd}"
        );
    }
    let r = hvctl(&s.path, &["--json", "info", "42"], b"");
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stdout,
        "{\"error\":{\"code\":\"no_such_domain\",\"message\":\"no domain \\\"42\\\"\"}}\n"
    );
}

#[test]
fn create_checks_locally_then_remotely() {
    let s = start("create", Mode::Good);
    let good = s.dir.join("good.toml");
    std::fs::write(&good, "[[domain]]\nname = \"db\"\nimage = \"hello\"\nmemory = 32\n\n[[domain]]\nname = \"later\"\nimage = \"hello\"\nmemory = 8\nautostart = false\n").unwrap();
    let r = hvctl(&s.path, &["create", good.to_str().unwrap()], b"");
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(
        r.stdout,
        "created domain 4 (db): running\ncreated domain 5 (later): created\n"
    );
    assert!(hvctl(&s.path, &["list"], b"").stdout.contains(" 4  db "));

    // A local error: named by file, line and field; nothing sent (exit 2).
    let bad = s.dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[domain]]\nname = \"x\"\nimage = \"hello\"\nmemory = \"lots\"\n",
    )
    .unwrap();
    let r = hvctl(&s.path, &["create", bad.to_str().unwrap()], b"");
    assert_eq!(r.code, 2);
    let want = format!(
        "{}:4:10: domain \"x\": field \"memory\": expected an integer number of MiB, found \"lots\"\n",
        bad.display()
    );
    assert!(r.stderr.ends_with(&want), "{}", r.stderr);
    assert!(!hvctl(&s.path, &["list"], b"").stdout.contains(" x "));

    // dom0's own check (the image is not one of its boot modules): exit 1.
    let remote = s.dir.join("remote.toml");
    std::fs::write(
        &remote,
        "[[domain]]\nname = \"y\"\nimage = \"nginx.elf\"\nmemory = 8\n",
    )
    .unwrap();
    let r = hvctl(&s.path, &["create", remote.to_str().unwrap()], b"");
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains(":3:9: domain \"y\": field \"image\": \"nginx.elf\" is not a boot module (modules: hello, web.elf) (bad_config)"), "{}", r.stderr);

    let r = hvctl(&s.path, &["create", "/nonexistent/x.toml"], b"");
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .starts_with("hvctl: cannot read /nonexistent/x.toml: "),
        "{}",
        r.stderr
    );
}

#[test]
fn console_streams_and_detaches() {
    let s = start("console", Mode::Good);
    let r = hvctl(&s.path, &["console", "web"], b"hello\n\x1dignored");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "Welcome to web\necho: hello\n");
    assert!(
        r.stderr
            .contains("attached to domain 3 (web); Ctrl-] detaches"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("detached from domain 3"), "{}", r.stderr);
}

#[test]
fn connection_and_protocol_errors() {
    let dir = tmpdir("unreachable");
    let r = hvctl(&dir.join("nobody.sock"), &["list"], b"");
    assert_eq!(r.code, 3);
    assert!(
        r.stderr.starts_with("hvctl: cannot reach dom0 at "),
        "{}",
        r.stderr
    );
    let _ = std::fs::remove_dir_all(dir);

    let s = start("old", Mode::OldVersion);
    let r = hvctl(&s.path, &["list"], b"");
    assert_eq!(r.code, 4);
    assert_eq!(
        r.stderr,
        "hvctl: protocol error: fake-dom0 speaks protocol version 0, hvctl speaks 1\n"
    );

    let s = start("garbage", Mode::Garbage);
    let r = hvctl(&s.path, &["list"], b"");
    assert_eq!(r.code, 4);
    assert!(
        r.stderr
            .starts_with("hvctl: protocol error: undecodable line from dom0: "),
        "{}",
        r.stderr
    );

    // Usage errors are exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_hvctl"))
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--socket PATH or --tcp HOST:PORT"));
    let out = Command::new(env!("CARGO_BIN_EXE_hvctl"))
        .arg("bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
