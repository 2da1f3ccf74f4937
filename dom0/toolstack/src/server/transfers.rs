//! What the three ways of sending dom0 bytes share (`upload_*` into
//! memory, `upload.rs`; `upload_*` into the store, `upload_store.rs`;
//! `import_*`, `volume_xfer.rs`):
//!
//! - **One name, one maker.** An image name that an upload is making
//!   cannot be imported, nor one an import is making uploaded (nor
//!   imported twice): the second `upload_begin` / `import_begin` is
//!   refused at once, naming who holds the name, instead of both running
//!   to the end where the store would refuse the second commit after all
//!   its bytes were sent.
//! - **An idle limit.** A transfer sets aside the whole announced size
//!   (dom0's heap, or the store's blocks) at its begin. A connected client
//!   that then sends nothing would hold that space for as long as its
//!   connection lives, so a transfer that gets no request for
//!   [`DEFAULT_IDLE_NS`] (configurable: [`Server::set_transfer_idle`],
//!   dom0's `xfer_idle=<seconds>`) is dropped, its space freed, and a
//!   line logged. The connection itself stays.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;

use super::{Hypervisor, Server, err};
use crate::proto::{ErrorCode, ObjectKind, Op, ProtoError, SessionId};

/// How long a transfer may go without a request before it is dropped.
pub const DEFAULT_IDLE_NS: u64 = 60_000_000_000;

/// When each session's transfer last had a request.
#[derive(Debug)]
pub struct Idle {
    last: BTreeMap<SessionId, u64>,
    limit_ns: u64,
}

impl Default for Idle {
    fn default() -> Self {
        Self {
            last: BTreeMap::new(),
            limit_ns: DEFAULT_IDLE_NS,
        }
    }
}

/// Whether `op` is a request of a transfer into dom0 (it keeps the
/// session's transfer alive).
fn is_transfer(op: &Op) -> bool {
    matches!(
        op,
        Op::UploadBegin { .. }
            | Op::UploadChunk { .. }
            | Op::UploadEnd { .. }
            | Op::ImportBegin { .. }
            | Op::ImportChunk { .. }
            | Op::ImportZeros { .. }
            | Op::ImportEnd { .. }
    )
}

impl Server {
    /// Sets the idle limit of transfers (0: the default).
    pub fn set_transfer_idle(&mut self, limit_ns: u64) {
        self.idle.limit_ns = if limit_ns == 0 {
            DEFAULT_IDLE_NS
        } else {
            limit_ns
        };
    }

    /// Who makes image `name` now, if anyone: an upload (into memory or
    /// the store) or an image import, and in which session.
    fn image_maker(&self, name: &str) -> Option<(&'static str, SessionId)> {
        if let Some(s) = self.uploads.uploader(name) {
            return Some(("an upload", s));
        }
        if let Some(s) = self.store_uploads.uploader(name) {
            return Some(("an upload", s));
        }
        self.xfers
            .importer(kind_of(ObjectKind::Image), name)
            .map(|s| ("an image import", s))
    }

    /// Refuses an `upload_begin` or `import_begin` of a name another
    /// session's transfer is making (a volume import: only another volume
    /// import of the name). The session's own transfer of the name is left
    /// to the begin itself ("already uploading ...: end or abort it first").
    pub(super) fn check_maker(&self, me: SessionId, op: &Op) -> Result<(), ProtoError> {
        let (name, maker) = match op {
            Op::UploadBegin { name, .. }
            | Op::ImportBegin {
                kind: ObjectKind::Image,
                name,
                ..
            } => (name, self.image_maker(name)),
            Op::ImportBegin {
                kind: ObjectKind::Volume,
                name,
                ..
            } => (
                name,
                self.xfers
                    .importer(kind_of(ObjectKind::Volume), name)
                    .map(|s| ("a volume import", s)),
            ),
            _ => return Ok(()),
        };
        let Some((who, session)) = maker.filter(|(_, s)| *s != me) else {
            return Ok(());
        };
        let what = if matches!(
            op,
            Op::ImportBegin {
                kind: ObjectKind::Volume,
                ..
            }
        ) {
            "a volume"
        } else {
            "an image"
        };
        Err(err(
            ErrorCode::Exists,
            format!(
                "{what} named {name:?} is being made by {who} ({}): wait until it ends or \
                 choose another name",
                session_name(session)
            ),
        ))
    }

    /// A request arrived in `session` at `now`: a transfer request keeps
    /// its transfer alive.
    pub(super) fn note_transfer(&mut self, session: SessionId, op: &Op, now: u64) {
        if is_transfer(op) {
            self.idle.last.insert(session, now);
        }
    }

    /// Whether `session` holds a transfer into dom0.
    fn holds(&self, session: SessionId) -> bool {
        self.uploads.holds(session)
            || self.store_uploads.holds(session)
            || self.xfers.holds_import(session)
    }

    /// Drops the transfers that had no request for the idle limit, freeing
    /// what they set aside; one line each in `lifecycle.notes` (dom0
    /// logs them).
    pub(super) fn expire_idle(&mut self, hv: &mut impl Hypervisor, now: u64) {
        let limit = self.idle.limit_ns;
        let sessions: alloc::vec::Vec<(SessionId, u64)> =
            self.idle.last.iter().map(|(s, t)| (*s, *t)).collect();
        for (session, last) in sessions {
            if !self.holds(session) {
                self.idle.last.remove(&session);
                continue;
            }
            if now.saturating_sub(last) <= limit {
                continue;
            }
            self.idle.last.remove(&session);
            let mut what = String::new();
            if let Some(name) = self.uploads.end_session(session) {
                what = format!("upload of {name:?} (into memory)");
            }
            if let Some(name) = self.end_store_upload(hv, session) {
                what = format!("upload of {name:?} (into the store)");
            }
            if let Some(name) = self.xfers.drop_import(hv, session) {
                what = format!("import of {name:?}");
            }
            self.lifecycle.notes.push(format!(
                "{}: the {what} had no request for {} s: dropped, the space set aside for it \
                 is free again",
                session_name(session),
                limit / 1_000_000_000
            ));
        }
    }

    /// When the next transfer runs past the idle limit (system time).
    pub(super) fn idle_deadline(&self) -> Option<u64> {
        self.idle
            .last
            .iter()
            .filter(|(s, _)| self.holds(**s))
            // One nanosecond past the limit, since expiry checks "over".
            .map(|(_, t)| t.saturating_add(self.idle.limit_ns).saturating_add(1))
            .min()
    }
}

fn kind_of(k: ObjectKind) -> kestrel_store::Kind {
    match k {
        ObjectKind::Image => kestrel_store::Kind::Image,
        ObjectKind::Volume => kestrel_store::Kind::Volume,
    }
}

fn session_name(session: SessionId) -> String {
    match session {
        Some(s) => format!("session {s}"),
        None => String::from("the untagged session"),
    }
}
