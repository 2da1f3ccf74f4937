//! What dom0 keeps in memory for operators (issue 15: nothing an operator
//! needs is lost): its own log lines and each domain's console lines, in
//! byte-bounded rings (`kestrel_toolstack::textring`), read with `hvctl
//! log` and `hvctl console --history`. This boot's lines; persist.rs keeps
//! them in dom0's store too, across reboots.

use alloc::collections::BTreeMap;

use kestrel_toolstack::textring::TextRing;
use spin::Mutex;

/// dom0's own log.
pub const LOG_BYTES: usize = 32 * 1024;
/// Each domain's console history.
pub const CONSOLE_BYTES: usize = 8 * 1024;
/// Domains whose console history is kept (the lowest ids, the oldest, go
/// first): with [`CONSOLE_BYTES`] at most 256 KiB of dom0's 2 MiB heap.
pub const CONSOLE_DOMAINS: usize = 32;

static LOG: Mutex<TextRing> = Mutex::new(TextRing::new(LOG_BYTES));
static CONSOLES: Mutex<BTreeMap<u32, TextRing>> = Mutex::new(BTreeMap::new());

pub fn log(line: &str) {
    LOG.lock().push(line);
    crate::persist::log(line);
}

pub fn log_lines() -> (alloc::vec::Vec<alloc::string::String>, u64) {
    LOG.lock().snapshot()
}

/// A console line of domain `id`.
pub fn console(id: u32, line: &str) {
    let mut c = CONSOLES.lock();
    c.entry(id)
        .or_insert_with(|| TextRing::new(CONSOLE_BYTES))
        .push(line);
    while c.len() > CONSOLE_DOMAINS {
        c.pop_first();
    }
}

pub fn console_lines(id: u32) -> Option<(alloc::vec::Vec<alloc::string::String>, u64)> {
    CONSOLES.lock().get(&id).map(TextRing::snapshot)
}
