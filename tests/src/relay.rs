//! Speaking dom0's protocol directly, for what `hvctl` would never send (a
//! bad upload): a session of its own through the relay that `hvctl`
//! starts beside a management socket (`<sock>.mux`), and an upload's
//! chunk line.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

/// Sends `lines` in a session of its own through the relay (`<sock>.mux`)
/// and returns the first `answers` lines it gets back (each read waits up
/// to `timeout`), then closes.
pub fn raw(sock: &Path, lines: &[String], answers: usize, timeout: Duration) -> Vec<String> {
    let mut mux = sock.as_os_str().to_owned();
    mux.push(".mux");
    let mut s = std::os::unix::net::UnixStream::connect(&mux)
        .unwrap_or_else(|e| panic!("connecting {}.mux: {e}", sock.display()));
    s.set_read_timeout(Some(timeout))
        .unwrap_or_else(|e| panic!("{e}"));
    for l in lines {
        s.write_all(format!("{l}\n").as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut r = BufReader::new(s);
    let mut got = Vec::new();
    for _ in 0..answers {
        let mut line = String::new();
        r.read_line(&mut line)
            .unwrap_or_else(|e| panic!("reading a reply: {e} ({got:?})"));
        got.push(line.trim_end().to_string());
    }
    got
}

/// An `upload_chunk` request (id 3): `bytes` at `offset` of upload `name`.
pub fn upload_chunk(name: &str, offset: usize, bytes: &[u8]) -> String {
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!(r#"{{"id":3,"op":"upload_chunk","name":"{name}","offset":{offset},"data":"{data}"}}"#)
}
