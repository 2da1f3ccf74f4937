//! `docs/mgmt-protocol.schema.json` against the implementation: every
//! request, reply, error code, state and event variant the code has is
//! serialized and validated with the schema, and every op, reply kind,
//! event and enum value the schema names is one the code produces, so the
//! two cannot drift apart in either direction.
//!
//! Why a validator here and not the `jsonschema` crate: the schema uses a
//! small subset of JSON Schema 2020-12 (`$ref` within the file, `oneOf`,
//! `type`, `enum`, `const`, `properties`, `required`,
//! `additionalProperties: false`, `items`, `minimum`, `maximum`), which the
//! ~60 lines below implement; `jsonschema` would add dozens of crates to
//! every host build on 2-core CI machines. A keyword outside the subset
//! fails the test, so the subset cannot grow unchecked.
#![allow(clippy::unwrap_used)]

extern crate std;

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use serde_json::Value;

use super::*;

const SCHEMA: &str = include_str!("../../../../docs/mgmt-protocol.schema.json");

fn schema() -> Value {
    serde_json::from_str(SCHEMA).unwrap()
}

/// Whether `v` is valid against `s` (within `root`); the reason if not.
fn check(root: &Value, s: &Value, v: &Value, at: &str) -> Result<(), String> {
    let Value::Object(kw) = s else {
        return Err(format!("{at}: schema is not an object"));
    };
    for (k, x) in kw {
        match k.as_str() {
            "$schema" | "$id" | "title" | "description" | "$defs" => {}
            "$ref" => {
                let name = x.as_str().unwrap().strip_prefix("#/$defs/").unwrap();
                let target = root["$defs"].get(name).ok_or(format!("no $defs/{name}"))?;
                check(root, target, v, at)?;
            }
            "oneOf" => {
                let ok = x
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|alt| check(root, alt, v, at).is_ok())
                    .count();
                if ok != 1 {
                    return Err(format!("{at}: {ok} of oneOf match {v}"));
                }
            }
            "type" => {
                let types: Vec<&str> = match x {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
                    _ => return Err(format!("{at}: bad type keyword")),
                };
                let is = |t: &str| match t {
                    "object" => v.is_object(),
                    "array" => v.is_array(),
                    "string" => v.is_string(),
                    "integer" => v.is_i64() || v.is_u64(),
                    "boolean" => v.is_boolean(),
                    "null" => v.is_null(),
                    _ => false,
                };
                if !types.iter().any(|t| is(t)) {
                    return Err(format!("{at}: {v} is not {types:?}"));
                }
            }
            "enum" if !x.as_array().unwrap().contains(v) => {
                return Err(format!("{at}: {v} not in {x}"));
            }
            "enum" => {}
            "const" if x != v => return Err(format!("{at}: {v} is not {x}")),
            "const" => {}
            "minimum" | "maximum" => {
                let (Some(n), Some(limit)) = (v.as_f64(), x.as_f64()) else {
                    continue;
                };
                if (k == "minimum" && n < limit) || (k == "maximum" && n > limit) {
                    return Err(format!("{at}: {n} past {k} {limit}"));
                }
            }
            "required" => {
                for r in x.as_array().unwrap() {
                    if v.get(r.as_str().unwrap()).is_none() {
                        return Err(format!("{at}: {r} missing in {v}"));
                    }
                }
            }
            "properties" => {
                let Some(obj) = v.as_object() else { continue };
                for (name, sub) in x.as_object().unwrap() {
                    if let Some(field) = obj.get(name) {
                        check(root, sub, field, &format!("{at}.{name}"))?;
                    }
                }
            }
            "additionalProperties" => {
                assert_eq!(x, &Value::Bool(false), "{at}: only false is used");
                let known = kw["properties"].as_object().unwrap();
                if let Some(extra) = v
                    .as_object()
                    .and_then(|o| o.keys().find(|f| !known.contains_key(*f)))
                {
                    return Err(format!("{at}: {extra} not in the schema"));
                }
            }
            "items" => {
                for (i, item) in v.as_array().into_iter().flatten().enumerate() {
                    check(root, x, item, &format!("{at}[{i}]"))?;
                }
            }
            other => panic!("{at}: keyword {other} is outside the subset this test checks"),
        }
    }
    Ok(())
}

fn valid(line: &str) {
    let root = schema();
    let v: Value = serde_json::from_str(line).unwrap();
    if let Err(e) = check(&root, &root, &v, "$") {
        panic!("{line}\n  does not match docs/mgmt-protocol.schema.json: {e}");
    }
}

