//! Example and test guests for Kestrel. Each binary in `src/bin` is one
//! guest, written only against `pvabi`; the boot tests run them.
#![no_std]

use core::sync::atomic::{AtomicU32, Ordering};

use pvabi::StartInfo;

/// The tally of a self-checking guest: each check prints
/// `<guest>: <name> ok` or `<guest>: <name> FAILED got X want Y`, the lines
/// the boot tests read.
pub struct Checks {
    guest: &'static str,
    checks: AtomicU32,
    failed: AtomicU32,
}

impl Checks {
    /// An empty tally for the guest named `guest`.
    pub const fn new(guest: &'static str) -> Self {
        Self {
            guest,
            checks: AtomicU32::new(0),
            failed: AtomicU32::new(0),
        }
    }

    /// Records and prints one check of a status: `got` must equal `want`.
    pub fn check(&self, name: &str, got: i64, want: i64) -> bool {
        self.checks.fetch_add(1, Ordering::Relaxed);
        if got == want {
            pvabi::println!("{}: {name} ok", self.guest);
            true
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
            pvabi::println!("{}: {name} FAILED got {got} want {want}", self.guest);
            false
        }
    }

    /// Checks made so far, and how many failed.
    pub fn counts(&self) -> (u32, u32) {
        (
            self.checks.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// The value of `key=value` on the guest's command line
/// ([`StartInfo::arg`], kept for the test guests).
pub fn arg<'a>(si: &'a StartInfo, key: &str) -> Option<&'a str> {
    si.arg(key)
}

/// Whether the bare word `word` is on the command line ([`StartInfo::flag`]).
pub fn flag(si: &StartInfo, word: &str) -> bool {
    si.flag(word)
}

/// The numeric value of `key=N` on the command line, or `default` (also
/// when the value is not a number: test guests take the default).
pub fn num_arg(si: &StartInfo, key: &str, default: u64) -> u64 {
    si.arg_or(key, default).unwrap_or(default)
}

/// Event-channel conventions the `evping`/`evpong`/`evhostile` guests
/// share. A guest learns its peer's domain id from `peer=<id>` on its
/// command line; the port the `evpong` side offers is its first
/// allocation, so it is port [`PONG_PORT`] (ports are allocated lowest
/// first, from 1: `HC_EVTCHN_ALLOC_UNBOUND`).
pub const PONG_PORT: u32 = 1;

/// Grant conventions of the `gntshare`/`gntmap`/`gnthostile` guests. The
/// granter (`gntshare`) makes its grants in this order before it offers
/// any port, so a peer that has bound a port finds them all; references
/// are handed out lowest first from 0.
pub mod gnt {
    /// Read-write, to `gntmap`: the pattern page (reply written back).
    pub const SHARED: u32 = 0;
    /// Read-write, to `gnthostile`, revoked at once (maps get `ENOENT`).
    pub const REVOKED: u32 = 1;
    /// Read-only, to `gnthostile` (a writable map gets `EPERM`; a write
    /// through its read-only mapping kills the writer).
    pub const READ_ONLY: u32 = 2;
    /// Read-write, to `gntmap`, never revoked: still mapped when the granter
    /// ends, so the hypervisor must unmap it.
    pub const KEPT: u32 = 3;
    /// The word the granter writes at word `i` of the shared pages.
    pub fn pattern(i: u64) -> u64 {
        0x6772_616e_7400_0000 ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    /// What `gntmap` writes at word 1 of the [`SHARED`] page.
    pub const REPLY: u64 = 0x7265_706c_7921;
    /// The granter's port for `gntmap` (its first allocation).
    pub const MAP_PORT: u32 = 1;
    /// The granter's port for `gnthostile` (its second).
    pub const HOSTILE_PORT: u32 = 2;
}

/// Word access to guest-physical pages by address (identity-mapped): the
/// free region and granted pages mapped there.
#[allow(unsafe_code)]
pub mod raw {
    /// Writes the word at `addr`.
    pub fn write(addr: u64, value: u64) {
        // SAFETY: callers pass 8-byte-aligned addresses of pages in
        // `memory::free_region()`, which no part of the program uses
        // (identity-mapped, so the address is the pointer), that are present
        // or a mapped grant.
        unsafe { core::ptr::write_volatile(addr as *mut u64, value) }
    }

