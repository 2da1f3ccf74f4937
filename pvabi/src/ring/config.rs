//! The typed config page a ring's front hands to its back (1.3).
//!
//! Device configuration is a typed page per device, not a global string
//! store: the front fills a [`RingConfig`] at the start of a page of its
//! own, grants that page read-only to the back **as its first grant to
//! anyone** (so at reference [`RING_CONFIG_GREF`] = 0, references being
//! handed out lowest first), and only then writes [`RingConfig::magic`]
//! last. The back learns the front's domain id from its own configuration
//! (in this repository, `peer=<id>` on its command line), reads the page
//! with [`crate::HC_GRANT_COPY`] (no mapping needed; it retries while the
//! grant does not exist yet or the magic is not there), checks it with
//! [`RingConfig::check`], maps the ring and data pages it names, binds to
//! the event-channel port it names, and attaches the ring's back.
//!
//! Every field is written by the front and, since the front may be hostile,
//! checked by the back: [`RingConfig::check`] returns the geometry and the
//! data-page references only if every field is in range.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{RingError, RingGeometry};

/// [`RingConfig::magic`]: `"KRCF"` little-endian.
pub const RING_CONFIG_MAGIC: u32 = u32::from_le_bytes(*b"KRCF");
/// [`RingConfig::version`] of this layout.
pub const RING_CONFIG_VERSION: u32 = 1;
/// The grant reference of the config page: the front's first grant.
pub const RING_CONFIG_GREF: u32 = 0;
/// Most data pages one config page names.
pub const RING_CONFIG_MAX_DATA: usize = 64;
/// [`RingConfig::kind`]: a bulk-transfer device (requests name a data page
/// and a length, see the test guests `ringprod`/`ringcons`).
pub const DEVICE_KIND_BULK: u32 = 1;

/// A ring device's configuration, at offset 0 of the config page. Every
/// field is IN for the back (written by the front before it writes
/// `magic`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct RingConfig {
    /// [`RING_CONFIG_MAGIC`], written last: the page is complete.
    pub magic: u32,
    /// [`RING_CONFIG_VERSION`].
    pub version: u32,
    /// The device kind, e.g. [`DEVICE_KIND_BULK`].
    pub kind: u32,
    /// The front's event-channel port, allocated unbound for the back:
    /// the back binds to it ([`crate::HC_EVTCHN_BIND_INTERDOMAIN`]).
    pub port: u32,
    /// Grant reference of the ring page (one page, read-write).
    pub ring_gref: u32,
    /// Slots in the ring (a power of two; see [`RingGeometry`]).
    pub ring_slots: u32,
    /// Bytes per slot (a multiple of 4).
    pub slot_bytes: u32,
    /// Number of data pages, `0..=`[`RING_CONFIG_MAX_DATA`].
    pub data_pages: u32,
    /// Whether the data pages are granted read-only (1) or read-write (0).
    pub data_read_only: u32,
    /// Zero.
    pub _pad: u32,
    /// Grant references of the data pages, `data_pages` of them; the rest
    /// zero. Requests name data pages by their index here.
    pub data_grefs: [u32; RING_CONFIG_MAX_DATA],
}

/// Size of [`RingConfig`] in bytes.
pub const RING_CONFIG_SIZE: usize = 296;

const _: () = assert!(core::mem::size_of::<RingConfig>() == RING_CONFIG_SIZE);
const _: () = assert!(core::mem::align_of::<RingConfig>() == 4);
const _: () = assert!(core::mem::offset_of!(RingConfig, magic) == 0);
const _: () = assert!(core::mem::offset_of!(RingConfig, version) == 4);
const _: () = assert!(core::mem::offset_of!(RingConfig, kind) == 8);
const _: () = assert!(core::mem::offset_of!(RingConfig, port) == 12);
const _: () = assert!(core::mem::offset_of!(RingConfig, ring_gref) == 16);
const _: () = assert!(core::mem::offset_of!(RingConfig, ring_slots) == 20);
const _: () = assert!(core::mem::offset_of!(RingConfig, slot_bytes) == 24);
const _: () = assert!(core::mem::offset_of!(RingConfig, data_pages) == 28);
const _: () = assert!(core::mem::offset_of!(RingConfig, data_read_only) == 32);
const _: () = assert!(core::mem::offset_of!(RingConfig, _pad) == 36);
const _: () = assert!(core::mem::offset_of!(RingConfig, data_grefs) == 40);

/// Why a config page was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// No [`RING_CONFIG_MAGIC`] (not written yet, or not a config page).
    Magic,
    /// Another [`RING_CONFIG_VERSION`].
    Version(u32),
    /// Not the device kind the back serves.
    Kind(u32),
    /// `data_pages` over [`RING_CONFIG_MAX_DATA`], or `data_read_only`
    /// not 0 or 1, or `port` 0.
    Field,
    /// The ring geometry is impossible, or does not fit in one page.
    Ring(RingError),
}

