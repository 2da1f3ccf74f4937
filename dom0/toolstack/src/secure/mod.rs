//! The authenticated management channel (dom0's TCP service and
//! `hvctl --host`): the Noise protocol framework's `NNpsk0` handshake with
//! X25519, ChaCha20-Poly1305 and BLAKE2s (`snow`, on RustCrypto), keyed by
//! a 32-byte pre-shared key both ends read from a key file. Why this and
//! what it protects against: docs/threat-model.md, "Management over the
//! network".
//!
//! Sans-I/O: [`ServerChannel`] and [`ClientChannel`] take the bytes that
//! arrived and give the plaintext lines they completed, and queue the bytes
//! to send; dom0 drives them from smoltcp sockets, hvctl from a
//! `TcpStream`.
//!
//! On the wire:
//! 1. client: [`HELLO`] (a text line naming the protocol), then the
//!    handshake's first message as a record;
//! 2. server: `ok\n` and the handshake's second message as a record, or one
//!    line `refused: <why>\n` and it closes the connection;
//! 3. both: records carrying the JSON-lines protocol (`proto`) in order.
//!
//! A record is a 2-byte big-endian length and that many bytes of Noise
//! message (at most 65535, Noise spec section 3). The hello line is the
//! prologue (Noise spec 6): a peer that saw another one fails the
//! handshake.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use snow::params::NoiseParams;
use snow::resolvers::{BoxedCryptoResolver, CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use zeroize::Zeroize;

mod client;
mod frame;
mod server;
#[cfg(test)]
mod tests;

pub use client::ClientChannel;
pub use server::{NamedKey, ServerChannel};

/// The Noise protocol name, fixed: nothing is negotiated.
pub const NOISE: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";

/// What a client sends first (and the handshake's prologue).
pub const HELLO: &[u8] = b"KESTREL-MGMT/1 Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s\n";

/// The server's answer to a good first message, before its own.
pub const OK_LINE: &[u8] = b"ok\n";

/// How a refusal line starts.
pub const REFUSED: &str = "refused: ";

/// Longest Noise message (Noise spec section 3).
pub const MAX_RECORD: usize = 65535;

/// ChaCha20-Poly1305's tag: the bytes a record adds to its plaintext.
const TAG: usize = 16;

/// Most plaintext bytes in one record.
pub const MAX_CHUNK: usize = MAX_RECORD - TAG;

/// Fills the buffer with random bytes fit for keys; false if it cannot
/// (then no handshake starts). dom0: RDRAND; hvctl: the OS.
pub type FillRandom = fn(&mut [u8]) -> bool;

/// Why a channel failed. After any of them the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelError {
    /// The server refused us (client side): its reason.
    Refused(String),
    /// The peer did not start with [`HELLO`] (server side; refused).
    NotAClient,
    /// The first message did not decrypt with any key (server side;
    /// refused), or the server's answer did not (client side: it does not
    /// hold our key, or someone in between answered).
    BadKey,
    /// A record failed authentication: changed, replayed, reordered or cut.
    Tampered,
    /// Bytes that do not follow the framing: what was wrong.
    Malformed(&'static str),
    /// No random bytes for the ephemeral key.
    NoRandom,
    /// The channel is closed (after an error or a refusal).
    Closed,
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(why) => write!(f, "dom0 refused the connection: {why}"),
            Self::NotAClient => {
                f.write_str("the peer did not start the Kestrel management handshake")
            }
            Self::BadKey => f.write_str("authentication failed: the peer does not hold our key"),
            Self::Tampered => {
                f.write_str("a record failed authentication (changed, replayed or reordered)")
            }
            Self::Malformed(what) => write!(f, "malformed channel data: {what}"),
            Self::NoRandom => f.write_str("no random bytes for the handshake's ephemeral key"),
            Self::Closed => f.write_str("the channel is closed"),
        }
    }
}

