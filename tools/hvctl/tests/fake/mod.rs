//! The stand-in for dom0's management service the hvctl tests run the
//! real binary against (see `cli.rs`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod images;
pub mod xfer;

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
pub enum Mode {
    Good,
    /// Answers hello with another protocol version.
    OldVersion,
    /// Answers with a line that is not the protocol.
    Garbage,
    /// Never answers.
    Silent,
}

pub struct Server {
    pub path: PathBuf,
    pub dir: PathBuf,
    /// The real store behind `import_*`/`export_*` (xfer.rs).
    pub xfer: std::sync::Arc<std::sync::Mutex<xfer::Xfer>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn tmpdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hvctl-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn start(tag: &str, mode: Mode) -> Server {
    let dir = tmpdir(tag);
    let path = dir.join("mgmt.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let xfer = std::sync::Arc::new(std::sync::Mutex::new(xfer::Xfer::default()));
    let xf = xfer.clone();
    std::thread::spawn(move || {
        let mut doms = vec![
            dom(1, "hello", DomainState::Running, 16, 1),
            dom(3, "web", DomainState::Paused, 64, 2),
        ];
        let mut imgs = images::Images::default();
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            serve(conn, mode, &mut doms, &mut imgs, &xf);
        }
    });
    Server { path, dir, xfer }
}

pub fn dom(id: u32, name: &str, state: DomainState, mib: u64, vcpus: u32) -> DomainInfo {
    DomainInfo {
        id,
        name: name.into(),
        uuid: None,
        state,
        memory_bytes: mib << 20,
        vcpus,
        weight: 256,
        cap: 0,
        cpu_time_ns: 1_500_000_000,
        heap_budget_bytes: 0,
        heap_used_bytes: 0,
        exits: 0,
        current_bytes: None,
        target_bytes: None,
        uptime_ns: None,
        exit_code: None,
        reason: None,
        kill_reason: None,
    }
}

fn serve(
    conn: UnixStream,
    mode: Mode,
    doms: &mut Vec<DomainInfo>,
    imgs: &mut images::Images,
    xf: &std::sync::Mutex<xfer::Xfer>,
) {
    let mut out = conn.try_clone().unwrap();
    let mut sessions = std::collections::BTreeSet::new();
    for line in BufReader::new(conn).split(b'\n') {
        let Ok(line) = line else { break };
        if line.is_empty() {
            continue;
        }
        let Ok((session, line)) = proto::split_session(&line) else {
            continue;
        };
        let (resp, events) = match proto::decode_request(line) {
            Err(e) => (e.into_response(), vec![]),
            Ok(req) => {
                sessions.insert(session);
                let (result, events) = match req.op {
                    Op::ImportBegin { .. }
                    | Op::ImportChunk { .. }
                    | Op::ImportZeros { .. }
                    | Op::ImportEnd { .. }
                    | Op::ImportAbort { .. }
                    | Op::ExportBegin { .. }
                    | Op::ExportNext { .. }
                    | Op::ExportAbort { .. } => (xf.lock().unwrap().handle(session, line), vec![]),
                    op @ (Op::ImageList
                    | Op::ImageDelete { .. }
                    | Op::UploadBegin { .. }
                    | Op::UploadChunk { .. }
                    | Op::UploadEnd { .. }
                    | Op::UploadAbort { .. }) => (imgs.handle(session, op), vec![]),
                    // A connection ending drops its upload, as dom0 does.
                    op @ Op::Bye => {
                        imgs.end_session(session);
                        handle(op, mode, doms, &imgs.names())
                    }
                    op => handle(op, mode, doms, &imgs.names()),
                };
                (
                    Response {
                        id: Some(req.id),
                        result,
                    },
                    events,
                )
            }
        };
        if let Mode::Silent = mode {
            continue;
        }
        let mut text = proto::tag(session, &proto::encode_response(&resp));
        if let Mode::Garbage = mode {
            text = proto::tag(session, "this is not json\n");
        }
        for e in events {
            text.push_str(&proto::tag(session, &proto::encode_event(&e).unwrap()));
        }
        if out.write_all(text.as_bytes()).is_err() {
            break;
        }
    }
    // The connection closed: as dom0 does, its sessions end.
    for s in sessions {
        xf.lock().unwrap().end_session(s);
    }
}

fn err(code: ErrorCode, msg: String) -> Outcome {
    Outcome::Error(ProtoError::new(code, msg))
}

fn handle(
    op: Op,
    mode: Mode,
    doms: &mut Vec<DomainInfo>,
    images: &[String],
) -> (Outcome, Vec<Event>) {
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
        | Op::ConsoleInput { domain, .. }
        | Op::ConsoleHistory { domain }
        | Op::Shutdown { domain, .. }
        | Op::SetSched { domain, .. }
        | Op::MemSet { domain, .. } => match find(doms, domain) {
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
                Images::Only(&images.iter().map(String::as_str).collect::<Vec<_>>()),
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
        // A paused domain cannot honour the request: it is forced at once
        // (dom0 would wait for the timeout first).
        Op::Shutdown { force, .. } => {
            let d = &mut doms[i];
            let forced = force || d.state == DomainState::Paused;
            d.state = DomainState::Ended;
            d.reason = Some(if forced { "forced" } else { "exited" }.into());
            d.exit_code = Some(if forced { -1 } else { 0 });
            Outcome::Ok(Reply::Done)
        }
        Op::SetSched { weight, cap, .. } => {
            let d = &mut doms[i];
            d.weight = weight.unwrap_or(d.weight);
            d.cap = cap.unwrap_or(d.cap);
            Outcome::Ok(Reply::Domain { domain: d.clone() })
        }
        // dom0's refusal of a target over the maximum, word for word; the
        // fake guest balloons at once.
        Op::MemSet { target_bytes, .. } => {
            let d = &mut doms[i];
            if target_bytes > d.memory_bytes {
                err(
                    ErrorCode::BadRequest,
                    format!(
                        "mem-set: {} MiB asked, the domain's maximum is {} MiB",
                        target_bytes >> 20,
                        d.memory_bytes >> 20
                    ),
                )
            } else {
                d.target_bytes = Some(target_bytes);
                d.current_bytes = Some(target_bytes);
                Outcome::Ok(Reply::Domain { domain: d.clone() })
            }
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
        Op::ConsoleDetach { .. } | Op::Bye | Op::Forget { .. } | Op::Subscribe => {
            Outcome::Ok(Reply::Done)
        }
        // The store's volumes: none listed; deletes of anything but
        // "data" fail. (Images, the store's among them, are images.rs'.)
        Op::VolumeList => Outcome::Ok(Reply::Volumes { volumes: vec![] }),
        Op::VolumeCreate { name, size_bytes } => Outcome::Ok(Reply::Volumes {
            volumes: vec![proto::VolumeInfo { name, size_bytes }],
        }),
        Op::VolumeDelete { name } if name == "data" => Outcome::Ok(Reply::Done),
        Op::VolumeDelete { name } => Outcome::Error(ProtoError::new(
            ErrorCode::NoSuchObject,
            format!("no volume named {name:?}"),
        )),
        Op::Host => Outcome::Ok(Reply::Host(proto::HostReport {
            cpus: 2,
            memory_total_bytes: 128 << 20,
            memory_free_bytes: 100 << 20,
            domains: doms.len() as u32,
            ended_domains: 0,
            dom0: "fake-dom0".into(),
            pvabi: "1.4".into(),
            hypervisor_pvabi: "1.4".into(),
            uptime_ns: 5_000_000_000,
            pci: vec![
                "0000:00:03.0 1af4:1001 virtio-blk".into(),
                "0000:00:05.0 1b36:0010 nvme".into(),
            ],
            disks: vec![
                "0000:00:05.0 nvme 16 MiB, 512-byte blocks, model \"QEMU NVMe Ctrl\"".into(),
            ],
        })),
        Op::Log => Outcome::Ok(Reply::Lines {
            lines: vec!["kestrel-dom0 0.1.0".into(), "ready".into()],
            dropped: 3,
        }),
        Op::ConsoleHistory { .. } => Outcome::Ok(Reply::Lines {
            lines: vec![format!("Welcome to {}", doms[i].name)],
            dropped: 0,
        }),
        Op::ImageList
        | Op::ImageDelete { .. }
        | Op::UploadBegin { .. }
        | Op::UploadChunk { .. }
        | Op::UploadEnd { .. }
        | Op::UploadAbort { .. } => err(ErrorCode::Internal, "answered by images.rs".into()),
        Op::ImportBegin { .. }
        | Op::ImportChunk { .. }
        | Op::ImportZeros { .. }
        | Op::ImportEnd { .. }
        | Op::ImportAbort { .. }
        | Op::ExportBegin { .. }
        | Op::ExportNext { .. }
        | Op::ExportAbort { .. } => err(ErrorCode::Internal, "answered by xfer.rs".into()),
    };
    (outcome, events)
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn hvctl(sock: &Path, args: &[&str], stdin: &[u8]) -> Run {
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
