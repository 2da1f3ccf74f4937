//! The serial console's transmit buffer (issue 12, "bounded exits"): what
//! is printed goes into a bounded ring first, and the ring goes to the UART
//! only as far as the UART takes it without waiting.
//!
//! Before, every console line (a guest's, from `console/out.rs`, and every
//! hypervisor log line) went to the 16550 byte by byte, spinning on
//! LSR.THRE under the serial lock, inside whatever exit printed it: ~17 ms
//! for a 200-byte line at 115,200 baud, longer than a 10 ms slice. Xen's
//! `serial_txbuf` (xen/drivers/char/serial.c) is the model: writers copy
//! into a ring and leave; the ring is *pushed* to the UART from the exit
//! path, idle CPUs and the timer tick, each push reading LSR once and, if
//! the transmitter is empty (THRE), handing it at most one FIFO's worth
//! (16 bytes on a 16550A with its FIFO on, PC16550D datasheet "FIFO
//! mode": THRE is set when the transmit FIFO is empty, so 16 bytes always
//! fit then; one byte without the FIFO). A push therefore never waits.
//!
//! This module is the ring alone (pure, host-tested); `arch/serial.rs`
//! owns the one instance, the UART and the lock. The policies around it:
//!
//! - A write is taken **whole or not at all** ([`TxBuf::append`]): lines
//!   from different sources never interleave mid-line, and one source's
//!   lines keep their order (they are appended in order under the lock).
//! - **Guests' lines** enter only while the ring keeps
//!   [`HYPERVISOR_HEADROOM`] free (`console/live.rs` checks
//!   [`TxBuf::guest_room`] before taking a line from a domain's queue):
//!   otherwise the line stays in the domain's own queue, which
//!   flow-controls the guest (nothing dropped). Guests thus never fill the
//!   part of the ring the hypervisor's own lines use.
//! - **Hypervisor lines** that do not fit wait (the writer pushes,
//!   spinning on THRE, until they do): they are the hypervisor's own, rare
//!   after boot, and get the whole headroom to themselves, so this happens
//!   only if the hypervisor itself logs faster than the UART for
//!   [`HYPERVISOR_HEADROOM`] bytes. We chose waiting over dropping with a
//!   `[... N bytes dropped]` marker because every line the suite and an
//!   operator read (kills, `domain-end:`) is such a line; the `serial:`
//!   line's `max_wait_polls=` shows any wait that happened.
//! - Before domains start (boot) and on the way down (panic, fatal, exit)
//!   output is synchronous: the ring is flushed, waiting, after each write.

/// Bytes the ring holds: about 1.4 s of output at 115,200 baud.
pub const TXBUF_BYTES: usize = 16 * 1024;

/// Free bytes guests' lines leave to the hypervisor's own.
pub const HYPERVISOR_HEADROOM: usize = 8 * 1024;

/// What the ring needs of a UART.
pub trait Uart {
    /// Hands over what the UART takes now without waiting: when its
    /// transmitter is empty (LSR.THRE), up to its FIFO's size from the
    /// front of `bytes` (1 without a FIFO); else nothing. Returns how many.
    fn send(&mut self, bytes: &[u8]) -> usize;
}

/// What a push or a wait cost: LSR reads that found the transmitter busy,
/// bytes handed over.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub busy_polls: u64,
    pub bytes: u64,
}

/// A ring of `N` bytes (see the module doc).
pub struct TxBuf<const N: usize> {
    buf: [u8; N],
    head: usize,
    len: usize,
}

impl<const N: usize> Default for TxBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> TxBuf<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            head: 0,
            len: 0,
        }
    }

    /// Bytes waiting for the UART.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Free bytes.
    pub fn free(&self) -> usize {
        N - self.len
    }

    /// Bytes a guest's line may use ([`HYPERVISOR_HEADROOM`] kept free).
    pub fn guest_room(&self) -> usize {
        self.free().saturating_sub(HYPERVISOR_HEADROOM.min(N / 2))
    }

    /// Appends what `f` writes, whole: `Ok` when it fitted; `Err(needed)`
    /// (the bytes it would take) when not, and then nothing was appended.
    /// With `partial`, what fits is kept instead (for a write larger than
    /// the whole ring, after it was emptied).
    pub fn append(
        &mut self,
        partial: bool,
        f: &mut dyn FnMut(&mut Appender<'_>),
    ) -> Result<(), usize> {
        let mut a = Appender {
            buf: &mut self.buf,
            start: (self.head + self.len) % N,
            room: N - self.len,
            wrote: 0,
            needed: 0,
        };
        f(&mut a);
        let (wrote, needed) = (a.wrote, a.needed);
        if needed > wrote && !partial {
            return Err(needed);
        }
        self.len += wrote;
        Ok(())
    }

    /// One push: at most one call of `uart.send` (one LSR read), so at most
    /// one FIFO's worth, never waiting.
    pub fn push(&mut self, uart: &mut dyn Uart) -> Cost {
        if self.len == 0 {
            return Cost::default();
        }
        let end = (self.head + self.len).min(N);
        let n = uart
            .send(self.buf.get(self.head..end).unwrap_or(&[]))
            .min(end - self.head);
        self.head = (self.head + n) % N;
        self.len -= n;
        Cost {
            busy_polls: u64::from(n == 0),
            bytes: n as u64,
        }
    }

    /// Pushes, waiting on the UART, until `want` bytes are free (all of
    /// them for `N`): the synchronous path (boot, a hypervisor line that
    /// does not fit, the way down).
    pub fn push_until_free(&mut self, uart: &mut dyn Uart, want: usize) -> Cost {
        let mut cost = Cost::default();
        while self.free() < want.min(N) {
            let c = self.push(uart);
            cost.busy_polls += c.busy_polls;
            cost.bytes += c.bytes;
            if c.bytes == 0 {
                core::hint::spin_loop();
            }
        }
        cost
    }
}

/// Writes into the free part of a [`TxBuf`] tentatively (committed by
/// [`TxBuf::append`] when everything fitted). A newline becomes CR LF.
pub struct Appender<'a> {
    buf: &'a mut [u8],
    start: usize,
    room: usize,
    wrote: usize,
    needed: usize,
}

impl Appender<'_> {
    fn put(&mut self, b: u8) {
        if self.wrote < self.room {
            let at = (self.start + self.wrote) % self.buf.len();
            if let Some(slot) = self.buf.get_mut(at) {
                *slot = b;
            }
            self.wrote += 1;
        }
        self.needed += 1;
    }

    /// Appends `bytes` as text: newline as CR LF.
    pub fn text(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
    }

    /// Appends `bytes` from a domain (the control domain's
    /// `HC_HOST_WRITE`): control characters other than newline and tab
    /// become `?`, so no terminal escape reaches the operator.
    pub fn raw(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'\n' => {
                    self.put(b'\r');
                    self.put(b'\n');
                }
                b'\t' | 0x20..=0x7e | 0x80.. => self.put(b),
                _ => self.put(b'?'),
            }
        }
    }
}

impl core::fmt::Write for Appender<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.text(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
