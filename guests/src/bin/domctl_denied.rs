//! An unprivileged domain calls every domctl op (pvabi 1.3), with sane and
//! with hostile arguments: each must fail with `EPERM` and change nothing.
//! The `ctl` control domain creates it (see tests/tests/boot/domctl.rs).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use kestrel_guests::Checks;
use pvabi::guest::{domctl, hypercall6};
use pvabi::{DomainCreate, EPERM, HC_DOMCTL_CONSOLE_WRITE, HC_DOMCTL_CREATE};

pvabi::entry_point!(main);

static CHECKS: Checks = Checks::new("denied");

fn code<T>(r: Result<T, pvabi::Error>) -> i64 {
    r.map_or_else(|e| e.code(), |_| 0)
}

fn main(si: &pvabi::StartInfo) -> i32 {
    let perm = EPERM;
    let req = DomainCreate::new("evil", 1, 4 << 20, 1);
    let mut buf = [0u8; 16];
    let mut ids = [0u32; 4];
    CHECKS.check("create", code(domctl::create(&req)), perm);
    CHECKS.check("unpause", code(domctl::unpause(1)), perm);
    CHECKS.check("pause", code(domctl::pause(1)), perm);
    CHECKS.check("destroy", code(domctl::destroy(1)), perm);
    CHECKS.check("destroy self", code(domctl::destroy(si.domain_id)), perm);
    CHECKS.check("info", code(domctl::info(1)), perm);
    CHECKS.check("list", code(domctl::list(&mut ids)), perm);
    CHECKS.check("module info", code(domctl::module_info(0)), perm);
    CHECKS.check(
        "module read",
        code(domctl::module_read(0, 0, &mut buf)),
        perm,
    );
    CHECKS.check("host info", code(domctl::host_info()), perm);
    // Every domctl, management-line and console call (33-46).
    for nr in HC_DOMCTL_CREATE..=HC_DOMCTL_CONSOLE_WRITE {
        let r = hypercall6(nr, [u64::MAX, u64::MAX, 0, u64::MAX, 1, 2]) as i64;
        if r != perm {
            CHECKS.check("hostile arguments", r, perm);
        }
    }
    CHECKS.check(
        "nothing was read",
        i64::from(buf.iter().all(|&b| b == 0)),
        1,
    );
    let (n, failed) = CHECKS.counts();
    pvabi::println!("denied: {n} checks, {failed} failed");
    i32::from(failed != 0)
}
