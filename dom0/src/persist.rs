//! What dom0 did and what each domain printed, kept in its store across
//! reboots and power cuts (issue 15; docs/store.md "Logs"): dom0's log in
//! the log ring `kestrel-log`, each domain's console lines in
//! `kestrel-console.<name>` (`kestrel_store::log`: bounded rings, never
//! read back as garbage, a power cut loses at most the last batch).
//!
//! Lines are queued here as they are said or printed (memlog.rs and
//! consoles.rs call in; no disk I/O there, and lines from before the
//! store is open wait, bounded), and [`sync`] moves them into the rings
//! from dom0's main loop: a ring is written when a block of it fills,
//! [`DELAY_NS`] after its oldest unwritten line, or when a domain's
//! console ends (then dom0's log too). Each boot's lines carry the boot's number: one more than
//! the newest boot any ring holds. `hvctl log` shows earlier boots' lines
//! as `[boot N] ...` before this boot's; `hvctl console --history NAME`
//! works for domains of earlier boots by name.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use kestrel_store::log::{self as ring, LogRing, MIN_SLOTS};
use kestrel_store::{BLOCK, Kind};
use kestrel_toolstack::config::logs::LogSizes;
use spin::Mutex;

use crate::say;
use crate::store::DiskStore;

/// dom0's log ring.
pub const LOG_RING: &str = "kestrel-log";
/// Console rings are this followed by the domain's name.
pub const CONSOLE_PREFIX: &str = "kestrel-console.";
/// A ring's unwritten lines are written at most this long after the
/// oldest of them was queued (the batch delay).
pub const DELAY_NS: u64 = 1_000_000_000;
/// Bytes of lines queued while no ring takes them (before the store is
/// open); older ones are dropped beyond it.
const QUEUE_BYTES: usize = 64 * 1024;

enum Item {
    Log(String),
    Console(String, String),
    /// The domain's console ended: write its ring now.
    Ended(String),
}

struct Ring {
    ring: LogRing,
    /// When its oldest unwritten line was queued.
    since: Option<u64>,
    /// Written at domain end: sync now.
    now: bool,
    /// Order of last use (eviction of console rings).
    used: (u32, u64),
}

#[derive(Default)]
struct State {
    /// `None`: not known yet whether there is a store; `Some(false)`:
    /// none, lines are not queued.
    on: Option<bool>,
    queue: Vec<(Item, u64)>,
    queued_bytes: usize,
    boot: u32,
    sizes: Option<LogSizes>,
    rings: BTreeMap<String, Ring>,
    /// Domain ids to names (`console_history` by id).
    names: BTreeMap<u32, String>,
    tick: u64,
    /// Rings that failed (said once, then left alone).
    failed: Vec<String>,
}

static STATE: Mutex<State> = Mutex::new(State {
    on: None,
    queue: Vec::new(),
    queued_bytes: 0,
    boot: 0,
    sizes: None,
    rings: BTreeMap::new(),
    names: BTreeMap::new(),
    tick: 0,
    failed: Vec::new(),
});

fn now() -> u64 {
    pvabi::guest::time::now_ns()
}

fn queue(item: Item, bytes: usize) {
    let mut s = STATE.lock();
    if s.on == Some(false) {
        return;
    }
    s.queue.push((item, now()));
    s.queued_bytes += bytes;
    while s.queued_bytes > QUEUE_BYTES && !s.queue.is_empty() {
        let (old, _) = s.queue.remove(0);
        s.queued_bytes -= match old {
            Item::Log(l) | Item::Console(_, l) => l.len(),
            Item::Ended(_) => 0,
        };
    }
}

/// A line of dom0's own log.
pub fn log(line: &str) {
    queue(Item::Log(line.into()), line.len());
}

/// A console line of domain `id`, called `name`.
pub fn console(id: u32, name: &str, line: &str) {
    {
        let mut s = STATE.lock();
        if s.on == Some(false) {
            return;
        }
        s.names.entry(id).or_insert_with(|| name.into());
    }
    queue(Item::Console(name.into(), line.into()), line.len());
}

/// Domain `name`'s console ended: its lines are written at the next
/// [`sync`].
pub fn ended(name: &str) {
    queue(Item::Ended(name.into()), 0);
}

/// dom0 has no store: nothing is kept on disk (and nothing queued).
pub fn off() {
    let mut s = STATE.lock();
    s.on = Some(false);
    s.queue = Vec::new();
    s.queued_bytes = 0;
}

fn blocks(kib: u64) -> u64 {
    (kib * 1024).div_ceil(BLOCK as u64).max(MIN_SLOTS)
}

