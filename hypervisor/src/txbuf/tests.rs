//! Host tests of the transmit buffer with a model 16550.
#![allow(clippy::unwrap_used)]

use super::*;
use core::fmt::Write;
use std::vec::Vec;

/// A 16550 with a 16-byte FIFO that is busy (THRE clear) for `busy` LSR
/// reads after each burst; records what it sent and how it was called.
struct Model {
    fifo: usize,
    busy: u32,
    left: u32,
    sent: Vec<u8>,
    calls: u64,
}

impl Model {
    fn new(fifo: usize, busy: u32) -> Self {
        Self {
            fifo,
            busy,
            left: 0,
            sent: Vec::new(),
            calls: 0,
        }
    }
}

impl Uart for Model {
    fn send(&mut self, bytes: &[u8]) -> usize {
        self.calls += 1;
        if self.left > 0 {
            self.left -= 1;
            return 0;
        }
        let n = bytes.len().min(self.fifo);
        self.sent.extend_from_slice(&bytes[..n]);
        if n > 0 {
            self.left = self.busy;
        }
        n
    }
}

fn line(t: &mut TxBuf<64>, s: &str) -> Result<(), usize> {
    t.append(false, &mut |a| {
        let _ = write!(a, "{s}");
    })
}

#[test]
fn a_push_never_waits_and_fills_at_most_the_fifo() {
    let mut t = TxBuf::<64>::new();
    line(&mut t, "0123456789abcdefghijklmnop\n").unwrap();
    assert_eq!(t.len(), 28, "newline as CR LF");
    let mut u = Model::new(16, 3);
    let c = t.push(&mut u);
    assert_eq!(
        (c, u.calls),
        (
            Cost {
                busy_polls: 0,
                bytes: 16
            },
            1
        )
    );
    // The transmitter is busy now: a push reads LSR once and leaves.
    for _ in 0..3 {
        let c = t.push(&mut u);
        assert_eq!(
            c,
            Cost {
                busy_polls: 1,
                bytes: 0
            }
        );
    }
    assert_eq!(t.push(&mut u).bytes, 12);
    assert!(t.is_empty());
    assert_eq!(u.sent, b"0123456789abcdefghijklmnop\r\n");
    // Without a FIFO, one byte a push.
    line(&mut t, "xy").unwrap();
    let mut one = Model::new(1, 0);
    assert_eq!(t.push(&mut one).bytes, 1);
    assert_eq!(t.push(&mut one).bytes, 1);
    assert_eq!(t.push(&mut one), Cost::default(), "empty: no LSR read");
    assert_eq!(one.calls, 2);
}

#[test]
fn writes_are_taken_whole_or_not_at_all() {
    let mut t = TxBuf::<64>::new();
    line(&mut t, &"a".repeat(60)).unwrap();
    assert_eq!(line(&mut t, "hello"), Err(5), "5 bytes do not fit in 4");
    assert_eq!(line(&mut t, "hi!\n"), Err(5), "newline counts as CR LF");
    assert_eq!(t.len(), 60, "nothing of either was taken");
    line(&mut t, "abc").unwrap();
    assert_eq!(t.free(), 1);
    // Partial (a write larger than the ring): what fits.
    t.append(true, &mut |a| a.text(b"xyz")).unwrap();
    assert_eq!(t.free(), 0);
    let mut u = Model::new(16, 0);
    let c = t.push_until_free(&mut u, 64);
    assert_eq!(c.bytes, 64);
    assert!(u.sent.ends_with(b"abcx"));
}

#[test]
fn lines_keep_their_order_across_many_wraps() {
    let mut t = TxBuf::<64>::new();
    let mut u = Model::new(16, 2);
    let mut want = Vec::new();
    let mut i = 0u32;
    // Writers append whole lines when they fit; pushes interleave.
    while i < 2000 {
        let s = std::format!("line {i} {}\n", "x".repeat((i % 23) as usize));
        match line(&mut t, &s) {
            Ok(()) => {
                want.extend_from_slice(s.replace('\n', "\r\n").as_bytes());
                i += 1;
            }
            Err(n) => assert!(n > t.free()),
        }
        t.push(&mut u);
    }
    t.push_until_free(&mut u, 64);
    assert_eq!(u.sent, want);
}

#[test]
fn guests_leave_the_headroom_to_the_hypervisor() {
    let mut t = TxBuf::<TXBUF_BYTES>::new();
    assert_eq!(t.guest_room(), TXBUF_BYTES - HYPERVISOR_HEADROOM);
    t.append(false, &mut |a| {
        a.text(&[b'g'; TXBUF_BYTES - HYPERVISOR_HEADROOM])
    })
    .unwrap();
    assert_eq!(t.guest_room(), 0, "no room for guests' lines");
    assert_eq!(
        t.free(),
        HYPERVISOR_HEADROOM,
        "all of it for the hypervisor's"
    );
}

#[test]
fn raw_bytes_cannot_forge_terminal_escapes() {
    let mut t = TxBuf::<64>::new();
    t.append(false, &mut |a| a.raw(b"ok\x1b[2J\r\tend\n"))
        .unwrap();
    let mut u = Model::new(16, 0);
    t.push_until_free(&mut u, 64);
    assert_eq!(u.sent, b"ok?[2J?\tend\r\n");
}

#[test]
fn waiting_for_room_counts_the_busy_polls() {
    let mut t = TxBuf::<64>::new();
    line(&mut t, &"z".repeat(64)).unwrap();
    let mut u = Model::new(16, 5);
    let c = t.push_until_free(&mut u, 20);
    // Two bursts (32 bytes) with five busy reads between them.
    assert_eq!(
        c,
        Cost {
            busy_polls: 5,
            bytes: 32
        }
    );
    assert_eq!(t.free(), 32);
}
