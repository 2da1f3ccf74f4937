//! Each domain's console output queue (issue 12, "bounded exits").
//!
//! `HC_CONSOLE_WRITE` used to print the guest's bytes on the serial port
//! inside the exit, under the global serial lock: a multicall of 64 × 4 KiB
//! writes held a CPU for 15 s under TCG (23 s at 115,200 baud on hardware)
//! while other CPUs spun on that lock. Now a write only copies the bytes
//! into the domain's own bounded queue, allocated once when the domain is
//! created ([`OutQueue::new`]); the serial port is fed from the queue a
//! bounded amount at a time (at most one line, from at most
//! [`DRAIN_PER_EXIT`] bytes, after each of the domain's exits, the same
//! from idle CPUs), so no exit spends more than a line's serial time.
//!
//! **Full queue: flow control, not loss.** A write that does not fit whole
//! is not taken: the hypercall is *continued* (its RIP is left on the
//! hypercall instruction and the vCPU yields), so the guest re-executes it,
//! transparently, once its queue has drained. This is the model of Xen's
//! console ring, where a writer waits for the ring to have room; we chose
//! it over dropping because the suite (and an operator) relies on every
//! line a guest prints, in order, and because a flooding guest then pays
//! for the serial port's slowness with its own CPU time (its own exits
//! drain its queue) instead of anyone else's. Nothing is allocated after
//! creation, so a flood cannot exhaust the heap either.
//!
//! Output stays line-based (`[domN name] text`, lines cut at
//! [`LINE_MAX`] bytes, control characters shown as `?`). Lines go into the
//! serial console's transmit ring (`txbuf.rs`), only while it has
//! room for them, so printing a line never waits on the UART either.
//!
//! **The end of a domain** never prints its queue synchronously (up to
//! 4 KiB, 0.35 s at 115,200 baud, used to be printed inside the exit that
//! ended it, often the control domain's destroy). The hypervisor's lines
//! about its end (`domain N ... exited`, `domain-end:`) become *notes* of
//! the queue ([`OutQueue::close`]), printed after its last bytes and its
//! unfinished line; when the domain is freed what its queue holds moves,
//! whole, into a fixed leftover slot (`console/live.rs`,
//! [`OutQueue::move_into`]) that exits and idle CPUs drain like a live
//! domain's queue. Its frames and heap are freed at once.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arrayvec::{ArrayString, ArrayVec};

use crate::sync::Mutex;

/// Bytes one domain's queue holds: one maximal write
/// (`pvabi::CONSOLE_WRITE_MAX`), so a write that fits an empty queue is
/// always taken eventually.
pub const CONSOLE_OUT_BYTES: usize = pvabi::CONSOLE_WRITE_MAX as usize;

/// Bytes of a domain's queue taken after one of its exits (or by an idle
/// CPU's pass), and at most one line printed: a line of 64 bytes is 5.6 ms
/// at 115,200 baud, half a scheduler slice; the longest ([`LINE_MAX`] and
/// its `[domN name]` prefix) is 19 ms.
pub const DRAIN_PER_EXIT: usize = 64;

/// Longest console line: a longer one is cut there (as before the queue).
pub const LINE_MAX: usize = 200;

/// Longest note (a hypervisor line about the domain's end).
pub const NOTE_MAX: usize = 256;

/// How a note is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// A log line at level info.
    Info,
    /// A log line at level warn.
    Warn,
    /// A line as it is (`domain-end:`).
    Plain,
}

/// A hypervisor line that must follow the domain's last console output.
#[derive(Debug)]
pub struct Note {
    pub kind: NoteKind,
    pub text: ArrayString<NOTE_MAX>,
}

impl Note {
    /// `args` formatted, cut at [`NOTE_MAX`] bytes (on a character
    /// boundary) rather than lost.
    pub fn new(kind: NoteKind, args: core::fmt::Arguments<'_>) -> Self {
        struct Cut<'a>(&'a mut ArrayString<NOTE_MAX>);
        impl core::fmt::Write for Cut<'_> {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                for c in s.chars() {
                    if self.0.try_push(c).is_err() {
                        break;
                    }
                }
                Ok(())
            }
        }
        let mut text = ArrayString::new();
        let _ = core::fmt::write(&mut Cut(&mut text), args);
        Self { kind, text }
    }
}

/// Notes one queue holds: its end (`Domain::finish`) and `domain-end:`.
const NOTES: usize = 2;

/// The ring, the line being assembled and the notes that follow them.
struct Ring<B> {
    buf: B,
    head: usize,
    len: usize,
    line: ArrayVec<u8, LINE_MAX>,
    /// A note was added: the domain has ended, its unfinished line is
    /// printed once its bytes are, then the notes.
    closing: bool,
    notes: ArrayVec<Note, NOTES>,
}

