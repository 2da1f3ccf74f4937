//! Sessions on one line: the serial line has no connections, so a relay
//! (`hvctl relay`) that serves many clients tags each line it forwards with
//! the client's session, `@<session> ` before the JSON, and dom0 tags its
//! answers and events the same way. A JSON line never starts with `@`, so
//! an untagged line (a client on the line directly) is told apart.

use alloc::format;
use alloc::string::String;

use super::{ErrorCode, ProtoError};

/// A session on the line: `None` for an untagged (direct) client.
pub type SessionId = Option<u64>;

/// Splits `@<n> <rest>` into `(Some(n), rest)`; an untagged line is
/// `(None, line)`. A tag that is not a decimal number followed by one
/// space is a `bad_request` (answered untagged).
pub fn split_session(line: &[u8]) -> Result<(SessionId, &[u8]), ProtoError> {
    let Some(rest) = line.strip_prefix(b"@") else {
        return Ok((None, line));
    };
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    let (digits, body) = rest.split_at(end);
    let bad = || {
        let shown = String::from_utf8_lossy(digits.get(..20).unwrap_or(digits));
        ProtoError::new(
            ErrorCode::BadRequest,
            format!("bad session tag \"@{shown}\": expected @<number> and a space"),
        )
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || body.is_empty() {
        return Err(bad());
    }
    let n = core::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((Some(n), body.get(1..).unwrap_or_default()))
}

/// `line` (newline included) for `session`: tagged when it has one.
pub fn tag(session: SessionId, line: &str) -> String {
    match session {
        Some(n) => format!("@{n} {line}"),
        None => String::from(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_and_join() {
        assert_eq!(
            split_session(b"{\"id\":1}").ok(),
            Some((None, &b"{\"id\":1}"[..]))
        );
        assert_eq!(
            split_session(b"@7 {\"id\":1}").ok(),
            Some((Some(7), &b"{\"id\":1}"[..]))
        );
        assert_eq!(split_session(b"@7 ").ok(), Some((Some(7), &b""[..])));
        for bad in [
            &b"@"[..],
            b"@ x",
            b"@x1 {}",
            b"@7",
            b"@99999999999999999999999 {}",
        ] {
            let e = split_session(bad).err();
            assert!(
                e.is_some_and(
                    |e| e.code == ErrorCode::BadRequest && e.message.contains("session tag")
                ),
                "{bad:?}"
            );
        }
        assert_eq!(tag(Some(3), "{}\n"), "@3 {}\n");
        assert_eq!(tag(None, "{}\n"), "{}\n");
    }
}
