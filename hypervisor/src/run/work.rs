//! The run loop's side of [`crate::hostwork`]: after every exit one load
//! of its CPU's attention word; the sources' polls only when some host
//! work was noted.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::hostwork::{
    ATTN_CONSOLE, ATTN_TICK, ATTN_WORK, END_RECORDED, MGMT_RX, MSI, attention, pending, take,
    take_attention,
};

/// After an exit that found this CPU's attention word `attn` not 0: takes
/// it, polls the host work if some was noted, drains the console's shared
/// output if some waits (and asks again for the next exit while some still
/// does); returns the bits taken (the run loop answers `ATTN_TICK` and
/// `ATTN_TIMER` itself).
#[cold]
#[inline(never)]
pub fn attend(attn: &AtomicU32) -> u32 {
    let bits = take_attention(attn);
    if bits & ATTN_WORK != 0 {
        poll();
    }
    if bits & ATTN_CONSOLE != 0 && crate::console::live::drain_shared() {
        attn.fetch_or(ATTN_CONSOLE, Ordering::AcqRel);
    }
    bits
}

/// At the end of a slice whose CPU's word `attn` asks for the console's
/// shared output: takes that bit and drains a share (asking again while
/// some still waits); the word's other bits stay for the next exit (or
/// are answered by the idle loop).
#[cold]
#[inline(never)]
pub fn attend_console(attn: &AtomicU32) {
    attn.fetch_and(!ATTN_CONSOLE, Ordering::AcqRel);
    if crate::console::live::drain_shared() {
        attn.fetch_or(ATTN_CONSOLE, Ordering::AcqRel);
    }
}

/// CPU `cpu` is about to fire its due timers and ask the scheduler (an
/// idle CPU's turn, `run::schedule`): the ticks so far are answered.
#[inline]
pub fn tick_seen(cpu: usize) {
    if let Some(a) = attention(cpu)
        && a.load(Ordering::Relaxed) & ATTN_TICK != 0
    {
        a.fetch_and(!ATTN_TICK, Ordering::AcqRel);
    }
}

/// The sources' polls if some bit of the shared word is set (one load
/// when none is).
#[inline(always)]
pub fn poll() {
    if pending() {
        poll_all();
    }
}

