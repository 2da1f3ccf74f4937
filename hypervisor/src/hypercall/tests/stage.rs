//! Host tests of the staging domctls' decoding (`domain/stage_ops.rs`):
//! privilege first, every register checked, and the
//! `DomainCreateStaged` after a `DOMCTL_CREATE_STAGED` create read and
//! checked against hostile values; nothing reaches the services on any
//! refusal. The table itself: `domain/stage/tests.rs`.
use super::*;
use pvabi::{
    DOMCTL_CREATE_LINUX, DOMCTL_CREATE_STAGED, DomainCreate, DomainCreateStaged,
    DomainCreateStagedRequest, E2BIG, EFAULT, EPERM, HC_DOMCTL_CREATE, HC_DOMCTL_STAGE_ABORT,
    HC_DOMCTL_STAGE_BEGIN, HC_DOMCTL_STAGE_WRITE,
};

fn call(svc: &mut FakeSvc, nr: u64, a: [u64; 4]) -> i64 {
    let mut vcpu = FakeVcpu::default();
    vcpu.regs.rax = nr;
    vcpu.regs.rdi = a[0];
    vcpu.regs.rsi = a[1];
    vcpu.regs.rdx = a[2];
    vcpu.regs.r10 = a[3];
    let action = handle(
        VmExit::Hypercall { len: 3 },
        &mut vcpu,
        svc,
        &FakeHost,
        1,
        &mut |_| true,
    );
    assert_eq!(action, Action::Resume);
    vcpu.regs.rax as i64
}

fn svc(privileged: bool) -> FakeSvc {
    let mut s = FakeSvc::new(0x4000);
    s.privileged = privileged;
    s
}

#[test]
fn staging_needs_the_privilege() {
    for (nr, a) in [
        (HC_DOMCTL_STAGE_BEGIN, [4096, 0, 0, 0]),
        (HC_DOMCTL_STAGE_WRITE, [0x101, 0, 0x1000, 16]),
        (HC_DOMCTL_STAGE_ABORT, [0x101, 0, 0, 0]),
    ] {
        let mut s = svc(false);
        assert_eq!(call(&mut s, nr, a), EPERM, "{nr}");
        assert!(s.domctl_reqs.is_empty());
    }
}

#[test]
fn stage_calls_reach_the_services_checked() {
    let mut s = svc(true);
    assert_eq!(call(&mut s, HC_DOMCTL_STAGE_BEGIN, [4096, 0, 0, 0]), 0x101);
    assert_eq!(
        call(&mut s, HC_DOMCTL_STAGE_WRITE, [0x101, 100, 0x1000, 65536]),
        100 + 65536
    );
    assert_eq!(call(&mut s, HC_DOMCTL_STAGE_ABORT, [0x101, 0, 0, 0]), 0);
    assert_eq!(
        s.domctl_reqs,
        [
            "StageBegin(4096)",
            "StageWrite { handle: 257, offset: 100, gpa: 4096, len: 65536 }",
            "StageAbort(257)"
        ]
    );
    let cases: [(&str, [u64; 4], i64); 4] = [
        ("over 64 KiB", [0x101, 0, 0x1000, 65537], E2BIG),
        ("nothing", [0x101, 0, 0x1000, 0], EINVAL),
        ("the offset wraps", [0x101, u64::MAX, 0x1000, 2], EINVAL),
        ("the source wraps", [0x101, 0, u64::MAX - 1, 2], EFAULT),
    ];
    for (what, a, want) in cases {
        let mut s = svc(true);
        assert_eq!(call(&mut s, HC_DOMCTL_STAGE_WRITE, a), want, "{what}");
        assert!(s.domctl_reqs.is_empty(), "{what}");
    }
}

fn request(flags: u32, ext: DomainCreateStaged) -> DomainCreateStagedRequest {
    let mut create = DomainCreate::new("st", 0, 16 << 20, 1);
    create.flags = flags;
    DomainCreateStagedRequest {
        create,
        staged: ext,
    }
}

fn ext(image: u64, initrd: u64, cmdline_len: u32) -> DomainCreateStaged {
    DomainCreateStaged {
        image,
        initrd,
        cmdline_gpa: 0x3000,
        cmdline_len,
        _pad: 0,
    }
}

