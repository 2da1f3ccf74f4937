//! The stand-in's store: dom0's real management service
//! (`kestrel_toolstack::server::Server`) over a real store on a 16 MiB
//! in-memory disk answers `import_*` and `export_*`, so hvctl's
//! `volume import|export` and `image import` are tested against the code
//! dom0 runs.

use std::collections::BTreeSet;

use kestrel_store::{MemDisk, Store};
use kestrel_toolstack::config::DomainConfig;
use kestrel_toolstack::proto::{Outcome, ServerLine, SessionId, decode_server_line};
use kestrel_toolstack::server::store::ImageStore;
use kestrel_toolstack::server::{HvDomain, Hypervisor, Server};
use pvabi::Error;

pub struct Hv {
    pub store: Store<MemDisk>,
}

impl Hypervisor for Hv {
    fn list(&mut self) -> Result<Vec<u32>, Error> {
        Ok(vec![0])
    }
    fn info(&mut self, _: u32) -> Result<HvDomain, Error> {
        Err(Error::NoEntry)
    }
    fn images(&mut self) -> Vec<String> {
        vec!["hello".into()]
    }
    fn create(&mut self, _: &DomainConfig) -> Result<u32, Error> {
        Err(Error::NoSys)
    }
    fn unpause(&mut self, _: u32) -> Result<(), Error> {
        Err(Error::NoSys)
    }
    fn pause(&mut self, _: u32) -> Result<(), Error> {
        Err(Error::NoSys)
    }
    fn destroy(&mut self, _: u32) -> Result<(), Error> {
        Err(Error::NoSys)
    }
    fn console_input(&mut self, _: u32, _: &[u8]) -> Result<usize, Error> {
        Err(Error::NoSys)
    }
    fn store(&mut self) -> Option<&mut dyn ImageStore> {
        Some(&mut self.store)
    }
}

pub struct Xfer {
    server: Server,
    pub hv: Hv,
    open: BTreeSet<SessionId>,
}

impl Default for Xfer {
    fn default() -> Self {
        Self {
            server: Server::new(),
            hv: Hv {
                store: Store::format(MemDisk::new(512, 32 * 1024)).unwrap(),
            },
            open: BTreeSet::new(),
        }
    }
}

const HELLO: &[u8] = br#"{"id":0,"op":"hello","version":1,"client":"fake"}"#;

impl Xfer {
    /// Answers one request line (session tag split off).
    pub fn handle(&mut self, session: SessionId, line: &[u8]) -> Outcome {
        if self.open.insert(session) {
            self.server
                .handle_session_line(&mut self.hv, session, Ok(HELLO.to_vec()));
        }
        let out = self
            .server
            .handle_session_line(&mut self.hv, session, Ok(line.to_vec()));
        match decode_server_line(out.as_bytes()).unwrap() {
            ServerLine::Response(r) => r.result,
            ServerLine::Event(e) => panic!("event {e:?}"),
        }
    }

    /// The client went: dom0 sends its `bye` (its import is dropped).
    pub fn end_session(&mut self, session: SessionId) {
        if self.open.remove(&session) {
            self.server.handle_session_line(
                &mut self.hv,
                session,
                Ok(br#"{"id":0,"op":"bye"}"#.to_vec()),
            );
        }
    }
}
