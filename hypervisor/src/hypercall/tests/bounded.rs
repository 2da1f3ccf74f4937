//! Host tests of bounded exits (issue 12, defect 5): a multicall runs one
//! piece of bounded cost per exit and is continued, transparently, until
//! done; a console write that does not fit its queue is executed again.
use super::*;
use continuation::{MEM_PIECE_PAGES, PAGE_COST, PIECE_BUDGET};

const ARRAY: usize = 0x30_0000;

fn put_batch(svc: &mut FakeSvc, batch: &[MulticallEntry]) {
    for (i, e) in batch.iter().enumerate() {
        svc.mem[ARRAY + i * 64..ARRAY + (i + 1) * 64].copy_from_slice(e.as_bytes());
    }
}

fn results(svc: &FakeSvc, n: usize) -> Vec<i64> {
    (0..n)
        .map(|i| {
            MulticallEntry::read_from_bytes(&svc.mem[ARRAY + i * 64..ARRAY + (i + 1) * 64])
                .unwrap()
                .result as i64
        })
        .collect()
}

/// Runs exits of one `HC_MULTICALL` the way a guest would (executing the
/// instruction again while RIP stays on it) with `console` as the queue;
/// returns how many exits it took and every action.
fn run_to_end(
    v: &mut FakeVcpu,
    svc: &mut FakeSvc,
    n: usize,
    console: &mut dyn FnMut(&[u8]) -> bool,
) -> (usize, Vec<Action>) {
    v.regs.rax = HC_MULTICALL;
    v.regs.rdi = ARRAY as u64;
    v.regs.rsi = n as u64;
    let rip = v.rip;
    let mut actions = Vec::new();
    for exits in 1..=5000 {
        let before = v.regs;
        let a = handle(VmExit::Hypercall { len: 3 }, v, svc, &FakeHost, 1, console);
        actions.push(a);
        if v.rip != rip {
            assert_eq!(v.rip, rip + 3, "done: RIP past the instruction");
            return (exits, actions);
        }
        // Continued: every register as the guest left it, RAX included.
        assert_eq!(v.regs, before, "a continued hypercall changed registers");
        assert!(svc.cont.pending(), "continued without a record");
    }
    panic!("the multicall never finished");
}

#[test]
fn a_multicall_of_large_memory_ops_is_split_into_bounded_pieces() {
    let mut svc = FakeSvc::new(0x40_0000);
    // 64 alternating releases and populates of the same 512 pages: 32,768
    // pages moved, which used to be one exit.
    let batch: Vec<MulticallEntry> = (0..64)
        .map(|i| {
            let op = if i % 2 == 0 {
                HC_MEM_RELEASE
            } else {
                HC_MEM_POPULATE
            };
            entry(op, [0, MEM_OP_MAX_PAGES, 0, 0, 0, 0])
        })
        .collect();
    put_batch(&mut svc, &batch);
    let mut v = FakeVcpu::default();
    let (exits, actions) = run_to_end(&mut v, &mut svc, 64, &mut |_: &[u8]| true);
    // At most a budget's worth of pages per exit (a piece may finish one
    // op and start the next), at least one piece of pages.
    let pages = 64 * MEM_OP_MAX_PAGES as usize;
    const { assert!(MEM_PIECE_PAGES * PAGE_COST <= PIECE_BUDGET) };
    assert!(exits >= pages / MEM_PIECE_PAGES as usize, "{exits} exits");
    assert!(exits <= pages / MEM_PIECE_PAGES as usize, "{exits} exits");
    assert!(actions.iter().all(|a| *a == Action::Resume));
    assert_eq!(v.regs.rax, 64, "RAX: the count, as for one exit");
    // Each entry ran exactly once: a second release or populate of the
    // same pages would have failed (ENOENT / EEXIST).
    assert_eq!(results(&svc, 64), std::vec![512i64; 64]);
    assert!(svc.present[..512].iter().all(|p| *p));
    assert!(!svc.cont.pending(), "record gone once done");
}

#[test]
fn small_batches_still_cost_one_exit() {
    let mut svc = FakeSvc::new(0x40_0000);
    svc.mem[0x1000..0x1013].copy_from_slice(b"multicall: line 00\n");
    let batch = [entry(HC_CONSOLE_WRITE, [0x1000, 19, 0, 0, 0, 0]); 64];
    put_batch(&mut svc, &batch);
    let mut v = FakeVcpu::default();
    let mut out = Vec::new();
    let (exits, _) = run_to_end(&mut v, &mut svc, 64, &mut |b: &[u8]| {
        out.extend_from_slice(b);
        true
    });
    assert_eq!(exits, 1);
    assert_eq!(out.len(), 64 * 19);
    let polls = [entry(HC_SCHED_POLL, [0; 6]); 64];
    put_batch(&mut svc, &polls);
    assert_eq!(run_to_end(&mut v, &mut svc, 64, &mut |_: &[u8]| true).0, 1);
}

