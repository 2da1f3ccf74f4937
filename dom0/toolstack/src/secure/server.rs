//! dom0's end of the channel: checks the hello, tries the first message
//! with every configured key, answers, then opens and seals records.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::frame::Input;
use super::{ChannelError, FillRandom, HELLO, Key, MAX_RECORD, OK_LINE, REFUSED, handshake};
use crate::proto::{LineBuffer, ProtoError};

/// A key dom0 accepts, with the name it is logged by (its key file).
#[derive(Debug, Clone)]
pub struct NamedKey {
    pub name: String,
    pub key: Key,
}

enum State {
    Hello,
    First,
    Open {
        t: alloc::boxed::Box<snow::TransportState>,
    },
    Closed,
}

/// One connection's server side.
pub struct ServerChannel {
    state: State,
    keys: Arc<[NamedKey]>,
    fill: FillRandom,
    input: Input,
    output: Vec<u8>,
    lines: LineBuffer,
    key_name: Option<String>,
}

impl ServerChannel {
    pub fn new(keys: Arc<[NamedKey]>, fill: FillRandom) -> Self {
        Self {
            state: State::Hello,
            keys,
            fill,
            input: Input::default(),
            output: Vec::new(),
            lines: LineBuffer::new(),
            key_name: None,
        }
    }

    /// Whether the handshake is done and records flow.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    /// Whether the channel failed or refused (close the connection once
    /// [`Self::take_output`] is sent).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The name of the key the client proved it holds.
    pub fn key_name(&self) -> Option<&str> {
        self.key_name.as_deref()
    }

    /// Bytes to send now.
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.output)
    }

    /// Ends the channel with one refusal line (only before it is open:
    /// nothing unauthenticated is written after the handshake).
    fn refuse(&mut self, why: &str, e: ChannelError) -> ChannelError {
        if !self.is_open() {
            self.output.clear();
            self.output.extend_from_slice(REFUSED.as_bytes());
            self.output.extend_from_slice(why.as_bytes());
            self.output.push(b'\n');
        }
        self.state = State::Closed;
        e
    }

    /// Takes bytes from the client; gives the plaintext lines they
    /// completed (as [`LineBuffer`] does: a line over `proto::MAX_LINE` is
    /// dropped and reported). An error ends the channel: send
    /// [`Self::take_output`] (the refusal, if any), then close.
    pub fn receive(
        &mut self,
        bytes: &[u8],
    ) -> Result<Vec<Result<Vec<u8>, ProtoError>>, ChannelError> {
        if self.is_closed() {
            return Err(ChannelError::Closed);
        }
        self.input.push(bytes);
        let mut lines = Vec::new();
        loop {
            match &mut self.state {
                State::Closed => return Err(ChannelError::Closed),
                State::Hello => match self.input.expect(HELLO) {
                    Ok(true) => self.state = State::First,
                    Ok(false) => return Ok(lines),
                    Err(e) => {
                        return Err(self.refuse(
                            "not a Kestrel management client: use hvctl --host HOST --key-file FILE \
                             (the authenticated channel, docs/threat-model.md)",
                            e,
                        ));
                    }
                },
                State::First => {
                    let msg = match self.input.record() {
                        Ok(Some(m)) => m,
                        Ok(None) => return Ok(lines),
                        Err(e) => return Err(self.refuse("malformed handshake", e)),
                    };
                    match self.first(&msg) {
                        Ok(t) => self.state = State::Open { t },
                        Err(ChannelError::BadKey) => {
                            return Err(self.refuse("authentication failed", ChannelError::BadKey));
                        }
                        Err(e) => return Err(self.refuse("handshake failed", e)),
                    }
                }
                State::Open { t } => {
                    let msg = match self.input.record() {
                        Ok(Some(m)) => m,
                        Ok(None) => return Ok(lines),
                        Err(e) => return Err(self.refuse("", e)),
                    };
                    let mut plain = alloc::vec![0u8; MAX_RECORD];
                    match t.read_message(&msg, &mut plain) {
                        Ok(n) => {
                            lines.extend(self.lines.extend(plain.get(..n).unwrap_or_default()))
                        }
                        Err(_) => return Err(self.refuse("", ChannelError::Tampered)),
                    }
                }
            }
        }
    }

    /// The first message: tried with each key in turn (no Diffie-Hellman
    /// in it, so a wrong key costs a hash and a failed tag check); with
    /// the one that opens it, the answer is queued.
    fn first(
        &mut self,
        msg: &[u8],
    ) -> Result<alloc::boxed::Box<snow::TransportState>, ChannelError> {
        let mut payload = alloc::vec![0u8; MAX_RECORD];
        for k in self.keys.iter() {
            let mut hs = handshake(&k.key, self.fill, false)?;
            if hs.read_message(msg, &mut payload).is_err() {
                continue;
            }
            let mut out = alloc::vec![0u8; MAX_RECORD];
            let n = hs.write_message(&[], &mut out).map_err(|e| match e {
                snow::Error::Rng => ChannelError::NoRandom,
                _ => ChannelError::Malformed("handshake answer"),
            })?;
            let t = hs
                .into_transport_mode()
                .map_err(|_| ChannelError::Malformed("handshake state"))?;
            self.output.extend_from_slice(OK_LINE);
            super::record(&mut self.output, out.get(..n).unwrap_or_default());
            self.key_name = Some(k.name.clone());
            return Ok(alloc::boxed::Box::new(t));
        }
        Err(ChannelError::BadKey)
    }

    /// Queues `plain` (protocol lines) for the client.
    pub fn send(&mut self, plain: &[u8]) -> Result<(), ChannelError> {
        match &mut self.state {
            State::Open { t } => super::seal(t, plain, &mut self.output),
            _ => Err(ChannelError::Closed),
        }
    }
}
