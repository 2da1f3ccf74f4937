//! I/O rings over granted pages, both ends: what a device front grants and
//! a device back maps, with the typed config page of `pvabi::ring`.
//!
//! The **front** ([`Front::setup`]) takes `2 + data_pages` pages of its free
//! region: the config page, the ring page and the data pages. It grants the
//! config page read-only to the back first (so at
//! [`pvabi::ring::RING_CONFIG_GREF`]), initializes the ring and grants its
//! page read-write, grants the data pages, allocates an event-channel port
//! for the back, and fills in the [`RingConfig`], writing its magic last.
//! The **back** ([`Back::connect`]) reads the config page with a grant copy
//! (retrying until the front has written it), checks every field, binds to
//! the port, releases holes in its own free region, maps the ring and data
//! pages there and attaches the ring's back. [`Back::teardown`] unmaps and
//! closes; [`Front::teardown`] revokes and closes.
//!
//! The bulk device of the test guests (`ringprod`, `ringcons`,
//! `ringhostile`): a request [`BulkReq`] names a data page by its index in
//! the config, a length and a checksum of the bytes ([`checksum`]); the
//! response [`BulkRsp`] gives the page back. A request of length 0 ends the
//! stream.

use core::sync::atomic::{AtomicU32, Ordering};

use pvabi::guest::{evtchn, grant, memory, sched, time};
use pvabi::ring::{
    BackRing, DEVICE_KIND_BULK, FrontRing, RING_CONFIG_GREF, RING_CONFIG_MAGIC,
    RING_CONFIG_MAX_DATA, RING_CONFIG_SIZE, RING_CONFIG_VERSION, RingConfig, RingError,
    RingGeometry, SharedRing,
};
use pvabi::{Error, PAGE_SIZE};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::raw;

/// Data pages the test guests use (config and ring page come on top).
pub const BULK_DATA_PAGES: usize = 32;
/// The grant `ringprod hostile=<id>` makes to the hostile guest and revokes
/// at once: its grant after the config, ring and data pages.
pub const HOSTILE_REVOKED_GREF: u32 = 2 + BULK_DATA_PAGES as u32;
/// The port `ringprod hostile=<id>` offers the hostile guest (its second,
/// after the ring's).
pub const HOSTILE_PORT: u32 = 2;

/// A bulk request: `len` bytes of data page `buf` with checksum `sum`;
/// `len` 0 ends the stream.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct BulkReq {
    /// Index of the data page in the config's `data_grefs`.
    pub buf: u32,
    /// Bytes, a multiple of 8, at most a page; 0: end of stream.
    pub len: u32,
    /// The request's sequence number.
    pub seq: u64,
    /// [`checksum`] of the bytes.
    pub sum: u64,
}

/// A bulk response: data page `buf` is free again.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct BulkRsp {
    /// The request's data page.
    pub buf: u32,
    /// [`BULK_OK`] or [`BULK_BAD_SUM`] or [`BULK_BAD_REQ`].
    pub status: u32,
    /// The request's sequence number.
    pub seq: u64,
}

/// Response status: checksum verified.
pub const BULK_OK: u32 = 0;
/// Response status: checksum mismatch.
pub const BULK_BAD_SUM: u32 = 1;
/// Response status: the request named no data page or a bad length.
pub const BULK_BAD_REQ: u32 = 2;

/// The slot size of the bulk ring.
pub const BULK_SLOT: usize = RingGeometry::slot_bytes_for::<BulkReq, BulkRsp>();

/// The checksum of the words `w`: rotate-and-xor, so order matters.
pub fn checksum(words: impl Iterator<Item = u64>) -> u64 {
    words.fold(0x6b65_7374_7265_6c00, |s, w| s.rotate_left(5) ^ w)
}

/// Word `i` of the data of request `seq`.
pub fn pattern(seq: u64, i: u64) -> u64 {
    seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i.wrapping_mul(0x0100_0000_01b3)
}

/// Why a ring could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// The free region is too small for the pages.
    NoRoom,
    /// A hypercall failed: which step, and its error.
    Call(&'static str, Error),
    /// The config page's first grant did not get reference 0.
    ConfigRef(u32),
    /// The front's config page never became valid (or was refused).
    Config(pvabi::ring::ConfigError),
    /// The ring itself.
    Ring(RingError),
}

fn call<T>(what: &'static str, r: Result<T, Error>) -> Result<T, SetupError> {
    r.map_err(|e| SetupError::Call(what, e))
}

