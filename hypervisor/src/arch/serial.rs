//! The serial console (a 16550 UART, COM1 by default) and the `log` backend.
//!
//! Every CPU logs through one lock. Lines carry the CPU number so output from
//! several CPUs stays readable. Once domains run, output goes through a
//! transmit ring (`txbuf.rs`) that is pushed to the UART without
//! waiting, from every exit and from idle CPUs ([`push`]): no exit spins on
//! the UART for a line. Boot and the way down stay synchronous.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spin::Mutex;
use uart_16550::Uart16550;
use uart_16550::backend::PioBackend;
use uart_16550::spec::registers::LSR;

use super::percpu;
use crate::txbuf::{Appender, Cost, TXBUF_BYTES, TxBuf, Uart};

/// The console: its UART (`None` until [`init`] or with `console=none`)
/// and its transmit ring (`txbuf.rs`), under one lock that no
/// holder keeps for longer than a copy into the ring or one FIFO's worth
/// of bytes once domains run (a hypervisor line that does not fit the
/// ring is the exception: see the ring's module doc).
struct Console {
    uart: Option<Uart16550<PioBackend>>,
    tx: TxBuf<TXBUF_BYTES>,
}

static CONSOLE: Mutex<Console> = Mutex::new(Console {
    uart: None,
    tx: TxBuf::new(),
});

/// Output goes through the ring without waiting (set when domains start,
/// [`note_started`]; cleared on the way down): until then each write is
/// flushed at once.
static BUFFERED: AtomicBool = AtomicBool::new(false);

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
        // made every console byte cost 1 ms: 87 us now). The FIFO is on
        // (the driver's default, 14-byte receive trigger): a push then
        // hands the UART 16 bytes when THRE says the FIFO is empty.
        let config = uart_16550::Config {
            baud_rate: uart_16550::BaudRate::Baud115200,
            ..uart_16550::Config::DEFAULT
        };
        uart.init(config).ok()?;
        Some(uart)
    });
    CONSOLE.lock().uart = uart;
}

/// The driver as the ring sees it: `send_bytes` reads LSR once and, if
/// THRE is set, writes up to 16 bytes (FIFO on) or 1 (off), never waits.
struct Port<'a>(&'a mut Uart16550<PioBackend>);

impl Uart for Port<'_> {
    fn send(&mut self, bytes: &[u8]) -> usize {
        self.0.send_bytes(bytes)
    }
}

/// Counting starts when domains start ([`note_started`]): boot output
/// before that is not what a guest can make an exit wait for.
static COUNTING: AtomicBool = AtomicBool::new(false);
/// The most LSR reads that found the transmitter busy (THRE clear) in one
/// console operation, i.e. how long one operation waited on the UART.
static MAX_WAIT_POLLS: AtomicU64 = AtomicU64::new(0);
/// The most bytes one console operation handed to the UART.
static MAX_BURST: AtomicU64 = AtomicU64::new(0);

fn record(cost: Cost) {
    if COUNTING.load(Ordering::Relaxed) {
        MAX_WAIT_POLLS.fetch_max(cost.busy_polls, Ordering::Relaxed);
        MAX_BURST.fetch_max(cost.bytes, Ordering::Relaxed);
    }
}

/// A push that found the transmitter busy left at once: it did not wait.
fn no_wait(c: Cost) -> Cost {
    Cost {
        busy_polls: 0,
        bytes: c.bytes,
    }
}

fn add(a: &mut Cost, b: Cost) {
    a.busy_polls += b.busy_polls;
    a.bytes += b.bytes;
}

