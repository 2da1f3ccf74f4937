//! Host tests of console input: `HC_DOMCTL_CONSOLE_WRITE` (46)
//! from the control domain, and `HC_CONSOLE_READ` in unprivileged domains
//! with and without a control domain.
use super::mgmt::run;
use super::*;
use pvabi::{
    CONSOLE_INPUT_BYTES, CONSOLE_READ_MAX, E2BIG, ENOENT, HC_DOMCTL_CONSOLE_WRITE, MGMT_IO_MAX,
};

/// The control domain (domain 1 of the fakes): domain 3 exists.
fn control() -> FakeSvc {
    let mut svc = FakeSvc::new(0x4000);
    svc.privileged = true;
    svc.control_domain = true;
    svc
}

fn read(svc: &mut FakeSvc, gpa: u64, len: u64) -> i64 {
    let mut v = FakeVcpu::default();
    let (act, out) = call(&mut v, svc, HC_CONSOLE_READ, gpa, len);
    assert_eq!((act, out.len()), (Action::Resume, 0));
    v.regs.rax as i64
}

#[test]
fn without_a_control_domain_unprivileged_reads_stay_eperm() {
    let mut svc = FakeSvc::new(0x2000);
    svc.input.push(b"typed");
    for (gpa, len) in [(0x100, 16), (0x100, u64::MAX), (0x1fff, 16), (0, 0)] {
        assert_eq!(read(&mut svc, gpa, len), EPERM, "{gpa:#x} {len:#x}");
    }
    assert_eq!(svc.input.len(), 5, "nothing consumed");
    assert!(svc.mem.iter().all(|&b| b == 0), "nothing written");
}

#[test]
fn with_a_control_domain_unprivileged_domains_read_their_own_queue() {
    let mut svc = FakeSvc::new(0x2000);
    svc.control_domain = true;
    assert_eq!(read(&mut svc, 0x100, 16), 0, "empty: 0 at once");
    assert!(svc.mem.iter().all(|&b| b == 0));
    svc.input.push(b"hello\nquit\n");
    // Lengths and buffers first; no input is consumed by a refusal.
    assert_eq!(read(&mut svc, 0x100, CONSOLE_READ_MAX + 1), E2BIG);
    assert_eq!(read(&mut svc, u64::MAX, u64::MAX), E2BIG, "E2BIG first");
    assert_eq!(read(&mut svc, 0x1ffc, 8), EFAULT);
    assert_eq!(read(&mut svc, u64::MAX - 2, 8), EFAULT);
    assert_eq!(svc.input.len(), 11);
    assert_eq!(read(&mut svc, 0x100, 6), 6);
    assert_eq!(&svc.mem[0x100..0x107], b"hello\n\0", "only the bytes read");
    assert_eq!(read(&mut svc, 0x200, 64), 5);
    assert_eq!(&svc.mem[0x200..0x206], b"quit\n\0");
    assert_eq!(read(&mut svc, 0x200, 64), 0);
    assert_eq!(read(&mut svc, 0x1fff, 0), 0, "a zero length reads nothing");
}

#[test]
fn console_write_queues_exactly_the_bytes_and_raises_the_virq() {
    let mut svc = control();
    svc.mem[0x100..0x10f].copy_from_slice(b"hello kestrel\n!");
    assert_eq!(
        run(&mut svc, HC_DOMCTL_CONSOLE_WRITE, [3, 0x100, 14, 0]),
        14
    );
    assert_eq!(svc.virq_console3, 1);
    assert_eq!(run(&mut svc, HC_DOMCTL_CONSOLE_WRITE, [3, 0x3fff, 0, 0]), 0);
    assert_eq!(svc.virq_console3, 1, "nothing queued: no virq");
    // Domain 3 reads what was queued for it, in order.
    let mut guest = FakeSvc::new(0x2000);
    guest.control_domain = true;
    guest.input = core::mem::take(&mut svc.input3);
    assert_eq!(read(&mut guest, 0x10, 64), 14);
    assert_eq!(&guest.mem[0x10..0x1e], b"hello kestrel\n");
}

#[test]
fn console_write_checks_in_the_documented_order() {
    let mut svc = control();
    for (a, want) in [
        // E2BIG before EFAULT before the domain.
        ([9, u64::MAX, MGMT_IO_MAX + 1], E2BIG),
        ([9, 0, u64::MAX], E2BIG),
        ([9, 0x3ffe, 4], EFAULT),
        ([3, u64::MAX, 2], EFAULT),
        ([1 << 32 | 3, 0x100, 4], EINVAL),
        ([u64::MAX, 0x100, 4], EINVAL),
        ([1, 0x100, 4], EINVAL),
        ([4, 0x100, 4], ENOENT),
    ] {
        let got = run(&mut svc, HC_DOMCTL_CONSOLE_WRITE, [a[0], a[1], a[2], 0]);
        assert_eq!(got, want, "{a:x?}");
    }
    assert!(svc.input3.is_empty(), "nothing queued on a refusal");
    assert_eq!(svc.virq_console3, 0);
    svc.privileged = false;
    assert_eq!(
        run(&mut svc, HC_DOMCTL_CONSOLE_WRITE, [3, 0x100, 4, 0]),
        EPERM,
        "unprivileged, even with a control domain"
    );
}

#[test]
fn a_full_queue_takes_what_fits() {
    let mut svc = control();
    svc.mem[..MGMT_IO_MAX as usize].fill(b'x');
    let mut queued = 0;
    while queued < CONSOLE_INPUT_BYTES {
        let n = run(&mut svc, HC_DOMCTL_CONSOLE_WRITE, [3, 0, 1000, 0]);
        assert_eq!(n as usize, 1000.min(CONSOLE_INPUT_BYTES - queued));
        queued += n as usize;
    }
    assert_eq!(run(&mut svc, HC_DOMCTL_CONSOLE_WRITE, [3, 0, 10, 0]), 0);
    assert_eq!(svc.input3.len(), CONSOLE_INPUT_BYTES);
    let mut two = [0u8; 2];
    svc.input3.read(&mut two);
    assert_eq!(run(&mut svc, HC_DOMCTL_CONSOLE_WRITE, [3, 0, 10, 0]), 2);
}