/// A pre-shared key: 32 bytes, written as 64 hex digits in its file.
/// Zeroed when dropped; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl Drop for Key {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A key file's text: 64 hex digits, whitespace around them allowed
    /// (`hvctl keygen`, or `openssl rand -hex 32`).
    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let t = text.trim_ascii();
        if t.len() != 64 {
            return Err(alloc::format!(
                "a key file holds 64 hex digits (32 bytes), this one {} characters",
                t.len()
            ));
        }
        let mut k = [0u8; 32];
        for (i, pair) in t.chunks(2).enumerate() {
            let d = |c: u8| (c as char).to_digit(16);
            match (
                pair.first().and_then(|&c| d(c)),
                pair.get(1).and_then(|&c| d(c)),
            ) {
                (Some(h), Some(l)) => {
                    if let Some(b) = k.get_mut(i) {
                        *b = (h * 16 + l) as u8;
                    }
                }
                _ => {
                    k.zeroize();
                    return Err(String::from("a key file holds hex digits only (0-9, a-f)"));
                }
            }
        }
        if k == [0; 32] {
            return Err(String::from(
                "the key is all zeros: generate one with hvctl keygen",
            ));
        }
        Ok(Self(k))
    }

    /// A new random key.
    pub fn generate(fill: FillRandom) -> Result<Self, ChannelError> {
        let mut k = [0u8; 32];
        if !fill(&mut k) {
            return Err(ChannelError::NoRandom);
        }
        Ok(Self(k))
    }

    /// The key file's text (64 hex digits and a newline).
    pub fn to_file_text(&self) -> String {
        let mut s = String::with_capacity(65);
        for b in self.0 {
            s.push_str(&alloc::format!("{b:02x}"));
        }
        s.push('\n');
        s
    }

    fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// snow's default primitives with our randomness.
struct Resolver(FillRandom);

struct Rng(FillRandom);

impl Random for Rng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        if (self.0)(dest) {
            Ok(())
        } else {
            Err(snow::Error::Rng)
        }
    }
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<alloc::boxed::Box<dyn Random>> {
        Some(alloc::boxed::Box::new(Rng(self.0)))
    }
    fn resolve_dh(&self, c: &snow::params::DHChoice) -> Option<alloc::boxed::Box<dyn Dh>> {
        DefaultResolver.resolve_dh(c)
    }
    fn resolve_hash(&self, c: &snow::params::HashChoice) -> Option<alloc::boxed::Box<dyn Hash>> {
        DefaultResolver.resolve_hash(c)
    }
    fn resolve_cipher(
        &self,
        c: &snow::params::CipherChoice,
    ) -> Option<alloc::boxed::Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(c)
    }
}

/// A handshake state for `key`, initiator or responder.
fn handshake(
    key: &Key,
    fill: FillRandom,
    initiator: bool,
) -> Result<snow::HandshakeState, ChannelError> {
    let params: NoiseParams = NOISE
        .parse()
        .map_err(|_| ChannelError::Malformed("noise parameters"))?;
    let resolver: BoxedCryptoResolver = alloc::boxed::Box::new(Resolver(fill));
    let b = snow::Builder::with_resolver(params, resolver)
        .prologue(HELLO)
        .and_then(|b| b.psk(0, key.bytes()));
    let b = b.map_err(|_| ChannelError::Malformed("noise set-up"))?;
    let hs = if initiator {
        b.build_initiator()
    } else {
        b.build_responder()
    };
    hs.map_err(|e| match e {
        snow::Error::Rng => ChannelError::NoRandom,
        _ => ChannelError::Malformed("noise set-up"),
    })
}

/// `msg` as a record: its length (2 bytes, big-endian), then it.
fn record(out: &mut Vec<u8>, msg: &[u8]) {
    let n = u16::try_from(msg.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(msg.get(..usize::from(n)).unwrap_or(msg));
}

/// Encrypts `plain` into records on `out`, in chunks of at most
/// [`MAX_CHUNK`] bytes.
fn seal(t: &mut snow::TransportState, plain: &[u8], out: &mut Vec<u8>) -> Result<(), ChannelError> {
    let mut buf = alloc::vec![0u8; MAX_RECORD];
    for chunk in plain.chunks(MAX_CHUNK) {
        let n = t
            .write_message(chunk, &mut buf)
            .map_err(|_| ChannelError::Malformed("record too long"))?;
        record(out, buf.get(..n).unwrap_or_default());
    }
    Ok(())
}
