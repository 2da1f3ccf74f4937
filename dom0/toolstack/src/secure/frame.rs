//! Incoming bytes to records (2-byte big-endian length, then the Noise
//! message) and to the lines that come before them. Holds at most one
//! record's worth of bytes beyond what the caller just gave.

use alloc::vec::Vec;

use super::{ChannelError, TAG};

/// Longest handshake status line (`ok`, `refused: ...`) a client reads.
pub const MAX_STATUS: usize = 512;

#[derive(Default)]
pub struct Input {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    at: usize,
}

impl Input {
    pub fn push(&mut self, bytes: &[u8]) {
        if self.at > 0 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn rest(&self) -> &[u8] {
        self.buf.get(self.at..).unwrap_or_default()
    }

    /// Bytes received and not yet used.
    pub fn pending(&self) -> usize {
        self.rest().len()
    }

    /// The next whole record, if it has all arrived. A length shorter than
    /// a tag cannot be a Noise message with an authenticated payload.
    pub fn record(&mut self) -> Result<Option<Vec<u8>>, ChannelError> {
        let rest = self.rest();
        let (Some(&h), Some(&l)) = (rest.first(), rest.get(1)) else {
            return Ok(None);
        };
        let n = usize::from(u16::from_be_bytes([h, l]));
        if n < TAG {
            return Err(ChannelError::Malformed("record shorter than its tag"));
        }
        let Some(msg) = rest.get(2..2 + n) else {
            return Ok(None);
        };
        let msg = msg.to_vec();
        self.at += 2 + n;
        Ok(Some(msg))
    }

    /// The next line (without its newline) once it has arrived, at most
    /// `max` bytes long.
    pub fn line(&mut self, max: usize) -> Result<Option<Vec<u8>>, ChannelError> {
        let rest = self.rest();
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) if i <= max => {
                let line = rest.get(..i).unwrap_or_default().to_vec();
                self.at += i + 1;
                Ok(Some(line))
            }
            Some(_) => Err(ChannelError::Malformed("status line too long")),
            None if rest.len() > max => Err(ChannelError::Malformed("status line too long")),
            None => Ok(None),
        }
    }

    /// Checks the bytes so far against `want` (a prefix of it is fine):
    /// whether all of `want` has arrived (and is consumed).
    pub fn expect(&mut self, want: &[u8]) -> Result<bool, ChannelError> {
        let rest = self.rest();
        let n = rest.len().min(want.len());
        if rest.get(..n) != want.get(..n) {
            return Err(ChannelError::NotAClient);
        }
        if n == want.len() {
            self.at += n;
            return Ok(true);
        }
        Ok(false)
    }
}