/// The front of a bulk ring.
pub struct Front {
    /// The ring (requests out, responses in).
    pub ring: FrontRing<'static, BulkReq, BulkRsp>,
    /// The port to notify the back on (and be notified on).
    pub port: u32,
    /// Guest-physical addresses of the data pages.
    pub data: [u64; BULK_DATA_PAGES],
    /// The ring page's address (a hostile front writes to it directly).
    pub ring_gpa: u64,
    refs: [u32; BULK_DATA_PAGES + 2],
}

impl Front {
    /// Sets up a bulk ring for domain `back` in the pages at `base`
    /// (`BULK_DATA_PAGES + 2` pages of the free region).
    pub fn setup(back: u32, base: u64) -> Result<Self, SetupError> {
        let free = memory::free_region().ok_or(SetupError::NoRoom)?;
        let pages = (BULK_DATA_PAGES + 2) as u64;
        if base < free.start || base + pages * PAGE_SIZE > free.end {
            return Err(SetupError::NoRoom);
        }
        let (cfg_gpa, ring_gpa) = (base, base + PAGE_SIZE);
        for w in raw::page_words(cfg_gpa) {
            w.store(0, Ordering::Relaxed);
        }
        let mut refs = [0u32; BULK_DATA_PAGES + 2];
        refs[0] = call("grant config", grant::access(cfg_gpa, back, true))?;
        if refs[0] != RING_CONFIG_GREF {
            return Err(SetupError::ConfigRef(refs[0]));
        }
        let geo =
            RingGeometry::for_region(PAGE_SIZE as usize, BULK_SLOT).map_err(SetupError::Ring)?;
        let shared = SharedRing::new(raw::page_words(ring_gpa), geo).map_err(SetupError::Ring)?;
        let ring = FrontRing::init(shared).map_err(SetupError::Ring)?;
        refs[1] = call("grant ring", grant::access(ring_gpa, back, false))?;
        let mut data = [0u64; BULK_DATA_PAGES];
        let mut cfg = RingConfig::zeroed();
        for (i, d) in data.iter_mut().enumerate() {
            *d = base + (2 + i as u64) * PAGE_SIZE;
            refs[2 + i] = call("grant data", grant::access(*d, back, true))?;
            cfg.data_grefs[i] = refs[2 + i];
        }
        let port = call("alloc port", evtchn::alloc_unbound(back))?;
        cfg.version = RING_CONFIG_VERSION;
        cfg.kind = DEVICE_KIND_BULK;
        cfg.port = port;
        cfg.ring_gref = refs[1];
        cfg.ring_slots = geo.slots();
        cfg.slot_bytes = geo.slot_bytes() as u32;
        cfg.data_pages = BULK_DATA_PAGES as u32;
        cfg.data_read_only = 1;
        write_config(raw::page_words(cfg_gpa), &cfg);
        Ok(Self {
            ring,
            port,
            data,
            ring_gpa,
            refs,
        })
    }

    /// Waits (up to `timeout_ns`) until the back has bound the port, so
    /// that notifications reach it: sends until one is not `EBUSY` (that
    /// one is a spurious wake-up for the back, which finds no work).
    pub fn wait_connected(&self, timeout_ns: u64) -> bool {
        let deadline = time::now_ns() + timeout_ns;
        loop {
            match evtchn::send(self.port) {
                Ok(()) => return true,
                Err(Error::Busy) if time::now_ns() < deadline => {
                    let _ = time::sleep_ns(1_000_000);
                }
                Err(_) => return false,
            }
        }
    }

    /// Revokes every grant and closes the port. Returns how many revokes
    /// were deferred (the back still mapped the page).
    pub fn teardown(&self) -> Result<u32, Error> {
        let mut deferred = 0;
        for &r in &self.refs {
            if grant::revoke(r, 0)? == grant::Revoked::Deferred {
                deferred += 1;
            }
        }
        evtchn::close(self.port)?;
        Ok(deferred)
    }
}

/// Writes `cfg` into the config page, the magic last (`Release`).
fn write_config(words: &[AtomicU32], cfg: &RingConfig) {
    let bytes = cfg.as_bytes();
    for (w, b) in words.iter().zip(bytes.chunks_exact(4)).skip(1) {
        w.store(
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Ordering::Relaxed,
        );
    }
    if let Some(w) = words.first() {
        w.store(RING_CONFIG_MAGIC, Ordering::Release);
    }
}

