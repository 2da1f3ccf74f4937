//! The stand-in's images: dom0's real upload state machine and in-memory
//! keeper (`kestrel_toolstack::server::upload`), one boot module `hello`.

use kestrel_toolstack::proto::{
    ErrorCode, ImageInfo, ImageSource, Op, Outcome, ProtoError, Reply, SessionId,
};
use kestrel_toolstack::server::upload::{Uploads, hex, sha256};
use kestrel_toolstack::server::{ImageKeeper, MemImages};

pub struct Images {
    uploads: Uploads,
    pub keeper: MemImages,
}

impl Default for Images {
    fn default() -> Self {
        Self {
            uploads: Uploads::default(),
            keeper: MemImages::new(1 << 20),
        }
    }
}

/// The boot module every stand-in has.
pub fn module() -> ImageInfo {
    ImageInfo {
        name: "hello".into(),
        size: 5,
        sha256: hex(&sha256(b"hello")),
        source: ImageSource::Module,
        elf: true,
    }
}

impl Images {
    /// Names a configuration may use.
    pub fn names(&self) -> Vec<String> {
        let mut n = vec!["hello".to_string(), "web.elf".to_string()];
        n.extend(self.keeper.list().into_iter().map(|i| i.name));
        n
    }

    pub fn end_session(&mut self, session: SessionId) {
        self.uploads.end_session(session);
    }

    pub fn handle(&mut self, session: SessionId, op: Op) -> Outcome {
        match self.op(session, op) {
            Ok(r) => Outcome::Ok(r),
            Err(e) => Outcome::Error(e),
        }
    }

    fn op(&mut self, session: SessionId, op: Op) -> Result<Reply, ProtoError> {
        match op {
            Op::ImageList => {
                let mut images = vec![module()];
                images.extend(self.keeper.list());
                Ok(Reply::Images { images })
            }
            Op::ImageDelete { name } => {
                if self.keeper.remove(&name) {
                    Ok(Reply::Done)
                } else {
                    Err(ProtoError::new(
                        ErrorCode::NoSuchImage,
                        format!("no uploaded image {name:?}"),
                    ))
                }
            }
            Op::UploadBegin { name, size, sha256 } => {
                let taken = self.names().contains(&name);
                let room = self.keeper.room();
                self.uploads
                    .begin(session, &name, size, &sha256, taken, room)?;
                Ok(Reply::Done)
            }
            Op::UploadChunk { name, offset, data } => {
                self.uploads.chunk(session, &name, offset, &data)?;
                Ok(Reply::Done)
            }
            Op::UploadEnd { name } => {
                let (name, bytes, sha) = self.uploads.end(session, &name)?;
                let image = ImageInfo {
                    name: name.clone(),
                    size: bytes.len() as u64,
                    sha256: hex(&sha),
                    source: ImageSource::Upload,
                    elf: bytes.starts_with(b"\x7fELF"),
                };
                self.keeper.keep(name, bytes, sha)?;
                Ok(Reply::Image { image })
            }
            Op::UploadAbort { name } => {
                self.uploads.abort(session, &name)?;
                Ok(Reply::Done)
            }
            _ => Err(ProtoError::new(ErrorCode::Internal, "not an image op")),
        }
    }
}
