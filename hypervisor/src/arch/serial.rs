//! The serial console (a 16550 UART, COM1 by default) and the `log` backend.
//!
//! Every CPU logs through one lock. Lines carry the CPU number so output from
//! several CPUs stays readable.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spin::Mutex;
use uart_16550::Uart16550;
use uart_16550::backend::PioBackend;

use super::percpu;

/// The console port; `None` until [`init`] or when `console=none`.
static CONSOLE: Mutex<Option<Uart16550<PioBackend>>> = Mutex::new(None);

/// I/O base of COM1 and COM2.
pub const COM1: u16 = 0x3f8;
/// I/O base of COM2.
pub const COM2: u16 = 0x2f8;

/// Sets up the UART at `port` (115200 8N1, FIFO on) as the console.
/// `None` silences the console.
pub fn init(port: Option<u16>) {
    let uart = port.and_then(|port| {
        // SAFETY: COM1/COM2 are the legacy PC serial ports; the hypervisor
        // owns them (no guest is ever given these ports) for its lifetime.
        let mut uart = unsafe { Uart16550::new_port(port) }.ok()?;
        // 115200 baud as documented (the driver's default is 9600, which
        // made every console byte cost 1 ms: 87 us now). Guests' output is
        // printed from exits (`console/out.rs`), so this is also the bound
        // on how long a line holds a CPU.
        let config = uart_16550::Config {
            baud_rate: uart_16550::BaudRate::Baud115200,
            ..uart_16550::Config::DEFAULT
        };
        uart.init(config).ok()?;
        Some(uart)
    });
    *CONSOLE.lock() = uart;
}

/// Counting starts when domains start ([`note_started`]): boot output
/// before that is not what a guest can make an exit wait for.
static COUNTING: AtomicBool = AtomicBool::new(false);
/// The most LSR reads that found the transmitter busy (THRE clear) in one
/// console operation, i.e. how long one operation waited on the UART.
static MAX_WAIT_POLLS: AtomicU64 = AtomicU64::new(0);
/// The most bytes one console operation handed to the UART.
static MAX_BURST: AtomicU64 = AtomicU64::new(0);

/// What one console operation cost on the UART.
#[derive(Default)]
struct OpCost {
    wait_polls: u64,
    bytes: u64,
}

impl OpCost {
    fn record(&self) {
        if COUNTING.load(Ordering::Relaxed) {
            MAX_WAIT_POLLS.fetch_max(self.wait_polls, Ordering::Relaxed);
            MAX_BURST.fetch_max(self.bytes, Ordering::Relaxed);
        }
    }
}

/// Sends all of `bytes`, waiting for the UART as long as it takes.
fn send_waiting(uart: &mut Uart16550<PioBackend>, bytes: &[u8], cost: &mut OpCost) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = uart.send_bytes(rest);
        if n == 0 {
            cost.wait_polls += 1;
            core::hint::spin_loop();
        }
        cost.bytes += n as u64;
        rest = rest.get(n..).unwrap_or(&[]);
    }
}

/// Domains are about to start: from now on the worst console operation is
/// counted ([`report`]).
pub fn note_started() {
    COUNTING.store(true, Ordering::Relaxed);
}

/// Prints the `serial:` line with the worst console operation since
/// domains started (the hypervisor is ending).
pub fn report() {
    write_fmt(format_args!(
        "serial: max_wait_polls={} max_burst_bytes={}\n",
        MAX_WAIT_POLLS.load(Ordering::Relaxed),
        MAX_BURST.load(Ordering::Relaxed)
    ));
}

struct Console<'a>(&'a mut Uart16550<PioBackend>, OpCost);

impl Write for Console<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                send_waiting(self.0, b"\r", &mut self.1);
            }
            send_waiting(self.0, &[b], &mut self.1);
        }
        Ok(())
    }
}

/// Writes formatted text to the console, if there is one.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    if let Some(uart) = CONSOLE.lock().as_mut() {
        let mut c = Console(uart, OpCost::default());
        let _ = c.write_fmt(args);
        c.1.record();
    }
}

/// Writes to the console even if another CPU died holding its lock: used
/// only on the way down (panic, fatal error), when losing the last words
/// would be worse than interleaving them.
pub fn write_fmt_emergency(args: fmt::Arguments<'_>) {
    if CONSOLE.is_locked() {
        // SAFETY: we are about to stop the machine; the lock holder (if it is
        // another CPU) at worst interleaves its bytes with ours.
        unsafe { CONSOLE.force_unlock() };
    }
    write_fmt(args);
}

/// The management line (COM2 with the `dom0` option): the control
/// domain's `HC_MGMT_*` calls; `None` when the machine has none.
static MGMT: Mutex<Option<Uart16550<PioBackend>>> = Mutex::new(None);

/// Sets up the UART at `port` as the management line; `false` if it is
/// not there (the driver's loopback self-test fails).
pub fn init_mgmt(port: u16) -> bool {
    // SAFETY: as in `init`: a legacy PC serial port the hypervisor owns
    // and never gives to a guest; not the console port (the caller checks).
    let uart = unsafe { Uart16550::new_port(port) }.ok().and_then(|mut u| {
        u.init(uart_16550::Config::default()).ok()?;
        Some(u)
    });
    let ok = uart.is_some();
    *MGMT.lock() = uart;
    ok
}

/// Sends `bytes` on the management line; `false` if there is none.
pub fn mgmt_write(bytes: &[u8]) -> bool {
    let mut guard = MGMT.lock();
    let Some(uart) = guard.as_mut() else {
        return false;
    };
    uart.send_bytes_exact(bytes);
    true
}

/// Takes the bytes the management line holds now (never waits); `None`
/// if there is no management line.
pub fn mgmt_read(buf: &mut [u8]) -> Option<usize> {
    let mut guard = MGMT.lock();
    let uart = guard.as_mut()?;
    Some(receive(uart, buf))
}

/// Prints `bytes` on the console under one lock, control characters other
/// than newline and tab shown as `?` (a newline becomes CR LF).
pub fn write_raw(bytes: &[u8]) {
    if let Some(uart) = CONSOLE.lock().as_mut() {
        let mut cost = OpCost::default();
        for &b in bytes {
            match b {
                b'\n' => send_waiting(uart, b"\r\n", &mut cost),
                b'\t' | 0x20..=0x7e | 0x80.. => send_waiting(uart, &[b], &mut cost),
                _ => send_waiting(uart, b"?", &mut cost),
            }
        }
        cost.record();
    }
}

fn receive(uart: &mut Uart16550<PioBackend>, buf: &mut [u8]) -> usize {
    let mut n = 0;
    for slot in buf.iter_mut() {
        match uart.try_receive_byte() {
            Ok(b) => {
                *slot = b;
                n += 1;
            }
            Err(_) => break,
        }
    }
    n
}

/// Takes whatever input bytes the console UART holds now (never waits).
pub fn read_available(buf: &mut [u8]) -> usize {
    let mut guard = CONSOLE.lock();
    let Some(uart) = guard.as_mut() else { return 0 };
    receive(uart, buf)
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            write_fmt(format_args!(
                "[cpu{} {:5}] {}\n",
                percpu::cpu_index(),
                record.level(),
                record.args()
            ));
        }
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the serial logger with the given level.
pub fn init_logger(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
