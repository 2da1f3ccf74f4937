//! Host tests of the control domain's I/O hypercalls (42-46): privilege
//! first, lengths, buffers wholly inside guest memory before any byte
//! moves, and OUT bytes written only where they may be.
use super::*;
use crate::domain::ids::DomainId;
use pvabi::{
    E2BIG, ENOENT, HC_DOMCTL_CONSOLE_READ, HC_HOST_CONSOLE_WRITE, HC_MGMT_READ, HC_MGMT_WRITE,
    MGMT_IO_MAX,
};

/// The fake system: the management line holds `INPUT`; domain 3's console
/// ring holds `RING`; no other domain exists.
const INPUT: &[u8] = b"{\"id\":1}\n";
const RING: &[u8] = b"tick 1\n";

pub(super) fn fake(svc: &mut FakeSvc, req: MgmtReq<'_>) -> Result<u64, Error> {
    let copy = |src: &[u8], buf: &mut [u8]| {
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        n as u64
    };
    match req {
        MgmtReq::Write(b) | MgmtReq::HostWrite(b) => {
            svc.mgmt_out.extend_from_slice(b);
            Ok(b.len() as u64)
        }
        MgmtReq::Read(buf) => Ok(copy(INPUT, buf)),
        MgmtReq::ConsoleRead {
            id: DomainId(3),
            buf,
        } => Ok(copy(RING, buf)),
        MgmtReq::ConsoleRead { .. } => Err(Error::NoEntry),
        // As the scheduler does: the caller (domain 1) is refused, only
        // domain 3 exists; the virq is raised when a byte was queued.
        MgmtReq::ConsoleWrite {
            id: DomainId(1), ..
        } => Err(Error::Invalid),
        MgmtReq::ConsoleWrite {
            id: DomainId(3),
            bytes,
        } => {
            let n = svc.input3.push(bytes);
            if n > 0 {
                svc.virq_console3 += 1;
            }
            Ok(n as u64)
        }
        MgmtReq::ConsoleWrite { .. } => Err(Error::NoEntry),
    }
}

pub(super) fn run(svc: &mut FakeSvc, nr: u64, a: [u64; 4]) -> i64 {
    let mut v = FakeVcpu::default();
    let (act, _) = call6(&mut v, svc, nr, a);
    assert_eq!(act, Action::Resume);
    v.regs.rax as i64
}

#[test]
fn unprivileged_callers_get_eperm_whatever_the_arguments() {
    let mut svc = FakeSvc::new(0x2000);
    for nr in [
        HC_MGMT_WRITE,
        HC_MGMT_READ,
        HC_DOMCTL_CONSOLE_READ,
        HC_HOST_CONSOLE_WRITE,
        pvabi::HC_DOMCTL_CONSOLE_WRITE,
    ] {
        for a in [[0, 0, 0, 0], [0x100, 5, 5, 0], [u64::MAX; 4]] {
            assert_eq!(run(&mut svc, nr, a), EPERM, "nr {nr} {a:?}");
        }
    }
    assert!(svc.mgmt_out.is_empty());
    assert!(svc.input3.is_empty());
}

#[test]
fn writes_send_exactly_the_guest_bytes() {
    let mut svc = FakeSvc::new(0x2000);
    svc.privileged = true;
    svc.mem[0x100..0x105].copy_from_slice(b"hello");
    assert_eq!(run(&mut svc, HC_MGMT_WRITE, [0x100, 5, 0, 0]), 5);
    assert_eq!(run(&mut svc, HC_HOST_CONSOLE_WRITE, [0x101, 3, 0, 0]), 3);
    assert_eq!(svc.mgmt_out, b"helloell");
    for (gpa, len, want) in [
        (0x1ffe, 3, EFAULT),
        (u64::MAX, 2, EFAULT),
        (0, MGMT_IO_MAX + 1, E2BIG),
        (0, u64::MAX, E2BIG),
    ] {
        assert_eq!(run(&mut svc, HC_MGMT_WRITE, [gpa, len, 0, 0]), want);
        assert_eq!(run(&mut svc, HC_HOST_CONSOLE_WRITE, [gpa, len, 0, 0]), want);
    }
    assert_eq!(svc.mgmt_out, b"helloell", "nothing sent on a refusal");
    assert_eq!(run(&mut svc, HC_MGMT_WRITE, [0x1fff, 0, 0, 0]), 0);
}

#[test]
fn reads_fill_only_the_buffer_and_only_when_it_is_valid() {
    let mut svc = FakeSvc::new(0x2000);
    svc.privileged = true;
    assert_eq!(
        run(&mut svc, HC_MGMT_READ, [0x200, 64, 0, 0]),
        INPUT.len() as i64
    );
    assert_eq!(&svc.mem[0x200..0x200 + INPUT.len()], INPUT);
    assert_eq!(
        svc.mem[0x200 + INPUT.len()],
        0,
        "nothing past the bytes read"
    );
    assert_eq!(run(&mut svc, HC_MGMT_READ, [0x300, 4, 0, 0]), 4);
    assert_eq!(&svc.mem[0x300..0x305], b"{\"id\0");
    assert_eq!(run(&mut svc, HC_MGMT_READ, [0x1ffc, 8, 0, 0]), EFAULT);
    assert_eq!(
        run(&mut svc, HC_MGMT_READ, [0, MGMT_IO_MAX + 1, 0, 0]),
        E2BIG
    );

    assert_eq!(
        run(&mut svc, HC_DOMCTL_CONSOLE_READ, [3, 0x400, 64, 0]),
        RING.len() as i64
    );
    assert_eq!(&svc.mem[0x400..0x400 + RING.len()], RING);
    assert_eq!(
        run(&mut svc, HC_DOMCTL_CONSOLE_READ, [4, 0x400, 64, 0]),
        ENOENT
    );
    assert_eq!(
        run(
            &mut svc,
            HC_DOMCTL_CONSOLE_READ,
            [1 << 32 | 3, 0x400, 64, 0]
        ),
        EINVAL
    );
    assert_eq!(
        run(&mut svc, HC_DOMCTL_CONSOLE_READ, [3, 0x1ffc, 64, 0]),
        EFAULT
    );
    assert_eq!(
        run(&mut svc, HC_DOMCTL_CONSOLE_READ, [3, 0, MGMT_IO_MAX + 1, 0]),
        E2BIG
    );
}