fn dom() -> DomainRef {
    DomainRef::Name("web".into())
}

/// One of every op: the match in [`op_index`] has no wildcard, so a new op
/// fails to compile here until it is added (and to the schema).
fn ops() -> Vec<Op> {
    vec![
        Op::Hello {
            version: VERSION,
            client: "t".into(),
        },
        Op::List,
        Op::Create {
            file: "f".into(),
            config: "c".into(),
        },
        Op::Destroy {
            domain: DomainRef::Id(3),
        },
        Op::Pause { domain: dom() },
        Op::Unpause { domain: dom() },
        Op::Info {
            domain: DomainRef::Name("123e4567-e89b-42d3-a456-426614174000".into()),
        },
        Op::ConsoleAttach { domain: dom() },
        Op::ConsoleDetach { domain: dom() },
        Op::ConsoleInput {
            domain: dom(),
            data: "x\n".into(),
        },
        Op::Host,
        Op::Shutdown {
            domain: dom(),
            reboot: true,
            timeout_ms: Some(5),
            force: false,
        },
        Op::Shutdown {
            domain: dom(),
            reboot: false,
            timeout_ms: None,
            force: true,
        },
        Op::SetSched {
            domain: dom(),
            weight: Some(1),
            cap: None,
        },
        Op::MemSet {
            domain: dom(),
            target_bytes: 16 << 20,
        },
        Op::Log,
        Op::ConsoleHistory { domain: dom() },
        Op::Forget { domain: dom() },
        Op::Bye,
        Op::Subscribe,
        Op::ImageList,
        Op::ImageDelete { name: "i".into() },
        Op::UploadBegin {
            name: "i".into(),
            size: 1,
            sha256: "0".repeat(64),
        },
        Op::UploadChunk {
            name: "i".into(),
            offset: 0,
            data: "AA==".into(),
        },
        Op::UploadEnd { name: "i".into() },
        Op::UploadAbort { name: "i".into() },
        Op::VolumeCreate {
            name: "v".into(),
            size_bytes: 1 << 20,
        },
        Op::VolumeList,
        Op::VolumeDelete { name: "v".into() },
        Op::ImportBegin {
            kind: ObjectKind::Volume,
            name: "v".into(),
            size: 1,
            sha256: "0".repeat(64),
        },
        Op::ImportChunk {
            name: "v".into(),
            offset: 0,
            data: "AA==".into(),
        },
        Op::ImportZeros {
            name: "v".into(),
            offset: 0,
            length: 4096,
        },
        Op::ImportEnd { name: "v".into() },
        Op::ImportAbort { name: "v".into() },
        Op::ExportBegin {
            kind: ObjectKind::Image,
            name: "i".into(),
        },
        Op::ExportNext { name: "i".into() },
        Op::ExportAbort { name: "i".into() },
    ]
}

const OPS: usize = 36;

fn op_index(op: &Op) -> usize {
    match op {
        Op::Hello { .. } => 0,
        Op::List => 1,
        Op::Create { .. } => 2,
        Op::Destroy { .. } => 3,
        Op::Pause { .. } => 4,
        Op::Unpause { .. } => 5,
        Op::Info { .. } => 6,
        Op::ConsoleAttach { .. } => 7,
        Op::ConsoleDetach { .. } => 8,
        Op::ConsoleInput { .. } => 9,
        Op::Host => 10,
        Op::Shutdown { .. } => 11,
        Op::SetSched { .. } => 12,
        Op::Log => 13,
        Op::ConsoleHistory { .. } => 14,
        Op::Forget { .. } => 15,
        Op::Bye => 16,
        Op::Subscribe => 17,
        Op::ImageList => 18,
        Op::ImageDelete { .. } => 19,
        Op::UploadBegin { .. } => 20,
        Op::UploadChunk { .. } => 21,
        Op::UploadEnd { .. } => 22,
        Op::UploadAbort { .. } => 23,
        Op::VolumeCreate { .. } => 24,
        Op::VolumeList => 25,
        Op::VolumeDelete { .. } => 26,
        Op::MemSet { .. } => 27,
        Op::ImportBegin { .. } => 28,
        Op::ImportChunk { .. } => 29,
        Op::ImportZeros { .. } => 30,
        Op::ImportEnd { .. } => 31,
        Op::ImportAbort { .. } => 32,
        Op::ExportBegin { .. } => 33,
        Op::ExportNext { .. } => 34,
        Op::ExportAbort { .. } => 35,
    }
}

