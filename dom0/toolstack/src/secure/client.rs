//! hvctl's end of the channel: sends the hello and the first message,
//! reads the server's status line and answer, then seals and opens
//! records.

use alloc::string::String;
use alloc::vec::Vec;

use super::frame::{Input, MAX_STATUS};
use super::{ChannelError, FillRandom, HELLO, Key, MAX_RECORD, REFUSED, handshake};
use crate::proto::{LineBuffer, ProtoError};

enum State {
    Status(alloc::boxed::Box<snow::HandshakeState>),
    Answer(alloc::boxed::Box<snow::HandshakeState>),
    Open(alloc::boxed::Box<snow::TransportState>),
    Closed,
}

/// One connection's client side.
pub struct ClientChannel {
    state: State,
    input: Input,
    output: Vec<u8>,
    lines: LineBuffer,
}

impl ClientChannel {
    /// Starts a handshake with `key`: the hello and the first message are
    /// queued ([`Self::take_output`]).
    pub fn new(key: &Key, fill: FillRandom) -> Result<Self, ChannelError> {
        let mut hs = handshake(key, fill, true)?;
        let mut out = alloc::vec![0u8; MAX_RECORD];
        let n = hs.write_message(&[], &mut out).map_err(|e| match e {
            snow::Error::Rng => ChannelError::NoRandom,
            _ => ChannelError::Malformed("first message"),
        })?;
        let mut output = HELLO.to_vec();
        super::record(&mut output, out.get(..n).unwrap_or_default());
        Ok(Self {
            state: State::Status(alloc::boxed::Box::new(hs)),
            input: Input::default(),
            output,
            lines: LineBuffer::new(),
        })
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.output)
    }

    /// Takes bytes from the server; gives the plaintext lines they
    /// completed. An error ends the channel.
    pub fn receive(
        &mut self,
        bytes: &[u8],
    ) -> Result<Vec<Result<Vec<u8>, ProtoError>>, ChannelError> {
        self.input.push(bytes);
        let mut lines = Vec::new();
        loop {
            let state = core::mem::replace(&mut self.state, State::Closed);
            match state {
                State::Closed => return Err(ChannelError::Closed),
                State::Status(hs) => match self.input.line(MAX_STATUS)? {
                    None => {
                        self.state = State::Status(hs);
                        return Ok(lines);
                    }
                    Some(l) if l == b"ok" => self.state = State::Answer(hs),
                    Some(l) => {
                        let l = String::from_utf8_lossy(&l).into_owned();
                        return Err(match l.strip_prefix(REFUSED) {
                            Some(why) => ChannelError::Refused(why.into()),
                            None => ChannelError::Malformed("not a Kestrel management server"),
                        });
                    }
                },
                State::Answer(mut hs) => {
                    let Some(msg) = self.input.record()? else {
                        self.state = State::Answer(hs);
                        return Ok(lines);
                    };
                    let mut payload = alloc::vec![0u8; MAX_RECORD];
                    hs.read_message(&msg, &mut payload)
                        .map_err(|_| ChannelError::BadKey)?;
                    let t = hs
                        .into_transport_mode()
                        .map_err(|_| ChannelError::Malformed("handshake state"))?;
                    self.state = State::Open(alloc::boxed::Box::new(t));
                }
                State::Open(mut t) => {
                    let Some(msg) = self.input.record()? else {
                        self.state = State::Open(t);
                        return Ok(lines);
                    };
                    let mut plain = alloc::vec![0u8; MAX_RECORD];
                    let n = t
                        .read_message(&msg, &mut plain)
                        .map_err(|_| ChannelError::Tampered)?;
                    lines.extend(self.lines.extend(plain.get(..n).unwrap_or_default()));
                    self.state = State::Open(t);
                }
            }
        }
    }

    /// Queues `plain` (protocol lines) for the server.
    pub fn send(&mut self, plain: &[u8]) -> Result<(), ChannelError> {
        match &mut self.state {
            State::Open(t) => super::seal(t, plain, &mut self.output),
            _ => Err(ChannelError::Closed),
        }
    }

    /// Bytes received and not yet a whole record (nonzero at the end of
    /// the stream: the server's stream was cut).
    pub fn pending(&self) -> usize {
        self.input.pending()
    }
}