/// The back of a bulk ring.
pub struct Back {
    /// The ring (requests in, responses out).
    pub ring: BackRing<'static, BulkReq, BulkRsp>,
    /// The local port bound to the front's.
    pub port: u32,
    /// The front's domain id.
    pub front: u32,
    /// Where data page `i` is mapped (the first `data_pages`).
    pub data: [u64; RING_CONFIG_MAX_DATA],
    /// How many data pages the front named.
    pub data_pages: usize,
    holes: u64,
    handles: [u32; RING_CONFIG_MAX_DATA + 1],
}

impl Back {
    /// Connects to the bulk ring domain `front` offers, mapping its pages at
    /// `base` (holes made in this domain's free region; `2 + 64` pages at
    /// most). Waits up to 10 s for the front's config page.
    pub fn connect(front: u32, base: u64) -> Result<Self, SetupError> {
        let cfg = read_config(front)?;
        let port = call("bind", evtchn::bind_interdomain(front, cfg.port))?;
        let holes = 1 + cfg.data_pages as u64;
        call("release holes", memory::release(base, holes))?;
        let mut handles = [u32::MAX; RING_CONFIG_MAX_DATA + 1];
        handles[0] = call("map ring", grant::map(front, cfg.ring_gref, base, false))?;
        let mut data = [0u64; RING_CONFIG_MAX_DATA];
        for i in 0..cfg.data_pages {
            data[i] = base + (1 + i as u64) * PAGE_SIZE;
            let gref = cfg.data_grefs[i];
            handles[1 + i] = call(
                "map data",
                grant::map(front, gref, data[i], cfg.data_read_only),
            )?;
        }
        let shared =
            SharedRing::new(raw::page_words(base), cfg.geometry).map_err(SetupError::Ring)?;
        let ring = BackRing::attach(shared).map_err(SetupError::Ring)?;
        Ok(Self {
            ring,
            port,
            front,
            data,
            data_pages: cfg.data_pages,
            holes: base,
            handles,
        })
    }

    /// Whether the front is still alive: a one-word copy from its config
    /// page, which it never revokes while the ring is up (`ENOENT` once it
    /// is gone). No notification, no mapped page touched.
    pub fn front_alive(&self) -> bool {
        let mut w = [0u8; 4];
        grant::copy_from(self.front, RING_CONFIG_GREF, 0, &mut w).is_ok()
    }

    /// Unmaps every page, closes the port and gives the holes memory
    /// again. Returns how many mappings were already gone (none, even when
    /// the front died: the hypervisor keeps them, with zeroed pages, until
    /// we unmap).
    pub fn teardown(&self) -> Result<u32, Error> {
        let mut gone = 0;
        for &h in self.handles.iter().take(1 + self.data_pages) {
            match grant::unmap(h) {
                Ok(()) => {}
                Err(Error::NoEntry) => gone += 1,
                Err(e) => return Err(e),
            }
        }
        evtchn::close(self.port)?;
        memory::populate(self.holes, 1 + self.data_pages as u64)?;
        Ok(gone)
    }
}

/// Reads and checks the front's config page by grant copy, retrying for up
/// to 10 s while it is not granted yet or its magic is not written.
fn read_config(front: u32) -> Result<pvabi::ring::CheckedConfig, SetupError> {
    let deadline = time::now_ns() + 10_000_000_000;
    loop {
        let mut cfg = RingConfig::zeroed();
        let r = grant::copy_from(front, RING_CONFIG_GREF, 0, cfg.as_mut_bytes());
        debug_assert!(cfg.as_bytes().len() == RING_CONFIG_SIZE);
        let last = time::now_ns() >= deadline;
        match r {
            Ok(_) => match cfg.check(DEVICE_KIND_BULK, PAGE_SIZE as usize) {
                Ok(c) => return Ok(c),
                Err(pvabi::ring::ConfigError::Magic) if !last => {}
                Err(e) => return Err(SetupError::Config(e)),
            },
            Err(Error::NoEntry) if !last => {}
            Err(e) => return Err(SetupError::Call("copy config", e)),
        }
        let _ = time::sleep_ns(1_000_000);
    }
}

/// Waits (up to `timeout_ns`) until `port` is notified; other ports are
/// taken and ignored. `false` on timeout.
pub fn wait_notified(port: u32, timeout_ns: u64) -> bool {
    let deadline = time::now_ns() + timeout_ns;
    loop {
        let mut hit = false;
        while let Ok(Some(p)) = evtchn::poll() {
            hit |= p == port;
        }
        if hit {
            return true;
        }
        match sched::wait_for(pvabi::EVENT_CHANNEL, Some(deadline)) {
            Ok(ev) if ev & pvabi::EVENT_CHANNEL != 0 => {}
            _ => return false,
        }
    }
}