fn svc_with(req: &DomainCreateStagedRequest, line: &[u8]) -> FakeSvc {
    let mut s = svc(true);
    let b = req.as_bytes();
    s.mem[0x1000..0x1000 + b.len()].copy_from_slice(b);
    s.mem[0x3000..0x3000 + line.len()].copy_from_slice(line);
    s
}

#[test]
fn a_staged_create_hands_on_the_handles() {
    let req = request(DOMCTL_CREATE_STAGED, ext(0x101, 0, 0));
    let mut s = svc_with(&req, b"");
    assert_eq!(call(&mut s, HC_DOMCTL_CREATE, [0x1000, 0, 0, 0]), 100);
    let r = &s.domctl_reqs[0];
    assert!(r.contains("staged: Some((257, 0))"), "{r}");
    assert!(r.contains("linux: None"), "{r}");

    let req = request(
        DOMCTL_CREATE_STAGED | DOMCTL_CREATE_LINUX,
        ext(0x101, 0x202, 13),
    );
    let mut s = svc_with(&req, b"console=hvc0 ");
    assert_eq!(call(&mut s, HC_DOMCTL_CREATE, [0x1000, 0, 0, 0]), 100);
    let r = &s.domctl_reqs[0];
    assert!(r.contains("staged: Some((257, 514))"), "{r}");
    assert!(r.contains("linux: Some(None)"), "{r}");
    assert!(r.contains("cmdline: \"console=hvc0 \""), "{r}");
}

#[test]
fn a_staged_create_rejects_a_bad_request() {
    let linux = DOMCTL_CREATE_STAGED | DOMCTL_CREATE_LINUX;
    let mut with_module = request(DOMCTL_CREATE_STAGED, ext(0x101, 0, 0));
    with_module.create.module = 1;
    let mut inline_line = request(linux, ext(0x101, 0, 0));
    inline_line.create.set_cmdline("x");
    let mut pad = request(DOMCTL_CREATE_STAGED, ext(0x101, 0, 0));
    pad.staged._pad = 1;
    let mut far = request(linux, ext(0x101, 0, 4));
    far.staged.cmdline_gpa = u64::MAX - 1;
    let cases: [(&str, DomainCreateStagedRequest, &[u8], i64); 10] = [
        ("a module too", with_module, b"", EINVAL),
        (
            "no image",
            request(DOMCTL_CREATE_STAGED, ext(0, 0, 0)),
            b"",
            EINVAL,
        ),
        (
            "initrd is the image",
            request(linux, ext(0x101, 0x101, 0)),
            b"",
            EINVAL,
        ),
        (
            "a pvabi image with an initrd",
            request(DOMCTL_CREATE_STAGED, ext(0x101, 0x202, 0)),
            b"",
            EINVAL,
        ),
        (
            "a pvabi image with a Linux command line",
            request(DOMCTL_CREATE_STAGED, ext(0x101, 0, 1)),
            b"x",
            EINVAL,
        ),
        ("_pad", pad, b"", EINVAL),
        (
            "a Linux create with an inline command line",
            inline_line,
            b"",
            EINVAL,
        ),
        (
            "a NUL in the command line",
            request(linux, ext(0x101, 0, 3)),
            b"a\0b",
            EINVAL,
        ),
        (
            "a command line too long",
            request(linux, ext(0x101, 0, 2048)),
            b"",
            EINVAL,
        ),
        ("the command line not in memory", far, b"", EFAULT),
    ];
    for (what, req, line, want) in cases {
        let mut s = svc_with(&req, line);
        assert_eq!(
            call(&mut s, HC_DOMCTL_CREATE, [0x1000, 0, 0, 0]),
            want,
            "{what}"
        );
        assert!(s.domctl_reqs.is_empty(), "{what}: {:?}", s.domctl_reqs);
    }
    // The extension itself past the end of the caller's memory.
    let mut s = svc(true);
    let req = request(DOMCTL_CREATE_STAGED, ext(0x101, 0, 0));
    let at = 0x4000 - core::mem::size_of::<DomainCreate>();
    s.mem[at..].copy_from_slice(req.create.as_bytes());
    assert_eq!(call(&mut s, HC_DOMCTL_CREATE, [at as u64, 0, 0, 0]), EFAULT);
    assert!(s.domctl_reqs.is_empty());
}
