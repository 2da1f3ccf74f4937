//! The store's requests (`image_list`, `image_delete`, `volume_create`,
//! `volume_list`, `volume_delete`; docs/store.md): answered from dom0's
//! image store ([`kestrel_store::Store`]), which the [`Hypervisor`] hands
//! out when dom0 has one.

use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;

use kestrel_store::{Disk, Kind, Store, StoreError};

use super::{Hypervisor, err};
use crate::proto::{ErrorCode, ImageInfo, ImageSource, Op, ProtoError, Reply, VolumeInfo};

/// What the service needs of a store (object-safe, so dom0's store with
/// its own disk type can be handed out as `&mut dyn ImageStore`).
pub trait ImageStore: super::upload_store::StoreStream {
    fn images(&mut self) -> Vec<ImageInfo>;
    fn volumes(&mut self) -> Vec<VolumeInfo>;
    fn delete(&mut self, kind: Kind, name: &str) -> Result<(), StoreError>;
    fn create_volume(&mut self, name: &str, size: u64) -> Result<VolumeInfo, StoreError>;
    /// Imports and exports (`volume_xfer.rs`).
    fn xfer(&mut self) -> &mut dyn super::volume_xfer::XferStore;
}

impl<D: Disk> ImageStore for Store<D> {
    fn images(&mut self) -> Vec<ImageInfo> {
        self.objects()
            .iter()
            .filter(|o| o.kind == Kind::Image)
            .map(|o| (o.name.clone(), o.size, kestrel_store::hex(&o.sha256)))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|(name, size, sha256)| {
                // Its first four bytes say whether it is an ELF image.
                let mut magic = [0u8; 4];
                let elf = size >= 4
                    && Store::read(self, Kind::Image, &name, 0, &mut magic).is_ok()
                    && super::upload::is_elf(&magic);
                ImageInfo {
                    name,
                    size,
                    sha256,
                    source: ImageSource::Store,
                    elf,
                }
            })
            .collect()
    }
    fn volumes(&mut self) -> Vec<VolumeInfo> {
        self.objects()
            .iter()
            .filter(|o| o.kind == Kind::Volume)
            .map(|o| VolumeInfo {
                name: o.name.clone(),
                size_bytes: o.size,
            })
            .collect()
    }
    fn delete(&mut self, kind: Kind, name: &str) -> Result<(), StoreError> {
        Store::delete(self, kind, name)
    }
    fn create_volume(&mut self, name: &str, size: u64) -> Result<VolumeInfo, StoreError> {
        Store::create_volume(self, name, size).map(|o| VolumeInfo {
            name: o.name,
            size_bytes: o.size,
        })
    }
    fn xfer(&mut self) -> &mut dyn super::volume_xfer::XferStore {
        self
    }
}

/// The protocol's error for a store error.
pub fn store_err(e: StoreError) -> ProtoError {
    let code = match &e {
        StoreError::NotFound(_) => ErrorCode::NoSuchObject,
        StoreError::Exists(_) => ErrorCode::Exists,
        StoreError::NoSpace { .. } => ErrorCode::NoResources,
        StoreError::BadName(_) | StoreError::Invalid(_) | StoreError::Qcow2(_) => {
            ErrorCode::BadRequest
        }
        _ => ErrorCode::Internal,
    };
    err(code, e.to_string())
}

/// The store's images (`image_list` lists them after the boot modules and
/// uploads); none without a store.
pub fn images(hv: &mut impl Hypervisor) -> Vec<ImageInfo> {
    hv.store().map(|s| s.images()).unwrap_or_default()
}

/// `image_delete` of a name that is neither a boot module nor an upload:
/// the store's image of that name.
pub fn delete_image(hv: &mut impl Hypervisor, name: &str) -> Result<Reply, ProtoError> {
    let Some(store) = hv.store() else {
        return Err(err(
            ErrorCode::NoSuchImage,
            format!("no image {name:?} (uploaded; dom0 has no store)"),
        ));
    };
    match store.delete(Kind::Image, name) {
        Ok(()) => Ok(Reply::Done),
        Err(StoreError::NotFound(_)) => Err(err(
            ErrorCode::NoSuchImage,
            format!("no image {name:?} (uploaded or in the store)"),
        )),
        Err(e) => Err(store_err(e)),
    }
}

