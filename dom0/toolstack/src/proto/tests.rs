//! Wire forms, round trips and hostile input for the management protocol.
#![allow(clippy::unwrap_used)]

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::*;

fn info() -> DomainInfo {
    DomainInfo {
        id: 3,
        name: "web".into(),
        uuid: None,
        state: DomainState::Running,
        memory_bytes: 64 << 20,
        vcpus: 2,
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

fn req(id: u64, op: Op) -> Request {
    Request { id, op }
}

fn ok_resp(id: u64, reply: Reply) -> Response {
    Response {
        id: Some(id),
        result: Outcome::Ok(reply),
    }
}

/// The exact wire form of every request (the examples in docs/toolstack.md).
#[test]
fn requests_on_the_wire() {
    let web = || DomainRef::Name("web".into());
    let cases: Vec<(Request, &str)> = vec![
        (
            req(
                1,
                Op::Hello {
                    version: 1,
                    client: "hvctl 0.1.0".into(),
                },
            ),
            r#"{"id":1,"op":"hello","version":1,"client":"hvctl 0.1.0"}"#,
        ),
        (req(2, Op::List), r#"{"id":2,"op":"list"}"#),
        (
            req(
                3,
                Op::Create {
                    file: "web.toml".into(),
                    config: "[[domain]]\n".into(),
                },
            ),
            r#"{"id":3,"op":"create","file":"web.toml","config":"[[domain]]\n"}"#,
        ),
        (
            req(4, Op::Destroy { domain: web() }),
            r#"{"id":4,"op":"destroy","domain":"web"}"#,
        ),
        (
            req(
                5,
                Op::Pause {
                    domain: DomainRef::Id(3),
                },
            ),
            r#"{"id":5,"op":"pause","domain":3}"#,
        ),
        (
            req(6, Op::Unpause { domain: web() }),
            r#"{"id":6,"op":"unpause","domain":"web"}"#,
        ),
        (
            req(7, Op::Info { domain: web() }),
            r#"{"id":7,"op":"info","domain":"web"}"#,
        ),
        (
            req(8, Op::ConsoleAttach { domain: web() }),
            r#"{"id":8,"op":"console_attach","domain":"web"}"#,
        ),
        (
            req(9, Op::ConsoleDetach { domain: web() }),
            r#"{"id":9,"op":"console_detach","domain":"web"}"#,
        ),
        (
            req(
                10,
                Op::ConsoleInput {
                    domain: DomainRef::Id(3),
                    data: "ls\r".into(),
                },
            ),
            r#"{"id":10,"op":"console_input","domain":3,"data":"ls\r"}"#,
        ),
    ];
    for (r, wire) in cases {
        let line = encode_request(&r).unwrap();
        assert_eq!(line, alloc::format!("{wire}\n"));
        assert_eq!(decode_request(line.as_bytes()), Ok(r.clone()));
        assert_eq!(decode_request(wire.as_bytes()), Ok(r), "without newline");
    }
}

/// The exact wire form of responses and events.
#[test]
fn server_lines_on_the_wire() {
    let cases: Vec<(ServerLine, &str)> = vec![
        (
            ServerLine::Response(ok_resp(
                1,
                Reply::Hello {
                    version: 1,
                    server: "kestrel-dom0 0.1.0".into(),
                },
            )),
            r#"{"id":1,"ok":{"kind":"hello","version":1,"server":"kestrel-dom0 0.1.0"}}"#,
        ),
        (
            ServerLine::Response(ok_resp(
                2,
                Reply::Domains {
                    domains: vec![info()],
                },
            )),
            r#"{"id":2,"ok":{"kind":"domains","domains":[{"id":3,"name":"web","state":"running","memory_bytes":67108864,"vcpus":2,"weight":256,"cap":0,"cpu_time_ns":1500000000,"heap_budget_bytes":0,"heap_used_bytes":0,"exits":0}]}}"#,
        ),
        (
            ServerLine::Response(ok_resp(
                8,
                Reply::Attached {
                    domain: 3,
                    name: "web".into(),
                },
            )),
            r#"{"id":8,"ok":{"kind":"attached","domain":3,"name":"web"}}"#,
        ),
        (
            ServerLine::Response(ok_resp(4, Reply::Done)),
            r#"{"id":4,"ok":{"kind":"done"}}"#,
        ),
        (
            ServerLine::Response(Response {
                id: Some(7),
                result: Outcome::Error(ProtoError::new(
                    ErrorCode::NoSuchDomain,
                    "no domain \"wbe\"",
                )),
            }),
            r#"{"id":7,"error":{"code":"no_such_domain","message":"no domain \"wbe\""}}"#,
        ),
        (
            ServerLine::Event(Event::Console {
                domain: 3,
                data: "login: ".into(),
            }),
            r#"{"event":"console","domain":3,"data":"login: "}"#,
        ),
        (
            ServerLine::Event(Event::ConsoleClosed {
                domain: 3,
                reason: "domain crashed".into(),
            }),
            r#"{"event":"console_closed","domain":3,"reason":"domain crashed"}"#,
        ),
        (
            ServerLine::Event(Event::Domain(DomainEvent {
                change: Change::Ended,
                domain: 3,
                name: "web".into(),
                uuid: Some("123e4567-e89b-42d3-a456-426614174000".into()),
                reason: Some("exited".into()),
                exit_code: Some(7),
            })),
            r#"{"event":"domain","change":"ended","domain":3,"name":"web","uuid":"123e4567-e89b-42d3-a456-426614174000","reason":"exited","exit_code":7}"#,
        ),
    ];
    for (msg, wire) in cases {
        let line = match &msg {
            ServerLine::Response(r) => encode_response(r),
            ServerLine::Event(e) => encode_event(e).unwrap(),
        };
        assert_eq!(line, alloc::format!("{wire}\n"));
        assert_eq!(decode_server_line(line.as_bytes()), Ok(msg));
    }
}

#[test]
fn domain_refs() {
    assert_eq!(DomainRef::parse("7"), DomainRef::Id(7));
    assert_eq!(DomainRef::parse("web"), DomainRef::Name("web".into()));
    assert_eq!(DomainRef::parse("+7"), DomainRef::Name("+7".into()));
    assert_eq!(
        DomainRef::parse("99999999999"),
        DomainRef::Name("99999999999".into())
    );
    assert_eq!(alloc::format!("{}", DomainRef::Id(7)), "7");
}

fn bad(line: &[u8]) -> DecodeError {
    match decode_request(line) {
        Ok(r) => panic!("decoded {r:?} from {:?}", String::from_utf8_lossy(line)),
        Err(e) => e,
    }
}

#[test]
fn malformed_requests_get_an_error_never_a_panic() {
    let garbage: &[&[u8]] = &[
        b"",
        b"\n",
        b"hello",
        b"{",
        b"{\"id\":1,\"op\":\"li",
        b"[]",
        b"null",
        b"42",
        b"{}",
        b"{\"op\":\"list\"}",
        b"{\"id\":-1,\"op\":\"list\"}",
        b"{\"id\":1.5,\"op\":\"list\"}",
        b"{\"id\":1}",
        b"{\"id\":\"1\",\"op\":\"list\"}",
        b"\xff\xfe{\"id\":1}",
        b"\0\0\0",
        b"{\"id\":1,\"op\":\"pause\",\"domain\":[1,2]}",
        b"{\"id\":1,\"op\":\"pause\",\"domain\":-3}",
        b"{\"id\":1,\"op\":\"create\",\"file\":\"x\"}",
        b"{\"id\":1,\"op\":\"list\"} {\"id\":2,\"op\":\"list\"}",
    ];
    for g in garbage {
        let e = bad(g);
        assert_eq!(
            e.error.code,
            ErrorCode::BadRequest,
            "{:?}: {e:?}",
            String::from_utf8_lossy(g)
        );
        assert!(!e.error.message.is_empty());
    }
    // Deep nesting hits serde_json's recursion limit, not the stack.
    let deep = alloc::format!(
        "{{\"id\":1,\"op\":\"list\",\"x\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let e = bad(deep.as_bytes());
    assert_eq!(e.error.code, ErrorCode::LineTooLong);
    let deep = alloc::format!(
        "{{\"id\":1,\"op\":\"list\",\"x\":{}{}}}",
        "[".repeat(1000),
        "]".repeat(1000)
    );
    assert_eq!(bad(deep.as_bytes()).error.code, ErrorCode::BadRequest);
}

#[test]
fn the_id_is_echoed_when_it_can_be_read() {
    let e = bad(b"{\"id\":41,\"op\":\"fly\"}");
    assert_eq!(e.id, Some(41));
    assert!(e.error.message.contains("fly"), "{}", e.error.message);
    let e = bad(b"{\"id\":42,\"op\":\"info\"}");
    assert_eq!(e.id, Some(42));
    assert!(e.error.message.contains("domain"), "{}", e.error.message);
    assert_eq!(bad(b"{\"id\":43").id, None);
    let line = encode_response(&bad(b"{\"id\":44,\"op\":7}").into_response());
    assert!(
        line.starts_with("{\"id\":44,\"error\":{\"code\":\"bad_request\""),
        "{line}"
    );
    let line = encode_response(&bad(b"x").into_response());
    assert!(
        line.starts_with("{\"id\":null,\"error\":{\"code\":\"bad_request\""),
        "{line}"
    );
}

#[test]
fn huge_lines_are_refused() {
    let mut huge = alloc::format!(
        "{{\"id\":1,\"op\":\"create\",\"file\":\"f\",\"config\":\"{}\"}}",
        "x".repeat(MAX_LINE)
    );
    assert_eq!(bad(huge.as_bytes()).error.code, ErrorCode::LineTooLong);
    huge.truncate(MAX_LINE - 2);
    assert_eq!(
        bad(huge.as_bytes()).error.code,
        ErrorCode::BadRequest,
        "partial"
    );
    let big = Request {
        id: 1,
        op: Op::Create {
            file: "f".into(),
            config: "x".repeat(MAX_LINE),
        },
    };
    assert_eq!(
        encode_request(&big).map_err(|e| e.code),
        Err(ErrorCode::LineTooLong)
    );
    // A response too big to send goes out as an error with the same id.
    let name = "n".repeat(MAX_LINE);
    let resp = ok_resp(9, Reply::Attached { domain: 1, name });
    let line = encode_response(&resp);
    assert!(
        line.starts_with("{\"id\":9,\"error\":{\"code\":\"line_too_long\""),
        "{}",
        &line[..80]
    );
}

#[test]
fn newer_servers_codes_and_states_decode_as_unknown() {
    let line = br#"{"id":1,"error":{"code":"quota_exceeded","message":"m"}}"#;
    let Ok(ServerLine::Response(r)) = decode_server_line(line) else {
        panic!()
    };
    assert_eq!(
        r.result,
        Outcome::Error(ProtoError::new(ErrorCode::Unknown, "m"))
    );
    let line = br#"{"id":1,"ok":{"kind":"domain","domain":{"id":1,"name":"a","state":"migrating","memory_bytes":1,"vcpus":1,"weight":1,"cap":0,"cpu_time_ns":0}}}"#;
    let Ok(ServerLine::Response(r)) = decode_server_line(line) else {
        panic!()
    };
    let Outcome::Ok(Reply::Domain { domain }) = r.result else {
        panic!()
    };
    assert_eq!(domain.state, DomainState::Unknown);
}

#[test]
fn bad_server_lines_are_errors() {
    for g in [
        &b"garbage"[..],
        b"{}",
        b"{\"event\":\"nope\"}",
        b"{\"id\":1}",
        b"{\"id\":1,\"ok\":{\"kind\":\"x\"}}",
        b"\xff",
    ] {
        assert!(
            decode_server_line(g).is_err(),
            "{:?}",
            String::from_utf8_lossy(g)
        );
    }
}

#[test]
fn line_buffer_splits_and_bounds() {
    let mut lb = LineBuffer::new();
    let mut got = lb.extend(b"{\"id\":1,");
    assert!(got.is_empty());
    assert_eq!(lb.pending(), 8);
    got = lb.extend(b"\"op\":\"list\"}\n{\"id\":2,\"op\":\"list\"}\r\npart");
    assert_eq!(got.len(), 2);
    let reqs: Vec<u64> = got
        .into_iter()
        .map(|l| decode_request(&l.unwrap()).unwrap().id)
        .collect();
    assert_eq!(reqs, [1, 2]);
    assert_eq!(lb.pending(), 4);
    // An overlong line is dropped whole, with one error, and never held.
    let mut lb = LineBuffer::new();
    let mut errors = 0;
    for _ in 0..3 * MAX_LINE {
        assert!(lb.push(b'x').is_none());
        assert!(lb.pending() <= MAX_LINE);
    }
    if let Some(Err(e)) = lb.push(b'\n') {
        assert_eq!(e.code, ErrorCode::LineTooLong);
        errors += 1;
    }
    assert_eq!(errors, 1);
    let after = lb.extend(b"{\"id\":3,\"op\":\"list\"}\n");
    assert_eq!(after.len(), 1);
    assert_eq!(
        decode_request(after[0].as_ref().unwrap()).map(|r| r.id),
        Ok(3)
    );
    // Exactly MAX_LINE bytes is still a line.
    let mut lb = LineBuffer::new();
    let got = lb.extend(&[b'y'; MAX_LINE]);
    assert!(got.is_empty());
    assert_eq!(
        lb.push(b'\n').map(|l| l.map(|l| l.len())),
        Some(Ok(MAX_LINE))
    );
}

/// `extend` (a run at a time) gives what `push` byte by byte gives, for
/// any split of the input: lines of every length around `MAX_LINE`
/// (exactly it, one over, far over), empty lines, and a piece that ends
/// mid-line.
#[test]
fn line_buffer_extend_is_push_byte_by_byte() {
    let mut input = Vec::new();
    for (i, n) in [
        0,
        1,
        5,
        MAX_LINE - 1,
        MAX_LINE,
        MAX_LINE + 1,
        3 * MAX_LINE,
        7,
        0,
    ]
    .into_iter()
    .enumerate()
    {
        input.extend((0..n).map(|k| b'a' + ((i + k) % 26) as u8));
        input.push(b'\n');
    }
    input.extend_from_slice(b"tail");
    let mut one = LineBuffer::new();
    let want: Vec<_> = input.iter().filter_map(|&b| one.push(b)).collect();
    assert_eq!(want.len(), 9);
    for step in [1, 2, 3, 4096, 65519, MAX_LINE + 1, input.len()] {
        let mut lb = LineBuffer::new();
        let mut got = Vec::new();
        for piece in input.chunks(step) {
            got.extend(lb.extend(piece));
            assert!(lb.pending() <= MAX_LINE, "step {step}");
        }
        assert_eq!(got, want, "step {step}");
        assert_eq!(lb.pending(), one.pending(), "step {step}");
    }
}

/// The word-at-a-time newline search finds the first `\n` wherever it is
/// (every position in and across words, bytes next to it that a borrow
/// could confuse: 0x0b, 0x09, 0x8a, 0x00, 0xff), and none where there is
/// none.
#[test]
fn line_buffer_finds_each_newline() {
    for len in 0..40 {
        for fill in [b'a', 0x0b, 0x09, 0x8a, 0x00, 0xff] {
            let mut b = vec![fill; len];
            let mut lb = LineBuffer::new();
            assert!(lb.extend(&b).is_empty(), "len {len} fill {fill:#x}");
            for at in 0..len {
                b[at] = b'\n';
                let mut lb = LineBuffer::new();
                let got = lb.extend(&b);
                assert_eq!(got[0].as_ref().unwrap().len(), at, "len {len} at {at}");
                b[at] = fill;
            }
        }
    }
}