#[cold]
#[inline(never)]
fn poll_all() {
    let bits = take();
    if bits & (MGMT_RX | END_RECORDED) != 0 {
        crate::console::wake::poll();
    }
    if bits & MSI != 0 {
        crate::pci::msi_live::poll();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::hostwork::note;
    use crate::platform::{P, Platform, host};

    #[test]
    fn note_sets_bits_and_take_clears_them() {
        let _one = host::exclusive();
        let _ = take();
        note(MGMT_RX);
        note(MSI);
        assert_eq!(take(), MGMT_RX | MSI);
        assert_eq!(take(), 0);
        note(END_RECORDED);
        assert_eq!(take(), END_RECORDED);
    }

    /// The management line's interrupt sets its bit, and the exit path's
    /// one test runs its poll, which takes the flag.
    #[test]
    fn mgmt_rx_reaches_the_exit_poll() {
        let _one = host::exclusive();
        let _ = take();
        let _ = P::take_mgmt_rx();
        host::raise_mgmt_rx();
        assert!(pending());
        poll();
        assert!(!pending());
        assert!(!P::take_mgmt_rx(), "the exit poll took the flag");
    }

    /// A device message sets its bit; the exit poll delivers (here: finds
    /// no binding and counts it) and clears the vectors.
    #[test]
    fn msi_reaches_the_exit_poll() {
        let _one = host::exclusive();
        let _ = take();
        let _ = P::take_msi();
        host::raise_msi(0x61);
        assert!(pending());
        assert!(P::msi_any());
        poll();
        assert!(!pending());
        assert!(!P::msi_any(), "the exit poll took the vector");
    }

    /// With no bit set the exit poll touches no source: a flag raised
    /// without its note (none does that) would wait for the idle loop.
    #[test]
    fn no_bit_no_poll() {
        let _one = host::exclusive();
        let _ = take();
        let _ = P::take_mgmt_rx();
        host::raise_mgmt_rx();
        let _ = take();
        poll();
        assert!(P::take_mgmt_rx(), "the flag stayed for its own poll");
    }

    /// A note sets the work bit in every online CPU's attention word; the
    /// first CPU to attend polls (takes the flag), the next finds nothing
    /// to poll; neither reports a tick.
    #[test]
    fn a_note_reaches_every_online_cpu() {
        let _one = host::exclusive();
        host::become_cpu(1);
        let (w0, w1) = (attention(0).unwrap(), attention(1).unwrap());
        let _ = (take_attention(w0), take_attention(w1), take());
        let _ = P::take_mgmt_rx();
        host::raise_mgmt_rx();
        assert_eq!(w0.load(Ordering::Relaxed), ATTN_WORK);
        assert_eq!(w1.load(Ordering::Relaxed), ATTN_WORK);
        assert_eq!(attend(w1), ATTN_WORK, "no tick came");
        assert!(!P::take_mgmt_rx(), "the first CPU's poll took the flag");
        assert_eq!(w1.load(Ordering::Relaxed), 0, "taken");
        assert!(!pending());
        assert_eq!(attend(w0), ATTN_WORK);
        assert_eq!(w0.load(Ordering::Relaxed), 0);
        host::become_cpu(0);
    }

    /// The (host) timer's interrupt sets the tick bit of its CPU's word
    /// only; attending reports it and clears the word; an idle CPU's
    /// turn (`tick_seen`) clears the tick bit and keeps the work bit.
    #[test]
    fn a_timer_interrupt_sets_its_cpus_tick_bit() {
        let _one = host::exclusive();
        host::become_cpu(0);
        let (w0, w1) = (attention(0).unwrap(), attention(1).unwrap());
        let _ = (take_attention(w0), take_attention(w1));
        P::arm_timer_ns(1);
        std::thread::sleep(std::time::Duration::from_millis(1));
        P::interrupts_on();
        assert_eq!(w0.load(Ordering::Relaxed), ATTN_TICK);
        assert_eq!(w1.load(Ordering::Relaxed), 0, "another CPU's word");
        assert_eq!(attend(w0), ATTN_TICK);
        assert_eq!(w0.load(Ordering::Relaxed), 0);
        P::arm_timer_ns(1);
        std::thread::sleep(std::time::Duration::from_millis(1));
        P::interrupts_on();
        note(MSI);
        let _ = take();
        assert_eq!(w0.load(Ordering::Relaxed), ATTN_TICK | ATTN_WORK);
        tick_seen(0);
        assert_eq!(w0.load(Ordering::Relaxed), ATTN_WORK);
        let _ = take_attention(w0);
    }

    /// Output a freed domain left (more than one exit's share) asks every
    /// online CPU to drain; a CPU that attends takes a share and asks
    /// itself again until all of it is printed, then stops asking; the
    /// other CPU's request stays until it attends, and finds nothing.
    #[test]
    fn leftover_output_is_drained_by_the_exits_that_ask() {
        use crate::console::out::{DRAIN_PER_EXIT, OutQueue};
        let _one = host::exclusive();
        host::become_cpu(1);
        let (w0, w1) = (attention(0).unwrap(), attention(1).unwrap());
        let _ = (take_attention(w0), take_attention(w1), take());
        let q = OutQueue::new().unwrap();
        let line = [b'x'; DRAIN_PER_EXIT - 1];
        for _ in 0..3 {
            assert!(q.offer(&line) && q.offer(b"\n"));
        }
        let name = arrayvec::ArrayString::from("left").unwrap();
        crate::console::live::ended(
            crate::domain::ids::DomainId(77),
            &name,
            &q,
            format_args!("domain-end: id=77 name=left"),
        );
        assert!(crate::console::live::leftovers_pending());
        assert_eq!(w0.load(Ordering::Relaxed), ATTN_CONSOLE);
        assert_eq!(w1.load(Ordering::Relaxed), ATTN_CONSOLE);
        let mut exits = 0;
        while w1.load(Ordering::Relaxed) != 0 {
            assert_eq!(attend(w1), ATTN_CONSOLE, "no tick came");
            exits += 1;
            assert!(exits < 20, "still asking after {exits} exits");
        }
        assert!(exits > 3, "one share per exit: {exits} exits");
        assert!(!crate::console::live::leftovers_pending());
        let out = host::console_take();
        assert_eq!(
            out.matches(core::str::from_utf8(&line).unwrap()).count(),
            3,
            "{out}"
        );
        assert!(out.contains("domain-end: id=77 name=left"), "{out}");
        assert_eq!(w0.load(Ordering::Relaxed), ATTN_CONSOLE);
        assert_eq!(attend(w0), ATTN_CONSOLE);
        assert_eq!(
            w0.load(Ordering::Relaxed),
            0,
            "nothing left: not asked again"
        );
        host::become_cpu(0);
    }
}
