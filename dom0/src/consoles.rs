//! Other domains' consoles: dom0 drains each console ring
//! (`HC_DOMCTL_CONSOLE_READ`), prints whole lines on the serial console as
//! `[<name>] <text>` (`HC_HOST_CONSOLE_WRITE`) and hands the bytes of
//! attached consoles to the management service as `console` events.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use kestrel_toolstack::console::ConsoleLines;
use pvabi::guest::{domctl, mgmt};

struct Console {
    name: String,
    lines: ConsoleLines,
}

/// Every domain whose console dom0 follows.
#[derive(Default)]
pub struct Consoles {
    by_id: BTreeMap<u32, Console>,
}

/// What one pass found.
pub struct Drained {
    /// Some console had output.
    pub busy: bool,
    /// Bytes per domain (for attached consoles).
    pub output: Vec<(u32, Vec<u8>)>,
    /// Domains whose console ended (the domain is gone, its ring empty).
    pub closed: Vec<u32>,
}

fn print(id: u32, name: &str, line: &str) {
    let _ = mgmt::host_console_write(format!("[{name}] {line}\n").as_bytes());
    crate::memlog::console(id, line);
    crate::persist::console(id, name, line);
}

impl Consoles {
    /// Follows domain `id`, called `name`, from now on.
    pub fn follow(&mut self, id: u32, name: &str) {
        self.by_id.entry(id).or_insert_with(|| Console {
            name: name.into(),
            lines: ConsoleLines::new(),
        });
    }

    /// Follows every domain the hypervisor lists that is not followed yet
    /// (created by someone else, or before dom0 looked), except `me`.
    pub fn discover(&mut self, me: u32) {
        let mut ids = [0u32; 256];
        let n = domctl::list(&mut ids).unwrap_or(0);
        for &id in ids.iter().take(n) {
            if id != me && !self.by_id.contains_key(&id) {
                let name = domctl::info(id)
                    .map(|i| {
                        let len = i.name.iter().position(|&b| b == 0).unwrap_or(32);
                        String::from_utf8_lossy(i.name.get(..len).unwrap_or(&[])).into_owned()
                    })
                    .unwrap_or_else(|_| format!("dom{id}"));
                self.follow(id, &name);
            }
        }
    }

    /// Drains every followed console once.
    pub fn drain(&mut self) -> Drained {
        let mut d = Drained {
            busy: false,
            output: Vec::new(),
            closed: Vec::new(),
        };
        let mut buf = [0u8; 1024];
        for (&id, c) in self.by_id.iter_mut() {
            let mut got = Vec::new();
            let ended = loop {
                match mgmt::console_read(id, &mut buf) {
                    Ok(0) => break false,
                    Ok(n) => got.extend_from_slice(buf.get(..n).unwrap_or(&[])),
                    Err(_) => break true,
                }
            };
            if !got.is_empty() {
                d.busy = true;
                for line in c.lines.push(&got) {
                    print(id, &c.name, &line);
                }
                d.output.push((id, got));
            }
            if ended {
                if let Some(line) = c.lines.flush() {
                    print(id, &c.name, &line);
                }
                crate::persist::ended(&c.name);
                d.closed.push(id);
            }
        }
        for id in &d.closed {
            self.by_id.remove(id);
        }
        d
    }
}
