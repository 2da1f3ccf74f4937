//! The channel against itself and against what a hostile peer sends.
#![allow(clippy::expect_used)]

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::*;
use crate::proto::MAX_LINE;

/// Deterministic test randomness (a counter through an LCG): fine here,
/// never for real keys.
fn fill(buf: &mut [u8]) -> bool {
    use core::sync::atomic::{AtomicU64, Ordering};
    static S: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    for b in buf {
        let x = S.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        *b = (x.wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 56) as u8;
    }
    true
}

fn no_random(_: &mut [u8]) -> bool {
    false
}

fn key(n: u8) -> Key {
    Key::parse(alloc::format!("{:02x}", n).repeat(32).as_bytes()).expect("test key")
}

fn server(keys: &[(&str, u8)]) -> ServerChannel {
    let keys: Vec<NamedKey> = keys
        .iter()
        .map(|&(name, n)| NamedKey {
            name: name.into(),
            key: key(n),
        })
        .collect();
    ServerChannel::new(Arc::from(keys), fill)
}

/// A client and server with the handshake done.
fn pair() -> (ClientChannel, ServerChannel) {
    let mut c = ClientChannel::new(&key(1), fill).expect("client");
    let mut s = server(&[("old.key", 9), ("ops.key", 1)]);
    assert!(
        s.receive(&c.take_output())
            .expect("server reads hello")
            .is_empty()
    );
    assert!(s.is_open());
    assert_eq!(s.key_name(), Some("ops.key"));
    assert!(
        c.receive(&s.take_output())
            .expect("client reads answer")
            .is_empty()
    );
    assert!(c.is_open());
    (c, s)
}

fn ok_lines(v: Vec<Result<Vec<u8>, crate::proto::ProtoError>>) -> Vec<Vec<u8>> {
    v.into_iter().map(|l| l.expect("line")).collect()
}

#[test]
fn handshake_then_lines_both_ways_even_byte_by_byte() {
    let (mut c, mut s) = pair();
    c.send(b"{\"id\":1,\"op\":\"list\"}\n{\"id\":2,")
        .expect("send");
    c.send(b"\"op\":\"version\"}\n").expect("send");
    let wire = c.take_output();
    let mut got = Vec::new();
    for b in &wire {
        got.extend(ok_lines(
            s.receive(core::slice::from_ref(b)).expect("server"),
        ));
    }
    assert_eq!(
        got,
        [
            &b"{\"id\":1,\"op\":\"list\"}"[..],
            b"{\"id\":2,\"op\":\"version\"}"
        ]
    );
    s.send(b"{\"id\":1,\"ok\":[]}\n").expect("send");
    assert_eq!(
        ok_lines(c.receive(&s.take_output()).expect("client")),
        [&b"{\"id\":1,\"ok\":[]}"[..]]
    );
}

#[test]
fn the_wire_never_carries_the_plaintext() {
    let (mut c, _s) = pair();
    c.send(b"{\"op\":\"destroy\",\"domain\":\"secret-name\"}\n")
        .expect("send");
    let wire = c.take_output();
    assert!(!wire.windows(11).any(|w| w == b"secret-name"));
}

#[test]
fn a_wrong_key_gets_one_refusal_line_and_nothing_else() {
    let mut c = ClientChannel::new(&key(2), fill).expect("client");
    let mut s = server(&[("ops.key", 1)]);
    assert_eq!(s.receive(&c.take_output()), Err(ChannelError::BadKey));
    let out = s.take_output();
    assert_eq!(out, b"refused: authentication failed\n");
    assert_eq!(
        c.receive(&out),
        Err(ChannelError::Refused("authentication failed".into()))
    );
    // The server stays closed: more bytes get nothing.
    assert_eq!(s.receive(b"x"), Err(ChannelError::Closed));
    assert!(s.take_output().is_empty());
}

#[test]
fn a_plain_json_client_and_garbage_are_refused_at_once() {
    for first in [
        &b"{\"id\":1,\"op\":\"list\"}\n"[..],
        b"\x16\x03\x01\x02\x00",
        b"GET / HTTP/1.1\r\n",
        b"\n",
    ] {
        let mut s = server(&[("k", 1)]);
        assert_eq!(s.receive(first), Err(ChannelError::NotAClient), "{first:?}");
        let out = s.take_output();
        assert!(
            out.starts_with(b"refused: not a Kestrel management client"),
            "{out:?}"
        );
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(s.is_closed());
    }
}

#[test]
fn a_half_handshake_waits_and_a_bad_record_is_refused() {
    let mut c = ClientChannel::new(&key(1), fill).expect("client");
    let wire = c.take_output();
    // Hello and part of the first message: nothing yet, nothing sent.
    let mut s = server(&[("k", 1)]);
    assert!(
        s.receive(&wire[..HELLO.len() + 10])
            .expect("partial")
            .is_empty()
    );
    assert!(!s.is_open() && !s.is_closed() && s.take_output().is_empty());
    // A length below a tag is refused.
    let mut s = server(&[("k", 1)]);
    let mut bad = HELLO.to_vec();
    bad.extend_from_slice(&[0, 3, 1, 2, 3]);
    assert!(matches!(s.receive(&bad), Err(ChannelError::Malformed(_))));
    assert!(s.take_output().starts_with(b"refused: malformed handshake"));
    // A first message of random bytes is a failed authentication.
    let mut s = server(&[("k", 1)]);
    let mut junk = HELLO.to_vec();
    junk.extend_from_slice(&[0, 48]);
    junk.extend((0..48u8).map(|i| i.wrapping_mul(37)));
    assert_eq!(s.receive(&junk), Err(ChannelError::BadKey));
}

