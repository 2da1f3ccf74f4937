//! Host tests of `HC_DOMCTL_CREATE` with `DOMCTL_CREATE_IMAGE` (an image
//! in the caller's memory, issue 14): the extension is read from after the
//! struct, checked against hostile values, and handed on as (gpa, len);
//! nothing is created on any refusal. The copy itself needs plain
//! physical memory (`domain/staged.rs`): the boot tests cover it
//! (`tests/tests/boot/upload.rs`).
use super::*;
use pvabi::{DOMCTL_IMAGE_MAX, DomainCreate, DomainCreateImage, DomainCreateImageRequest};

fn call(svc: &mut FakeSvc, nr: u64, args: [u64; 6]) -> i64 {
    let mut vcpu = FakeVcpu::default();
    vcpu.regs.rax = nr;
    vcpu.regs.rdi = args[0];
    vcpu.regs.rsi = args[1];
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

fn request(module: u32, gpa: u64, len: u64) -> DomainCreateImageRequest {
    let mut create = DomainCreate::new("up", module, 16 << 20, 1);
    create.flags = pvabi::DOMCTL_CREATE_IMAGE;
    DomainCreateImageRequest {
        create,
        image: DomainCreateImage {
            image_gpa: gpa,
            image_len: len,
        },
    }
}

/// The fake system's answer to a create; 100 + module as in `domctl.rs`.
fn svc_with(req: &DomainCreateImageRequest, at: usize) -> FakeSvc {
    let mut svc = FakeSvc::new(0x4000);
    svc.privileged = true;
    let b = req.as_bytes();
    if let Some(dst) = svc.mem.get_mut(at..at + b.len()) {
        dst.copy_from_slice(b);
    }
    svc
}

#[test]
fn an_image_create_hands_on_the_range_in_the_callers_memory() {
    let req = request(0, 0x2000, 0x1800);
    let mut svc = svc_with(&req, 0x1000);
    assert_eq!(
        call(&mut svc, pvabi::HC_DOMCTL_CREATE, [0x1000, 0, 0, 0, 0, 0]),
        100
    );
    let r = &svc.domctl_reqs[0];
    assert!(r.contains("image: Some((8192, 6144))"), "{r}");
    assert!(r.contains("linux: None"), "{r}");
}

#[test]
fn an_image_create_rejects_a_bad_extension() {
    let size = core::mem::size_of::<DomainCreateImageRequest>();
    let mut linux = request(0, 0x2000, 16);
    linux.create.flags |= pvabi::DOMCTL_CREATE_LINUX;
    let cases: [(&str, DomainCreateImageRequest, usize, i64); 6] = [
        ("a module too", request(1, 0x2000, 16), 0x1000, EINVAL),
        ("no bytes", request(0, 0x2000, 0), 0x1000, EINVAL),
        (
            "over the largest image",
            request(0, 0x2000, DOMCTL_IMAGE_MAX + 1),
            0x1000,
            EINVAL,
        ),
        ("with the Linux flag", linux, 0x1000, EINVAL),
        (
            "the range wraps",
            request(0, u64::MAX - 4, 16),
            0x1000,
            EFAULT,
        ),
        // The struct fits, its extension runs past the caller's memory.
        (
            "the extension outside memory",
            request(0, 0x2000, 16),
            0x4000 - pvabi::DOMAIN_CREATE_SIZE,
            EFAULT,
        ),
    ];
    for (what, req, at, want) in cases {
        let mut svc = svc_with(&req, at);
        if what == "the extension outside memory" {
            svc.mem[at..].copy_from_slice(&req.as_bytes()[..0x4000 - at]);
        }
        assert!(size > pvabi::DOMAIN_CREATE_SIZE);
        assert_eq!(
            call(
                &mut svc,
                pvabi::HC_DOMCTL_CREATE,
                [at as u64, 0, 0, 0, 0, 0]
            ),
            want,
            "{what}"
        );
        assert!(svc.domctl_reqs.is_empty(), "{what}: nothing was created");
    }
}