/// Appends what `f` writes to the ring, whole, then pushes once (or, while
/// output is synchronous, flushes the ring). A write that does not fit
/// waits for room (hypervisor output only: guests' lines are let in only
/// while [`guest_room`] says they fit).
fn write_with(c: &mut Console, f: &mut dyn FnMut(&mut Appender<'_>)) {
    let Console { uart, tx } = c;
    let Some(uart) = uart.as_mut() else { return };
    let mut port = Port(uart);
    let mut cost = Cost::default();
    loop {
        match tx.append(false, f) {
            Ok(()) => break,
            Err(needed) if needed > TXBUF_BYTES => {
                // Larger than the whole ring: what fits of it.
                add(&mut cost, tx.push_until_free(&mut port, TXBUF_BYTES));
                let _ = tx.append(true, f);
                break;
            }
            Err(needed) => add(&mut cost, tx.push_until_free(&mut port, needed)),
        }
    }
    if BUFFERED.load(Ordering::Relaxed) {
        add(&mut cost, no_wait(tx.push(&mut port)));
    } else {
        add(&mut cost, tx.push_until_free(&mut port, TXBUF_BYTES));
    }
    set_waiting(!tx.is_empty());
    record(cost);
}

/// Whether the ring held bytes when the console lock was last released
/// (written only under it, [`set_waiting`]): [`push`] returns at once on
/// `false` without taking the lock. A `false` read while another CPU
/// appends is harmless: that CPU pushes after its append and leaves `true`
/// (and every CPU's `ATTN_CONSOLE`) for the next push.
static TX_WAITING: AtomicBool = AtomicBool::new(false);

/// Records whether the ring holds bytes (under the console lock). When
/// it starts to, every CPU is asked to push at its next exit
/// (`hostwork::ATTN_CONSOLE`); each asks itself again while bytes wait.
fn set_waiting(on: bool) {
    if TX_WAITING.swap(on, Ordering::AcqRel) != on && on {
        crate::hostwork::raise_all(crate::hostwork::ATTN_CONSOLE);
    }
}

/// Whether the ring held bytes when the console lock was last released.
#[inline]
pub fn waiting() -> bool {
    TX_WAITING.load(Ordering::Acquire)
}

/// Domains are about to start: from now on output is buffered and the
/// worst console operation is counted ([`report`]).
pub fn note_started() {
    COUNTING.store(true, Ordering::Relaxed);
    BUFFERED.store(true, Ordering::Release);
}

/// Hands the UART what it takes now (at most one FIFO), never waiting:
/// from exits that find `hostwork::ATTN_CONSOLE` and from idle CPUs.
/// Skipped when another CPU holds the console (it pushes itself).
#[inline]
pub fn push() {
    if TX_WAITING.load(Ordering::Acquire) {
        push_waiting();
    }
}

#[inline(never)]
fn push_waiting() {
    if let Some(mut c) = CONSOLE.try_lock() {
        let Console { uart, tx } = &mut *c;
        if let Some(uart) = uart.as_mut() {
            record(no_wait(tx.push(&mut Port(uart))));
        }
        set_waiting(!tx.is_empty());
    }
}

/// Bytes waiting in the ring (0 without a console).
pub fn pending() -> usize {
    let c = CONSOLE.lock();
    if c.uart.is_some() { c.tx.len() } else { 0 }
}

/// Bytes of the ring a guest's line may take now.
pub fn guest_room() -> usize {
    CONSOLE.lock().tx.guest_room()
}

/// Prints the `serial:` line with the worst console operation since
/// domains started, then flushes the ring, waiting (the hypervisor is
/// ending).
pub fn report() {
    write_fmt(format_args!(
        "serial: max_wait_polls={} max_burst_bytes={}\n",
        MAX_WAIT_POLLS.load(Ordering::Relaxed),
        MAX_BURST.load(Ordering::Relaxed)
    ));
    flush();
}

/// Output is synchronous from now on and what the ring holds goes out
/// now, waiting for the UART (the way down).
pub fn flush() {
    BUFFERED.store(false, Ordering::Release);
    let mut c = CONSOLE.lock();
    let Console { uart, tx } = &mut *c;
    if let Some(uart) = uart.as_mut() {
        tx.push_until_free(&mut Port(uart), TXBUF_BYTES);
        set_waiting(!tx.is_empty());
        // The FIFO and the shift register still hold up to 17 bytes: an
        // emulator that ends right after would cut them off (Bochs did, in
        // the `serial:` line). Wait until the line is idle (LSR.TEMT),
        // bounded in case the UART never says so (about 0.2 s of LSR reads
        // on hardware, far more than 17 bytes take).
        for _ in 0..200_000 {
            if uart.lsr().contains(LSR::TRANSMITTER_EMPTY) {
                break;
            }
            core::hint::spin_loop();
        }
    }
}

/// Writes formatted text to the console, if there is one.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    write_with(&mut CONSOLE.lock(), &mut |a: &mut Appender<'_>| {
        let _ = a.write_fmt(args);
    });
}