fn info(full: bool) -> DomainInfo {
    DomainInfo {
        id: 3,
        name: "web".into(),
        uuid: full.then(|| "123e4567-e89b-42d3-a456-426614174000".into()),
        state: if full {
            DomainState::Ended
        } else {
            DomainState::Running
        },
        memory_bytes: 4 << 20,
        vcpus: 1,
        weight: 256,
        cap: 0,
        cpu_time_ns: 1,
        heap_budget_bytes: 2,
        heap_used_bytes: 3,
        exits: 4,
        current_bytes: (!full).then_some(3 << 20),
        target_bytes: (!full).then_some(3 << 20),
        uptime_ns: full.then_some(5),
        exit_code: full.then_some(-1),
        reason: full.then(|| "killed".into()),
        kill_reason: full.then(|| "triple fault".into()),
    }
}

fn replies() -> Vec<Reply> {
    vec![
        Reply::Hello {
            version: VERSION,
            server: "s".into(),
        },
        Reply::Domains {
            domains: vec![info(false), info(true)],
        },
        Reply::Domain { domain: info(true) },
        Reply::Attached {
            domain: 3,
            name: "web".into(),
        },
        Reply::Done,
        Reply::Lines {
            lines: vec!["a".into()],
            dropped: 0,
        },
        Reply::Host(HostReport {
            cpus: 2,
            memory_total_bytes: 1,
            memory_free_bytes: 1,
            domains: 1,
            ended_domains: 0,
            dom0: "d".into(),
            pvabi: "1.4".into(),
            hypervisor_pvabi: "1.4".into(),
            uptime_ns: 9,
            pci: vec!["0000:00:05.0 1b36:0010 nvme".into()],
            disks: vec![
                "0000:00:05.0 nvme 16 MiB, 512-byte blocks, model \"QEMU NVMe Ctrl\"".into(),
            ],
        }),
        Reply::Images {
            images: vec![
                image(ImageSource::Module),
                image(ImageSource::Upload),
                image(ImageSource::Store),
            ],
        },
        Reply::Image {
            image: image(ImageSource::Upload),
        },
        Reply::Volumes {
            volumes: vec![VolumeInfo {
                name: "v".into(),
                size_bytes: 1 << 20,
            }],
        },
        Reply::Export {
            size: 1,
            sha256: Some("0".repeat(64)),
        },
        Reply::Chunk {
            offset: 0,
            zeros: 4096,
            data: "AA==".into(),
            sha256: None,
        },
    ]
}

fn image(source: ImageSource) -> ImageInfo {
    ImageInfo {
        name: "i".into(),
        size: 1,
        sha256: "0".repeat(64),
        source,
        elf: true,
    }
}

fn reply_index(r: &Reply) -> usize {
    match r {
        Reply::Hello { .. } => 0,
        Reply::Domains { .. } => 1,
        Reply::Domain { .. } => 2,
        Reply::Attached { .. } => 3,
        Reply::Done => 4,
        Reply::Lines { .. } => 5,
        Reply::Host(_) => 6,
        Reply::Images { .. } => 7,
        Reply::Image { .. } => 8,
        Reply::Volumes { .. } => 9,
        Reply::Export { .. } => 10,
        Reply::Chunk { .. } => 11,
    }
}

fn events() -> Vec<Event> {
    let change = |change, reason: Option<&str>, exit_code| {
        Event::Domain(DomainEvent {
            change,
            domain: 3,
            name: "web".into(),
            uuid: Some("123e4567-e89b-42d3-a456-426614174000".into()),
            reason: reason.map(String::from),
            exit_code,
        })
    };
    vec![
        Event::Console {
            domain: 3,
            data: "x".into(),
        },
        Event::ConsoleClosed {
            domain: 3,
            reason: "domain ended".into(),
        },
        change(Change::Created, None, None),
        change(Change::Started, None, None),
        change(Change::Paused, None, None),
        change(Change::Unpaused, None, None),
        change(Change::ShutdownRequested, Some("reboot"), None),
        change(Change::Ended, Some("exited"), Some(0)),
    ]
}

fn event_index(e: &Event) -> usize {
    match e {
        Event::Console { .. } => 0,
        Event::ConsoleClosed { .. } => 1,
        Event::Domain(_) => 2,
    }
}