    /// Reads the word at `addr`.
    pub fn read(addr: u64) -> u64 {
        // SAFETY: as in `write`.
        unsafe { core::ptr::read_volatile(addr as *const u64) }
    }

    /// The page at `addr` as 32-bit atomic words: how ring code sees memory
    /// shared with another domain (a peer writing concurrently is a torn
    /// value, never undefined behaviour).
    pub fn page_words(addr: u64) -> &'static [core::sync::atomic::AtomicU32] {
        // SAFETY: callers pass page-aligned addresses of pages in
        // `memory::free_region()` (no Rust object lives there) that stay
        // present or mapped for as long as the slice is used; `AtomicU32`
        // has no invalid bit patterns and is accessed only atomically.
        unsafe {
            core::slice::from_raw_parts(
                addr as *const core::sync::atomic::AtomicU32,
                (pvabi::PAGE_SIZE / 4) as usize,
            )
        }
    }
}

pub mod ringio;
pub mod traps;

/// Ports below 64 that [`wait_port`] or [`wait_closed`] polled while
/// waiting for something else: a later [`wait_port`] for one of them
/// returns at once. Polling takes a port's pending bit, so without this a
/// notice that came early (a peer that bound and ended while this guest
/// waited on another port) would be lost and its wait would time out.
static POLLED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn note_polled(port: u32) {
    if port < 64 {
        POLLED.fetch_or(1 << port, core::sync::atomic::Ordering::Relaxed);
    }
}

/// Takes `port`'s mark in [`POLLED`]: whether it was polled earlier.
fn take_polled(port: u32) -> bool {
    port < 64
        && POLLED.fetch_and(!(1 << port), core::sync::atomic::Ordering::Relaxed) & (1 << port) != 0
}

/// Waits up to 10 s until `port` is polled (or was, by an earlier wait for
/// another port); other ports polled meanwhile are remembered for their own
/// waits. `false` on timeout or error.
pub fn wait_port(port: u32) -> bool {
    use pvabi::guest::{evtchn, sched, time};
    if take_polled(port) {
        return true;
    }
    let deadline = time::now_ns() + 10_000_000_000;
    loop {
        match evtchn::poll() {
            Ok(Some(p)) if p == port => return true,
            Ok(Some(p)) => note_polled(p),
            Ok(None) => match sched::wait_for(pvabi::EVENT_CHANNEL, Some(deadline)) {
                Ok(ev) if ev & pvabi::EVENT_CHANNEL != 0 => {}
                _ => return false,
            },
            Err(_) => return false,
        }
    }
}

/// Binds to `port` of domain `peer`, retrying while it does not exist yet
/// (for up to 10 s).
pub fn bind_retry(peer: u32, port: u32) -> Result<u32, pvabi::Error> {
    use pvabi::guest::{evtchn, time};
    let deadline = time::now_ns() + 10_000_000_000;
    loop {
        match evtchn::bind_interdomain(peer, port) {
            Err(pvabi::Error::NoEntry) if time::now_ns() < deadline => {
                let _ = time::sleep_ns(1_000_000);
            }
            r => return r,
        }
    }
}

/// Waits up to 60 s until the peer of `port` has closed it (a send gets
/// `EBUSY`). Asking is a send: to a peer still there it is one spurious
/// event, which the guests here ignore.
pub fn wait_closed(port: u32) -> bool {
    use pvabi::guest::{evtchn, sched, time};
    let deadline = time::now_ns() + 60_000_000_000;
    while time::now_ns() < deadline {
        if matches!(evtchn::send(port), Err(pvabi::Error::Busy)) {
            return true;
        }
        let _ = sched::wait_for(pvabi::EVENT_CHANNEL, Some(time::now_ns() + 10_000_000));
        while let Ok(Some(p)) = evtchn::poll() {
            note_polled(p);
        }
    }
    false
}