/// Writes to the console even if another CPU died holding its lock: used
/// only on the way down (panic, fatal error), when losing the last words
/// would be worse than interleaving them. What the ring holds goes first,
/// synchronously, then these words.
pub fn write_fmt_emergency(args: fmt::Arguments<'_>) {
    flush_emergency();
    write_fmt(args);
}

/// [`flush`] even if another CPU died holding the console lock (the way
/// down after a failure).
pub fn flush_emergency() {
    BUFFERED.store(false, Ordering::Release);
    if CONSOLE.is_locked() {
        // SAFETY: we are about to stop the machine; the lock holder (if it is
        // another CPU) at worst interleaves its bytes with ours.
        unsafe { CONSOLE.force_unlock() };
    }
    flush();
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

/// The management line's receive interrupt came since the runtime last
/// looked ([`take_mgmt_rx`]).
static MGMT_RX: AtomicBool = AtomicBool::new(false);
/// The receive interrupt is routed and enabled ([`mgmt_enable_irq`]).
static MGMT_IRQ: AtomicBool = AtomicBool::new(false);

/// Enables the management UART's "received data available" interrupt
/// (16550 IER bit 0; OUT2, which gates the UART's IRQ line on PCs, is set
/// by the driver's `init`). The caller has routed the IRQ to
/// [`super::idt::VECTOR_MGMT_RX`]. The UART holds its interrupt while
/// data waits, so an edge-triggered route sees a new edge only once the
/// control domain has read the line empty: it must read until
/// `HC_MGMT_READ` gives 0 (pvabi `VIRQ_MGMT_RX`).
pub fn mgmt_enable_irq() -> bool {
    let mut guard = MGMT.lock();
    let Some(uart) = guard.as_mut() else {
        return false;
    };
    uart.enable_interrupts(uart_16550::spec::registers::IER::DATA_READY);
    MGMT_IRQ.store(true, Ordering::Release);
    // Bytes that came before the interrupt was enabled raised no edge.
    MGMT_RX.store(true, Ordering::Release);
    crate::hostwork::note(crate::hostwork::MGMT_RX);
    true
}

/// Whether the management line's receive interrupt is enabled.
pub fn mgmt_irq() -> bool {
    MGMT_IRQ.load(Ordering::Acquire)
}

/// The receive interrupt's handler: only notes it (the runtime raises the
/// virq outside interrupt context, where it may take locks).
pub fn note_mgmt_rx() {
    MGMT_RX.store(true, Ordering::Release);
    crate::hostwork::note(crate::hostwork::MGMT_RX);
}

/// Whether the receive interrupt came since the last call (cleared).
#[inline]
pub fn take_mgmt_rx() -> bool {
    MGMT_RX.load(Ordering::Relaxed) && MGMT_RX.swap(false, Ordering::AcqRel)
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

/// Prints `bytes` on the console as one write, control characters other
/// than newline and tab shown as `?` (a newline becomes CR LF).
pub fn write_raw(bytes: &[u8]) {
    write_with(&mut CONSOLE.lock(), &mut |a: &mut Appender<'_>| {
        a.raw(bytes)
    });
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
    let Some(uart) = guard.uart.as_mut() else {
        return 0;
    };
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
