//! An interactive guest for console input (ABI 1.3): binds `VIRQ_CONSOLE`,
//! blocks until input arrives (no deadline: only the virq can wake it),
//! reads everything waiting with `HC_CONSOLE_READ`, and prints
//! `echo: <line>` for each line (ended by `\n` or `\r`; empty lines are
//! skipped, longer than 200 bytes cut). A line `quit` ends it with
//! `echo: bye after <N> wake-ups` and exit code 0. The `dom0_qemu_console`
//! boot test types into it with `hvctl console`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use pvabi::guest::{console, evtchn, sched};
use pvabi::{Error, VIRQ_CONSOLE};

pvabi::entry_point!(main);

const LINE_MAX: usize = 200;

/// The line being typed.
struct Line {
    bytes: [u8; LINE_MAX],
    len: usize,
}

impl Line {
    fn push(&mut self, b: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    /// Takes the line: its text (control or non-UTF-8 bytes as `?`).
    fn take(&mut self, out: &mut [u8; LINE_MAX]) -> usize {
        let n = self.len;
        for (o, &b) in out.iter_mut().zip(self.bytes.iter().take(n)) {
            *o = if b.is_ascii_graphic() || b == b' ' {
                b
            } else {
                b'?'
            };
        }
        self.len = 0;
        n
    }
}

fn run() -> Result<u64, Error> {
    let port = evtchn::bind_virq(VIRQ_CONSOLE, 0)?;
    pvabi::println!("echo: ready, VIRQ_CONSOLE on port {port}");
    let mut line = Line {
        bytes: [0; LINE_MAX],
        len: 0,
    };
    let mut buf = [0u8; 256];
    let mut wakeups = 0u64;
    loop {
        // Read until empty before blocking: input queued after the read
        // raises the virq, so the block below returns at once.
        let n = console::read(&mut buf)?;
        if n == 0 {
            sched::block(None)?;
            while evtchn::poll()?.is_some() {}
            wakeups += 1;
            continue;
        }
        for &b in buf.iter().take(n) {
            if b != b'\n' && b != b'\r' {
                line.push(b);
                continue;
            }
            let mut text = [0u8; LINE_MAX];
            let len = line.take(&mut text);
            let text = core::str::from_utf8(text.get(..len).unwrap_or(&[])).unwrap_or("?");
            match text {
                "" => {}
                "quit" => return Ok(wakeups),
                t => pvabi::println!("echo: {t}"),
            }
        }
    }
}

fn main(_si: &pvabi::StartInfo) -> i32 {
    match run() {
        Ok(wakeups) => {
            pvabi::println!("echo: bye after {wakeups} wake-ups");
            0
        }
        Err(e) => {
            pvabi::println!("echo: ERROR {e}");
            1
        }
    }
}