impl<B> Ring<B> {
    /// Whether anything is left to print.
    fn busy(&self) -> bool {
        self.len > 0 || (self.closing && (!self.line.is_empty() || !self.notes.is_empty()))
    }
}

/// One domain's console output: a fixed ring of [`CONSOLE_OUT_BYTES`]
/// (a leaf lock: taken with no other lock held, takes only the serial
/// console's) and the number of bytes queued, read without the lock on
/// every exit.
pub struct OutQueue<B = Box<[u8]>> {
    ring: Mutex<Ring<B>>,
    queued: AtomicUsize,
    /// [`Ring::busy`], read without the lock.
    busy: AtomicBool,
}

/// A leftover queue's storage (`console/live.rs`): fixed, not on the heap.
pub type Fixed = [u8; CONSOLE_OUT_BYTES];

impl OutQueue<Fixed> {
    /// An empty queue in fixed storage (a leftover slot).
    pub const fn fixed() -> Self {
        Self {
            ring: Mutex::new(Ring {
                buf: [0; CONSOLE_OUT_BYTES],
                head: 0,
                len: 0,
                line: ArrayVec::new_const(),
                closing: false,
                notes: ArrayVec::new_const(),
            }),
            queued: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
        }
    }
}

impl OutQueue {
    /// An empty queue, its ring allocated now (fallibly): `None` when the
    /// heap cannot hold it, and the domain is then not created.
    pub fn new() -> Option<Self> {
        let mut v: Vec<u8> = Vec::new();
        v.try_reserve_exact(CONSOLE_OUT_BYTES).ok()?;
        v.resize(CONSOLE_OUT_BYTES, 0);
        Some(Self {
            ring: Mutex::new(Ring {
                buf: v.into_boxed_slice(),
                head: 0,
                len: 0,
                line: ArrayVec::new(),
                closing: false,
                notes: ArrayVec::new(),
            }),
            queued: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
        })
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> OutQueue<B> {
    /// Moves everything queued here (bytes, the unfinished line, notes)
    /// into `to`, which must be empty and at least as large; this one is
    /// left empty. A domain being freed hands its output to a leftover
    /// slot this way, so that its heap ring is freed with it at once.
    /// `false` (nothing moved) when `to` is not empty or too small.
    pub fn move_into<C: AsRef<[u8]> + AsMut<[u8]>>(&self, to: &OutQueue<C>) -> bool {
        let mut r = self.ring.lock();
        let mut t = to.ring.lock();
        if t.busy() || !t.line.is_empty() || t.buf.as_ref().len() < r.len {
            return false;
        }
        let cap = r.buf.as_ref().len();
        for i in 0..r.len {
            let b = r
                .buf
                .as_ref()
                .get((r.head + i) % cap)
                .copied()
                .unwrap_or(b'?');
            if let Some(slot) = t.buf.as_mut().get_mut(i) {
                *slot = b;
            }
        }
        t.head = 0;
        t.len = r.len;
        t.line = core::mem::take(&mut r.line);
        t.notes = core::mem::take(&mut r.notes);
        t.closing = r.closing;
        r.len = 0;
        r.head = 0;
        to.publish(&t);
        self.publish(&r);
        true
    }

    /// Whether anything is left to print (no lock).
    #[inline]
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    fn publish(&self, r: &Ring<B>) {
        self.queued.store(r.len, Ordering::Release);
        self.busy.store(r.busy(), Ordering::Release);
    }

    /// Adds `note`, to be printed after everything queued now: the domain
    /// has ended. Hands it back when nothing is queued (print it now: no
    /// line of the domain can come out after it) or the notes are full.
    pub fn close(&self, note: Note) -> Option<Note> {
        let mut r = self.ring.lock();
        if !r.busy() && r.line.is_empty() {
            return Some(note);
        }
        if let Err(e) = r.notes.try_push(note) {
            return Some(e.element());
        }
        r.closing = true;
        self.publish(&r);
        None
    }

    /// Queues all of `bytes`, or nothing when they do not fit now
    /// (`false`: the caller continues the write later).
    pub fn offer(&self, bytes: &[u8]) -> bool {
        let mut r = self.ring.lock();
        let cap = r.buf.as_ref().len();
        if bytes.len() > cap - r.len || cap == 0 {
            return bytes.is_empty();
        }
        // Two block copies (up to the ring's end, then from its start):
        // a 4 KiB write costs a memcpy, not a loop per byte.
        let tail = (r.head + r.len) % cap;
        let first = bytes.len().min(cap - tail);
        let (a, b) = bytes.split_at(first);
        if let Some(dst) = r.buf.as_mut().get_mut(tail..tail + first) {
            dst.copy_from_slice(a);
        }
        if let Some(dst) = r.buf.as_mut().get_mut(..b.len()) {
            dst.copy_from_slice(b);
        }
        r.len += bytes.len();
        self.publish(&r);
        true
    }

    /// Bytes waiting (no lock).
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Moves up to `max` queued bytes into lines, passing at most one
    /// completed line to `print` (under this queue's lock, so one domain's
    /// lines keep their order whichever CPU drains them): what one exit
    /// may spend on the console is one line. Once the bytes are out and
    /// the queue is closing, its unfinished line, then one note a call, go
    /// to `print` / `note`. Returns the bytes taken (a line or note counts
    /// as one when no byte was).
    pub fn drain(
        &self,
        max: usize,
        print: &mut dyn FnMut(&[u8]),
        note: &mut dyn FnMut(&Note),
    ) -> usize {
        if !self.busy() {
            return 0;
        }
        let mut r = self.ring.lock();
        let cap = r.buf.as_ref().len();
        let mut n = 0;
        while n < max && r.len > 0 {
            let b = r.buf.as_ref().get(r.head).copied().unwrap_or(b'?');
            r.head = (r.head + 1) % cap;
            r.len -= 1;
            n += 1;
            if push_byte(&mut r.line, b, print) {
                break;
            }
        }
        if n == 0 && r.closing {
            if !r.line.is_empty() {
                print(&r.line);
                r.line.clear();
                n = 1;
            } else if !r.notes.is_empty() {
                let first = r.notes.remove(0);
                note(&first);
                n = 1;
            }
        }
        self.publish(&r);
        n
    }

    /// Prints everything queued, the unfinished line and the notes (the
    /// domain has ended and its output cannot wait: see
    /// `console/live.rs`): bounded by [`CONSOLE_OUT_BYTES`] + [`LINE_MAX`]
    /// + the notes.
    pub fn flush(&self, print: &mut dyn FnMut(&[u8]), note: &mut dyn FnMut(&Note)) {
        {
            let mut r = self.ring.lock();
            r.closing = true;
            self.publish(&r);
        }
        while self.drain(CONSOLE_OUT_BYTES, print, note) != 0 {}
    }
}

/// Adds one byte to `line`: a newline or a full line prints it (`true`).
fn push_byte(line: &mut ArrayVec<u8, LINE_MAX>, b: u8, print: &mut dyn FnMut(&[u8])) -> bool {
    let mut printed = false;
    if b == b'\n' || line.is_full() {
        print(line);
        line.clear();
        printed = true;
        if b == b'\n' {
            return true;
        }
    }
    // A carriage return is dropped: Linux's tty ends lines with "\r\n",
    // and a lone one would let a guest overwrite its own line's prefix.
    if b == b'\r' {
        return printed;
    }
    // Control characters other than tab would let a guest forge log
    // lines or terminal escapes on the operator's console.
    line.push(if b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80 {
        b
    } else {
        b'?'
    });
    printed
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::string::{String, ToString};
    use std::vec;
    use std::vec::Vec;

    fn lines(q: &OutQueue, max: usize) -> (usize, Vec<String>) {
        let mut out = Vec::new();
        let n = q.drain(
            max,
            &mut |l: &[u8]| out.push(String::from_utf8_lossy(l).into_owned()),
            &mut |_| {},
        );
        (n, out)
    }

    /// Drains until nothing is queued: the bytes taken and the lines.
    fn all(q: &OutQueue) -> (usize, Vec<String>) {
        let (mut n, mut out) = (0, Vec::new());
        loop {
            let (k, l) = lines(q, CONSOLE_OUT_BYTES);
            if k == 0 {
                return (n, out);
            }
            n += k;
            out.extend(l);
        }
    }

    #[test]
    fn writes_are_taken_whole_or_not_at_all() {
        let q = OutQueue::new().unwrap();
        assert!(q.offer(&vec![b'a'; CONSOLE_OUT_BYTES - 3]));
        assert!(!q.offer(b"abcd"), "4 bytes do not fit in 3");
        assert_eq!(q.queued(), CONSOLE_OUT_BYTES - 3, "nothing taken");
        assert!(q.offer(b"xyz"));
        assert!(!q.offer(b"!"));
        assert_eq!(lines(&q, 10).0, 10);
        assert!(q.offer(&[b'b'; 10]), "room again once drained");
    }

    #[test]
    fn a_drain_takes_at_most_its_bound_and_lines_keep_their_order() {
        let q = OutQueue::new().unwrap();
        assert!(q.offer(b"first line\nsecond\n\x1b[2Jthird"));
        let (n, l) = lines(&q, 8);
        assert_eq!((n, l.len()), (8, 0), "no line complete yet");
        let (n, l) = lines(&q, DRAIN_PER_EXIT);
        assert_eq!(
            (n, l),
            (3, vec!["first line".to_string()]),
            "one line a drain"
        );
        let (n, l) = lines(&q, DRAIN_PER_EXIT);
        assert_eq!((n, l), (7, vec!["second".to_string()]));
        let mut rest = Vec::new();
        q.flush(
            &mut |l: &[u8]| rest.push(String::from_utf8_lossy(l).into_owned()),
            &mut |_| {},
        );
        assert_eq!(rest, ["?[2Jthird"], "escape shown as ?");
        assert_eq!(q.queued(), 0);
    }

    #[test]
    fn carriage_returns_are_dropped_not_shown() {
        let q = OutQueue::new().unwrap();
        assert!(q.offer(b"linux line\r\nover\rwrite\n"));
        assert_eq!(
            all(&q).1,
            ["linux line".to_string(), "overwrite".to_string()],
            "\\r\\n is a newline and a lone \\r cannot rewind the line"
        );
    }

    #[test]
    fn long_lines_are_cut_and_the_ring_wraps() {
        let q = OutQueue::new().unwrap();
        for round in 0..5 {
            let mut data = vec![b'x'; LINE_MAX + 5];
            data.push(b'\n');
            assert!(q.offer(&data), "round {round}");
            let (n, l) = all(&q);
            assert_eq!(n, LINE_MAX + 6);
            assert_eq!(l.len(), 2);
            assert_eq!(l[0].len(), LINE_MAX);
            assert_eq!(l[1], "xxxxx");
        }
        // Wrapping many times over keeps every byte in order.
        let mut got = Vec::new();
        for i in 0..(3 * CONSOLE_OUT_BYTES / 7) {
            let s = std::format!("{:06}\n", i);
            if !q.offer(s.as_bytes()) {
                got.extend(all(&q).1);
                assert!(q.offer(s.as_bytes()));
            }
        }
        got.extend(all(&q).1);
        for (i, l) in got.iter().enumerate() {
            assert_eq!(*l, std::format!("{i:06}"));
        }
    }

    /// Drains `q` to the end: its lines and notes, in order.
    fn everything<B: AsRef<[u8]> + AsMut<[u8]>>(q: &OutQueue<B>) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let got = core::cell::RefCell::new(Vec::new());
            let n = q.drain(
                DRAIN_PER_EXIT,
                &mut |l: &[u8]| {
                    got.borrow_mut()
                        .push(String::from_utf8_lossy(l).into_owned())
                },
                &mut |n: &Note| {
                    got.borrow_mut()
                        .push(std::format!("note {:?}: {}", n.kind, n.text))
                },
            );
            let got = got.into_inner();
            assert!(got.len() <= 1, "one line or note a drain: {got:?}");
            out.extend(got);
            if n == 0 {
                assert!(!q.busy());
                return out;
            }
        }
    }