/// Opens ring `name`, making it (`kib` KiB) if the store has none.
fn open(store: &mut DiskStore, name: &str, kib: u64) -> Result<(LogRing, Option<String>), String> {
    let mut note = None;
    let want = blocks(kib) * BLOCK as u64;
    match store.get(Kind::Log, name) {
        Ok(o) if o.size != want => {
            note = Some(format!(
                "{name}: {} KiB on the disk, the configuration says {} KiB: kept as it is",
                o.size / 1024,
                want / 1024
            ));
        }
        Ok(_) => {}
        Err(_) => {
            store
                .create_log(name, want)
                .map_err(|e| format!("{name}: cannot make it: {e}"))?;
        }
    }
    let r = LogRing::open(store, name, 0).map_err(|e| format!("{name}: {e}"))?;
    if r.slots() < MIN_SLOTS as usize {
        return Err(format!(
            "{name}: {} blocks, at least {MIN_SLOTS}",
            r.slots()
        ));
    }
    Ok((r, note))
}

/// Opens the rings in `store` (making dom0's log ring if needed), picks
/// this boot's number, and from then on [`sync`] writes to them.
pub fn attach(store: &mut DiskStore, sizes: &LogSizes) {
    let mut notes = Vec::new();
    let mut rings = BTreeMap::new();
    let names: Vec<String> = store
        .objects()
        .iter()
        .filter(|o| o.kind == Kind::Log)
        .map(|o| o.name.clone())
        .collect();
    let mut want = Vec::from([String::from(LOG_RING)]);
    want.extend(names.into_iter().filter(|n| n != LOG_RING));
    for name in want {
        let kib = if name == LOG_RING {
            sizes.log_kib
        } else {
            sizes.console_kib
        };
        match open(store, &name, kib) {
            Ok((r, note)) => {
                notes.extend(note);
                let used = (r.last_boot(), 0);
                rings.insert(
                    name,
                    Ring {
                        ring: r,
                        since: None,
                        now: false,
                        used,
                    },
                );
            }
            Err(e) => notes.push(e),
        }
    }
    let boot = rings
        .values()
        .map(|r| r.ring.last_boot())
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    for r in rings.values_mut() {
        r.ring.set_boot(boot);
    }
    let consoles = rings.len().saturating_sub(1);
    {
        let mut s = STATE.lock();
        s.on = Some(true);
        s.boot = boot;
        s.sizes = Some(*sizes);
        s.rings = rings;
    }
    for n in notes {
        say(&format!("store: logs: {n}"));
    }
    say(&format!(
        "store: logs: boot {boot}; dom0's log {} KiB, {consoles} console histories kept ({} KiB each, at most {})",
        blocks(sizes.log_kib) * 4,
        blocks(sizes.console_kib) * 4,
        sizes.console_domains
    ));
}

/// This boot's number (0: no store).
pub fn boot() -> u32 {
    STATE.lock().boot
}

/// The ring for `name` (made if needed, evicting the least recently
/// written console ring beyond `console_domains`).
fn ring_for<'a>(
    s: &'a mut State,
    store: &mut DiskStore,
    name: &str,
    notes: &mut Vec<String>,
) -> Option<&'a mut Ring> {
    if s.failed.iter().any(|f| f == name) {
        return None;
    }
    if !s.rings.contains_key(name) {
        let sizes = s.sizes?;
        if sizes.console_domains == 0 {
            return None;
        }
        while s.rings.keys().filter(|k| *k != LOG_RING).count() as u64 >= sizes.console_domains {
            let oldest = s
                .rings
                .iter()
                .filter(|(k, _)| *k != LOG_RING)
                .min_by_key(|(_, r)| r.used)
                .map(|(k, _)| k.clone())?;
            s.rings.remove(&oldest);
            if let Err(e) = store.delete(Kind::Log, &oldest) {
                notes.push(format!("{oldest}: cannot delete it: {e}"));
                s.failed.push(name.into());
                return None;
            }
            notes.push(format!(
                "{oldest}: deleted (console_domains = {} histories kept)",
                sizes.console_domains
            ));
        }
        match open(store, name, sizes.console_kib) {
            Ok((mut r, note)) => {
                notes.extend(note);
                r.set_boot(s.boot);
                s.rings.insert(
                    name.into(),
                    Ring {
                        ring: r,
                        since: None,
                        now: false,
                        used: (0, 0),
                    },
                );
            }
            Err(e) => {
                notes.push(e);
                s.failed.push(name.into());
                return None;
            }
        }
    }
    s.rings.get_mut(name)
}