/// Answers a volume request.
pub fn handle(hv: &mut impl Hypervisor, op: Op) -> Result<Reply, ProtoError> {
    let Some(store) = hv.store() else {
        return Err(err(
            ErrorCode::BadState,
            "dom0 has no image store: no [store] in its boot configuration, or its disk \
             could not be opened (hvctl log says why)",
        ));
    };
    match op {
        Op::VolumeList => Ok(Reply::Volumes {
            volumes: store.volumes(),
        }),
        Op::VolumeDelete { name } => store
            .delete(Kind::Volume, &name)
            .map(|()| Reply::Done)
            .map_err(store_err),
        Op::VolumeCreate { name, size_bytes } => store
            .create_volume(&name, size_bytes)
            .map(|v| Reply::Volumes {
                volumes: [v].into(),
            })
            .map_err(store_err),
        other => Err(err(
            ErrorCode::Internal,
            format!("not a store request: {other:?}"),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kestrel_store::MemDisk;

    struct Fake(Option<Store<MemDisk>>);

    // Only `store` matters here; the rest are never called.
    impl Hypervisor for Fake {
        fn list(&mut self) -> Result<Vec<u32>, pvabi::Error> {
            Ok(Vec::new())
        }
        fn info(&mut self, _: u32) -> Result<super::super::HvDomain, pvabi::Error> {
            Err(pvabi::Error::NoEntry)
        }
        fn images(&mut self) -> Vec<alloc::string::String> {
            Vec::new()
        }
        fn create(&mut self, _: &crate::config::DomainConfig) -> Result<u32, pvabi::Error> {
            Err(pvabi::Error::NoSys)
        }
        fn unpause(&mut self, _: u32) -> Result<(), pvabi::Error> {
            Ok(())
        }
        fn pause(&mut self, _: u32) -> Result<(), pvabi::Error> {
            Ok(())
        }
        fn destroy(&mut self, _: u32) -> Result<(), pvabi::Error> {
            Ok(())
        }
        fn console_input(&mut self, _: u32, _: &[u8]) -> Result<usize, pvabi::Error> {
            Ok(0)
        }
        fn store(&mut self) -> Option<&mut dyn ImageStore> {
            self.0.as_mut().map(|s| s as &mut dyn ImageStore)
        }
    }

    #[test]
    fn store_requests_end_to_end() {
        let mut s = Store::format(MemDisk::new(512, 4096)).unwrap();
        s.import("web", b"hello").unwrap();
        s.import("kernel", b"\x7fELF and the rest").unwrap();
        let mut hv = Fake(Some(s));
        let mut list = images(&mut hv);
        list.sort_by(|a, b| a.name.cmp(&b.name));
        let got: Vec<_> = list
            .iter()
            .map(|i| (i.name.as_str(), i.size, i.source, i.elf))
            .collect();
        assert_eq!(
            got,
            [
                ("kernel", 17, ImageSource::Store, true),
                ("web", 5, ImageSource::Store, false)
            ]
        );
        assert_eq!(
            list[1].sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        let op = Op::VolumeCreate {
            name: "data".into(),
            size_bytes: 1 << 20,
        };
        let Reply::Volumes { volumes } = handle(&mut hv, op.clone()).unwrap() else {
            panic!()
        };
        assert_eq!(volumes[0].size_bytes, 1 << 20);
        assert_eq!(handle(&mut hv, op).unwrap_err().code, ErrorCode::Exists);
        let big = Op::VolumeCreate {
            name: "big".into(),
            size_bytes: 1 << 30,
        };
        let e = handle(&mut hv, big).unwrap_err();
        assert_eq!(e.code, ErrorCode::NoResources);
        assert!(
            e.message.contains("1073741824 bytes needed"),
            "{}",
            e.message
        );
        let gone = Op::VolumeDelete {
            name: "nope".into(),
        };
        let e = handle(&mut hv, gone).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::NoSuchObject, "no volume named \"nope\"")
        );
        assert_eq!(delete_image(&mut hv, "web").unwrap(), Reply::Done);
        assert_eq!(
            delete_image(&mut hv, "web").unwrap_err().code,
            ErrorCode::NoSuchImage
        );
        assert_eq!(images(&mut hv).len(), 1);
        let e = handle(&mut Fake(None), Op::VolumeList).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadState);
        assert!(images(&mut Fake(None)).is_empty());
        let e = delete_image(&mut Fake(None), "web").unwrap_err();
        assert_eq!(e.code, ErrorCode::NoSuchImage);
    }
}
