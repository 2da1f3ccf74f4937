//! Bad clients of dom0's network management service (issue 14, "bad
//! input: ... 1 MiB lines ... a clear error, dom0 keeps serving"), on the
//! machine of `netmgmt_qemu_vtd_static` (netmgmt.rs). The test speaks the
//! authenticated channel itself (`kestrel_toolstack::secure`'s client
//! end, as hvctl does) so that it can send what hvctl never would.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `netmgmt_qemu_bad_clients` | as `netmgmt_qemu_vtd_static` | inside an authenticated session, a 1 MiB line gets one `line_too_long` error reply, and the same session then answers `list`, as does a fresh `hvctl --host`; with 4 sessions open (every slot), a fifth connection gets one `refused: ... in use` line and is closed (not left hanging), and `hvctl --host` is refused with that message (exit status not 0); dom0 logs each refusal; once one of the 4 leaves (dom0 logs its end), `hvctl --host list` is served again; the other 3 still answer |

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use boot_tests::mgmt::wait_for_nth_line;
use boot_tests::scaled;
use kestrel_toolstack::secure::{ClientChannel, Key};

use super::netmgmt::{boot, finish, over_tcp, raw, ready};

const TEST: &str = "netmgmt_qemu_bad_clients";

fn urandom(buf: &mut [u8]) -> bool {
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_ok()
}

/// One authenticated management session, said hello on.
struct Session {
    s: TcpStream,
    ch: ClientChannel,
    lines: VecDeque<String>,
}

impl Session {
    fn open(addr: &str, key: &Path) -> Self {
        let text = std::fs::read(key).unwrap_or_else(|e| panic!("{}: {e}", key.display()));
        let key = Key::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", key.display()));
        let ch = ClientChannel::new(&key, urandom).unwrap_or_else(|e| panic!("{e:?}"));
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(scaled(30)))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut me = Self {
            s,
            ch,
            lines: VecDeque::new(),
        };
        me.push();
        while !me.ch.is_open() {
            me.read();
        }
        let hello = me.call(r#"{"id":1,"op":"hello","version":1,"client":"netbad"}"#);
        assert!(hello.contains(r#""ok":"#), "hello: {hello}");
        me
    }

    /// Writes what the channel queued.
    fn push(&mut self) {
        let out = self.ch.take_output();
        self.s
            .write_all(&out)
            .unwrap_or_else(|e| panic!("writing to dom0: {e}"));
    }

    /// Reads once from dom0 into the channel.
    fn read(&mut self) {
        let mut buf = vec![0u8; 65536];
        let n = self
            .s
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("reading from dom0: {e}"));
        assert!(n > 0, "dom0 closed the session");
        let lines = self
            .ch
            .receive(&buf[..n])
            .unwrap_or_else(|e| panic!("the channel failed: {e:?}"));
        for l in lines {
            let l = l.unwrap_or_else(|e| panic!("a bad line from dom0: {e:?}"));
            self.lines
                .push_back(String::from_utf8_lossy(&l).into_owned());
        }
    }

    fn send(&mut self, line: &[u8]) {
        self.ch
            .send(line)
            .unwrap_or_else(|e| panic!("sealing: {e:?}"));
        self.push();
    }

    fn next_line(&mut self) -> String {
        loop {
            if let Some(l) = self.lines.pop_front() {
                return l;
            }
            self.read();
        }
    }

    fn call(&mut self, request: &str) -> String {
        self.send(format!("{request}\n").as_bytes());
        self.next_line()
    }
}

/// How many lines of `log` hold every one of `needles` now.
fn count(log: &Path, needles: &[&str]) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

fn long_line(addr: &str, key: &Path) {
    let mut s = Session::open(addr, key);
    let mut line = br#"{"id":2,"op":"list","pad":""#.to_vec();
    line.resize(1 << 20, b'x');
    line.extend_from_slice(b"\"}\n");
    s.send(&line);
    let reply = s.next_line();
    assert!(
        reply.contains(r#""code":"line_too_long""#),
        "a 1 MiB line got {reply}"
    );
    let reply = s.call(r#"{"id":3,"op":"list"}"#);
    assert!(
        reply.contains(r#""id":3"#) && reply.contains("tick-a"),
        "the session after the long line: {reply}"
    );
    let (code, out, err) = over_tcp(addr, key, &["list"]);
    assert_eq!(code, 0, "another client after the long line: {out}{err}");
}

fn slots(addr: &str, key: &Path, log: &Path) {
    let mut four: Vec<Session> = (0..4).map(|_| Session::open(addr, key)).collect();
    let refusals = count(log, &["dom0: net: connection from", "refused"]);
    let got = raw(addr, b"");
    assert!(
        got.starts_with("refused: all 4 management connections are in use")
            && got.matches('\n').count() == 1,
        "a fifth connection got {got:?}"
    );
    let (code, out, err) = over_tcp(addr, key, &["list"]);
    assert_ne!(code, 0, "hvctl was served with every slot taken: {out}");
    assert!(
        err.contains("refused: all 4 management connections are in use"),
        "hvctl as the fifth: {err}"
    );
    wait_for_nth_line(
        log,
        &["dom0: net: connection from", "refused"],
        refusals + 2,
        scaled(10),
    )
    .unwrap_or_else(|| panic!("dom0 did not log both refusals"));
    // One leaves: its slot is free again once dom0 has seen it go.
    let ended = count(log, &["dom0: net: session ", " ended"]);
    drop(four.remove(0));
    wait_for_nth_line(
        log,
        &["dom0: net: session ", " ended"],
        ended + 1,
        scaled(30),
    )
    .unwrap_or_else(|| panic!("dom0 never saw the session leave"));
    let (code, out, err) = over_tcp(addr, key, &["list"]);
    assert_eq!(code, 0, "a client after one left: {out}{err}");
    assert!(out.contains("tick-a"), "{out}");
    for (i, s) in four.iter_mut().enumerate() {
        let id = 10 + i;
        let reply = s.call(&format!(r#"{{"id":{id},"op":"list"}}"#));
        assert!(
            reply.contains(&format!(r#""id":{id}"#)) && reply.contains("tick-a"),
            "a held session after the refusals: {reply}"
        );
    }
}

#[test]
fn netmgmt_qemu_bad_clients() {
    let m = boot(TEST, "intel-iommu", "10.0.2.15/24");
    let checks = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ready(TEST, &m, "address 10.0.2.15/24");
        long_line(&m.addr, &m.good);
        slots(&m.addr, &m.good, &m.log);
    }));
    finish(TEST, m, checks);
}