/// Moves queued lines into their rings and writes the rings that are
/// due (a full block, the batch delay passed, a console ended).
pub fn sync(store: &mut DiskStore) {
    let mut notes = Vec::new();
    {
        let mut s = STATE.lock();
        if s.on != Some(true) {
            return;
        }
        let queue = core::mem::take(&mut s.queue);
        s.queued_bytes = 0;
        // A domain's end is worth the log's lines too (what led to it).
        let mut end = false;
        for (item, at) in queue {
            s.tick += 1;
            let (boot, tick) = (s.boot, s.tick);
            let (name, line) = match item {
                Item::Log(l) => (String::from(LOG_RING), Some(l)),
                Item::Console(n, l) => (format!("{CONSOLE_PREFIX}{n}"), Some(l)),
                Item::Ended(n) => (format!("{CONSOLE_PREFIX}{n}"), None),
            };
            let Some(r) = ring_for(&mut s, store, &name, &mut notes) else {
                continue;
            };
            r.used = (boot, tick);
            match line {
                Some(l) => {
                    r.ring.push(&l);
                    r.since.get_or_insert(at);
                }
                None => {
                    r.now = true;
                    end = true;
                }
            }
        }
        let t = now();
        let mut failed = Vec::new();
        for (name, r) in s.rings.iter_mut() {
            let due = r.ring.block_full()
                || (r.ring.pending()
                    && (r.now
                        || end
                        || r.since.is_some_and(|at| t.saturating_sub(at) >= DELAY_NS)));
            if !due {
                continue;
            }
            match r.ring.sync(store) {
                Ok(()) => {
                    r.since = None;
                    r.now = false;
                }
                Err(e) => {
                    notes.push(format!("{name}: write failed: {e}: not kept from here on"));
                    failed.push(name.clone());
                }
            }
        }
        for f in failed {
            s.rings.remove(&f);
            s.failed.push(f);
        }
    }
    for n in notes {
        say(&format!("store: logs: {n}"));
    }
}

/// When [`sync`] next has a batch to write (for dom0's wait).
pub fn deadline() -> Option<u64> {
    let s = STATE.lock();
    if s.on != Some(true) {
        return None;
    }
    let queued = s.queue.first().map(|(_, at)| at + DELAY_NS);
    let rings = s
        .rings
        .values()
        .filter_map(|r| r.since.map(|at| at + DELAY_NS));
    queued.into_iter().chain(rings).min()
}

/// Ring `name`'s lines from boots before this one, as `[boot N] text`.
fn earlier(store: &mut DiskStore, name: &str, all: bool) -> Option<Vec<String>> {
    let boot = boot();
    let lines = ring::read(store, name).ok()?;
    Some(
        lines
            .into_iter()
            .filter(|l| all || l.boot < boot)
            .map(|l| format!("[boot {}] {}", l.boot, l.text))
            .collect(),
    )
}

/// dom0's log: earlier boots' lines from the store, then this boot's.
pub fn log_lines(store: Option<&mut DiskStore>) -> (Vec<String>, u64) {
    let (now, dropped) = crate::memlog::log_lines();
    match store.and_then(|s| earlier(s, LOG_RING, false)) {
        Some(mut lines) if !lines.is_empty() => {
            lines.extend(now);
            (lines, dropped)
        }
        _ => (now, dropped),
    }
}

/// Domain `id`'s console history: earlier boots' lines of a domain of
/// its name from the store, then this boot's.
pub fn console_lines(store: Option<&mut DiskStore>, id: u32) -> Option<(Vec<String>, u64)> {
    let mem = crate::memlog::console_lines(id);
    let name = STATE.lock().names.get(&id).cloned();
    let older = match (store, name) {
        (Some(s), Some(n)) => earlier(s, &format!("{CONSOLE_PREFIX}{n}"), false),
        _ => None,
    }
    .filter(|l| !l.is_empty());
    match (older, mem) {
        (Some(mut o), Some((m, dropped))) => {
            o.extend(m);
            Some((o, dropped))
        }
        (Some(o), None) => Some((o, 0)),
        (None, m) => m,
    }
}

/// The console history of a domain dom0 no longer knows (of an earlier
/// boot), by name: every line its ring holds, marked with its boot.
pub fn console_lines_named(
    store: Option<&mut DiskStore>,
    name: &str,
) -> Option<(Vec<String>, u64)> {
    let lines = earlier(store?, &format!("{CONSOLE_PREFIX}{name}"), true)?;
    Some((lines, 0))
}