#[test]
fn tampered_records_are_rejected() {
    let (mut c, mut s) = pair();
    c.send(b"{\"id\":1,\"op\":\"list\"}\n").expect("send");
    let mut wire = c.take_output();
    let last = wire.len() - 1;
    wire[last] ^= 1;
    assert_eq!(s.receive(&wire), Err(ChannelError::Tampered));
    // Nothing unauthenticated goes out after the handshake.
    assert!(s.take_output().is_empty());
}

#[test]
fn replayed_and_reordered_records_are_rejected() {
    let (mut c, mut s) = pair();
    c.send(b"{\"id\":1,\"op\":\"destroy\",\"domain\":\"web\"}\n")
        .expect("send");
    let first = c.take_output();
    assert_eq!(ok_lines(s.receive(&first).expect("first")).len(), 1);
    assert_eq!(s.receive(&first), Err(ChannelError::Tampered), "replay");

    let (mut c, mut s) = pair();
    c.send(b"{\"id\":1}\n").expect("send");
    let a = c.take_output();
    c.send(b"{\"id\":2}\n").expect("send");
    let b = c.take_output();
    assert_eq!(s.receive(&b), Err(ChannelError::Tampered), "reordered");
    let _ = a;
}

#[test]
fn a_replayed_handshake_gives_a_stranger_nothing() {
    // Someone who recorded a client's first message replays it: dom0
    // answers, but the transport keys need the client's ephemeral secret.
    let mut c = ClientChannel::new(&key(1), fill).expect("client");
    let hello = c.take_output();
    let mut s1 = server(&[("k", 1)]);
    s1.receive(&hello).expect("original");
    let _ = c.receive(&s1.take_output()).expect("client opens");
    c.send(b"{\"id\":1,\"op\":\"list\"}\n").expect("send");
    let recorded = c.take_output();
    let mut s2 = server(&[("k", 1)]);
    s2.receive(&hello).expect("replayed hello is answered");
    assert!(s2.is_open());
    // The recorded record from the first connection does not open here.
    assert_eq!(s2.receive(&recorded), Err(ChannelError::Tampered));
}

#[test]
fn truncated_streams_give_no_partial_line() {
    let (mut c, mut s) = pair();
    c.send(b"{\"id\":1,\"op\":\"list\"}\n").expect("send");
    let wire = c.take_output();
    assert!(s.receive(&wire[..wire.len() - 1]).expect("cut").is_empty());
    // A record whose length was cut shorter fails its tag.
    let (mut c, mut s) = pair();
    c.send(b"{\"id\":1,\"op\":\"list\"}\n").expect("send");
    let mut wire = c.take_output();
    let n = u16::from_be_bytes([wire[0], wire[1]]) - 1;
    wire[..2].copy_from_slice(&n.to_be_bytes());
    wire.pop();
    assert_eq!(s.receive(&wire), Err(ChannelError::Tampered));
}

#[test]
fn a_one_mib_line_is_refused_and_the_channel_goes_on() {
    let (mut c, mut s) = pair();
    let mut big = alloc::vec![b'x'; 1 << 20];
    big.push(b'\n');
    c.send(&big).expect("send");
    c.send(b"{\"id\":2}\n").expect("send");
    let got = s.receive(&c.take_output()).expect("records");
    let errs = got.iter().filter(|l| l.is_err()).count();
    assert!(errs >= 1, "the long line is reported");
    assert!(
        got.iter()
            .all(|l| l.as_ref().map_or(true, |l| l.len() <= MAX_LINE))
    );
    assert_eq!(
        got.last().cloned().expect("last").expect("ok"),
        b"{\"id\":2}"
    );
}

#[test]
fn a_server_without_our_key_is_caught_by_the_client() {
    // A man in the middle that answers "ok" with its own handshake (it
    // does not hold the key): the client refuses its answer.
    let mut c = ClientChannel::new(&key(1), fill).expect("client");
    let _ = c.take_output();
    let mut liar = ClientChannel::new(&key(7), fill).expect("liar");
    let mut fake = OK_LINE.to_vec();
    let w = liar.take_output();
    fake.extend_from_slice(&w[HELLO.len()..]);
    assert_eq!(c.receive(&fake), Err(ChannelError::BadKey));
}

#[test]
fn keys_parse_strictly_and_never_print() {
    assert!(Key::parse(b"00").is_err());
    assert!(Key::parse(&[b'0'; 64]).is_err(), "all zeros");
    assert!(Key::parse(&[b'g'; 64]).is_err());
    let k = Key::generate(fill).expect("key");
    let text = k.to_file_text();
    assert_eq!(Key::parse(text.as_bytes()).as_ref(), Ok(&k));
    assert_eq!(alloc::format!("{k:?}"), "Key(..)");
    assert_eq!(Key::generate(no_random), Err(ChannelError::NoRandom));
    assert_eq!(
        ClientChannel::new(&k, no_random).err(),
        Some(ChannelError::NoRandom)
    );
}
