//! The image ops of [`Server`]: `image_list`, `image_delete` and the
//! `upload_*` requests (the state machine is `upload.rs`); the store's
//! images (`store.rs`) are listed and deleted here with the others.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::{Hypervisor, Server, err, store, upload};
use crate::proto::{ErrorCode, ImageInfo, ImageSource, Op, ProtoError, Reply, SessionId};

fn no_uploads() -> ProtoError {
    err(
        ErrorCode::BadState,
        "this dom0 keeps no uploaded images (no image keeper)",
    )
}

impl Server {
    /// Every image: boot modules first, then uploaded ones, then the
    /// store's.
    fn all_images(hv: &mut impl Hypervisor) -> Vec<ImageInfo> {
        let mut all = hv.module_images();
        if let Some(k) = hv.keeper() {
            all.extend(k.list());
        }
        all.extend(store::images(hv));
        all
    }

    pub(super) fn image_op(
        &mut self,
        hv: &mut impl Hypervisor,
        session: SessionId,
        op: Op,
    ) -> Result<Reply, ProtoError> {
        // Into the store when dom0 has one (`upload_store.rs`).
        if let Some(r) = self.store_upload_op(hv, session, &op) {
            return r;
        }
        match op {
            Op::ImageList => Ok(Reply::Images {
                images: Self::all_images(hv),
            }),
            Op::ImageDelete { name } => self.delete(hv, &name),
            Op::UploadBegin { name, size, sha256 } => {
                let taken = hv.images().contains(&name)
                    || hv.module_images().iter().any(|i| i.name == name);
                let room = hv.keeper().ok_or_else(no_uploads)?.room();
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
                    sha256: upload::hex(&sha),
                    source: ImageSource::Upload,
                    elf: upload::is_elf(&bytes),
                };
                hv.keeper().ok_or_else(no_uploads)?.keep(name, bytes, sha)?;
                Ok(Reply::Image { image })
            }
            Op::UploadAbort { name } => {
                self.uploads.abort(session, &name)?;
                Ok(Reply::Done)
            }
            _ => Err(err(ErrorCode::Internal, "not an image op")),
        }
    }

    /// `image_delete`: an uploaded image no live domain dom0 may rebuild
    /// from (an `on_reboot = "restart"`) names. A domain already built
    /// does not need it (the hypervisor copied it into its memory), but
    /// refusing while one lives keeps restarts working.
    fn delete(&mut self, hv: &mut impl Hypervisor, name: &str) -> Result<Reply, ProtoError> {
        if hv.module_images().iter().any(|i| i.name == name) {
            return Err(err(
                ErrorCode::BadState,
                format!("{name:?} is a boot module: only uploaded images can be deleted"),
            ));
        }
        let users = self.lifecycle.using_image(name);
        if !users.is_empty() {
            let list: Vec<String> = users.iter().map(|(id, n)| format!("{id} ({n})")).collect();
            return Err(err(
                ErrorCode::BadState,
                format!(
                    "image {name:?} is in use by domain(s) {}: destroy them first",
                    list.join(", ")
                ),
            ));
        }
        if hv.keeper().is_some_and(|k| k.remove(name)) {
            Ok(Reply::Done)
        } else {
            store::delete_image(hv, name)
        }
    }
}
