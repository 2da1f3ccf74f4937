//! The serial console (a 16550 UART, COM1 by default) and the `log` backend.
//!
//! Every CPU logs through one lock. Lines carry the CPU number so output from
//! several CPUs stays readable.

use core::fmt::{self, Write};

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

struct Console<'a>(&'a mut Uart16550<PioBackend>);

impl Write for Console<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.0.send_bytes_exact(b"\r");
            }
            self.0.send_bytes_exact(&[b]);
        }
        Ok(())
    }
}

/// Writes formatted text to the console, if there is one.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    if let Some(uart) = CONSOLE.lock().as_mut() {
        let _ = Console(uart).write_fmt(args);
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
        for &b in bytes {
            match b {
                b'\n' => uart.send_bytes_exact(b"\r\n"),
                b'\t' | 0x20..=0x7e | 0x80.. => uart.send_bytes_exact(&[b]),
                _ => uart.send_bytes_exact(b"?"),
            }
        }
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