/// The `const` of `key` in every alternative of `$defs/def`'s oneOf.
fn consts(def: &str, key: &str) -> BTreeSet<String> {
    schema()["$defs"][def]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|alt| {
            alt["properties"][key]["const"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn enum_values(def: &str) -> BTreeSet<String> {
    schema()["$defs"][def]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn name_of(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn every_request_matches_and_every_schema_op_exists() {
    let ops = ops();
    let seen: BTreeSet<usize> = ops.iter().map(op_index).collect();
    assert_eq!(seen.len(), OPS, "a sample of every op");
    let mut names = BTreeSet::new();
    for (id, op) in ops.into_iter().enumerate() {
        let line = encode_request(&Request { id: id as u64, op }).unwrap();
        valid(&line);
        let v: Value = serde_json::from_str(&line).unwrap();
        names.insert(v["op"].as_str().unwrap().to_string());
    }
    assert_eq!(consts("request", "op"), names);
}

#[test]
fn every_response_matches() {
    let replies = replies();
    let seen: BTreeSet<usize> = replies.iter().map(reply_index).collect();
    assert_eq!(seen.len(), 12, "a sample of every reply");
    let mut kinds = BTreeSet::new();
    for r in replies {
        let line = encode_response(&Response {
            id: Some(1),
            result: Outcome::Ok(r),
        });
        valid(&line);
        let v: Value = serde_json::from_str(&line).unwrap();
        kinds.insert(v["ok"]["kind"].as_str().unwrap().to_string());
    }
    assert_eq!(consts("reply", "kind"), kinds);
    let codes = [
        ErrorCode::BadRequest,
        ErrorCode::LineTooLong,
        ErrorCode::VersionMismatch,
        ErrorCode::NoSuchDomain,
        ErrorCode::NoSuchImage,
        ErrorCode::BadConfig,
        ErrorCode::Exists,
        ErrorCode::BadState,
        ErrorCode::NoResources,
        ErrorCode::NoSuchObject,
        ErrorCode::Internal,
    ];
    for (i, code) in codes.into_iter().enumerate() {
        let id = (i % 2 == 0).then_some(1);
        valid(&encode_response(&Response {
            id,
            result: Outcome::Error(ProtoError::new(code, "m")),
        }));
    }
    let names: BTreeSet<String> = codes.iter().map(name_of).collect();
    assert_eq!(enum_values("error_code"), names);
    let states = [
        DomainState::Created,
        DomainState::Running,
        DomainState::Blocked,
        DomainState::Paused,
        DomainState::Shutdown,
        DomainState::Crashed,
        DomainState::Ended,
    ];
    let names: BTreeSet<String> = states.iter().map(name_of).collect();
    assert_eq!(enum_values("domain_state"), names);
    let sources = [ImageSource::Module, ImageSource::Upload, ImageSource::Store];
    let names: BTreeSet<String> = sources.iter().map(name_of).collect();
    assert_eq!(enum_values("image_source"), names);
}

#[test]
fn every_event_matches() {
    let events = events();
    let seen: BTreeSet<usize> = events.iter().map(event_index).collect();
    assert_eq!(seen.len(), 3, "a sample of every event");
    let mut names = BTreeSet::new();
    let mut changes = BTreeSet::new();
    for e in &events {
        let line = encode_event(e).unwrap();
        valid(&line);
        let v: Value = serde_json::from_str(&line).unwrap();
        names.insert(v["event"].as_str().unwrap().to_string());
        if let Some(c) = v["change"].as_str() {
            changes.insert(c.to_string());
        }
    }
    assert_eq!(consts("event", "event"), names);
    assert_eq!(enum_values("change"), changes);
}

#[test]
fn the_validator_refuses_what_the_schema_does_not_allow() {
    let root = schema();
    for bad in [
        r#"{"id":1,"op":"lst"}"#,
        r#"{"id":1,"op":"pause"}"#,
        r#"{"id":-1,"op":"list"}"#,
        r#"{"id":1,"op":"list","extra":1}"#,
        r#"{"id":1,"ok":{"kind":"domain","domain":{"id":1}}}"#,
        r#"{"event":"domain","change":"exploded","domain":1,"name":"x"}"#,
    ] {
        let v: Value = serde_json::from_str(bad).unwrap();
        assert!(check(&root, &root, &v, "$").is_err(), "{bad}");
    }
}
