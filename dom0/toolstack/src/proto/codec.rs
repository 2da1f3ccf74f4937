//! Lines to messages and back. Nothing here panics on any input: a bad
//! line becomes a [`DecodeError`] the server answers with.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::{ErrorCode, Event, MAX_LINE, Outcome, ProtoError, Request, Response, ServerLine};

/// A request line that could not be decoded, with the `id` to answer if
/// one could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub id: Option<u64>,
    pub error: ProtoError,
}

impl DecodeError {
    /// The error response the server sends for the bad line.
    pub fn into_response(self) -> Response {
        Response {
            id: self.id,
            result: Outcome::Error(self.error),
        }
    }
}

/// Only the `id` of a request that failed to decode.
#[derive(Deserialize)]
struct IdOnly {
    id: Option<u64>,
}

/// The line without its `\n` (and a `\r` before it, from a serial terminal).
fn strip(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn text(line: &[u8]) -> Result<&str, ProtoError> {
    let line = strip(line);
    if line.len() > MAX_LINE {
        let msg = format!("line of {} bytes, the limit is {MAX_LINE}", line.len());
        return Err(ProtoError::new(ErrorCode::LineTooLong, msg));
    }
    core::str::from_utf8(line)
        .map_err(|e| ProtoError::new(ErrorCode::BadRequest, format!("not UTF-8: {e}")))
}

/// Decodes one request line (with or without its newline).
pub fn decode_request(line: &[u8]) -> Result<Request, DecodeError> {
    let text = text(line).map_err(|error| DecodeError { id: None, error })?;
    serde_json::from_str(text).map_err(|e| DecodeError {
        id: serde_json::from_str::<IdOnly>(text).ok().and_then(|x| x.id),
        error: ProtoError::new(ErrorCode::BadRequest, format!("{e}")),
    })
}

/// Decodes one line from the server: a response or an event.
pub fn decode_server_line(line: &[u8]) -> Result<ServerLine, ProtoError> {
    let bad = |e: serde_json::Error| ProtoError::new(ErrorCode::BadRequest, format!("{e}"));
    let value: serde_json::Value = serde_json::from_str(text(line)?).map_err(bad)?;
    if value.get("event").is_some() {
        serde_json::from_value(value)
            .map(ServerLine::Event)
            .map_err(bad)
    } else {
        serde_json::from_value(value)
            .map(ServerLine::Response)
            .map_err(bad)
    }
}

fn line<T: Serialize>(msg: &T) -> Result<String, ProtoError> {
    let mut s = serde_json::to_string(msg)
        .map_err(|e| ProtoError::new(ErrorCode::Internal, format!("encoding: {e}")))?;
    if s.len() > MAX_LINE {
        let msg = format!("message of {} bytes, the limit is {MAX_LINE}", s.len());
        return Err(ProtoError::new(ErrorCode::LineTooLong, msg));
    }
    s.push('\n');
    Ok(s)
}

/// One request line, newline included.
pub fn encode_request(req: &Request) -> Result<String, ProtoError> {
    line(req)
}

/// One event line, newline included.
pub fn encode_event(event: &Event) -> Result<String, ProtoError> {
    line(event)
}

/// One response line, newline included. Never fails: a response that
/// cannot be sent (too long) becomes an error response with the same id.
pub fn encode_response(resp: &Response) -> String {
    line(resp).unwrap_or_else(|error| {
        let fallback = Response {
            id: resp.id,
            result: Outcome::Error(error),
        };
        line(&fallback).unwrap_or_else(|_| {
            String::from(
                "{\"id\":null,\"error\":{\"code\":\"internal\",\"message\":\"encoding\"}}\n",
            )
        })
    })
}

/// Splits a byte stream (a serial line, a socket) into lines of at most
/// [`MAX_LINE`] bytes, holding no more than that: a longer line is
/// dropped and reported as `line_too_long` when its newline arrives.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Inside a line that was already too long.
    overlong: bool,
}

/// Where the first `\n` of `bytes` is: eight bytes at a time (dom0 has no
/// SIMD; a byte-by-byte search of an upload's lines was 9.8 M instructions
/// per MiB in issue 14's profile). A word holds a `\n` byte exactly when
/// `x = word ^ 0x0a0a..` has a zero byte, which `(x - 0x0101..) & !x &
/// 0x8080..` finds (its lowest set bit is at the first one; a borrow only
/// runs upward from a zero byte, so bytes below it are not misread).
fn newline(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for w in words.by_ref() {
        let mut le = [0u8; 8];
        le.copy_from_slice(w);
        let x = u64::from_le_bytes(le) ^ (ONES * u64::from(b'\n'));
        let found = x.wrapping_sub(ONES) & !x & HIGH;
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let rest = words.remainder();
    rest.iter().position(|&b| b == b'\n').map(|i| at + i)
}

impl LineBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one byte; returns a complete line (without its newline) or
    /// the error for an overlong one.
    pub fn push(&mut self, byte: u8) -> Option<Result<Vec<u8>, ProtoError>> {
        if byte == b'\n' {
            if core::mem::take(&mut self.overlong) {
                let msg = format!("line longer than {MAX_LINE} bytes dropped");
                return Some(Err(ProtoError::new(ErrorCode::LineTooLong, msg)));
            }
            return Some(Ok(core::mem::take(&mut self.buf)));
        }
        if self.overlong {
            return None;
        }
        if self.buf.len() >= MAX_LINE {
            self.buf = Vec::new();
            self.overlong = true;
            return None;
        }
        self.buf.push(byte);
        None
    }

    /// Takes many bytes; returns every line they complete, in order. The
    /// same as [`Self::push`] byte by byte, a run at a time: an upload's
    /// 44 KiB line cost dom0 a call, a bound check and a `Vec::push` per
    /// byte (issue 14's profile), now a search for the newline and one
    /// copy.
    pub fn extend(&mut self, mut bytes: &[u8]) -> Vec<Result<Vec<u8>, ProtoError>> {
        let mut lines = Vec::new();
        while let Some(i) = newline(bytes) {
            self.append(bytes.get(..i).unwrap_or_default());
            lines.extend(self.push(b'\n'));
            bytes = bytes.get(i + 1..).unwrap_or_default();
        }
        self.append(bytes);
        lines
    }

    /// Bytes with no newline: kept, unless the line grows past
    /// [`MAX_LINE`] (then it is dropped whole, as `push` does).
    fn append(&mut self, part: &[u8]) {
        if self.overlong || part.is_empty() {
            return;
        }
        if self.buf.len().saturating_add(part.len()) > MAX_LINE {
            self.buf = Vec::new();
            self.overlong = true;
            return;
        }
        self.buf.extend_from_slice(part);
    }

    /// Bytes of an unfinished line held now.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}
