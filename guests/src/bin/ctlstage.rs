//! A control domain that builds a domain from a stage (`HC_DOMCTL_STAGE_*`
//! and `DOMCTL_CREATE_STAGED`, issue 14), on both backends: boot it as
//! module 0 with the hypervisor's `dom0` option and a `hello` module
//! after it.
//!
//! It reads module `hello` into its heap, stages it in pieces (two of
//! them overlapping), checks the refusals (a size of 0, writes past the
//! end, leaving a gap, over 64 KiB, from past its memory, to a bad handle;
//! a create from a stage not yet filled, with an initramfs on a pvabi
//! image, from bytes that are not ELF; a ninth stage), builds the child
//! `fromstage` with command line `from a stage`, finds the stage gone
//! (the create freed it), unpauses the child and waits for it to exit 0,
//! and checks free memory is back. Prints `<N> checks, 0 failed`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use kestrel_guests::Checks;
use pvabi::guest::{domctl, sched, stage, time};
use pvabi::{DOMAIN_DYING, DomainCreate, DomainCreateStaged, DomainCreateStagedRequest, Error};

pvabi::entry_point!(main);
pvabi::guest_heap!(1 << 20);

static CHECKS: Checks = Checks::new("ctlstage");

fn code(r: Result<impl Sized, Error>) -> i64 {
    match r {
        Ok(_) => 0,
        Err(e) => e.code(),
    }
}

fn request(name: &str) -> DomainCreateStagedRequest {
    DomainCreateStagedRequest {
        create: DomainCreate::new(name, 0, 4 << 20, 1),
        staged: DomainCreateStaged {
            image: 0,
            initrd: 0,
            cmdline_gpa: 0,
            cmdline_len: 0,
            _pad: 0,
        },
    }
}

/// Module `name`'s bytes.
fn read_module(name: &str) -> Option<Vec<u8>> {
    let n = domctl::host_info().ok()?.nr_modules;
    let index = (0..n).find(|&i| {
        domctl::module_info(i)
            .is_ok_and(|m| m.name.get(..m.name_len as usize) == Some(name.as_bytes()))
    })?;
    let size = domctl::module_info(index).ok()?.size;
    let mut out = Vec::new();
    let mut buf = [0u8; pvabi::DOMCTL_READ_MAX as usize];
    while (out.len() as u64) < size {
        let got = domctl::module_read(index, out.len() as u64, &mut buf).ok()?;
        out.extend_from_slice(buf.get(..got).filter(|b| !b.is_empty())?);
    }
    Some(out)
}

/// Waits (up to 10 s) until domain `id` is gone: its exit code.
fn wait_gone(id: u32) -> Option<i32> {
    let deadline = time::now_ns() + 10_000_000_000;
    let mut code = None;
    loop {
        match domctl::info(id) {
            Err(Error::NoEntry) => {
                return code.or_else(|| domctl::ended(id).ok().map(|e| e.exit_code));
            }
            Ok(i) if i.state == DOMAIN_DYING => code = Some(i.exit_code),
            Ok(_) => {}
            Err(_) => return None,
        }
        if time::now_ns() > deadline {
            return None;
        }
        sched::yield_now();
    }
}

fn main(si: &pvabi::StartInfo) -> i32 {
    let Some(image) = read_module("hello") else {
        pvabi::println!("ctlstage: no hello module FAILED");
        return 1;
    };
    let free = domctl::host_info().map_or(0, |h| h.free_bytes);
    let len = image.len() as u64;
    pvabi::println!("ctlstage: domain {}, hello is {len} bytes", si.domain_id);
    let (einval, efault, enoent, e2big, ebusy) = (
        Error::Invalid.code(),
        Error::Fault.code(),
        Error::NoEntry.code(),
        Error::TooBig.code(),
        Error::Busy.code(),
    );
    CHECKS.check("a stage of 0 bytes", code(stage::begin(0)), einval);
    let h = match stage::begin(len) {
        Ok(h) => h,
        Err(e) => {
            pvabi::println!("ctlstage: begin: {e:?} FAILED");
            return 1;
        }
    };
    let half = (len / 2) as usize;
    CHECKS.check("a gap", code(stage::write(h, 1, &image[..10])), einval);
    CHECKS.check(
        "past the end",
        code(stage::write(h, len - 1, &image[..2])),
        einval,
    );
    let big = alloc::vec![0u8; 65537];
    CHECKS.check("over 64 KiB", code(stage::write(h, 0, &big)), e2big);
    // A source range past its own memory (a raw hypercall: no slice).
    let past = pvabi::guest::hypercall6(
        pvabi::HC_DOMCTL_STAGE_WRITE,
        [h, 0, si.memory_bytes - 4096, 8192, 0, 0],
    ) as i64;
    CHECKS.check("a source past its memory", past, efault);
    CHECKS.check(
        "a bad handle",
        code(stage::write(h ^ (1 << 8), 0, &image[..10])),
        enoent,
    );
    CHECKS.check(
        "the first half",
        i64::from(stage::write_all(h, 0, &image[..half + 100]) == Ok((half + 100) as u64)),
        1,
    );
    let mut req = request("x");
    CHECKS.check(
        "a create from a stage not filled",
        code(domctl::create_staged(&mut req, h, None)),
        einval,
    );
    // Overlapping the first write (a retry of its last 100 bytes).
    CHECKS.check(
        "the rest, overlapping",
        i64::from(stage::write_all(h, half as u64, &image[half..]) == Ok(len)),
        1,
    );
    let mut with_initrd = request("x");
    with_initrd.create.flags = pvabi::DOMCTL_CREATE_STAGED;
    with_initrd.staged.image = h;
    with_initrd.staged.initrd = h + (1 << 8);
    CHECKS.check(
        "an initramfs on a pvabi image",
        code(domctl::create_staged_raw(&with_initrd)),
        einval,
    );
    // Bytes that are not an ELF image: refused, the stage left for an abort.
    let junk = [0x5au8; 4096];
    let j = stage::begin(junk.len() as u64).unwrap_or(0);
    let _ = stage::write(j, 0, &junk);
    CHECKS.check(
        "not an ELF image",
        code(domctl::create_staged(&mut request("x"), j, None)),
        einval,
    );
    CHECKS.check("the junk stage is left: abort", code(stage::abort(j)), 0);
    CHECKS.check("abort again", code(stage::abort(j)), enoent);
    // Eight stages at most (the hello stage is one).
    let more: Vec<u64> = (0..7).filter_map(|_| stage::begin(4096).ok()).collect();
    CHECKS.check("eight stages", more.len() as i64, 7);
    CHECKS.check("a ninth", code(stage::begin(4096)), ebusy);
    for m in more {
        let _ = stage::abort(m);
    }
    let mut req = request("fromstage");
    if !req.create.set_cmdline("from a stage") {
        return 1;
    }
    let id = domctl::create_staged(&mut req, h, None);
    CHECKS.check("create from the stage", code(id), 0);
    CHECKS.check(
        "the create freed the stage",
        code(stage::write(h, 0, &image[..1])),
        enoent,
    );
    if let Ok(id) = id {
        CHECKS.check("unpause", code(domctl::unpause(id)), 0);
        CHECKS.check(
            "the child exited 0",
            i64::from(wait_gone(id).unwrap_or(-99)),
            0,
        );
    }
    let after = domctl::host_info().map_or(0, |h| h.free_bytes);
    CHECKS.check("free memory back", i64::from(after == free), 1);
    let (checks, failed) = CHECKS.counts();
    pvabi::println!("ctlstage: {checks} checks, {failed} failed");
    i32::from(failed != 0)
}