#[test]
fn a_full_console_queue_continues_the_write_without_losing_or_repeating_bytes() {
    let mut svc = FakeSvc::new(0x40_0000);
    for i in 0..64 {
        svc.mem[0x1000 * (i + 1)..0x1000 * (i + 2)].fill(b'a' + (i % 26) as u8);
    }
    let batch: Vec<MulticallEntry> = (0..64)
        .map(|i| entry(HC_CONSOLE_WRITE, [0x1000 * (i + 1), 4096, 0, 0, 0, 0]))
        .collect();
    put_batch(&mut svc, &batch);
    let mut v = FakeVcpu::default();
    // A queue of 4 KiB that the serial port drains by 1 KiB per exit.
    let mut queued = 0usize;
    let mut out: Vec<u8> = Vec::new();
    let mut exits_with_drain = 0;
    let (exits, actions) = {
        let mut console = |b: &[u8]| {
            if queued + b.len() > 4096 {
                exits_with_drain += 1;
                queued = queued.saturating_sub(1024);
                return false;
            }
            queued += b.len();
            out.extend_from_slice(b);
            true
        };
        run_to_end(&mut v, &mut svc, 64, &mut console)
    };
    assert!(exits > 64, "{exits} exits: the queue throttled the writes");
    assert!(exits_with_drain > 0);
    assert!(actions.contains(&Action::Yield), "a stalled write yields");
    assert_eq!(out.len(), 64 * 4096, "every byte once");
    for (i, c) in out.chunks(4096).enumerate() {
        assert!(c.iter().all(|&b| b == b'a' + (i % 26) as u8), "write {i}");
    }
    assert_eq!(results(&svc, 64), std::vec![4096i64; 64]);
}

#[test]
fn a_single_console_write_that_does_not_fit_is_executed_again() {
    let mut svc = FakeSvc::new(0x4000);
    svc.mem[0x100..0x105].copy_from_slice(b"hello");
    let mut v = FakeVcpu::default();
    v.regs.rax = HC_CONSOLE_WRITE;
    v.regs.rdi = 0x100;
    v.regs.rsi = 5;
    let a = handle(
        VmExit::Hypercall { len: 3 },
        &mut v,
        &mut svc,
        &FakeHost,
        1,
        &mut |_: &[u8]| false,
    );
    assert_eq!((a, v.rip, v.regs.rax), (Action::Yield, 0, HC_CONSOLE_WRITE));
    let (a, out) = call(&mut v, &mut svc, HC_CONSOLE_WRITE, 0x100, 5);
    assert_eq!(
        (a, out.as_slice(), v.regs.rax),
        (Action::Resume, b"hello".as_slice(), 5)
    );
}

#[test]
fn a_continuation_resumes_only_the_same_call() {
    let mut svc = FakeSvc::new(0x40_0000);
    let batch = [
        entry(HC_MEM_RELEASE, [0, 512, 0, 0, 0, 0]),
        entry(HC_MEM_POPULATE, [0, 512, 0, 0, 0, 0]),
    ];
    put_batch(&mut svc, &batch);
    let mut v = FakeVcpu::default();
    v.regs.rax = HC_MULTICALL;
    v.regs.rdi = ARRAY as u64;
    v.regs.rsi = 2;
    handle(
        VmExit::Hypercall { len: 3 },
        &mut v,
        &mut svc,
        &FakeHost,
        1,
        &mut |_: &[u8]| true,
    );
    assert!(svc.cont.pending());
    // Another hypercall comes first: the record is forgotten.
    call(&mut v, &mut svc, HC_SCHED_POLL, 0, 0);
    assert!(!svc.cont.pending());
    // The same multicall again starts over at entry 0, which finds the
    // pages its first piece released gone.
    let rip = v.rip;
    v.regs.rax = HC_MULTICALL;
    v.regs.rdi = ARRAY as u64;
    v.regs.rsi = 2;
    handle(
        VmExit::Hypercall { len: 3 },
        &mut v,
        &mut svc,
        &FakeHost,
        1,
        &mut |_: &[u8]| true,
    );
    assert_eq!(v.rip, rip + 3, "both entries failed at their checks: done");
    assert_eq!(results(&svc, 2), [ENOENT, EEXIST]);
}

#[test]
fn a_single_large_memory_op_is_continued_and_stays_all_or_nothing() {
    let mut svc = FakeSvc::new(0x40_0000);
    let mut v = FakeVcpu::default();
    // A release whose last page is absent fails at once and changes nothing.
    svc.present[511] = false;
    let (a, _) = call(&mut v, &mut svc, HC_MEM_RELEASE, 0, MEM_OP_MAX_PAGES);
    assert_eq!((a, v.regs.rax as i64, v.rip), (Action::Resume, ENOENT, 3));
    assert!(svc.present[..511].iter().all(|p| *p), "nothing released");
    svc.present[511] = true;
    // A whole one takes one exit per piece, RIP and registers kept between.
    v.rip = 0;
    v.regs.rax = HC_MEM_RELEASE;
    v.regs.rdi = 0;
    v.regs.rsi = MEM_OP_MAX_PAGES;
    let mut exits = 0;
    while v.rip == 0 {
        let before = v.regs;
        handle(
            VmExit::Hypercall { len: 3 },
            &mut v,
            &mut svc,
            &FakeHost,
            1,
            &mut |_: &[u8]| true,
        );
        exits += 1;
        let released = svc.present[..512].iter().filter(|p| !**p).count() as u64;
        assert!(
            released <= exits * MEM_PIECE_PAGES,
            "at most a piece per exit"
        );
        if v.rip == 0 {
            assert_eq!(v.regs, before);
        }
    }
    assert_eq!(exits, MEM_OP_MAX_PAGES / MEM_PIECE_PAGES);
    assert_eq!(v.regs.rax, MEM_OP_MAX_PAGES);
    assert!(svc.present[..512].iter().all(|p| !p));
}
