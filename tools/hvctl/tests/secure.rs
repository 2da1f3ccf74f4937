//! `hvctl --host` against an in-test network service: the real channel
//! (`kestrel_toolstack::secure::ServerChannel`, as dom0 runs it) in front
//! of the stand-in (`fake/mod.rs`), and `hvctl keygen`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use fake::{Mode, start, tmpdir};
use kestrel_toolstack::secure::{Key, NamedKey, ServerChannel};

fn urandom(buf: &mut [u8]) -> bool {
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_ok()
}

/// One connection: the channel's plaintext lines go to the stand-in's
/// socket, its answers come back sealed. Until either side closes.
fn proxy(mut tcp: TcpStream, sock: &Path, keys: Arc<[NamedKey]>) {
    let mut chan = ServerChannel::new(keys, urandom);
    let mut up: Option<UnixStream> = None;
    let mut buf = [0u8; 16384];
    loop {
        let n = match tcp.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let lines = chan.receive(&buf[..n]);
        let _ = tcp.write_all(&chan.take_output());
        let Ok(lines) = lines else { return };
        if lines.is_empty() {
            continue;
        }
        let u = up.get_or_insert_with(|| {
            let u = UnixStream::connect(sock).unwrap();
            u.set_read_timeout(Some(std::time::Duration::from_millis(300)))
                .unwrap();
            u
        });
        for l in lines {
            let mut l = l.unwrap();
            l.push(b'\n');
            u.write_all(&l).unwrap();
        }
        // The stand-in answers each line at once: take what it wrote.
        let mut got = Vec::new();
        let mut b = [0u8; 4096];
        while let Ok(n) = u.read(&mut b) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&b[..n]);
            if got.ends_with(b"\n") {
                break;
            }
        }
        chan.send(&got).unwrap();
        if tcp.write_all(&chan.take_output()).is_err() {
            return;
        }
    }
}

/// A network service on 127.0.0.1 accepting `key`; its address.
fn service(tag: &str, key: &Key) -> (String, fake::Server) {
    let s = start(tag, Mode::Good);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let keys: Arc<[NamedKey]> = Arc::from(vec![NamedKey {
        name: "ops.key".into(),
        key: key.clone(),
    }]);
    let sock = s.path.clone();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            let Ok(c) = c else { return };
            proxy(c, &sock, keys.clone());
        }
    });
    (addr, s)
}

fn hvctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hvctl"))
        .args(args)
        .env_remove("KESTREL_HOST")
        .env_remove("KESTREL_SOCKET")
        .env_remove("KESTREL_KEY_FILE")
        .env("KESTREL_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn host_with_the_key_lists_and_a_wrong_key_is_refused() {
    let dir = tmpdir("secure-host");
    let good = dir.join("ops.key");
    let bad = dir.join("other.key");
    let (code, out, err) = hvctl(&["keygen", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("wrote a new key"), "{out}");
    let (code, _, _) = hvctl(&["keygen", bad.to_str().unwrap()]);
    assert_eq!(code, 0);
    let key = Key::parse(&std::fs::read(&good).unwrap()).unwrap();
    let (addr, _s) = service("secure-svc", &key);

    let (code, out, err) = hvctl(&[
        "--host",
        &addr,
        "--key-file",
        good.to_str().unwrap(),
        "list",
    ]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(out.contains("hello") && out.contains("web"), "{out}");

    let (code, out, err) = hvctl(&["--host", &addr, "--key-file", bad.to_str().unwrap(), "list"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.starts_with("hvctl: authentication failed: dom0 refused the key"),
        "{err}"
    );
    // The good key still works after a refused one.
    let (code, _, err) = hvctl(&[
        "--host",
        &addr,
        "--key-file",
        good.to_str().unwrap(),
        "info",
        "web",
    ]);
    assert_eq!((code, err.as_str()), (0, ""));

    let (code, _, err) = hvctl(&["--host", &addr, "list"]);
    assert_eq!(code, 2);
    assert!(err.contains("needs its key"), "{err}");
}

#[test]
fn host_against_a_plain_line_says_what_it_is() {
    // A raw management line (what --tcp reaches) does not speak the
    // channel: it answers the hello line with a protocol error.
    let dir = tmpdir("secure-plain");
    let key = dir.join("k");
    hvctl(&["keygen", key.to_str().unwrap()]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = listener.accept() {
            let _ = c.write_all(b"{\"id\":null,\"error\":{\"code\":\"bad_request\"}}\n");
        }
    });
    let (code, _, err) = hvctl(&["--host", &addr, "--key-file", key.to_str().unwrap(), "list"]);
    assert_eq!(code, 3);
    assert!(err.contains("not a Kestrel management server"), "{err}");
}

#[test]
fn keygen_never_overwrites_and_makes_private_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmpdir("secure-keygen");
    let k = dir.join("k");
    assert_eq!(hvctl(&["keygen", k.to_str().unwrap()]).0, 0);
    let mode = std::fs::metadata(&k).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let first = std::fs::read(&k).unwrap();
    let (code, _, err) = hvctl(&["keygen", k.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot write the key file"), "{err}");
    assert_eq!(std::fs::read(&k).unwrap(), first);
    let (code, out, _) = hvctl(&["keygen"]);
    assert_eq!(code, 0);
    assert!(Key::parse(out.as_bytes()).is_ok());
    assert_ne!(out.as_bytes(), &first[..]);
}