/// A checked config: what the back may rely on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckedConfig {
    /// The front's port to bind to.
    pub port: u32,
    /// The ring page's reference.
    pub ring_gref: u32,
    /// The ring's geometry (fits in one page).
    pub geometry: RingGeometry,
    /// Whether the data pages are read-only.
    pub data_read_only: bool,
    /// Number of data pages.
    pub data_pages: usize,
    /// Their references (the first `data_pages` are meaningful).
    pub data_grefs: [u32; RING_CONFIG_MAX_DATA],
}

impl RingConfig {
    /// All zero (no magic).
    pub const fn zeroed() -> Self {
        Self {
            magic: 0,
            version: 0,
            kind: 0,
            port: 0,
            ring_gref: 0,
            ring_slots: 0,
            slot_bytes: 0,
            data_pages: 0,
            data_read_only: 0,
            _pad: 0,
            data_grefs: [0; RING_CONFIG_MAX_DATA],
        }
    }

    /// Checks every field for a back serving device `kind`, with a ring of
    /// at most `ring_bytes` (the ring page: 4096).
    pub fn check(&self, kind: u32, ring_bytes: usize) -> Result<CheckedConfig, ConfigError> {
        if self.magic != RING_CONFIG_MAGIC {
            return Err(ConfigError::Magic);
        }
        if self.version != RING_CONFIG_VERSION {
            return Err(ConfigError::Version(self.version));
        }
        if self.kind != kind {
            return Err(ConfigError::Kind(self.kind));
        }
        let data_pages = self.data_pages as usize;
        if data_pages > RING_CONFIG_MAX_DATA || self.data_read_only > 1 || self.port == 0 {
            return Err(ConfigError::Field);
        }
        let geometry = RingGeometry::new(self.ring_slots, self.slot_bytes as usize)
            .map_err(ConfigError::Ring)?;
        if geometry.region_bytes() > ring_bytes {
            return Err(ConfigError::Ring(RingError::TooSmall {
                need: geometry.region_bytes(),
                have: ring_bytes,
            }));
        }
        Ok(CheckedConfig {
            port: self.port,
            ring_gref: self.ring_gref,
            geometry,
            data_read_only: self.data_read_only == 1,
            data_pages,
            data_grefs: self.data_grefs,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn good() -> RingConfig {
        let mut c = RingConfig::zeroed();
        c.magic = RING_CONFIG_MAGIC;
        c.version = RING_CONFIG_VERSION;
        c.kind = DEVICE_KIND_BULK;
        c.port = 1;
        c.ring_gref = 1;
        c.ring_slots = 128;
        c.slot_bytes = 24;
        c.data_pages = 2;
        c.data_read_only = 1;
        c.data_grefs[..2].copy_from_slice(&[2, 3]);
        c
    }

    #[test]
    fn a_good_config_passes() {
        let c = good().check(DEVICE_KIND_BULK, 4096).unwrap();
        assert_eq!(c.geometry.slots(), 128);
        assert_eq!(c.geometry.slot_bytes(), 24);
        assert_eq!((c.port, c.ring_gref, c.data_pages), (1, 1, 2));
        assert!(c.data_read_only);
        assert_eq!(&c.data_grefs[..2], &[2, 3]);
    }

    #[test]
    fn every_bad_field_is_refused() {
        let bad = |f: fn(&mut RingConfig)| {
            let mut c = good();
            f(&mut c);
            c.check(DEVICE_KIND_BULK, 4096)
        };
        assert_eq!(bad(|c| c.magic = 0), Err(ConfigError::Magic));
        assert_eq!(bad(|c| c.version = 2), Err(ConfigError::Version(2)));
        assert_eq!(bad(|c| c.kind = 7), Err(ConfigError::Kind(7)));
        assert_eq!(bad(|c| c.port = 0), Err(ConfigError::Field));
        assert_eq!(bad(|c| c.data_pages = 65), Err(ConfigError::Field));
        assert_eq!(bad(|c| c.data_pages = u32::MAX), Err(ConfigError::Field));
        assert_eq!(bad(|c| c.data_read_only = 2), Err(ConfigError::Field));
        assert_eq!(
            bad(|c| c.ring_slots = 100),
            Err(ConfigError::Ring(RingError::BadGeometry))
        );
        assert_eq!(
            bad(|c| c.slot_bytes = 0),
            Err(ConfigError::Ring(RingError::BadGeometry))
        );
        assert_eq!(
            bad(|c| c.ring_slots = 256),
            Err(ConfigError::Ring(RingError::TooSmall {
                need: 128 + 256 * 24,
                have: 4096
            }))
        );
    }

    #[test]
    fn the_magic_is_krcf() {
        assert_eq!(RING_CONFIG_MAGIC.to_le_bytes(), *b"KRCF");
    }
}