    #[test]
    fn notes_follow_the_last_bytes_and_the_unfinished_line() {
        let q = OutQueue::new().unwrap();
        let note = |k, s: &str| Note::new(k, format_args!("{s}"));
        // Nothing queued: the note is handed back, to be printed now.
        assert!(q.close(note(NoteKind::Info, "at once")).is_some());
        assert!(q.offer(
            b"one
two
unfinished"
        ));
        assert!(
            q.close(note(NoteKind::Warn, "domain 7 (x) killed: why"))
                .is_none()
        );
        assert!(q.busy());
        // The domain is freed: its queue moves out whole, nothing lost.
        let moved = std::boxed::Box::new(OutQueue::fixed());
        assert!(q.move_into(&*moved));
        assert!(!q.busy(), "nothing left behind");
        assert!(!q.move_into(&*moved), "only into an empty queue");
        assert!(
            moved
                .close(note(NoteKind::Plain, "domain-end: id=7"))
                .is_none()
        );
        assert!(
            moved.close(note(NoteKind::Plain, "third")).is_some(),
            "two notes at most"
        );
        assert_eq!(
            everything(&*moved),
            [
                "one",
                "two",
                "unfinished",
                "note Warn: domain 7 (x) killed: why",
                "note Plain: domain-end: id=7",
            ]
        );
    }

    #[test]
    fn a_long_note_is_cut_not_lost() {
        let long = "é".repeat(NOTE_MAX);
        let n = Note::new(NoteKind::Plain, format_args!("{long}"));
        assert_eq!(n.text.len(), NOTE_MAX, "whole characters up to the cap");
        assert!(long.starts_with(n.text.as_str()));
    }
}
